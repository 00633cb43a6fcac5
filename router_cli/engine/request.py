"""One request as it runs: the config it runs under, its decision, its attempts, its notes.

A request is explicit: under experiments ``config`` is the assigned variants'
config, and everything the request does after it began reads that config from
here, never from the router it runs on. engine/record.py finishes it: its rows
go to the ledger together.
"""

from __future__ import annotations

import contextlib
from contextvars import ContextVar
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Iterator

from ..classify import Decision
from ..config import Config
from .types import Attempt, Note

if TYPE_CHECKING:
    from ..providers.base import Native


# The batch row this thread is answering, as ``(batch_id, row key)``: set around each row's call
# by router_cli.batch, so a request knows it without every layer in between passing it on.
_batch_row: ContextVar[tuple[str, str] | None] = ContextVar("mmr_batch_row", default=None)


@contextlib.contextmanager
def answering_row(batch_id: str, row: str) -> Iterator[None]:
    """Requests begun inside (in this thread) answer row ``row`` of batch ``batch_id``: their ledger rows say so."""
    token = _batch_row.set((batch_id, row))
    try:
        yield
    finally:
        _batch_row.reset(token)


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
    budget_warnings: list[str] = field(default_factory=list)  # budgets this request carried past 80 % / 95 %
    batch_row: tuple[str, str] | None = field(default_factory=_batch_row.get)  # (batch_id, row key), in a batch
    native: "Native | None" = None  # a native request's tools and images (mmr serve): budgets count them

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
