"""One request's options, validated once: the same object for ``ask``, ``cascade``,
a ``--batch`` row and the message a batch worker process receives.

    from router_cli.engine.options import RequestOptions
    options = RequestOptions(max_tokens=200, max_cost=Decimal("0.01"))
    options.with_row(system=None, tier="complex", max_tokens=None, user="ana")
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

from ..config import GATES, MAX_OUTPUT_TOKENS, MAX_USD
from ..config.schema import PROMPT_CACHE_MODES
from ..errors import UsageError

if TYPE_CHECKING:
    from ..providers.base import Native


def parse_max_cost(value: str | Decimal | None) -> Decimal | None:
    """``--max-cost`` (``0.05`` or ``$0.05``) as an exact Decimal; None stays None."""
    if value is None or isinstance(value, Decimal):
        return value
    try:
        amount = Decimal(value.strip().lstrip("$"))
    except InvalidOperation:
        raise UsageError(f"--max-cost: expected an amount in USD such as 0.05, got {value!r}") from None
    if not amount.is_finite() or amount < 0:
        raise UsageError(f"--max-cost must be an amount of 0 USD or more, got {value!r}")
    if amount > MAX_USD:
        raise UsageError(f"--max-cost must be an amount of at most {MAX_USD} USD, got {value!r}")
    return amount


@dataclass(frozen=True)
class RequestOptions:
    """What a caller may ask of one request, checked where it is defined.

    ``tier`` skips classification for ``ask``; for ``cascade`` it is where the
    cascade starts (``--start-tier``). Tier and classifier names are checked
    against the config by the engine, which knows it.
    """

    system: str | None = None
    tier: str | None = None
    classifier: str | None = None
    max_tokens: int | None = None
    temperature: float | None = None
    max_cost: Decimal | None = None
    user: str | None = None
    team: str | None = None
    use_cache: bool = True
    refresh: bool = False
    prompt_cache: str | None = None  # auto | off; None: the config's
    # the server's (mmr serve): earlier turns as (role, text) pairs, stop sequences, a model asked for by id
    history: tuple[tuple[str, str], ...] = ()
    stop: tuple[str, ...] = ()
    model: str | None = None
    # tools or images, in the client's own form (providers/base.py Native): only models of its protocol take it
    native: Native | None = None
    first_token_timeout: float | None = None  # seconds; over every model's first_token_timeout
    # cascade only
    max_tier: str | None = None
    from_classifier: bool = False
    threshold: float | None = None
    gate: str | None = None
    checks: tuple[str, ...] = ()  # shell commands every answer is piped to (--check); see engine/checks.py
    check_timeout: float | None = None  # seconds; None: cascade.check_timeout

    def __post_init__(self) -> None:
        object.__setattr__(self, "history", tuple((str(r), str(t)) for r, t in self.history))
        object.__setattr__(self, "stop", tuple(str(s) for s in self.stop))
        if any(role not in ("user", "assistant") for role, _ in self.history):
            raise UsageError("history: each earlier turn is a user's or an assistant's")
        if not isinstance(self.checks, tuple):  # a list, from JSON (a batch worker process)
            object.__setattr__(self, "checks", tuple(self.checks))
        for command in self.checks:
            if not isinstance(command, str) or not command.strip():
                raise UsageError("--check: give a shell command, e.g. --check 'jq -e .'")
            check_text(command, "--check")
        if self.check_timeout is not None and not 0 < self.check_timeout <= 3600:
            raise UsageError(f"--check-timeout must be above 0 and at most 3600 seconds, got {self.check_timeout:g}")
        if self.max_tokens is not None:
            if isinstance(self.max_tokens, bool) or not isinstance(self.max_tokens, int):
                raise UsageError(f"--max-tokens must be a whole number, got {self.max_tokens!r}")
            if self.max_tokens < 1:
                raise UsageError(f"--max-tokens must be at least 1, got {self.max_tokens}")
            if self.max_tokens > MAX_OUTPUT_TOKENS:
                raise UsageError(f"--max-tokens must be at most {MAX_OUTPUT_TOKENS}, got {self.max_tokens}")
        if self.first_token_timeout is not None and not 0 < self.first_token_timeout <= 3600:  # also refuses NaN
            raise UsageError(f"--first-token-timeout must be above 0 and at most 3600 seconds, got {self.first_token_timeout:g}")
        if self.temperature is not None and not 0 <= self.temperature <= 2:  # also refuses NaN
            raise UsageError(f"--temperature must be between 0 and 2, got {self.temperature}")
        if not isinstance(self.max_cost, (Decimal, type(None))):
            object.__setattr__(self, "max_cost", parse_max_cost(self.max_cost))
        if self.max_cost is not None and (not self.max_cost.is_finite() or not 0 <= self.max_cost <= MAX_USD):
            raise UsageError(f"--max-cost must be an amount from 0 to {MAX_USD} USD, got {self.max_cost}")
        if not self.use_cache and self.refresh:
            raise UsageError("--no-cache and --refresh contradict each other: give one")
        if self.tier is not None and self.from_classifier:
            raise UsageError("--start-tier and --from-classifier both choose where to start; give one")
        if self.threshold is not None and not 0 <= self.threshold <= 1:
            raise UsageError(f"--threshold must be between 0 and 1, got {self.threshold:g}")
        if self.prompt_cache is not None and self.prompt_cache not in PROMPT_CACHE_MODES:
            raise UsageError(f"--prompt-cache: expected one of {', '.join(PROMPT_CACHE_MODES)}, got {self.prompt_cache!r}")
        if self.gate is not None and self.gate not in GATES:
            raise UsageError(f"--gate: unknown gate {self.gate!r}; valid gates: {', '.join(GATES)}")
        for name in ("system", "user", "team"):
            check_text(getattr(self, name), f"--{name}")

    def with_row(self, *, system: str | None, tier: str | None, max_tokens: int | None, user: str | None) -> "RequestOptions":
        """A batch row's own fields win over these defaults (a row's tier starts a cascade there)."""
        return replace(
            self,
            system=system if system is not None else self.system,
            tier=tier or self.tier,
            from_classifier=self.from_classifier and tier is None,
            max_tokens=max_tokens or self.max_tokens,
            user=user or self.user,
        )

    def to_json(self) -> dict:
        """JSON-ready (money as a decimal string): how a batch worker process receives them."""
        out = asdict(self)
        out["max_cost"] = None if self.max_cost is None else str(self.max_cost)
        out.pop("native")  # the server's alone: never sent to a batch worker
        return out

    @classmethod
    def from_json(cls, data: dict) -> "RequestOptions":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UsageError(f"unknown request options: {', '.join(unknown)}")
        return cls(**{**data, "max_cost": parse_max_cost(data.get("max_cost"))})


def check_text(text: str | None, what: str) -> None:
    """Arguments that are not valid UTF-8 reach Python as lone surrogates; refuse them here."""
    if text is not None:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise UsageError(f"{what} is not valid UTF-8 text") from None


def resolve(options: RequestOptions | None, fields: dict) -> RequestOptions:
    """``options``, or one built from keyword fields (``ask("...", tier="simple")``); not both."""
    if options is not None and fields:
        raise TypeError(f"give a RequestOptions or keywords, not both (got {', '.join(sorted(fields))})")
    return options if options is not None else RequestOptions(**fields)
