"""Budgets and ``--max-cost``: refuse or downgrade a request before it can overspend.

Before each call the request's worst-case cost (an upper bound on the prompt's
tokens, never an estimate: its UTF-8 bytes plus the chat format's framing, see
``pricing.max_input_tokens``, at the input price plus ``max_tokens`` at the
output price) is compared with what
every applicable budget has left: spend so far in its calendar period (UTC) from
the ledger, plus what this request has already been billed. A request that does
not fit goes down, tier by tier, to the most capable tier that fits (policy
``downgrade``, never below the budget's ``floor_tier``) or is refused (policy
``block``, exit code 8). ``--max-cost`` caps one request the same way, with the
cheapest tier as its floor.

Spend is summed from integer nano-dollars, so boundaries are exact: a request
whose worst case lands exactly on the limit fits; one nano-dollar more does not.

Concurrent requests (other processes, ``--batch`` workers) cannot together pass
a limit: before each call, a request checks and *holds* its worst case (what it
was billed so far plus the call's worst case) in ``budget_holds``, in one
transaction of the ledger store; other requests count those holds as spent. A hold is released
when the request's calls are recorded, and expires on its own (after the
provider timeout of every retry) if the process dies.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Callable, Sequence

from ..config import Budget, Config
from ..errors import BudgetExceeded, LedgerError
from ..pricing import decimal_str, format_usd, to_nanousd

if TYPE_CHECKING:
    from ..ledger.store import LedgerStore

NANO_PER_USD = Decimal(10) ** 9
WARN_AT = (Decimal("0.80"), Decimal("0.95"))  # shares of a limit whose passing is said once on stderr
CLAIM_SECONDS = 32 * 86400  # a claimed mark outlives its period (the key names the period)
_CLAIMED: set[tuple[str, str]] = set()  # marks this process has claimed or seen claimed: asked of the ledger no more


@dataclass(frozen=True)
class Limit:
    """One limit that applies to this request and what it has left before this request."""

    label: str
    limit: Decimal
    spent: Decimal  # in the period so far, other requests' holds included
    policy: str  # downgrade | block
    floor_tier: str
    budget: Budget | None = None  # None: --max-cost, which only this request spends against
    who: str | None = None

    def left(self, billed: Decimal) -> Decimal:
        return self.limit - self.spent - billed


def period_start(period: str, now: datetime) -> str:
    """The start of the current UTC day or month, as the ledger writes datetimes."""
    now = now.astimezone(timezone.utc)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "month":
        start = start.replace(day=1)
    return start.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def spent_nanousd(ledger: LedgerStore, budget: Budget, who: str | None, now: datetime) -> int:
    """Everything billed in ``budget``'s current period for ``who`` (judge and failed calls included)."""
    return ledger.spent_nanousd(budget.scope, who, period_start(budget.period, now))


def held_nanousd(ledger: LedgerStore, budget: Budget, who: str | None, request_id: str, now: float) -> int:
    """What other requests under ``budget`` hold for their calls in flight."""
    return ledger.held_nanousd(budget.scope, who, request_id, now)


def applicable(budgets: Sequence[Budget], user: str | None, team: str | None) -> list[tuple[Budget, str | None]]:
    """The budgets that cover a request by ``user`` of ``team``, each with whom it counts."""
    out: list[tuple[Budget, str | None]] = []
    for budget in budgets:
        who = {"global": None, "user": user, "team": team}[budget.scope]
        if budget.scope != "global" and (who is None or (budget.who is not None and budget.who != who)):
            continue
        out.append((budget, who))
    return out


def budget_use(ledger: LedgerStore | None, budgets: Sequence[Budget], now: datetime | None = None) -> list[dict]:
    """Each budget's spend in its current period: one row per user (team) for a per-user (team) budget."""
    now = now or datetime.now(timezone.utc)
    out = []
    for budget in budgets:
        since = period_start(budget.period, now)
        if budget.scope == "global" or budget.who is not None:
            spent = {budget.who: spent_nanousd(ledger, budget, budget.who, now)} if ledger is not None else {budget.who: 0}
        elif ledger is None:
            spent = {}
        else:
            spent = {who: nanos for who, nanos in ledger.spent_by(budget.scope, since).items()}
        for who, nanos in spent.items():
            amount = Decimal(nanos) / NANO_PER_USD
            out.append({
                "budget": f"{budget.scope} {'daily' if budget.period == 'day' else 'monthly'} budget", "who": who,
                "period_start": since, "spent_usd": decimal_str(amount), "limit_usd": decimal_str(budget.limit),
                "used": float(amount / budget.limit) if budget.limit else None, "policy": budget.policy,
            })
    return out


def _spent(ledger: LedgerStore, budget: Budget, who: str | None, request_id: str, now: datetime) -> Decimal:
    held = held_nanousd(ledger, budget, who, request_id, now.timestamp())
    return Decimal(spent_nanousd(ledger, budget, who, now) + held) / NANO_PER_USD


class BudgetGuard:
    """The limits on one request; :meth:`choose_tier` before routing, :meth:`refusal` before each call."""

    def __init__(self, limits: list[Limit], *, ledger: LedgerStore | None = None, request_id: str = "", user: str | None = None,
                 team: str | None = None):
        self.limits = limits
        self.ledger = ledger
        self.request_id, self.user, self.team = request_id, user, team
        self.holding = False

    @classmethod
    def for_request(cls, config: Config, ledger: LedgerStore | None, *, user: str | None, team: str | None,
                    max_cost: Decimal | None, request_id: str = "", now: datetime | None = None) -> "BudgetGuard | None":
        """The guard for a request, or None when nothing limits it."""
        now = now or datetime.now(timezone.utc)
        limits = []
        for budget, who in applicable(config.budgets, user, team):
            if ledger is None:
                raise BudgetExceeded("budgets need the ledger to know what was spent; they cannot be checked without one")
            limits.append(Limit(budget.label(who), budget.limit, _spent(ledger, budget, who, request_id, now),
                                budget.policy, budget.floor_tier, budget, who))
        if max_cost is not None:
            limits.append(Limit("--max-cost", max_cost, Decimal(0), "downgrade", config.tiers[0].name))
        if not limits:
            return None
        return cls(limits, ledger=ledger, request_id=request_id, user=user, team=team)

    def hold(self, worst_case: Decimal, billed: Decimal, lease: float) -> Limit | None:
        """Check a call against every limit with fresh figures and, when it fits, hold
        ``billed + worst_case`` against the budgets until :meth:`release` (or ``lease`` seconds).

        Returns the first limit the call would cross (nothing is held then), else None.
        """
        if self.ledger is None or not any(limit.budget for limit in self.limits):
            return self.refusal(worst_case, billed)
        ledger = self.ledger
        over: Limit | None = None

        def check() -> tuple[int, float] | None:
            nonlocal over
            now = datetime.now(timezone.utc)
            self.limits = [
                limit if limit.budget is None
                else replace(limit, spent=_spent(ledger, limit.budget, limit.who, self.request_id, now))
                for limit in self.limits
            ]
            over = self.refusal(worst_case, billed)
            return None if over is not None else (to_nanousd(billed + worst_case), now.timestamp() + lease)

        if ledger.hold_budget(self.request_id, self.user, self.team, check):
            self.holding = True
        return over

    def release(self) -> None:
        """Drop this request's hold: its calls are in the ledger now (or it ended without any)."""
        if not self.holding or self.ledger is None:
            return
        try:
            self.ledger.release_hold(self.request_id)
            self.holding = False
        except LedgerError:
            pass  # the hold expires on its own; the answer must not be lost over it

    def refusal(self, worst_case: Decimal, billed: Decimal = Decimal(0)) -> Limit | None:
        """The first limit a call costing at most ``worst_case`` would cross, else None."""
        for limit in self.limits:
            if worst_case > limit.left(billed):
                return limit
        return None

    def crossed(self, billed_nanousd: int, now: datetime | None = None) -> list[str]:
        """Warnings for the budgets whose spend (this request's ``billed_nanousd`` already in the
        ledger) is past 80 % or 95 % of their limit, each mark said once per period across every
        process: the first request to see a mark passed claims it in the ledger (concurrent requests
        all see the spend of each other, so comparing spend before and after would warn twice)."""
        if self.ledger is None or billed_nanousd <= 0:
            return []
        now = now or datetime.now(timezone.utc)
        warnings = []
        for limit in self.limits:
            if limit.budget is None or limit.limit <= 0:
                continue
            spent = spent_nanousd(self.ledger, limit.budget, limit.who, now)
            after = Decimal(spent) / NANO_PER_USD
            since = period_start(limit.budget.period, now)
            passed = [mark for mark in WARN_AT if limit.limit * mark <= after
                      and self._claim(f"budget mark {limit.label} {since} {mark}", now)]
            if passed:
                warnings.append(f"{limit.label}: {after / limit.limit:.1%} of {format_usd(limit.limit)} used "
                                f"({format_usd(after)} spent); passed {passed[-1]:.0%}")
        return warnings

    def _claim(self, key: str, now: datetime) -> bool:
        """Whether this request is the first to see the mark ``key`` passed (a process asks the ledger once)."""
        assert self.ledger is not None
        seen = (str(self.ledger.path), key)
        if seen in _CLAIMED:
            return False
        first = self.ledger.claim(key, now.timestamp() + CLAIM_SECONDS)
        _CLAIMED.add(seen)
        return first

    def choose_tier(self, tiers: list[str], decided: str, worst_case: Callable[[str], Decimal]) -> tuple[str, str | None]:
        """The most capable tier at or below ``decided`` that every limit allows, and a note when it changed.

        Raises :class:`BudgetExceeded` for a ``block`` limit, or when even the floor does not fit.
        """
        index = tiers.index(decided)
        first_refusal: tuple[Limit, Decimal] | None = None
        while True:
            tier = tiers[index]
            cost = worst_case(tier)
            limit = self.refusal(cost)
            if limit is None:
                if tier == decided:
                    return tier, None
                assert first_refusal is not None
                was, was_cost = first_refusal
                return tier, (f"{was.label}: {decided} could cost up to {format_usd(was_cost)} with "
                              f"{format_usd(was.left(Decimal(0)))} left; downgraded to {tier}")
            if first_refusal is None:
                first_refusal = (limit, cost)
            floor = tiers.index(limit.floor_tier)
            if limit.policy == "block" or index <= floor:
                why = ("it blocks requests over it" if limit.policy == "block"
                       else f"not even {tier} (its floor tier is {limit.floor_tier}) fits")
                raise BudgetExceeded(
                    f"{limit.label} of {format_usd(limit.limit)} has {format_usd(limit.left(Decimal(0)))} left; "
                    f"this request could cost up to {format_usd(cost)} on {tier} and {why}"
                )
            index -= 1


__all__ = ["BudgetGuard", "Limit", "applicable", "budget_use", "period_start", "spent_nanousd"]
