"""The call a batch makes for each row, built once from the command's :class:`RequestOptions`,
and what a finished row becomes (:class:`Outcome`)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Callable

from ..errors import ConfigError, LedgerError, MissingKeyError, MmrError, error_kind
from ..pricing import decimal_str
from .rows import Row

if TYPE_CHECKING:
    from ..engine.options import RequestOptions

FATAL = (ConfigError, LedgerError, MissingKeyError)  # every later row would fail the same way

def asker(router, options: RequestOptions, batch_id: str | None = None) -> Callable[[Row], object]:
    """The call for ``mmr ask --batch``: a row's own fields win over ``options``.

    The options are checked here, once, rather than failing every row. With ``batch_id``,
    each row's ledger rows carry it and the row's id.
    """
    from ..classify import get_classifier

    if options.tier is not None:
        router.decide("", tier=options.tier)
    if options.classifier is not None:
        get_classifier(options.classifier, router.config, caller=router)

    def call(row: Row):
        return router.ask(row.prompt, _for_row(options, row))

    return _in_batch(call, batch_id)


def cascader(router, options: RequestOptions, batch_id: str | None = None) -> Callable[[Row], object]:
    """The call for ``mmr cascade --batch``: a row's ``tier`` is where its cascade starts.

    The options are checked here, once (as a dry run checks them), rather than failing every row.
    With ``batch_id``, each row's ledger rows carry it and the row's id.
    """
    from ..engine.cascade import cascade, estimate

    # Checked as a dry run checks them, without asking the classifier (a paid call for llm, not recorded here).
    estimate(router, "check", replace(options, from_classifier=False))
    if options.classifier is not None:
        from ..classify import get_classifier

        get_classifier(options.classifier, router.config, caller=router)

    def call(row: Row):
        return cascade(router, row.prompt, _for_row(options, row))

    return _in_batch(call, batch_id)


CALLS: dict[str, Callable[..., Callable[[Row], object]]] = {"ask": asker, "cascade": cascader}


def make_call(router, kind: str, options: RequestOptions, batch_id: str | None = None) -> Callable[[Row], object]:
    """The call for ``mmr <kind> --batch`` (``kind``: ask or cascade), recording ``batch_id`` when given."""
    return CALLS[kind](router, options, batch_id)


def _in_batch(call: Callable[[Row], object], batch_id: str | None) -> Callable[[Row], object]:
    if batch_id is None:
        return call
    from ..engine.request import answering_row

    def in_batch(row: Row):
        with answering_row(batch_id, row.key):
            return call(row)

    return in_batch


def _for_row(options: RequestOptions, row: Row) -> RequestOptions:
    return options.with_row(system=row.system, tier=row.tier, max_tokens=row.max_tokens, user=row.user)


@dataclass
class Outcome:
    """A finished row: what to write, and what it tells the batch."""

    row: dict
    ok: bool
    cost: Decimal = Decimal(0)
    fatal: MmrError | None = None
    recovered: bool = False  # written from the ledger (--resume): answered by an earlier run, not paid again


def run_row(call: Callable[[Row], object], row: Row) -> Outcome:
    """Answer one row; every failure becomes an error row."""
    try:
        answer = call(row)
    except MmrError as e:
        attempts = getattr(e, "attempts", None) or []
        error: dict = {"id": row.id, "error": {"kind": error_kind(e), "message": str(e), "exit_code": e.exit_code, "line": row.line}}
        cost = sum((a.cost for a in attempts), Decimal(0))
        if attempts:
            error["attempts"] = [a.to_json() for a in attempts]
            error["cost_usd"] = decimal_str(cost)
        return Outcome(error, False, cost, e if isinstance(e, FATAL) else None)
    except Exception as e:  # noqa: BLE001 - a bug hit one row: report it there and go on
        return Outcome({"id": row.id, "error": {"kind": "internal", "message": f"{type(e).__name__}: {e}",
                                                "exit_code": 1, "line": row.line}}, False)
    out = {"id": row.id, **answer.to_json()}  # type: ignore[attr-defined]
    return Outcome(out, True, answer.cost, answer.ledger_error)  # type: ignore[attr-defined]


