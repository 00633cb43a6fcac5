"""Client keys of ``mmr serve`` (config ``serve.keys``): who is asking, by the key they send.

A key is sent as ``Authorization: Bearer <key>`` (OpenAI's SDK) or ``x-api-key``
(Anthropic's). Only sha256 digests are kept in memory and compared; a key named
by an environment variable is read once, at start.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from dataclasses import dataclass
from typing import Mapping

from ..config import ServeKey
from ..errors import ConfigError


@dataclass(frozen=True)
class Client:
    """Whom a valid key stands for (its requests' ``user`` and ``team`` in the ledger)."""

    user: str | None
    team: str | None


class Keys:
    """The configured keys, as digests; :meth:`client` finds whom a sent key stands for."""

    def __init__(self, keys: tuple[ServeKey, ...], env: Mapping[str, str] | None = None, source: str = "config"):
        env = os.environ if env is None else env
        self._digests: list[tuple[bytes, Client]] = []
        for i, key in enumerate(keys):
            if key.env is not None:
                value = env.get(key.env)
                if not value:
                    raise ConfigError(f"{source}: serve.keys[{i}].env: the variable {key.env} is not set")
                digest = hashlib.sha256(value.encode()).digest()
            else:
                digest = bytes.fromhex(key.sha256 or "")
            self._digests.append((digest, Client(key.user, key.team)))

    def __bool__(self) -> bool:
        return bool(self._digests)

    def client(self, headers: Mapping[str, str]) -> Client | None:
        """Whom the request's key stands for, or None when it sent no valid key."""
        sent = headers.get("x-api-key") or ""
        authorization = headers.get("authorization") or ""
        if not sent and authorization[:7].lower() == "bearer ":
            sent = authorization[7:].strip()
        if not sent:
            return None
        digest = hashlib.sha256(sent.encode()).digest()
        found = None
        for known, client in self._digests:
            if hmac.compare_digest(known, digest):  # every key compared: no early exit to time
                found = client
        return found
