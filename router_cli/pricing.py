"""Exact money: every cost is a ``Decimal`` computed from per-1M-token prices.

Rounding happens only when printing (:func:`format_usd`). The ledger also
keeps an integer count of nano-dollars so SQL can sum costs exactly.
"""

from __future__ import annotations

import unicodedata
from decimal import ROUND_HALF_EVEN, Decimal

from .config import Price

ONE_MILLION = Decimal(1_000_000)
NANO = Decimal("0.000000001")


def cost_usd(price: Price, input_tokens: int, output_tokens: int) -> Decimal:
    """Cost of one call in USD, exact.

    >>> cost_usd(Price(Decimal("0.80"), Decimal("4.00")), 123, 45)
    Decimal('0.0002784')
    """
    if input_tokens < 0 or output_tokens < 0:
        raise ValueError("token counts must be non-negative")
    total = (price.input * input_tokens + price.output * output_tokens) / ONE_MILLION
    return total.normalize() if total else Decimal(0)


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


def max_cost_usd(price: Price, prompt: str, system: str | None, max_output_tokens: int) -> Decimal:
    """The most one call can cost: :func:`max_input_tokens` plus every allowed output token."""
    return cost_usd(price, max_input_tokens(prompt, system), max_output_tokens)
