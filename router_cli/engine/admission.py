"""May this model be called now? The one place that asks, in order: the key, the
provider's retry-after pause, the request's budgets, and the circuit breaker.

A refusal is a ``skipped`` attempt with its reason (``no_key``, ``paused``,
``budget``, ``circuit_open``), appended to the request's attempts so that the
ledger and the error message both say why a model was passed over.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import TYPE_CHECKING, Callable, Mapping

from ..config import Config, ModelSpec, ProviderSpec, Tier
from ..errors import LedgerError, MissingKeyError
from ..policy.pauses import ProviderPauses
from ..pricing import decimal_str, max_cost_usd, max_text_tokens
from .shaping import worded
from .types import Attempt

if TYPE_CHECKING:
    from ..providers.base import Native
    from .request import Request

Chain = list[tuple[Tier, ModelSpec]]


def worst_case(model: ModelSpec, prompt: str, system: str | None, max_tokens: int | None,
               native: "Native | None" = None) -> Decimal:
    """The most one call can cost: an upper bound on the prompt's tokens (never an estimate:
    budgets hold this) plus every allowed output token. Counted as ``model``'s wording sends them;
    a ``native`` request (mmr serve) as sent, its tools and images included (:func:`native_tokens`)."""
    if native is not None:
        return max_cost_usd(model.price, prompt, system, max_tokens or model.max_tokens,
                            extra_input_tokens=native_tokens(native, model))
    prompt, system = worded(model, system, prompt)
    return max_cost_usd(model.price, prompt, system, max_tokens or model.max_tokens)


# The most input tokens one image can cost, from the providers' own documentation:
# - Anthropic ("Vision", image costs): an image is scaled down until it is within 1,568 px on its
#   long edge and about 1.15 megapixels, "approximately 1,600 tokens"; tokens = width * height / 750
#   and 1.15 MP / 750 = 1,534, so 1,600 covers it.
# - OpenAI ("Images and vision", calculating costs): high detail fits the image in 2048 x 2048 and its
#   short side to 768 px, at most 8 tiles of 512 px: 85 + 8 * 170 = 1,445 tokens (gpt-4o, 4.1, o1/o3 at
#   75 + 8 * 150, gpt-5 at 70 + 8 * 140 are below); the 32 px patch models count at most 1,536
#   patches times their multiplier, the largest 2.46 (gpt-4.1-nano): 3,779. gpt-4o-mini counts
#   2,833 + 8 * 5,667 = 48,169 tokens (its price per token is lower).
IMAGE_TOKENS = {"anthropic": 1_600, "openai": 3_779}
GPT_4O_MINI_IMAGE_TOKENS = 48_169
# Offering tools adds a system prompt of the provider's own (Anthropic documents 313-530 tokens for it)
# and the definitions in its own rendering; a margin over the JSON sent.
TOOLS_OVERHEAD_TOKENS = 1_000
_IMAGE_KINDS = ("image", "image_url", "input_image", "document", "file")


def native_tokens(native: "Native", model: ModelSpec) -> int:
    """Input tokens a native request adds beyond its text: the JSON of its tools (and tool choice)
    byte for byte, the providers' tool framing, and a per-image bound (:data:`IMAGE_TOKENS`) for
    each image, document or file part (in any message, tool results included)."""
    extra = 0
    if native.params:
        extra += max_text_tokens(json.dumps(native.params, ensure_ascii=False)) + TOOLS_OVERHEAD_TOKENS
    per_image = IMAGE_TOKENS.get(native.protocol, max(IMAGE_TOKENS.values()))
    if native.protocol == "openai" and "4o-mini" in model.model:
        per_image = GPT_4O_MINI_IMAGE_TOKENS
    for part in _parts(native.messages):
        if part.get("type") in _IMAGE_KINDS:
            # A document's pages are each text and an image: its own bytes, plus one image's bound.
            extra += per_image + (max_text_tokens(json.dumps(part)) if part["type"] in ("document", "file") else 0)
    return extra


def _parts(value):
    """Every dict within a request's messages, depth first."""
    if isinstance(value, dict):
        yield value
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        for item in value:
            yield from _parts(item)


class Admitter:
    """Admission for every model a router calls; shared by the threads of a batch.

    ``board`` returns the circuit breakers (None without a ledger).
    """

    def __init__(self, config: Config, env: Mapping[str, str], pauses: ProviderPauses,
                 board: Callable[[], object | None], on_note: Callable[[str], None]):
        self.config, self.env, self.pauses, self.board, self.on_note = config, env, pauses, board, on_note

    def api_key(self, spec: ProviderSpec) -> str | None:
        """The provider's key from the environment, or None (also when it needs none)."""
        if spec.api_key_env is None:
            return None
        return self.env.get(spec.api_key_env) or None

    def key_problem(self, model: ModelSpec) -> str | None:
        """The name of the unset variable that ``model``'s provider needs, else None."""
        spec = self.config.providers[model.provider]
        if spec.api_key_env and not self.api_key(spec):
            return spec.api_key_env
        return None

    def admit(self, request: "Request | None", attempts: list[Attempt], chain: Chain, position: int,
              call: tuple[str, str | None, int], role: str):
        """The breaker's ticket for ``chain[position]``, or None after recording why it is skipped.

        ``call`` is (prompt, system, output token limit), for the budget's worst case.
        """
        tier, model = chain[position]
        spec = self.config.providers[model.provider]

        def skip(kind: str, why: str) -> None:
            attempts.append(Attempt(tier.name, spec.name, model.model, "skipped", error=why, error_kind=kind, role=role))

        missing = self.key_problem(model)
        if missing:
            skip("no_key", f"{missing} is not set")
            return None
        self._check_key(spec)
        paused = self.pauses.remaining(spec.name)
        if paused > 0 and self.mate_ready(chain, position):
            skip("paused", f"{spec.name} asked to wait {paused:.1f} s more (retry-after)")
            return None
        if not self.budget_allows(request, attempts, tier, model, call, role):
            return None
        ticket = self._breaker_ticket(spec, model)
        if not ticket.allowed:
            skip("circuit_open", ticket.reason)
            message = f"skipped {tier.name} {spec.name}/{model.model}: {ticket.reason}"
            (request.note if request is not None else self.on_note)(message)
            return None
        return ticket

    def budget_allows(self, request: "Request | None", attempts: list[Attempt], tier: Tier, model: ModelSpec,
                      call: tuple[str, str | None, int], role: str) -> bool:
        """Check the next call's worst case against the budgets and hold it; a refusal is a ``budget`` skip."""
        if request is None or request.guard is None:
            return True
        spec = self.config.providers[model.provider]
        worst = worst_case(model, *call, native=request.native)
        lease = (spec.timeout + 5) * (self.config.retry.max_retries + 1)
        over = request.guard.hold(worst, request.billed, lease=lease)  # type: ignore[attr-defined]
        if over is None:
            return True
        why = f"{over.label}: up to {decimal_str(worst)} USD with {decimal_str(over.left(request.billed))} USD left"
        attempts.append(Attempt(tier.name, spec.name, model.model, "skipped", error=why, error_kind="budget", role=role))
        request.note(f"skipped {tier.name} {spec.name}/{model.model}: {why}")
        return False

    def mate_ready(self, chain: Chain, position: int) -> bool:
        """Is a later model of the same tier ready to take over now (a key, no pause, circuit not open)?"""
        tier = chain[position][0].name
        board = self.board()
        for t, m in chain[position + 1:]:
            if t.name != tier:
                return False
            if self.key_problem(m) is None and self.pauses.remaining(m.provider) <= 0:
                try:
                    if board is None or not board.is_open(m.provider, m.model):  # type: ignore[attr-defined]
                        return True
                except LedgerError:
                    return True
        return False

    def outcome(self, spec: ProviderSpec, model: ModelSpec, ticket, error=None) -> None:
        """Tell the breaker how the call went (``error`` None: it answered)."""
        board = self.board()
        if board is None:
            return
        try:
            if error is None:
                board.success(spec.name, model.model, ticket)  # type: ignore[attr-defined]
                if ticket.state != "closed":
                    self.on_note(f"{spec.name}/{model.model} answered; its circuit is closed again")
            elif error.retryable:
                state = board.failure(spec.name, model.model, str(error), error.retry_after)  # type: ignore[attr-defined]
                if state == "open" and ticket.state != "open":
                    self.on_note(f"{spec.name}/{model.model}: circuit opened; other processes will skip it "
                                 f"for {self.config.breaker.cooldown:g} s or its retry-after")
        except LedgerError as e:
            self.on_note(f"circuit breaker state not saved ({e})")

    def _breaker_ticket(self, spec: ProviderSpec, model: ModelSpec):
        from ..policy.breakers import ALLOWED

        board = self.board()
        if board is None:
            return ALLOWED
        try:
            return board.admit(spec.name, model.model, lease=spec.timeout + 5)  # type: ignore[attr-defined]
        except LedgerError as e:
            # The breakers are an optimisation: a locked database must not stop the call.
            self.on_note(f"circuit breaker state unavailable ({e}); calling anyway")
            return ALLOWED

    def _check_key(self, spec: ProviderSpec) -> None:
        key = self.api_key(spec)
        if key is not None and (key != key.strip() or not key.isprintable()):
            # An HTTP library would put such a key, escaped, into its error message.
            raise MissingKeyError(f"the value of {spec.api_key_env} contains spaces or control characters; set it to the bare key")
