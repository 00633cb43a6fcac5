"""One request as it runs: the config it runs under, its decision, its attempts, its notes.

A request is explicit: under experiments ``config`` is the assigned variants'
config, and everything the request does after it began reads that config from
here, never from the router it runs on. engine/record.py finishes it: its rows
go to the ledger together.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from ..classify import Decision
from ..config import Config
from .types import Attempt, Note



@dataclass(eq=False)
class Request:
    """One request's bookkeeping, written to the ledger together when it ends.

    ``start_tier`` is where the fallback chain starts: the decision's tier unless a
    budget moved it down. ``guard`` is the request's BudgetGuard (None when no budget
    applies); ``store`` the ledger it is recorded in (None: not recorded).
    """

    config: Config
    request_id: str
    command: str
    decision: Decision
    prompt: str
    system: str | None
    user: str | None = None
    team: str | None = None
    stream: bool = False
    variant: str | None = None
    guard: object | None = None
    store: object | None = None
    on_note: Note = field(default=lambda message: None, repr=False)
    attempts: list[Attempt] = field(default_factory=list)
    policy: list[str] = field(default_factory=list)
    gate_thresholds: dict[str, float] | None = None  # a cascade's, per tier tried
    baseline: Decimal = Decimal(0)
    start_tier: str = ""

    def __post_init__(self) -> None:
        self.attempts = list(self.decision.calls) + self.attempts  # a classifier's own calls come first
        self.start_tier = self.start_tier or self.decision.tier

    def note(self, message: str) -> None:
        """A policy decision: shown on stderr, kept on the request's ledger rows."""
        self.policy.append(message)
        self.on_note(message)

    @property
    def billed(self) -> Decimal:
        return sum((a.cost for a in self.attempts), Decimal(0))
