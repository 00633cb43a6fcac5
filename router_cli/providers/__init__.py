"""Providers: one class per wire protocol, each importing its SDK only when used."""

from __future__ import annotations

import importlib

from ..config import ProviderSpec
from .base import ChatRequest, ChatResponse, OutputFailed, Provider, ProviderError

_CLASSES = {
    "anthropic": "router_cli.providers.anthropic:AnthropicProvider",
    "openai": "router_cli.providers.openai:OpenAIProvider",
    "local": "router_cli.providers.local:LocalProvider",
}


def get_provider(spec: ProviderSpec, api_key: str | None) -> Provider:
    """A provider object for ``spec``; its SDK is imported here, not before."""
    module, _, name = _CLASSES[spec.type].partition(":")
    cls = getattr(importlib.import_module(module), name)
    return cls(spec, api_key)


__all__ = ["ChatRequest", "ChatResponse", "OutputFailed", "Provider", "ProviderError", "get_provider"]
