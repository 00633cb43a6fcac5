"""The router as a classifier's ModelCaller under an experiment variant's config."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..classify.base import ModelReply
from ..config import Config, ProviderSpec

if TYPE_CHECKING:
    from .router import Router


class UnderConfig:
    """The router as a classifier's ModelCaller under an experiment variant's config."""

    def __init__(self, router: "Router", config: Config):
        self.router, self.config = router, config

    def ask_cheapest(self, prompt: str, system: str, max_tokens: int) -> ModelReply:
        return self.router.ask_cheapest(prompt, system, max_tokens, self.config)

    def api_key(self, spec: ProviderSpec) -> str | None:
        return self.router.api_key(spec)

    def ledger(self):
        return self.router.ledger()
