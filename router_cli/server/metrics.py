"""``GET /metrics``: the server's counters in the Prometheus text format (version 0.0.4).

Counted in this process since it started: requests and errors, spend and
savings per tier and model (exact Decimals, printed as numbers), a latency
histogram; breaker states are read from the ledger when asked.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from decimal import Decimal

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
_BREAKER_STATE = {"closed": 0, "half_open": 1, "open": 2}


def _labels(**labels: str) -> str:
    def escape(value: str) -> str:
        return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escape(str(v))}"' for k, v in labels.items()) + "}"


class Metrics:
    """Thread-safe counters; :meth:`text` renders them."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str, str], int] = defaultdict(int)  # (api, tier, model, status)
        self.errors: dict[tuple[str, int], int] = defaultdict(int)  # (api, http status)
        self.spend: dict[tuple[str, str], Decimal] = defaultdict(Decimal)  # (tier, provider/model)
        self.savings: dict[tuple[str, str], Decimal] = defaultdict(Decimal)
        self.latency: dict[str, list[int]] = {}  # api -> counts per bucket, then +Inf
        self.latency_sum: dict[str, float] = defaultdict(float)
        self.in_flight = 0

    def started(self) -> None:
        with self._lock:
            self.in_flight += 1

    def finished(self, api: str, seconds: float, status: int, answer=None, attempts=()) -> None:
        """One request ended: ``answer`` when it was answered, else the ``attempts`` its failure made."""
        with self._lock:
            self.in_flight -= 1
            counts = self.latency.setdefault(api, [0] * (len(BUCKETS) + 1))
            counts[next((i for i, b in enumerate(BUCKETS) if seconds <= b), len(BUCKETS))] += 1
            self.latency_sum[api] += seconds
            if status >= 400:
                self.errors[(api, status)] += 1
            final = answer.final if answer is not None else None
            label = (final.tier, f"{final.provider}/{final.model}") if final is not None else ("", "")
            self.requests[(api, *label, "ok" if status < 400 else "error")] += 1
            for attempt in (answer.attempts if answer is not None else attempts):
                self.spend[(attempt.tier, f"{attempt.provider}/{attempt.model}")] += attempt.cost
            if answer is not None:
                self.savings[label] += answer.baseline_cost - answer.cost

    def text(self, breakers: list[dict]) -> str:
        """The Prometheus exposition of every counter, and ``breakers`` (the ledger's breaker rows)."""
        out: list[str] = []

        def family(name: str, kind: str, help_text: str) -> None:
            out.append(f"# HELP {name} {help_text}")
            out.append(f"# TYPE {name} {kind}")

        with self._lock:
            family("mmr_requests_total", "counter", "Requests answered or failed, by API, tier and model.")
            for (api, tier, model, status), n in sorted(self.requests.items()):
                out.append(f"mmr_requests_total{_labels(api=api, tier=tier, model=model, status=status)} {n}")
            family("mmr_errors_total", "counter", "Requests that ended in an HTTP error, by API and status.")
            for (api, code), n in sorted(self.errors.items()):
                out.append(f"mmr_errors_total{_labels(api=api, status=str(code))} {n}")
            family("mmr_spend_usd_total", "counter", "USD billed by providers, by tier and model.")
            for (tier, model), usd in sorted(self.spend.items()):
                out.append(f"mmr_spend_usd_total{_labels(tier=tier, model=model)} {usd}")
            family("mmr_savings_usd_total", "counter", "USD saved against the baseline model, by answering tier and model.")
            for (tier, model), usd in sorted(self.savings.items()):
                out.append(f"mmr_savings_usd_total{_labels(tier=tier, model=model)} {usd}")
            family("mmr_request_duration_seconds", "histogram", "Request latency, by API.")
            for api, counts in sorted(self.latency.items()):
                running = 0
                for bound, n in zip((*BUCKETS, "+Inf"), counts):
                    running += n
                    out.append(f"mmr_request_duration_seconds_bucket{_labels(api=api, le=str(bound))} {running}")
                out.append(f"mmr_request_duration_seconds_sum{_labels(api=api)} {self.latency_sum[api]:.6f}")
                out.append(f"mmr_request_duration_seconds_count{_labels(api=api)} {running}")
            family("mmr_in_flight_requests", "gauge", "Requests being answered now.")
            out.append(f"mmr_in_flight_requests {self.in_flight}")
        family("mmr_breaker_state", "gauge", "Circuit breaker per model: 0 closed, 1 half open, 2 open.")
        for row in breakers:
            state = _BREAKER_STATE.get(str(row.get("state")), 0)
            out.append(f"mmr_breaker_state{_labels(provider=row.get('provider', ''), model=row.get('model', ''))} {state}")
        return "\n".join(out) + "\n"
