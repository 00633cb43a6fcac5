"""The batch's wire format: JSON lines between ``mmr`` and its worker processes
(see :mod:`router_cli.batch.pool` for the protocol)."""

from __future__ import annotations

import json
from dataclasses import asdict
from decimal import Decimal

from .. import errors
from ..errors import MmrError
from .calls import Outcome
from .rows import Row


def encode_error(e: MmrError) -> dict:
    return {"type": type(e).__name__, "message": e.message, "exit_code": e.exit_code}


def decode_error(data: dict) -> MmrError:
    """The same class when it is one of ours (the batch stops on some classes), else MmrError."""
    cls = getattr(errors, str(data.get("type")), MmrError)
    if not (isinstance(cls, type) and issubclass(cls, MmrError)):
        cls = MmrError
    error = MmrError.__new__(cls)
    MmrError.__init__(error, str(data.get("message")))
    error.exit_code = int(data.get("exit_code", errors.EXIT_INTERNAL))
    return error


def encode_outcome(outcome: Outcome) -> dict:
    return {"row": outcome.row, "ok": outcome.ok, "cost": str(outcome.cost),
            "fatal": None if outcome.fatal is None else encode_error(outcome.fatal)}


def decode_outcome(data: dict) -> Outcome:
    return Outcome(data["row"], bool(data["ok"]), Decimal(data["cost"]),
                   None if data.get("fatal") is None else decode_error(data["fatal"]))


def line(message: dict) -> bytes:
    """One protocol message as a line of UTF-8 JSON."""
    return (json.dumps(message, ensure_ascii=False) + "\n").encode("utf-8", "surrogatepass")


def encode_row(row: Row) -> dict:
    return asdict(row)


def decode_row(data: dict) -> Row:
    return Row(**data)
