"""The budget reads both stores share: their SQL is the same on SQLite and PostgreSQL.

Each store provides ``_value`` and ``_dicts`` (``?`` placeholders); the scope names a column,
quoted because ``user`` is a reserved word in PostgreSQL (SQLite takes the quotes too).
"""

from __future__ import annotations

from typing import Any, Callable

from .store import SCOPES


class BudgetReads:
    """``spent_nanousd``, ``spent_by`` and ``held_nanousd`` of :class:`~router_cli.ledger.store.LedgerStore`."""

    # The store's own: one value, or rows as dicts, of a ``?``-placeholder query.
    _value: Callable[..., Any]
    _dicts: Callable[..., list[dict]]

    def spent_nanousd(self, scope: str, who: str | None, since: str) -> int:
        """Nano-dollars billed since ``since``: by everyone (``global``) or by user/team ``who``."""
        if _scope(scope) == "global":
            return self._value("SELECT coalesce(sum(cost_nanousd), 0) FROM calls WHERE datetime_utc >= ?", (since,))
        return self._value(f'SELECT coalesce(sum(cost_nanousd), 0) FROM calls WHERE "{scope}" = ? AND datetime_utc >= ?',
                           (who, since))

    def spent_by(self, scope: str, since: str) -> dict[str, int]:
        """Nano-dollars billed since ``since`` per user (team), in name order."""
        if _scope(scope) == "global":
            raise ValueError("spend by whom: the scope must be user or team")
        sql = (f'SELECT "{scope}" AS who, sum(cost_nanousd) AS spent FROM calls WHERE "{scope}" IS NOT NULL '
               f'AND datetime_utc >= ? GROUP BY "{scope}" ORDER BY "{scope}"')
        return {row["who"]: row["spent"] for row in self._dicts(sql, (since,))}

    def held_nanousd(self, scope: str, who: str | None, request_id: str, now: float) -> int:
        """What requests other than ``request_id`` hold at ``now`` (all, or user/team ``who``'s)."""
        where = "" if _scope(scope) == "global" else f' AND "{scope}" = ?'
        params = [request_id, now] + ([] if scope == "global" else [who])
        return self._value(
            f"SELECT coalesce(sum(nanousd), 0) FROM budget_holds WHERE request_id != ? AND expires_at > ?{where}", params)


def _scope(scope: str) -> str:
    # The scope names a column: only these three may reach the SQL.
    if scope not in SCOPES:
        raise ValueError(f"unknown budget scope {scope!r}")
    return scope
