"""Batch routing: many prompts in one process, a bounded number at a time.

    import json
    from router_cli import Router, load_config
    from router_cli.batch import asker, run_batch
    with Router(load_config(), "ledger.db") as router, open("prompts.jsonl", "rb") as rows:
        summary = run_batch(rows, asker(router), lambda row: print(json.dumps(row)),
                            tiers=router.config.tier_names, concurrency=8)

Input is JSONL, one row per line: ``{"prompt": ..., "id"?, "system"?, "tier"?,
"max_tokens"?, "user"?}``; a row without ``id`` takes its line number. Output is
one JSON row per input row, in input order: the ``ask --json`` object with the
row's ``id`` first, or ``{"id", "error": {kind, message, exit_code, line}}``
(plus ``attempts`` and ``cost_usd`` when something was tried) for a row that
failed.

How it runs: a reader thread parses rows and hands them to the worker
threads, which share one :class:`~router_cli.engine.router.Router` (routing,
fallback, retries, provider pauses and the ledger behave exactly as in single
``ask``). The calling thread writes results in input order. A row may start
only when it is within ``window`` rows of the oldest row not yet written, so
memory is bounded whatever the size of the input and however slow one row is.

Stopping: ``stop()`` (the first Ctrl-C) starts no new row, lets the calls in
flight finish and writes them; a second Ctrl-C writes what has finished and
returns at once. A fatal error (the ledger cannot be written, no usable key,
a broken config) stops the batch the same way.
"""

from __future__ import annotations

import hashlib
import json
import queue
import re
import signal
import threading
import time
from array import array
from dataclasses import dataclass, field
from decimal import Decimal
from typing import IO, TYPE_CHECKING, Callable, Iterable, Iterator, Protocol

from .errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_ROWS_FAILED,
    ConfigError,
    LedgerError,
    MissingKeyError,
    MmrError,
    UsageError,
)
from .pricing import decimal_str

if TYPE_CHECKING:
    from .batch_pool import WorkerPool

MAX_CONCURRENCY = 256
WINDOW_PER_WORKER = 4  # reorder window: a row 4x slower than the rest does not stall the pool
FATAL = (ConfigError, LedgerError, MissingKeyError)  # every later row would fail the same way


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
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return problem("not UTF-8 text")
    if number == 1:
        text = text.removeprefix("\ufeff")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        return problem(f"not JSON ({e.msg} at column {e.colno})")
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
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens < 1):
        return problem(f"max_tokens must be a whole number of at least 1, got {json.dumps(max_tokens)[:40]}", row_id)
    return Row(number, row_id, prompt, data.get("system"), tier, max_tokens, data.get("user"))


def read_rows(lines: Iterable[bytes], tiers: list[str]) -> Iterator[Row | Problem]:
    """Parse ``lines`` lazily, skipping blank ones; a repeated id is a ``duplicate_id`` problem."""
    seen = IdSet()
    for number, raw in enumerate(lines, 1):
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
        lines = _teed(lines, copy)
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
        return sum(1 for line in f if line.strip())


def answered_ids(lines: Iterable[bytes]) -> tuple[IdSet, int]:
    """Ids of the rows answered in an earlier run's output (``--resume``), and how many lines
    were not understood (a line cut short by a kill, say). Error rows are not answered."""
    ids = IdSet()
    unreadable = 0
    for raw in lines:
        if not raw.strip():
            continue
        try:
            data = json.loads(raw)
        except ValueError:
            unreadable += 1
            continue
        if isinstance(data, dict) and "error" not in data and isinstance(data.get("id"), (str, int)) \
                and not isinstance(data.get("id"), bool):
            ids.add(id_key(data["id"]))
    return ids, unreadable


# ------------------------------------------------------------------ calls


def asker(router, *, system: str | None = None, tier: str | None = None, classifier: str | None = None,
          max_tokens: int | None = None, temperature: float | None = None, user: str | None = None,
          team: str | None = None, max_cost: Decimal | None = None, use_cache: bool = True,
          refresh: bool = False) -> Callable[[Row], object]:
    """The call for ``mmr ask --batch``: a row's own fields win over these defaults.

    The options are checked here, once, rather than failing every row.
    """
    from .classify import get_classifier

    if tier is not None:
        router.decide("", tier=tier)
    if classifier is not None:
        get_classifier(classifier, router.config, caller=router)

    def call(row: Row):
        return router.ask(row.prompt, system=row.system if row.system is not None else system,
                          tier=row.tier or tier, classifier=classifier, max_tokens=row.max_tokens or max_tokens,
                          temperature=temperature, user=row.user or user, team=team, max_cost=max_cost,
                          use_cache=use_cache, refresh=refresh)

    return call


def cascader(router, *, system: str | None = None, start_tier: str | None = None, max_tier: str | None = None,
             from_classifier: bool = False, classifier: str | None = None, threshold: float | None = None,
             gate: str | None = None, max_tokens: int | None = None, temperature: float | None = None,
             user: str | None = None, team: str | None = None, max_cost: Decimal | None = None) -> Callable[[Row], object]:
    """The call for ``mmr cascade --batch``: a row's ``tier`` is where its cascade starts.

    The options are checked here, once (as a dry run checks them), rather than failing every row.
    """
    from .engine.cascade import cascade, estimate

    if start_tier is not None and from_classifier:
        raise UsageError("--start-tier and --from-classifier both choose where to start; give one")
    estimate(router, "check", start_tier=start_tier, max_tier=max_tier, threshold=threshold, gate=gate,
             max_tokens=max_tokens)
    if classifier is not None:
        from .classify import get_classifier

        get_classifier(classifier, router.config, caller=router)

    def call(row: Row):
        return cascade(router, row.prompt, system=row.system if row.system is not None else system,
                       start_tier=row.tier or start_tier, max_tier=max_tier,
                       from_classifier=from_classifier and row.tier is None, classifier=classifier,
                       threshold=threshold, gate=gate, max_tokens=row.max_tokens or max_tokens,
                       temperature=temperature, user=row.user or user, team=team, max_cost=max_cost)

    return call


CALLS: dict[str, Callable[..., Callable[[Row], object]]] = {"ask": asker, "cascade": cascader}


def make_call(router, kind: str, options: dict) -> Callable[[Row], object]:
    """The call for ``mmr <kind> --batch`` from JSON-ready options (``max_cost`` may be a string):
    the form in which a worker process receives them."""
    if options.get("max_cost") is not None:
        options = {**options, "max_cost": Decimal(options["max_cost"])}
    return CALLS[kind](router, **options)


def error_kind(e: MmrError) -> str:
    """``AllAttemptsFailed`` -> ``all_attempts_failed``, ``UsageError`` -> ``usage``."""
    name = type(e).__name__.removesuffix("Error") or "error"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


@dataclass
class Outcome:
    """A finished row: what to write, and what it tells the batch."""

    row: dict
    ok: bool
    cost: Decimal = Decimal(0)
    fatal: MmrError | None = None


def run_row(call: Callable[[Row], object], row: Row) -> Outcome:
    """Answer one row; every failure becomes an error row."""
    try:
        answer = call(row)
    except MmrError as e:
        attempts = getattr(e, "attempts", None) or []
        error: dict = {"id": row.id, "error": {"kind": error_kind(e), "message": str(e), "exit_code": e.exit_code, "line": row.line}}
        cost = sum((a.cost for a in attempts), Decimal(0))
        if attempts:
            error["attempts"] = [a.to_json() for a in attempts]
            error["cost_usd"] = decimal_str(cost)
        return Outcome(error, False, cost, e if isinstance(e, FATAL) else None)
    except Exception as e:  # noqa: BLE001 - a bug hit one row: report it there and go on
        return Outcome({"id": row.id, "error": {"kind": "internal", "message": f"{type(e).__name__}: {e}",
                                                "exit_code": 1, "line": row.line}}, False)
    out = {"id": row.id, **answer.to_json()}  # type: ignore[attr-defined]
    return Outcome(out, True, answer.cost, answer.ledger_error)  # type: ignore[attr-defined]


# ------------------------------------------------------------------ the engine


class Progress(Protocol):
    def update(self, done: int, errors: int, spend: Decimal) -> None: ...

    def note(self, message: str) -> None: ...


@dataclass
class Summary:
    """How a batch went; ``exit_code`` is the command's."""

    written: int = 0  # rows written, error rows included
    answered: int = 0
    failed: int = 0  # error rows written (bad lines and duplicates included)
    skipped: int = 0  # already answered in the --resume file
    not_started: int = 0  # queued when the batch stopped
    abandoned: int = 0  # in flight when a second Ctrl-C stopped the batch at once
    spend: Decimal = Decimal(0)
    interrupted: bool = False
    output_closed: bool = False  # the reader of stdout went away
    fatal: MmrError | None = None
    seconds: float = 0.0
    problems: dict[str, int] = field(default_factory=dict)  # error rows by kind

    @property
    def exit_code(self) -> int:
        if self.fatal is not None:
            return self.fatal.exit_code
        if self.interrupted:
            return EXIT_INTERRUPTED
        if self.output_closed:
            return EXIT_OK
        return EXIT_ROWS_FAILED if self.failed else EXIT_OK


class _Batch:
    def __init__(self, lines: Iterable[bytes], call: Callable[[Row], object] | None, write: Callable[[dict], None], *,
                 tiers: list[str], concurrency: int, resume: IdSet | None, progress: Progress | None, window: int | None,
                 pool: WorkerPool | None = None, on_note: Callable[[str], None] | None = None):
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise UsageError(f"--concurrency must be between 1 and {MAX_CONCURRENCY}, got {concurrency}")
        self.lines, self.call, self.write, self.tiers = lines, call, write, tiers
        self.concurrency, self.resume, self.progress = concurrency, resume, progress
        self.window = window or WINDOW_PER_WORKER * concurrency
        self.slots = threading.Semaphore(self.window)
        self.jobs: queue.Queue = queue.Queue()
        self.results: queue.Queue = queue.Queue()
        self.stopping = threading.Event()
        self.dispatch_lock = threading.Lock()
        self.dispatched = 0
        self.active_lock = threading.Lock()
        self.active = 0  # rows being answered right now
        self.interrupts = 0
        self.abandoning = False  # a second Ctrl-C: what is in flight is left behind
        self.pool, self.on_note = pool, on_note
        self.summary = Summary()

    # -- threads
    def _read(self) -> None:
        seq = 0
        try:
            for item in read_rows(self.lines, self.tiers):
                if isinstance(item, Row) and self.resume is not None and item.key in self.resume:
                    self.results.put(("skipped", None))
                    continue
                while not self.slots.acquire(timeout=0.1):
                    if self.stopping.is_set():
                        return
                with self.dispatch_lock:
                    if self.stopping.is_set():
                        self.slots.release()
                        return
                    seq += 1
                    self.dispatched = seq
                    if isinstance(item, Problem):
                        self.results.put((seq, Outcome(item.to_json(), False)))
                    else:
                        self.jobs.put((seq, item))
        except OSError as e:
            self.results.put(("fatal", UsageError(f"cannot read the input: {e.strerror or e}")))
        except Exception as e:  # noqa: BLE001 - reported by the writing thread, which owns the exit
            self.results.put(("fatal", MmrError(f"internal error reading the input: {type(e).__name__}: {e}")))
        finally:
            self.results.put(("end", seq))
            for _ in range(self.concurrency):
                self.jobs.put(None)

    def begin(self) -> bool:
        """Count a row as in flight, unless the batch is stopping (then it must not start)."""
        with self.active_lock:  # checked and counted together: an abandoned call is always counted
            started = not self.stopping.is_set()
            self.active += started
        return started

    def end(self) -> None:
        with self.active_lock:
            self.active -= 1

    def note(self, message: str) -> None:
        if self.on_note is not None:
            self.on_note(message)

    def _work(self) -> None:
        assert self.call is not None
        while True:
            job = self.jobs.get()
            if job is None:
                return
            seq, row = job
            if not self.begin():
                self.results.put((seq, None))
                continue
            try:
                outcome = run_row(self.call, row)
            finally:
                self.end()
            if outcome.fatal is not None:
                self.stopping.set()  # now, before this worker takes another row
            self.results.put((seq, outcome))

    # -- the writing thread
    def _emit(self, outcome: Outcome) -> None:
        s = self.summary
        if not s.output_closed:
            try:
                self.write(outcome.row)
            except BrokenPipeError:
                s.output_closed = True
                self._stop()
        s.spend += outcome.cost
        if not s.output_closed:
            s.written += 1
            if outcome.ok:
                s.answered += 1
            else:
                s.failed += 1
                kind = outcome.row["error"]["kind"]
                s.problems[kind] = s.problems.get(kind, 0) + 1
        if outcome.fatal is not None and s.fatal is None:
            s.fatal = outcome.fatal
            self._stop()
        if self.progress is not None:
            self.progress.update(s.written + s.skipped, s.failed, s.spend)

    def _stop(self) -> None:
        self.stopping.set()

    def _on_sigint(self, signum, frame) -> None:
        self.interrupts += 1
        self.summary.interrupted = True
        self._stop()

    def run(self) -> Summary:
        started = time.perf_counter()
        threads = [threading.Thread(target=self._read, name="mmr-batch-reader", daemon=True)]
        if self.pool is None:
            threads += [threading.Thread(target=self._work, name=f"mmr-batch-{i}", daemon=True)
                        for i in range(self.concurrency)]
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGINT, self._on_sigint)
        try:
            for thread in threads:
                thread.start()
            if self.pool is not None:
                self.pool.serve(self)
            self._collect()
        finally:
            if self.pool is not None:
                self.pool.finish(abandon=self.abandoning)
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        self.summary.seconds = time.perf_counter() - started
        return self.summary

    def _collect(self) -> None:
        s = self.summary
        buffer: dict[int, Outcome | None] = {}
        next_seq, end, told = 1, None, 0
        while True:
            if self.interrupts > told:
                told = self.interrupts
                if told == 1 and self.progress is not None:
                    self.progress.note("stopping: no new rows; finishing the calls in flight (Ctrl-C again to quit now)")
                if told > 1:
                    self.abandoning = True
                    break
            last = end
            if self.stopping.is_set():
                with self.dispatch_lock:  # after this, the reader dispatches nothing more
                    last = self.dispatched
            if last is not None and next_seq > last:
                return
            try:
                seq, outcome = self.results.get(timeout=0.1)
            except queue.Empty:
                continue
            if seq == "end":
                end = outcome
            elif seq == "skipped":
                s.skipped += 1
                if self.progress is not None:
                    self.progress.update(s.written + s.skipped, s.failed, s.spend)
            elif seq == "fatal":
                if s.fatal is None:
                    s.fatal = outcome
                self._stop()
            else:
                buffer[seq] = outcome
            while next_seq in buffer:
                done = buffer.pop(next_seq)
                next_seq += 1
                self.slots.release()
                if done is None:
                    s.not_started += 1
                else:
                    self._emit(done)
        # A second Ctrl-C: write what has finished, in order, and leave the rest.
        for seq in sorted(buffer):
            done = buffer[seq]
            if done is None:
                s.not_started += 1
            else:
                self._emit(done)
        with self.active_lock:
            s.abandoned = self.active


def run_batch(lines: Iterable[bytes], call: Callable[[Row], object] | None, write: Callable[[dict], None], *,
              tiers: list[str], concurrency: int = 8, resume: IdSet | None = None,
              progress: Progress | None = None, window: int | None = None, pool: WorkerPool | None = None,
              on_note: Callable[[str], None] | None = None) -> Summary:
    """Answer every row of ``lines`` with ``call``, ``concurrency`` at a time, and ``write`` one
    result per row in input order. Ctrl-C (SIGINT, when run on the main thread) stops cleanly.

    With ``pool`` (a started :class:`~router_cli.batch_pool.WorkerPool`), its worker processes
    answer the rows instead of ``call`` in threads here; ``on_note`` hears their notes.
    """
    if (call is None) == (pool is None):
        raise ValueError("give call or pool")
    return _Batch(lines, call, write, tiers=tiers, concurrency=concurrency, resume=resume,
                  progress=progress, window=window, pool=pool, on_note=on_note).run()


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
