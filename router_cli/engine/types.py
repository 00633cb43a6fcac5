"""What a request produces: its attempts, its answer, and a dry run's estimate."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import Callable

from ..classify import Decision
from ..errors import LedgerError
from ..pricing import Usage, decimal_str

Note = Callable[[str], None]  # where a router tells what it decided (stderr in the CLI)


@dataclass
class Attempt:
    """One try of one model.

    ``status``: ``ok``, ``error``, ``skipped`` (never called: no key, circuit open,
    over budget), ``cached`` (answered from the response cache), ``blocked`` (a
    budget refused the request), and in cascades ``rejected`` or ``best_effort``.
    """

    tier: str
    provider: str
    model: str
    status: str
    started: datetime = field(default_factory=lambda: datetime.now(timezone.utc))
    error: str | None = None
    error_kind: str | None = None
    http_status: int | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cost: Decimal = Decimal(0)
    duration_ms: float = 0.0
    ttft_ms: float | None = None
    stop_reason: str | None = None
    usage_estimated: bool = False
    text: str | None = None
    call_id: str | None = None
    role: str = "answer"  # or "judge": a quality gate's call
    quality: float | None = None  # the gate's score, in cascades
    gate_reason: str | None = None
    saved: Decimal = Decimal(0)  # a cache hit: what the original answer cost
    # Token counts as the provider reported them (see providers/base.py ChatResponse) ...
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    usage: Usage = field(default_factory=Usage)  # ... and by billed class, for the cost and the baseline
    price_source: str | None = None  # where the price of ``cost`` came from
    cache_saved: Decimal = Decimal(0)  # what prompt caching saved (negative: cache writes not reused yet)
    reached: bool = True  # False: a connection error before any connection was made (not in the ledger)
    checks: list = field(default_factory=list)  # the shell checks' verdicts (engine/checks.py CheckResult)
    template: str | None = None  # the model's wording: its template's name (config/phrasing.py) ...
    template_hash: str | None = None  # ... and the hash of its text
    tool_calls: tuple = ()  # the answer's tool calls, in its provider's own form (providers/base.py ChatResponse)
    hedge: str | None = None  # "won" or "lost": one of a hedged request's two calls

    @property
    def label(self) -> str:
        return f"{self.tier} {self.provider}/{self.model}"

    def to_json(self) -> dict:
        out: dict = {
            "tier": self.tier, "provider": self.provider, "model": self.model, "status": self.status,
            "error": self.error, "cost_usd": decimal_str(self.cost),
        }
        if self.role != "answer":
            out["role"] = self.role
        if self.template is not None:  # the wording it was sent in (docs/prompts.md)
            out["template"], out["template_hash"] = self.template, self.template_hash
        if self.quality is not None or self.gate_reason is not None:
            out["quality"] = {"score": self.quality, "reason": self.gate_reason}
        if self.checks:
            out["checks"] = [c.to_json() for c in self.checks]
        if self.hedge is not None:
            out["hedge"] = self.hedge
        return out


@dataclass
class Answer:
    """The result of :meth:`Router.ask`: the answer and everything it cost."""

    text: str
    request_id: str
    decision: Decision
    attempts: list[Attempt]
    final: Attempt
    baseline_cost: Decimal
    latency_ms: float  # the whole request in mmr (classifying, loading SDKs, retries); ``wall_ms`` in JSON
    ledger_error: LedgerError | None = None
    best_effort: bool = False  # a cascade where no answer passed the gate
    policy: tuple[str, ...] = ()  # what budgets, the cache and circuit breakers decided
    variant: str | None = None  # the experiment variants it ran under
    budget_warnings: tuple[str, ...] = ()  # budgets this request carried past 80 % or 95 % of their limit

    @property
    def cost(self) -> Decimal:
        """Everything this request was billed, failed attempts included."""
        return sum((a.cost for a in self.attempts), Decimal(0))

    def to_json(self) -> dict:
        """The ``--json`` object (a contract: see docs/configuration.md)."""
        return {
            "text": self.text,
            "call_id": self.final.call_id,
            "request_id": self.request_id,
            "tier": self.final.tier,
            "provider": self.final.provider,
            "model": self.final.model,
            "classifier": self.decision.classifier,
            "score": self.decision.score,
            "input_tokens": self.final.input_tokens,
            "output_tokens": self.final.output_tokens,
            "cache_read_tokens": self.final.cache_read_tokens,
            "cache_write_tokens": self.final.cache_write_tokens,
            "reasoning_tokens": self.final.reasoning_tokens,
            "cost_usd": decimal_str(self.cost),
            "baseline_cost_usd": decimal_str(self.baseline_cost),
            "savings_usd": decimal_str(self.baseline_cost - self.cost),
            # The answering call's latency, as the ledger records it; the whole wait is wall_ms.
            # As the ledger records it (3 decimals), so a row recovered from the ledger (--resume) prints the same.
            "latency_ms": round(round(self.final.duration_ms, 3), 1),
            "wall_ms": round(self.latency_ms, 1),
            "cached": self.final.status == "cached",
            "stop_reason": self.final.stop_reason,
            "variant": self.variant,
            "attempts": [a.to_json() for a in self.attempts],
            "budget_warnings": list(self.budget_warnings),
            **({"policy": list(self.policy)} if self.policy else {}),
            **({"quality": self.final.quality, "best_effort": self.best_effort} if self.final.quality is not None else {}),
        }


@dataclass(frozen=True)
class Estimate:
    """What ``--dry-run`` reports: the decision and the worst-case cost, no call made."""

    decision: Decision
    tier: str
    provider: str
    model: str
    input_tokens: int  # an average-case estimate, for people
    max_output_tokens: int
    cost: Decimal  # the worst case: max_input_tokens and every output token
    baseline_cost: Decimal
    missing_key: str | None
    policy: str | None = None  # a --max-cost downgrade
    max_input_tokens: int = 0  # the upper bound the costs (and budgets) rest on
    candidates: tuple = ()  # (tier, provider, model, engine.shaping.Shape): the chain, each model as it is sent

    def to_json(self) -> dict:
        return {
            "dry_run": True, "tier": self.tier, "provider": self.provider, "model": self.model,
            "classifier": self.decision.classifier, "score": self.decision.score, "reason": self.decision.reason,
            "estimated_input_tokens": self.input_tokens, "max_input_tokens": self.max_input_tokens,
            "max_output_tokens": self.max_output_tokens,
            "max_cost_usd": decimal_str(self.cost), "max_baseline_cost_usd": decimal_str(self.baseline_cost),
            "missing_key": self.missing_key, "policy": self.policy,
            "candidates": [{"tier": t, "provider": p, "model": m, **sent.to_json()} for t, p, m, sent in self.candidates],
        }
