"""The router as a classifier's ModelCaller under an experiment variant's config."""

from __future__ import annotations

from typing import Protocol

from ..classify.base import ModelReply
from ..config import Config, ProviderSpec


class _Calls(Protocol):
    """What of the router a variant's caller passes on (engine/router.py's Router has these)."""

    def ask_cheapest(self, prompt: str, system: str, max_tokens: int, config: Config | None = None) -> ModelReply: ...

    def api_key(self, spec: ProviderSpec) -> str | None: ...

    def ledger(self): ...


class UnderConfig:
    """A ModelCaller whose cheapest tier is ``config``'s (a variant's), not the router's own."""

    def __init__(self, router: _Calls, config: Config):
        self.router, self.config = router, config

    def ask_cheapest(self, prompt: str, system: str, max_tokens: int) -> ModelReply:
        return self.router.ask_cheapest(prompt, system, max_tokens, self.config)

    def api_key(self, spec: ProviderSpec) -> str | None:
        return self.router.api_key(spec)

    def ledger(self):
        return self.router.ledger()
