"""The real ``mmr serve`` in a subprocess on port 0, pointed at the test provider server."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass, field


@dataclass
class Served:
    """A running ``mmr serve``: its URL, process, and what it printed on stderr."""

    url: str
    proc: subprocess.Popen
    lines: list[str] = field(default_factory=list)

    def openai(self, key: str = "unused", **kw):
        import openai

        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0, **kw)

    def anthropic(self, key: str = "unused", **kw):
        import anthropic

        return anthropic.Anthropic(base_url=self.url, api_key=key, max_retries=0, **kw)

    def raw(self, method: str, path: str, body: bytes | dict | None = None, headers: dict | None = None):
        """(status, headers, body bytes) of one plain HTTP request."""
        data = json.dumps(body).encode() if isinstance(body, dict) else body
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"content-type": "application/json", **(headers or {})})
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), response.read()
        except urllib.error.HTTPError as e:
            return e.code, dict(e.headers), e.read()

    def stop(self, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
        return self.proc.wait(timeout)


def start_serve(config_path, db_path, *args: str, env: dict | None = None) -> Served:
    """Start ``mmr serve --port 0`` and wait for the URL it prints on stderr."""
    argv = [sys.executable, "-m", "router_cli", "serve", "--port", "0", "--config", str(config_path),
            "--db", str(db_path), *args]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, **(env or {})})
    first = proc.stderr.readline()
    found = re.search(r"http://[\d.]+:\d+", first)
    if found is None:
        rest = proc.stderr.read() if proc.wait(30) is not None else ""
        raise AssertionError(f"mmr serve did not start: {first}{rest}")
    served = Served(found.group(0), proc, [first])

    def drain() -> None:  # keep reading stderr so the server never blocks on a full pipe
        for line in proc.stderr:
            served.lines.append(line)

    threading.Thread(target=drain, daemon=True).start()
    return served
