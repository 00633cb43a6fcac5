"""One JSON line from a user's file, parsed safely: every JSONL reader (labelled data,
batch input, ``classify --jsonl``, a ``--resume`` file) uses :func:`loads`.

    for raw in lines(handle):
        try:
            data = loads(raw)
        except NotJSON as e:
            ...  # "FILE:LINE: " + str(e), or skip the line

Python's ``json`` fails in ways its ``JSONDecodeError`` does not cover: a line
nested a thousand deep raises ``RecursionError``, an integer of more than 4,300
digits a plain ``ValueError``, and a line of gigabytes is read whole before it
is parsed. Here each of them is a :class:`NotJSON`, so one bad line is one
error that names its line, never a crash. The limits are far above any row mmr
reads: rows are flat objects, and a prompt of a million tokens is a few MB.
"""

from __future__ import annotations

import json
import sys
from typing import IO, Any, Callable, Iterable, Iterator

# Bytes in one line: a 1M-token prompt is about 4 MB of text, 8 MB with JSON escapes.
MAX_LINE_BYTES = 16 * 1024 * 1024
# Nesting of objects and arrays: rows are flat; far below Python's recursion limit, so
# code that walks a parsed row (json.dumps, repr) never recurses too deeply either.
MAX_DEPTH = 100
# Digits in one integer: Python's own default limit, whatever the interpreter was told.
MAX_INT_DIGITS = 4300


class NotJSON(ValueError):
    """A line that is not usable JSON. ``str(e)`` is the reason, e.g. ``not JSON (Expecting value)``
    or ``not usable JSON (nested more than 100 deep)``; ``column`` is set for a syntax error."""

    def __init__(self, detail: str, column: int | None = None):
        self.detail, self.column = detail, column
        super().__init__(f"not JSON ({detail})" if column is not None else f"not usable JSON ({detail})")

    def with_column(self) -> str:
        """The reason, with the column of a syntax error."""
        return f"not JSON ({self.detail} at column {self.column})" if self.column is not None else str(self)


def loads(line: str | bytes, parse_constant: Callable[[str], Any] | None = None) -> Any:
    """The value on one JSON line; :class:`NotJSON` for anything that is not usable JSON.
    ``parse_constant`` is json's: what NaN and Infinity become (a ValueError it raises is a NotJSON)."""
    check_length(line)
    # json's own int() already refuses long integers unless the interpreter was told otherwise;
    # a parse_int callback costs a Python call per integer, so it is used only then.
    limit = sys.get_int_max_str_digits()
    try:
        value = json.loads(line, parse_int=None if 0 < limit <= MAX_INT_DIGITS else _int, parse_constant=parse_constant)
    except json.JSONDecodeError as e:
        raise NotJSON(e.msg, e.colno) from None
    except RecursionError:
        raise NotJSON(f"nested more than {MAX_DEPTH} deep") from None
    except ValueError as e:
        detail = str(e).partition(":")[0]
        if "integer string conversion" in detail:  # int()'s own limit, reworded as _int words it
            detail = f"an integer of more than {min(limit, MAX_INT_DIGITS)} digits"
        raise NotJSON(detail) from None
    if isinstance(line, bytes):
        brackets = line.count(b"[") + line.count(b"{")
    else:
        brackets = line.count("[") + line.count("{")
    if brackets > MAX_DEPTH and _depth(value) > MAX_DEPTH:
        raise NotJSON(f"nested more than {MAX_DEPTH} deep")
    return value


def check_length(line: str | bytes) -> None:
    """:class:`NotJSON` for a line longer than ``MAX_LINE_BYTES``: check the bytes before decoding
    them, as :func:`lines` may have cut a character in two."""
    if len(line) > MAX_LINE_BYTES:
        raise NotJSON(f"a line longer than {MAX_LINE_BYTES // (1024 * 1024)} MiB")


def _int(digits: str) -> int:
    # int() of n digits takes time n**2: refuse before converting, not after.
    if len(digits.lstrip("-")) > MAX_INT_DIGITS:
        raise ValueError(f"an integer of more than {MAX_INT_DIGITS} digits")
    return int(digits)


def _depth(value: Any) -> int:
    """How deep objects and arrays nest in ``value`` (a scalar is 0), without recursing."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, depth)
        if deepest > MAX_DEPTH:
            break
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


def lines(source: IO[bytes] | Iterable[bytes], seen: Callable[[bytes], None] | None = None) -> Iterator[bytes]:
    """The lines of ``source``, each cut to ``MAX_LINE_BYTES + 1`` bytes (so :func:`loads`
    refuses it) while the rest of a longer line is read and dropped: memory stays bounded.
    ``seen`` gets every byte read, cut or not. An iterable without ``readline`` is passed through."""
    readline = getattr(source, "readline", None)
    if readline is None:
        for line in source:
            if seen is not None:
                seen(line)
            yield line
        return
    while line := readline(MAX_LINE_BYTES + 1):
        if seen is not None:
            seen(line)
        if len(line) > MAX_LINE_BYTES and not line.endswith(b"\n"):
            while rest := readline(MAX_LINE_BYTES):  # the rest of an over-long line, a bounded chunk at a time
                if seen is not None:
                    seen(rest)
                if rest.endswith(b"\n"):
                    break
        yield line
