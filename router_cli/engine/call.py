"""What every model of a chain is asked (:class:`Call`), and a conversation as one text."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

from ..config import ModelSpec
from .shaping import wording_fields
from .types import Note

if TYPE_CHECKING:
    from ..providers.base import Native


@dataclass
class Call:
    """What every model of a chain is asked, and where its text goes."""

    prompt: str
    system: str | None
    max_tokens: int | None
    temperature: float | None
    role: str = "answer"  # "classifier" or "judge" for a call made on the answer's behalf
    on_text: Callable[[str], None] | None = None
    on_restart: Note | None = None
    history: tuple[tuple[str, str], ...] = ()  # earlier turns, (role, text), before ``prompt``
    stop: tuple[str, ...] = ()
    prompt_cache: str = "off"  # auto: mark a long system prompt for Anthropic's prompt cache
    native: Native | None = None  # the client's own messages and tools (mmr serve)
    first_token_timeout: float | None = None  # --first-token-timeout: over every model's own limit
    streamed: bool = field(default=False, init=False)  # text already went out on_text
    # Failures to connect, told to the breakers only once the chain shows they were not this machine's own.
    unreached: list = field(default_factory=list, init=False)
    hedged: set = field(default_factory=set, init=False)  # chain positions already called as a hedge

    @property
    def transcript(self) -> str:
        """Everything sent but the system prompt, as one text: what budgets and estimates count."""
        return transcript(self.history, self.prompt)

    def wording(self, model: ModelSpec) -> dict:
        """The Attempt fields naming the wording ``model`` is sent (none for a native request:
        tools and images go as the client wrote them)."""
        return wording_fields(model, self.role) if self.native is None else {}

    def limit(self, model: ModelSpec) -> int:
        limit = self.max_tokens or model.max_tokens
        if self.role != "answer" and model.reasoning:
            # Reasoning models spend output tokens thinking: a 5-token budget comes back empty.
            limit = max(limit, model.max_tokens)
        return limit


def transcript(history: tuple[tuple[str, str], ...], prompt: str) -> str:
    """A conversation as one text (the prompt alone when there is no history): what the ledger keeps,
    the cache keys and the budgets bound."""
    if not history:
        return prompt
    return "\n\n".join(f"{role}: {text}" for role, text in (*history, ("user", prompt)))
