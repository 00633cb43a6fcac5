"""``GET /dashboard`` and ``GET /dashboard/data`` of ``mmr serve``: the routing dashboard, live.

The page is the one ``mmr report --html`` writes, plus a small script (allowed by the page's
Content-Security-Policy by its hash, nothing else may run) that fetches ``/dashboard/data``
every ``every`` seconds and swaps each section's HTML in place, without reloading the page.

Both need a client key when keys are configured, like the API: ``Authorization: Bearer KEY``,
``x-api-key``, or HTTP Basic with the key as the password (a browser asks for it). A key
bound to a team sees only that team's calls and budgets (a key bound to a user alone, only
that user's). Query parameters: ``since`` (default 30d), ``until``, ``by`` (day or week),
``user``/``team`` (narrow further; never widen a key's view), ``every`` (seconds, 1-3600).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import threading
import time

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from ..errors import MmrError, UsageError
from .auth import Client

CACHE_SECONDS = 5.0  # viewers polling together share one scan of the ledger


class Dashboard:
    """The two endpoints over the server's router (its config and ledger) and keys."""

    def __init__(self, server) -> None:
        self.server = server
        self._cache: dict[tuple, tuple[float, dict]] = {}
        self._lock = threading.Lock()

    async def page(self, request: Request) -> Response:
        return await self._answer(request, live_page=True)

    async def data(self, request: Request) -> Response:
        return await self._answer(request, live_page=False)

    async def _answer(self, request: Request, live_page: bool) -> Response:
        allowed, client = self._client(request)
        if not allowed:
            return PlainTextResponse("a valid client key is required\n", status_code=401,
                                     headers={"www-authenticate": 'Basic realm="mmr dashboard", charset="UTF-8"'})
        try:
            params = _params(request, client)
        except UsageError as e:
            return PlainTextResponse(f"{e}\n", status_code=400)
        loop = asyncio.get_running_loop()
        try:
            data = await loop.run_in_executor(self.server.pool, self._data, params)
        except UsageError as e:
            return PlainTextResponse(f"{e}\n", status_code=400)
        except MmrError as e:
            return PlainTextResponse(f"the ledger could not be read: {e}\n", status_code=503)
        from ..render.dashboard import data_json, page

        headers = {"cache-control": "no-store", "x-content-type-options": "nosniff"}
        if live_page:
            return Response(page(data, live=True, refresh_seconds=params[4]), media_type="text/html; charset=utf-8",
                            headers=headers)
        return Response(data_json(data), media_type="application/json", headers=headers)

    def _client(self, request: Request) -> tuple[bool, Client | None]:
        """(may see the dashboard, whom the key stands for); no keys (--no-auth): everyone, unscoped."""
        keys = self.server.keys
        if keys is None:
            return True, None
        headers = dict(request.headers)
        authorization = headers.get("authorization", "")
        if authorization[:6].lower() == "basic ":
            try:
                _, _, password = base64.b64decode(authorization[6:].strip(), validate=True).decode().partition(":")
            except (binascii.Error, UnicodeDecodeError):
                return False, None
            headers = {"x-api-key": password}
        client = keys.client(headers)
        return client is not None, client

    def _data(self, params: tuple) -> dict:
        since, until, by, where, _, scope = params
        # The scope is part of the key: the same filters show fewer budgets to a scoped key.
        key = (since, until, by, tuple(sorted(where.items())), tuple(sorted(scope.items())))
        now = time.monotonic()
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and now - hit[0] < CACHE_SECONDS:
                return hit[1]
        data = self._compute(since, until, by, where, scope)
        with self._lock:
            self._cache = {k: v for k, v in self._cache.items() if now - v[0] < CACHE_SECONDS}
            self._cache[key] = (now, data)
        return data

    def _compute(self, since: str, until: str | None, by: str, where: dict[str, str], scope: dict[str, str]) -> dict:
        from ..policy.budgets import budget_use
        from ..reports.dashboard import dashboard, visible_budgets
        from ..reports.when import parse_when

        config = self.server.config
        start = parse_when(since)
        end = parse_when(until, option="--until") if until else None
        ledger = self.server.router.ledger()
        budgets = visible_budgets(budget_use(ledger, config.budgets), where, scope)
        return dashboard(ledger, start, end, period=by, where=where, budgets=budgets, tiers=config.tier_names)


def _params(request: Request, client: Client | None) -> tuple[str, str | None, str, dict[str, str], int, dict[str, str]]:
    """(since, until, by, the calls' filter, refresh seconds, the key's own scope: {} for an
    unscoped key) from the query and the key."""
    q = request.query_params
    by = q.get("by", "day")
    if by not in ("day", "week"):
        raise UsageError(f"by: the dashboard's periods are day or week, got {by!r}")
    try:
        every = int(q.get("every", "30"))
    except ValueError:
        raise UsageError("every: a whole number of seconds") from None
    if not 1 <= every <= 3600:
        raise UsageError(f"every: between 1 and 3600 seconds, got {every}")
    where = {k: q[k] for k in ("user", "team") if q.get(k)}
    scope: dict[str, str] = {}
    if client is not None:  # a key's own scope wins over the query
        if client.team is not None:
            scope = {"team": client.team}
        elif client.user is not None:
            scope = {"user": client.user}
    where.update(scope)
    return q.get("since", "30d"), q.get("until") or None, by, where, every, scope
