"""Providers: one class per wire protocol, each importing its SDK only when used."""

from __future__ import annotations

import gc
import importlib
from types import ModuleType

from ..config import ProviderSpec
from .base import ChatRequest, ChatResponse, OutputFailed, Provider, ProviderError, Watch

_CLASSES = {
    "anthropic": "router_cli.providers.anthropic:AnthropicProvider",
    "openai": "router_cli.providers.openai:OpenAIProvider",
    "local": "router_cli.providers.local:LocalProvider",
}
_frozen: set[str] = set()


def import_sdk(provider_type: str) -> ModuleType:
    """Import the module (and so the SDK) of a provider type, once per process."""
    name = _CLASSES[provider_type].partition(":")[0]
    module = importlib.import_module(name)  # another thread's import of it is waited for, not seen half done
    if name not in _frozen:
        _frozen.add(name)
        # An SDK's thousands of modules and classes live as long as the process: kept out of
        # the collector's scans, they no longer cost every full collection ~50 ms under the GIL.
        gc.freeze()
    return module


def get_provider(spec: ProviderSpec, api_key: str | None) -> Provider:
    """A provider object for ``spec``; its SDK is imported here, not before."""
    cls = getattr(import_sdk(spec.type), _CLASSES[spec.type].partition(":")[2])
    return cls(spec, api_key)


__all__ = ["ChatRequest", "ChatResponse", "OutputFailed", "Provider", "ProviderError", "Watch", "get_provider", "import_sdk"]
