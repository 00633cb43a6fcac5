"""Every number mmr reads has a range: out of it is a one-line usage error (exit 2), never an
internal error (issue 15, item 5). Config numbers: tests/test_config.py."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from router_cli.engine.options import RequestOptions
from router_cli.errors import UsageError
from tests.conftest import ledger_rows


@pytest.mark.parametrize("args, message", [
    (["ask", "--dry-run", "--max-cost", "1e999999999", "hello"],
     "--max-cost must be an amount of at most 1000000000 USD, got '1e999999999'"),
    (["ask", "--no-stream", "--max-cost", "1e999999999", "hello"],
     "--max-cost must be an amount of at most 1000000000 USD, got '1e999999999'"),
    (["ask", "--dry-run", "--max-cost", "$1000000000.000000001", "hello"],
     "--max-cost must be an amount of at most 1000000000 USD, got '$1000000000.000000001'"),
    (["cascade", "--dry-run", "--max-cost", "1e999999999", "hello"],
     "--max-cost must be an amount of at most 1000000000 USD, got '1e999999999'"),
    (["ask", "--dry-run", "--max-tokens", "9" * 30, "hello"], f"--max-tokens must be at most 1000000, got {'9' * 30}"),
    (["ask", "--dry-run", "--max-tokens", "1000001", "hello"], "--max-tokens must be at most 1000000, got 1000001"),
    (["ask", "--dry-run", "--temperature", "nan", "hello"], "--temperature must be between 0 and 2, got nan"),
    (["cascade", "--dry-run", "--threshold", "1e999", "hello"], "--threshold must be between 0 and 1, got inf"),
    (["ask", "--batch", "-", "--concurrency", "9" * 30], f"--concurrency must be between 1 and 256, got {'9' * 30}"),
])
def test_out_of_range_options_are_usage_errors(server, mmr, db_path, args, message):
    result = mmr(*args, input="")
    assert result.returncode == 2, result.stderr
    assert result.stderr.decode() == f"Error: {message}\n" and result.stdout == b""
    assert server.calls() == [] and ledger_rows(db_path) == []


def test_train_folds_have_a_range(tmp_path, mmr):
    data = tmp_path / "l.jsonl"
    data.write_text('{"prompt": "hi", "label": "simple"}\n')
    result = mmr("train", str(data), "-o", str(tmp_path / "m.json"), "--folds", "9" * 20)
    assert result.returncode == 2 and result.stderr.decode() == f"Error: --folds must be between 2 and 100, got {'9' * 20}\n"


def test_the_largest_values_are_accepted(server, mmr):
    result = mmr("ask", "--dry-run", "--json", "--max-cost", "1000000000", "--max-tokens", "1000000", "hello")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["max_output_tokens"] == 1_000_000


def test_batch_rows_with_numbers_out_of_range_fail_alone(server, mmr, db_path):
    """A row's max_tokens has the same range; a number Python cannot read (over 4300 digits) is
    that row's input error, and the other rows are answered."""
    rows = [
        '{"id": "big", "prompt": "hi", "max_tokens": 1000000000}',
        '{"id": "huge", "prompt": "hi", "max_tokens": ' + "9" * 5000 + "}",
        '{"id": "inf", "prompt": "hi", "max_tokens": 1e999}',
        '{"id": "ok", "prompt": "hi", "max_tokens": 1000000}',
    ]
    result = mmr("ask", "--batch", "-", "--tier", "simple", input="\n".join(rows) + "\n")
    out = [json.loads(line) for line in result.stdout.decode().splitlines()]
    assert result.returncode == 9 and b"internal error" not in result.stderr
    errors = {line: r["error"]["message"] for line, r in enumerate(out, 1) if "error" in r}
    assert sorted(errors.values()) == [
        "line 1: max_tokens must be a whole number from 1 to 1000000, got 1000000000",
        "line 2: not usable JSON (an integer of more than 4300 digits)",
        "line 3: max_tokens must be a whole number from 1 to 1000000, got Infinity",
    ]
    assert [r["id"] for r in out if "error" not in r] == ["ok"]
    assert server.calls()[0]["body"]["max_tokens"] == 1_000_000


@pytest.mark.parametrize("fields, message", [
    ({"max_cost": Decimal("1e999999999")}, "--max-cost must be an amount (from 0 to|of at most) 1000000000 USD"),
    ({"max_cost": "1e999999999"}, "--max-cost must be an amount of at most 1000000000 USD"),
    ({"max_tokens": 10**7}, "--max-tokens must be at most 1000000"),
    ({"max_tokens": 1.5}, "--max-tokens must be a whole number, got 1.5"),
    ({"max_tokens": True}, "--max-tokens must be a whole number, got True"),
])
def test_request_options_check_their_numbers_once(fields, message):
    with pytest.raises(UsageError, match=message):
        RequestOptions(**fields)
    with pytest.raises(UsageError, match=message):
        RequestOptions.from_json({**RequestOptions().to_json(), **{k: str(v) if k == "max_cost" else v for k, v in fields.items()}})
