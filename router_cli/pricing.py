"""Exact money: every cost is a ``Decimal`` computed from per-1M-token prices.

Rounding happens only when printing (:func:`format_usd`). The ledger also
keeps an integer count of nano-dollars so SQL can sum costs exactly.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from .config import Price
from .config.schema import UNPRICED

ONE_MILLION = Decimal(1_000_000)
NANO = Decimal("0.000000001")


@dataclass(frozen=True)
class Usage:
    """A call's billed tokens by class. ``input`` excludes cache reads and writes (each has
    its own price); ``reasoning`` is inside ``output`` and billed as output."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0
    reasoning: int = 0

    @classmethod
    def reported(cls, input_tokens: int, output_tokens: int, cache_read: int = 0, cache_write: int = 0,
                 reasoning: int = 0, *, cache_in_input: bool = False) -> "Usage":
        """Usage from counts as a provider reports them: OpenAI's ``prompt_tokens`` include its
        cached tokens (``cache_in_input``), Anthropic's ``input_tokens`` exclude cache reads and writes."""
        uncached = input_tokens - cache_read - cache_write if cache_in_input else input_tokens
        return cls(max(0, uncached), output_tokens, cache_read, cache_write, reasoning)

    @property
    def total_input(self) -> int:
        """Every input token, cached or not: what a long-context tier is judged by."""
        return self.input + self.cache_read + self.cache_write


def rates(price: Price, total_input: int, long: bool | None = None) -> tuple[Decimal, Decimal, Decimal, Decimal]:
    """USD per 1M tokens of (input, cache read, cache write, output) for a request of
    ``total_input`` input tokens: a long-context tier's rates apply to all of them above its
    threshold. ``long`` given says which rates, whatever ``total_input`` (sums of many requests)."""
    if price.source == UNPRICED:
        raise ValueError("this model's price was never resolved (router_cli.prices.resolve_prices)")
    tier = price.long_context
    if long is None:
        long = tier is not None and total_input > tier.above
    if tier is not None and long:
        return (tier.input, tier.input if tier.cache_read is None else tier.cache_read,
                tier.input if tier.cache_write is None else tier.cache_write, tier.output)
    return (price.input, price.input if price.cache_read is None else price.cache_read,
            price.input if price.cache_write is None else price.cache_write, price.output)


def cost(price: Price, usage: Usage, long: bool | None = None) -> Decimal:
    """Cost of one call in USD, exact: each token class at its price (``long``: see :func:`rates`).

    >>> cost(Price(Decimal("3"), Decimal("15"), Decimal("0.30"), Decimal("3.75")), Usage(100, 10, 2000, 0))
    Decimal('0.00105')
    """
    if min(usage.input, usage.output, usage.cache_read, usage.cache_write) < 0:
        raise ValueError("token counts must be non-negative")
    r_in, r_read, r_write, r_out = rates(price, usage.total_input, long)
    total = (r_in * usage.input + r_read * usage.cache_read + r_write * usage.cache_write
             + r_out * usage.output) / ONE_MILLION
    return total.normalize() if total else Decimal(0)


def cost_usd(price: Price, input_tokens: int, output_tokens: int) -> Decimal:
    """Cost of a call without cache traffic in USD, exact.

    >>> cost_usd(Price(Decimal("0.80"), Decimal("4.00")), 123, 45)
    Decimal('0.0002784')
    """
    return cost(price, Usage(input_tokens, output_tokens))


def cache_saving(price: Price, usage: Usage) -> Decimal:
    """What prompt caching saved on one call: cache reads at the input price minus what they
    cost, less the premium paid on cache writes (negative when writes were not reused)."""
    r_in, r_read, r_write, _ = rates(price, usage.total_input)
    saved = ((r_in - r_read) * usage.cache_read - (r_write - r_in) * usage.cache_write) / ONE_MILLION
    return saved.normalize() if saved else Decimal(0)


def to_nanousd(amount: Decimal) -> int:
    """USD as an integer number of nano-dollars (half-even), for exact SQL sums."""
    return int(amount.quantize(NANO, rounding=ROUND_HALF_EVEN).scaleb(9))


def decimal_str(amount: Decimal) -> str:
    """A stable, non-scientific string for JSON and the ledger: '0.0002784'."""
    text = format(amount, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"


def format_usd(amount: Decimal) -> str:
    """Round for people: '$0.000278' below a cent, '$12.35' above."""
    if amount == 0:
        return "$0"
    places = Decimal("0.01") if abs(amount) >= 1 else Decimal("0.000001")
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount).quantize(places, rounding=ROUND_HALF_EVEN)}"


def estimate_tokens(text: str) -> int:
    """A rough, average-case token count (about four characters per token): for
    estimates only, never for a limit (see :func:`max_input_tokens`)."""
    return max(1, (len(text) + 3) // 4)


# The framing a chat request adds around its texts, with a wide margin. OpenAI's
# chat format adds 3 tokens per message, 1 for its role and 3 to prime the reply
# (OpenAI's token-counting recipe); Anthropic's turn markers are of the same order.
MESSAGE_OVERHEAD_TOKENS = 16
REQUEST_OVERHEAD_TOKENS = 32


def max_text_tokens(text: str) -> int:
    """At least as many tokens as any provider's tokenizer makes of ``text``.

    Byte-level BPE (OpenAI, Anthropic) and SentencePiece with byte fallback never
    make a token of less than one UTF-8 byte; a tokenizer that normalises first
    (NFKC) may see more bytes than were sent (one U+FDFA becomes 33), so the
    larger of the two byte counts is the bound.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if not text.isascii():
        size = max(size, len(unicodedata.normalize("NFKC", text).encode("utf-8", "surrogatepass")))
    return size


def max_input_tokens(prompt: str, system: str | None = None) -> int:
    """An upper bound on the input tokens a provider counts for ``system`` + ``prompt``:
    their bytes plus every message's framing and the request's.

    >>> max_input_tokens("a", "b")
    66
    """
    messages = [prompt] + ([system] if system else [])
    return REQUEST_OVERHEAD_TOKENS + sum(MESSAGE_OVERHEAD_TOKENS + max_text_tokens(text) for text in messages)


def max_cost_usd(price: Price, prompt: str, system: str | None, max_output_tokens: int,
                 extra_input_tokens: int = 0) -> Decimal:
    """The most one call can cost: :func:`max_input_tokens` (plus ``extra_input_tokens``: tools,
    images) and every allowed output token, every input token at the dearest input rate (a cache
    write costs more than plain input)."""
    tokens = max_input_tokens(prompt, system) + extra_input_tokens
    r_in, r_read, r_write, r_out = rates(price, tokens)
    total = (max(r_in, r_read, r_write) * tokens + r_out * max_output_tokens) / ONE_MILLION
    return total.normalize() if total else Decimal(0)
