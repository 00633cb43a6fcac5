"""Batch input: JSONL rows checked one by one, ids kept compactly, and an earlier run's
output read back for ``--resume``.

Input is JSONL, one row per line: ``{"prompt": ..., "id"?, "system"?, "tier"?,
"max_tokens"?, "user"?}``; a row without ``id`` takes its line number.
"""

from __future__ import annotations

import hashlib
import json
from array import array
from dataclasses import dataclass
from typing import IO, Iterable, Iterator

from ..config import MAX_OUTPUT_TOKENS
from ..errors import UsageError
from ..jsonl import NotJSON, check_length, loads
from ..jsonl import lines as jsonl_lines

@dataclass(frozen=True)
class Row:
    """One input row, checked."""

    line: int
    id: str | int
    prompt: str
    system: str | None = None
    tier: str | None = None
    max_tokens: int | None = None
    user: str | None = None

    @property
    def key(self) -> str:
        return id_key(self.id)


@dataclass(frozen=True)
class Problem:
    """A line that is not a usable row; it becomes an error row (or aborts with ``--strict``)."""

    line: int
    id: str | int | None
    kind: str  # input | duplicate_id
    message: str

    def to_json(self) -> dict:
        return {"id": self.id, "error": {"kind": self.kind, "message": self.message, "exit_code": UsageError.exit_code,
                                         "line": self.line}}


def id_key(value: str | int) -> str:
    """``"7"`` and ``7`` are different ids."""
    return f"s:{value}" if isinstance(value, str) else f"i:{value}"


class IdSet:
    """A set of ids kept as 64-bit BLAKE2b digests in one open-addressed array:
    16 bytes per id, so 100,000 ids cost 2 MB where a set of strings costs 10."""

    def __init__(self) -> None:
        self._slots = array("Q", bytes(8 * 1024))
        self._size = 0

    def __len__(self) -> int:
        return self._size

    @staticmethod
    def _digest(key: str) -> int:
        return int.from_bytes(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little") or 1

    def _find(self, digest: int) -> int:
        mask = len(self._slots) - 1
        i = digest & mask
        while self._slots[i] not in (0, digest):
            i = (i + 1) & mask
        return i

    def add(self, key: str) -> bool:
        """Add ``key``; False when it was already there."""
        if (self._size + 1) * 2 > len(self._slots):
            old = self._slots
            self._slots = array("Q", bytes(16 * len(old)))
            for digest in old:
                if digest:
                    self._slots[self._find(digest)] = digest
        digest = self._digest(key)
        i = self._find(digest)
        if self._slots[i] == digest:
            return False
        self._slots[i] = digest
        self._size += 1
        return True

    def __contains__(self, key: str) -> bool:
        digest = self._digest(key)
        return self._slots[self._find(digest)] == digest


# ------------------------------------------------------------------ input


def parse_line(number: int, raw: bytes, tiers: list[str]) -> Row | Problem:
    """Check one JSONL line (``number`` counts from 1)."""

    def problem(message: str, row_id: str | int | None = None) -> Problem:
        return Problem(number, row_id, "input", f"line {number}: {message}")

    try:
        check_length(raw)  # before decoding: jsonl.lines may have cut a character in two
        text = raw.decode("utf-8")
        if number == 1:
            text = text.removeprefix("\ufeff")
        data = loads(text)
    except UnicodeDecodeError:
        return problem("not UTF-8 text")
    except NotJSON as e:
        return problem(e.with_column())
    if not isinstance(data, dict):
        return problem(f"expected a JSON object, got {type(data).__name__}")
    row_id = data.get("id", number)
    if isinstance(row_id, bool) or not isinstance(row_id, (str, int)):
        return problem(f"id must be a string or an integer, got {json.dumps(row_id)[:40]}")
    prompt = data.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        return problem("prompt: missing or empty" if prompt is None or isinstance(prompt, str) else "prompt must be a string", row_id)
    for name in ("system", "tier", "user"):
        if data.get(name) is not None and not isinstance(data[name], str):
            return problem(f"{name} must be a string", row_id)
    for name in ("prompt", "system"):
        try:
            (data.get(name) or "").encode("utf-8")
        except UnicodeEncodeError:
            return problem(f"{name} is not valid UTF-8 text (a lone surrogate)", row_id)
    tier = data.get("tier")
    if tier is not None and tier not in tiers:
        return problem(f"tier: unknown tier {tier!r}; valid tiers: {', '.join(tiers)}", row_id)
    max_tokens = data.get("max_tokens")
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                   or not 1 <= max_tokens <= MAX_OUTPUT_TOKENS):
        return problem(f"max_tokens must be a whole number from 1 to {MAX_OUTPUT_TOKENS}, got {json.dumps(max_tokens)[:40]}",
                       row_id)
    return Row(number, row_id, prompt, data.get("system"), tier, max_tokens, data.get("user"))


def read_rows(lines: Iterable[bytes], tiers: list[str]) -> Iterator[Row | Problem]:
    """Parse ``lines`` lazily, skipping blank ones; a repeated id is a ``duplicate_id`` problem."""
    seen = IdSet()
    for number, raw in enumerate(jsonl_lines(lines), 1):
        if not raw.strip():
            continue
        item = parse_line(number, raw, tiers)
        if isinstance(item, Row) and not seen.add(item.key):
            item = Problem(number, item.id, "duplicate_id", f"line {number}: id {json.dumps(item.id)} repeats an earlier row's id")
        yield item


def check_all(lines: Iterable[bytes], tiers: list[str], name: str, copy: IO[bytes] | None = None) -> None:
    """``--strict``: raise UsageError at the first bad line, before anything is called.

    With ``copy``, every line is also written there (stdin can be read only once).
    """
    if copy is not None:
        lines = _teed(jsonl_lines(lines), copy)
    for item in read_rows(lines, tiers):
        if isinstance(item, Problem):
            raise UsageError(f"{name}:{item.message.removeprefix('line ')} (--strict: nothing was sent)")


def _teed(lines: Iterable[bytes], copy: IO[bytes]) -> Iterator[bytes]:
    for line in lines:
        copy.write(line)
        yield line


def count_file_rows(path: str) -> int:
    """Non-blank lines of ``path``: the total shown by the progress bar."""
    with open(path, "rb") as f:
        return sum(1 for line in jsonl_lines(f) if line.strip())


def answered_ids(lines: Iterable[bytes]) -> tuple[IdSet, int]:
    """Ids of the rows answered in an earlier run's output (``--resume``), and how many lines
    were not understood (a line cut short by a kill, say). Error rows are not answered."""
    ids = IdSet()
    unreadable = 0
    for raw in jsonl_lines(lines):
        if not raw.strip():
            continue
        try:
            data = loads(raw)
        except NotJSON:
            unreadable += 1
            continue
        if isinstance(data, dict) and "error" not in data and isinstance(data.get("id"), (str, int)) \
                and not isinstance(data.get("id"), bool):
            ids.add(id_key(data["id"]))
    return ids, unreadable


# ------------------------------------------------------------------ files


def open_input(source: str, *, strict: bool, tiers: list[str], stdin: IO[bytes]) -> IO[bytes]:
    """The input as a binary file; ``-`` is ``stdin``. With ``strict``, every line is checked
    first (stdin is copied to a temporary file on the way, so memory stays flat)."""
    import tempfile

    name = "stdin" if source == "-" else source
    if source == "-":
        if strict:
            spool = tempfile.TemporaryFile()
            try:
                check_all(stdin, tiers, name, copy=spool)
            except BaseException:
                spool.close()
                raise
            spool.seek(0)
            return spool
        return stdin
    try:
        handle = open(source, "rb")
    except OSError as e:
        raise UsageError(f"--batch: cannot read {source}: {e.strerror}") from None
    if strict:
        with handle:
            check_all(handle, tiers, name)
        handle = open(source, "rb")
    return handle


def read_resume(path: str) -> tuple[IdSet, int]:
    """The ids answered in ``path`` (``--resume``), and how many of its lines were not understood."""
    try:
        with open(path, "rb") as f:
            return answered_ids(f)
    except OSError as e:
        raise UsageError(f"--resume: cannot read {path}: {e.strerror}") from None
