"""Reports ask the ledger through named queries (router_cli.ledger.queries): no report
module writes SQL or touches a connection, so another ledger store can answer them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPORTS = Path(__file__).resolve().parent.parent / "router_cli" / "reports"
MODULES = sorted(REPORTS.glob("*.py"))

# Upper-case SQL words (docstrings write prose in lower case) and "column = ?" placeholders.
SQL = re.compile(
    r"\b(SELECT|INSERT|UPDATE|DELETE|CREATE|ALTER|DROP|PRAGMA|GROUP BY|ORDER BY|WHERE|JOIN|VALUES|COALESCE)\b"
    r"|\w\s*(=|<|>|IN \(|LIKE)\s*\?"
)
# What only a store may use: its connection, raw execution, its retry loop and transactions,
# the SQL-taking read and rows.
FORBIDDEN_ATTRIBUTES = {"conn", "execute", "executemany", "executescript", "cursor", "_retrying", "transaction", "read",
                        "rows"}


def test_there_are_report_modules():
    assert {"costs.py", "health.py", "explain.py", "feedback.py", "labels.py", "replay.py"} <= {m.name for m in MODULES}


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_no_sql_and_no_connection_in_reports(module):
    tree = ast.parse(module.read_text(encoding="utf-8"))
    problems = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and SQL.search(node.value):
            problems.append(f"line {node.lineno}: SQL in a string: {node.value[:60]!r}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in FORBIDDEN_ATTRIBUTES:
            problems.append(f"line {node.lineno}: calls .{node.func.attr}()")
        if isinstance(node, ast.Attribute) and node.attr == "conn":
            problems.append(f"line {node.lineno}: touches .conn")
        if isinstance(node, ast.alias) and node.name in ("sqlite3", "sqlite_utils"):
            problems.append(f"line {node.lineno}: imports {node.name}")
    assert not problems, f"{module.name}: " + "; ".join(problems)


def test_the_guard_catches_sql():
    assert SQL.search("SELECT count(*) FROM calls")
    assert SQL.search("calls.request_id = ?")
    assert not SQL.search("Spend and savings reports over the ledger, aggregated in SQL.")
