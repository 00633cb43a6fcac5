"""A budget hold is an upper bound: concurrent requests cannot pass a limit however
the provider counts the prompt's tokens (issue 15, item 3)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal

import pytest

from router_cli.pricing import estimate_tokens, max_input_tokens, max_text_tokens
from tests.conftest import ledger_rows, write_config
from tests.provider_server import reply

PRICES = {"claude-small": (Decimal("0.80"), Decimal("4.00")), "gpt-small": (Decimal("0.15"), Decimal("0.60"))}
MAX_TOKENS = 64  # both simple models
OTHER = {"claude-small": "TEST_OPENAI_KEY", "gpt-small": "TEST_ANTHROPIC_KEY"}


def old_hold(model: str, prompt: str, system: str) -> Decimal:
    """What a hold was before: the chars/4 estimate of the prompt, plus every output token."""
    price_in, price_out = PRICES[model]
    return (price_in * estimate_tokens(f"{system}\n{prompt}") + price_out * MAX_TOKENS) / 1_000_000


def run_concurrently(config, db_path, model: str, prompt: str, system: str, count: int = 16):
    """``count`` separate ``mmr ask`` processes at once, the other simple model's key unset."""
    env = {**os.environ, OTHER[model]: ""}
    argv = [sys.executable, "-m", "router_cli", "ask", "--no-stream", "--json", "--tier", "simple",
            "--system", system, "--config", str(config), "--db", str(db_path), prompt]
    procs = [subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
             for _ in range(count)]
    return [(p.wait(timeout=120), p.stdout.read(), p.stderr.read()) for p in procs]


def spent(db_path) -> Decimal:
    return sum((Decimal(r["cost_nanousd"]) for r in ledger_rows(db_path)), Decimal(0)) / 10**9


@pytest.mark.parametrize("model", ["claude-small", "gpt-small"])
def test_the_issues_repro_cannot_pass_the_limit(server, tmp_path, db_path, model):
    """Limit = four old holds; a 1-character prompt and system prompt, which the provider
    counts as 2 tokens (the estimate said 1), and answers using every output token. The 16
    calls are slow, so every process holds its worst case while the others check."""
    server.always(model, reply(" ".join(["w"] * MAX_TOKENS), delay=1.5))
    limit = old_hold(model, "x", "s") * 4
    config = write_config(tmp_path / "b.yaml", server.url, timeout=10,
                          extra=f"budgets:\n  - {{scope: global, period: day, limit: '{limit}', policy: block}}\n")
    results = run_concurrently(config, db_path, model, "x", "s")
    answered = [r for r in results if r[0] == 0]
    assert answered and all(code in (0, 8) for code, _, _ in results), results
    for code, _, err in results:
        if code == 8:
            assert err.startswith(b"Error: ") and b"global daily budget" in err and err.count(b"\n") == 1
    assert {c["model"] for c in server.calls()} == {model} and len(server.calls()) == len(answered)
    assert all(json.loads(out)["input_tokens"] == 2 for code, out, _ in answered)
    assert spent(db_path) <= limit


def test_cjk_text_cannot_pass_the_limit(server, tmp_path, db_path):
    """A real tokenizer may count a CJK character as up to three tokens (one per UTF-8 byte,
    byte fallback), where chars/4 says a quarter; the provider counts exactly that, plus
    OpenAI's framing of 4 tokens per message and 3 per request."""
    prompt, system = "請用三句話解釋量子糾纏。" * 8, "你是物理老師"
    counted = len(prompt.encode()) + len(system.encode()) + 11
    server.always("gpt-small", reply(" ".join(["w"] * MAX_TOKENS), input_tokens=counted, delay=1.5))
    limit = old_hold("gpt-small", prompt, system) * 4
    config = write_config(tmp_path / "b.yaml", server.url, timeout=10,
                          extra=f"budgets:\n  - {{scope: global, period: day, limit: '{limit}', policy: block}}\n")
    results = run_concurrently(config, db_path, "gpt-small", prompt, system, count=12)
    assert any(code == 0 for code, _, _ in results) and all(code in (0, 8) for code, _, _ in results), results
    assert spent(db_path) <= limit


@pytest.mark.parametrize("text", [
    "hello world", "x", "", "量子糾纏" * 50, "🙂🚀👩‍👩‍👧" * 20, "\ufdfa" * 10, "e\u0301" * 30, "a " * 500,
])
def test_the_bound_covers_every_byte_and_the_framing(text):
    """No tokenizer makes a token of less than one byte (of the text, or of its NFKC form),
    and the framing of both messages and the request is added on top."""
    import unicodedata

    nfkc = unicodedata.normalize("NFKC", text)
    assert max_text_tokens(text) >= max(len(text.encode()), len(nfkc.encode()))
    assert max_input_tokens(text, "s") >= max_text_tokens(text) + 1 + 2 * 4 + 3  # OpenAI's framing, at least
    assert max_input_tokens(text, "s") >= estimate_tokens(f"s\n{text}")


def test_dry_run_shows_the_worst_case(server, mmr):
    out = json.loads(mmr("ask", "--dry-run", "--json", "--tier", "simple", "--system", "s", "x").stdout)
    assert out["max_input_tokens"] == max_input_tokens("x", "s") and out["estimated_input_tokens"] == 1
    price_in, price_out = PRICES["claude-small"]
    assert Decimal(out["max_cost_usd"]) == (price_in * out["max_input_tokens"] + price_out * MAX_TOKENS) / 1_000_000
    text = mmr("ask", "--dry-run", "--tier", "simple", "x").stdout.decode()
    assert f"~1 in, up to {max_input_tokens('x')} in and {MAX_TOKENS} out" in text and "the worst case" in text
