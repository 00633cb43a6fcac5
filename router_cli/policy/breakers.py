"""Circuit breakers per provider/model, shared by every ``mmr`` process through the ledger database.

A CLI process lives for one request, so a provider that is down must be
remembered on disk. Each provider/model has one row in ``breakers``:

- **closed**: calls go through. Retryable failures (429, 5xx, timeouts, dropped
  connections) are kept as timestamps; ``failures`` of them within ``window``
  seconds open the circuit.
- **open**: calls are skipped at once, without waiting on a timeout, until
  ``open_until`` (the cooldown, or a longer ``retry-after`` the provider sent).
- **half_open**: the cooldown is over and one process holds the probe lease;
  the others keep skipping. The probe's success closes the circuit, its failure
  opens it again. A prober that dies loses its lease when it expires.

Every read-modify-write runs in one write transaction of the ledger store
(:meth:`~router_cli.ledger.LedgerStore.update_breaker`), so concurrent processes
never lose an update and only one of them probes. Times are Unix seconds (the
one clock processes share); a clock that moved backwards cannot keep a circuit
open longer than its cooldown, nor a failure count alive past its window.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from ..config import BreakerConfig

if TYPE_CHECKING:
    from ..ledger.store import LedgerStore


@dataclass(frozen=True)
class Admission:
    """Whether a call may go ahead; ``probe`` when it is the half-open trial call."""

    allowed: bool
    state: str = "closed"
    probe: bool = False
    reason: str | None = None
    retry_at: float | None = None


ALLOWED = Admission(True)


class Breakers:
    """The breaker table of one open ledger (see the module docstring)."""

    def __init__(self, ledger: LedgerStore, config: BreakerConfig, *, max_retry_after: float = 30.0,
                 clock: Callable[[], float] = time.time):
        self.ledger = ledger
        self.config = config
        self.clock = clock
        # No circuit stays open longer than this, whatever a skewed clock wrote.
        self.max_open = max(config.cooldown, max_retry_after)

    def admit(self, provider: str, model: str, lease: float) -> Admission:
        """May ``provider``/``model`` be called now? Takes the probe lease when the cooldown is over.

        ``lease``: how long a probe may take before another process may probe instead.
        """
        row = self._tripped(provider, model)
        if row is None:
            return ALLOWED
        now = self.clock()
        if (row["open_until"] or 0) > now + self.max_open or (row["probe_until"] or 0) > now + lease:
            # Written by a clock ahead of this one: bring the deadlines within reach, once, for everyone.
            def clamp(current: dict | None) -> dict | None:
                if current is None:
                    return None
                return {**current, "open_until": _at_most(current["open_until"], now + self.max_open),
                        "probe_until": _at_most(current["probe_until"], now + lease)}

            row = self.ledger.update_breaker(provider, model, clamp) or row
        waiting = self._blocked(row, now, lease)
        if waiting is not None:
            return waiting
        return self._take_probe(provider, model, now, lease)

    def _blocked(self, row: dict, now: float, lease: float) -> Admission | None:
        open_until = min(row["open_until"] or now, now + self.max_open)
        if row["state"] == "open" and now < open_until:
            return Admission(False, "open", reason=f"circuit open until {_clock(open_until)} ({row['last_error']})",
                             retry_at=open_until)
        probe_until = min(row["probe_until"] or now, now + lease)
        if row["state"] == "half_open" and now < probe_until:
            return Admission(False, "half_open", reason="circuit half-open: another process is probing it",
                             retry_at=probe_until)
        return None

    def _take_probe(self, provider: str, model: str, now: float, lease: float) -> Admission:
        verdict = ALLOWED

        def take(row: dict | None) -> dict | None:
            nonlocal verdict
            verdict = ALLOWED
            if row is None or row["state"] == "closed":
                return None
            waiting = self._blocked(row, now, lease)
            if waiting is not None:
                verdict = waiting
                return None
            verdict = Admission(True, "half_open", probe=True, reason="circuit half-open: this call is the probe")
            return {**row, "state": "half_open", "probe_until": now + lease, "updated_at": now}

        self.ledger.update_breaker(provider, model, take)
        return verdict

    def failure(self, provider: str, model: str, error: str, retry_after: float | None = None) -> str:
        """Count a retryable failure; returns the state after it (``open`` when this opened the circuit)."""
        if not self.config.enabled:
            return "closed"
        now = self.clock()
        row = self.ledger.update_breaker(provider, model, lambda row: self._failed(row, now, error, retry_after))
        assert row is not None
        return row["state"]

    def _failed(self, row: dict | None, now: float, error: str, retry_after: float | None) -> dict:
        """The row after a failure at ``now``."""
        row = row or {"state": "closed", "failures": "[]", "open_until": None}
        recent = [min(t, now) for t in json.loads(row["failures"] or "[]") if now - min(t, now) < self.config.window]
        recent = (recent + [now])[-self.config.failures:]
        # A retry-after is remembered (in open_until) even while closed: the cooldown honours it when the circuit opens.
        hint = min(row["open_until"] or 0.0, now + self.max_open)
        if retry_after:
            hint = max(hint, now + min(retry_after, self.max_open))
        state = row["state"]
        if state == "half_open" or (state == "closed" and len(recent) >= self.config.failures):
            state, recent, opened_at = "open", [], now
            open_until = max(now + self.config.cooldown, hint)
        else:
            opened_at = row.get("opened_at") or 0.0
            open_until = hint if state == "closed" else max(min(row["open_until"] or now, now + self.max_open), hint)
        return {"state": state, "failures": json.dumps(recent), "opened_at": opened_at, "open_until": open_until or None,
                "probe_until": None, "last_error": error[:300], "updated_at": now}

    def _tripped(self, provider: str, model: str):
        """The circuit's row when breakers are on and it is not closed; else None."""
        if not self.config.enabled:
            return None
        row = self._read(provider, model)
        return None if row is None or row["state"] == "closed" else row

    def is_open(self, provider: str, model: str) -> bool:
        """Would a call be skipped now? A read only: no probe lease is taken."""
        row = self._tripped(provider, model)
        if row is None:
            return False
        now = self.clock()
        return self._blocked(row, now, lease=self.max_open) is not None

    def success(self, provider: str, model: str, admission: Admission) -> None:
        """A call answered: a circuit that is not closed (a probe's, or one opened by this model's
        earlier failures while it was retried) closes."""
        if not self.config.enabled:
            return
        if admission.state == "closed":
            row = self._read(provider, model)
            if row is None or row["state"] == "closed":
                return
        now = self.clock()

        def close(current: dict | None) -> dict | None:
            if current is None:
                return None
            return {**current, "state": "closed", "failures": "[]", "open_until": None, "probe_until": None,
                    "updated_at": now}

        self.ledger.update_breaker(provider, model, close)

    def states(self) -> list[dict]:
        """Every breaker row, for ``mmr health``."""
        return self.ledger.breaker_states()

    def _read(self, provider: str, model: str) -> dict | None:
        return self.ledger.breaker(provider, model)


def _at_most(value: float | None, limit: float) -> float | None:
    """``min(value, limit)``, None staying None (as SQL's ``min`` has it)."""
    return None if value is None else min(value, limit)


def _clock(timestamp: float) -> str:
    return time.strftime("%H:%M:%S", time.localtime(timestamp))


__all__ = ["Admission", "Breakers"]
