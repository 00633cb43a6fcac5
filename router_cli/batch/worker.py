"""A batch worker process: reads its spec and rows on stdin, answers them with its own
:class:`~router_cli.engine.router.Router` and threads, writes outcomes on stdout.

Started by :class:`~router_cli.batch.pool.WorkerPool` (``from router_cli.batch.worker import main``), never by hand.
"""

from __future__ import annotations

import json
import os
import queue
import sys
import threading
from typing import IO, TYPE_CHECKING, Callable

from .. import errors
from ..errors import MmrError
from .lock import hold_shared
from .wire import decode_row, encode_error, encode_outcome, line

if TYPE_CHECKING:
    from ..engine.router import Router
    from .rows import Row


def serve_rows(stdin: IO[bytes], stdout: IO[bytes]) -> int:
    """A worker's life: read the spec, answer rows until the input ends, return the exit code."""
    from .calls import run_row

    out_lock = threading.Lock()
    gone = threading.Event()  # the batch process went away: finish the calls, record them, stop talking

    def send(message: dict) -> None:
        if gone.is_set():
            return
        data = line(message)
        with out_lock:
            try:
                stdout.write(data)
                stdout.flush()
            except (BrokenPipeError, OSError, ValueError):
                gone.set()

    spec = json.loads(stdin.readline() or "null")
    if not isinstance(spec, dict):
        return errors.EXIT_INTERNAL
    try:
        router, call = _start(spec, send)
    except MmrError as e:
        send({"fatal": encode_error(e)})
        return e.exit_code
    send({"ready": True})

    jobs: queue.Queue = queue.Queue()

    def work() -> None:
        while (job := jobs.get()) is not None:
            seq, row = job
            send({"seq": seq, "outcome": encode_outcome(run_row(call, row))})

    threads = [threading.Thread(target=work, name=f"mmr-worker-{i}") for i in range(int(spec["threads"]))]
    for thread in threads:
        thread.start()
    locked = False
    try:
        for raw in stdin:
            message = json.loads(raw)
            if "row" in message:
                if not locked and spec.get("batch_id"):  # after the first row: a resume has read the ledger by then
                    hold_shared(str(spec["db"]), str(spec["batch_id"]))
                    locked = True
                jobs.put((message["seq"], decode_row(message["row"])))
            elif "pause" in message:
                router.pauses.pause(message["pause"], float(message["seconds"]), tell=False)
    finally:
        for _ in threads:
            jobs.put(None)
        for thread in threads:
            thread.join()
        router.close()
    return errors.EXIT_OK


def _start(spec: dict, send: Callable[[dict], None]) -> tuple[Router, Callable[[Row], object]]:
    """The router and the per-row call the spec describes, its SDKs loaded; notes and pauses go to ``send``."""
    from dataclasses import replace

    from ..config import parse_config
    from ..engine.options import RequestOptions
    from ..engine.router import Router
    from .calls import make_call

    config = parse_config(spec["config_text"], spec["config_source"])
    if spec.get("ml_model") is not None:
        config = replace(config, ml_model=spec["ml_model"])
    if spec.get("local_model"):
        from ..providers.local import with_local_model

        config = with_local_model(config)
    router = Router(config, spec["db"], on_note=(lambda m: send({"note": m})) if spec.get("verbose") else None)
    call = make_call(router, spec["kind"], RequestOptions.from_json(spec["options"]), spec.get("batch_id"))
    router.pauses.listener = lambda name, seconds: send({"pause": name, "seconds": seconds})
    router.preload_sdks()
    return router, call


def main() -> None:
    """A worker process (started by :class:`WorkerPool`, never by hand)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the batch process decides what Ctrl-C means
    # The protocol gets its own copy of stdout; anything else printing there (a library, a
    # stray print) goes to stderr instead of corrupting it.
    protocol = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    try:
        code = serve_rows(sys.stdin.buffer, protocol)
    except Exception as e:  # reported to the batch as one line, never a traceback
        if os.environ.get("MMR_DEBUG"):
            raise
        try:
            protocol.write(line({"fatal": {"type": "MmrError", "message": f"internal error in a batch "
                                            f"worker: {type(e).__name__}: {e}", "exit_code": 1}}))
            protocol.flush()
        except OSError:
            pass
        code = errors.EXIT_INTERNAL
    from ..process import exit_now

    exit_now(code)
