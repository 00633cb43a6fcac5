"""Quality gates written in shell: ``mmr cascade --check 'jq -e .'``.

Each candidate answer is piped to the command's stdin (``/bin/sh -c CMD``, in
the current directory, with mmr's environment minus the providers' API keys). Exit 0 passes; exit 1 fails and
the cascade escalates; any other exit, a command that cannot start, or one that
runs longer than its timeout (default 10 s; its whole process group is killed)
is a gate error, handled as a judge error is (``cascade.on_judge_error``:
``heuristic`` lets the other gates decide, ``fail`` counts the answer as failed).
Checks of one answer run in order and stop at the first that does not pass.

In ``--batch`` each row's cascade runs its checks on that row's worker, so at most
``--concurrency`` checks run at once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass

DEFAULT_TIMEOUT = 10.0
_DETAIL_CHARS = 200


@dataclass(frozen=True)
class CheckResult:
    """One command's verdict on one answer: ``pass``, ``fail`` or ``error``."""

    gate: str  # the command as given
    verdict: str
    ms: float
    detail: str  # "exit 0", "exit 1: <last stderr line>", "timed out after 10 s"...

    def to_json(self) -> dict:
        return {"gate": self.gate, "verdict": self.verdict, "ms": round(self.ms, 3), "detail": self.detail}


def run_check(command: str, answer: str, timeout: float = DEFAULT_TIMEOUT, hide: frozenset[str] = frozenset()) -> CheckResult:
    """Pipe ``answer`` to ``command`` and read its exit status; environment variables named in ``hide``
    (the providers' API keys) are not passed on."""
    start = time.perf_counter()

    def result(verdict: str, detail: str) -> CheckResult:
        return CheckResult(command, verdict, (time.perf_counter() - start) * 1000, detail)

    try:
        # A session of its own, so a timeout kills the shell and everything it started.
        env = {k: v for k, v in os.environ.items() if k not in hide}
        proc = subprocess.Popen(["/bin/sh", "-c", command], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True, env=env)
    except OSError as e:
        return result("error", f"could not start: {e.strerror}")
    try:
        _, err = proc.communicate(answer.encode("utf-8"), timeout=timeout)
    except subprocess.TimeoutExpired:
        _kill(proc)
        return result("error", f"timed out after {timeout:g} s")
    # The last line: where tracebacks and compilers put the message itself.
    last = next((line.strip() for line in reversed(err.decode("utf-8", "replace").splitlines()) if line.strip()), "")
    detail = f"exit {proc.returncode}" + (f": {last[:_DETAIL_CHARS]}" if last and proc.returncode else "")
    if proc.returncode == 0:
        return result("pass", detail)
    return result("fail" if proc.returncode == 1 else "error", detail)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.communicate()


def run_checks(commands: tuple[str, ...], answer: str, timeout: float = DEFAULT_TIMEOUT,
               hide: frozenset[str] = frozenset()) -> list[CheckResult]:
    """Each command in order until one does not pass."""
    results = []
    for command in commands:
        results.append(run_check(command, answer, timeout, hide))
        if results[-1].verdict != "pass":
            break
    return results
