"""Latency as a routing signal (docs/latency.md): first-token timeouts, SLO demotion, hedged requests.

Through the real CLI, the real SDKs and tests/provider_server.py. Timing margins are wide: a slow
model's first token comes 20 s late while the limits are 0.5 s; a call is asserted to have been
given up within 3 s, and a whole command (SDK imports included, on a busy machine) within 10 s.
"""

from __future__ import annotations

import json
import time

import pytest

from tests.conftest import ledger_rows, write_config
from tests.provider_server import reply

SLOW = 20.0


def _answer_rows(db_path):
    return [r for r in ledger_rows(db_path) if r["role"] == "answer"]


@pytest.mark.parametrize("slow, fast, stream", [
    ("claude-small", "gpt-small", "--stream"),
    ("claude-small", "gpt-small", "--no-stream"),  # not streamed to the reader: streamed inside, assembled
    ("gpt-small", "claude-small", "--stream"),
])
def test_a_slow_first_token_falls_back_within_the_limit(mmr, server, db_path, slow, fast, stream):
    server.always(slow, reply("late answer", first_token_delay=SLOW))
    started = time.perf_counter()
    tier = "simple" if slow == "claude-small" else "medium"
    if tier == "medium":  # claude-mid first, slow too; then gpt-mid answers
        server.always("claude-mid", reply("late answer", first_token_delay=SLOW))
        slow, fast = "claude-mid", "gpt-mid"
    result = mmr("ask", "--tier", tier, stream, "--json", "--first-token-timeout", "0.5", "hello there")
    wall = time.perf_counter() - started
    assert result.returncode == 0, result.stderr.decode()
    assert wall < 10, wall  # never the 20 s the slow model takes
    out = json.loads(result.stdout)
    rows = _answer_rows(db_path)
    assert [(r["model"], r["status"], r["error_kind"]) for r in rows] == [
        (slow, "error", "first_token_timeout"), (fast, "ok", None)]
    assert "no first token within 0.5 s; abandoned" in rows[0]["error"]
    assert 450 <= rows[0]["duration_ms"] < 3000
    assert rows[1]["ttft_ms"] is not None  # the answer streamed (inside, without --stream): its TTFT is known
    assert out["model"] == fast and out["text"] == f"Answer to: hello there"
    assert [a["status"] for a in out["attempts"]] == ["error", "ok"]


def test_the_abandoned_call_keeps_the_tokens_its_provider_reported(mmr, server, db_path):
    """Anthropic reports the input tokens when the stream opens (message_start): they were billed."""
    server.always("claude-small", reply("late answer", first_token_delay=SLOW))
    result = mmr("ask", "--tier", "simple", "--json", "--first-token-timeout", "0.5", "hello there")
    assert result.returncode == 0, result.stderr.decode()
    abandoned = _answer_rows(db_path)[0]
    # 2 input tokens at 0.80 USD/M and the 1 output token message_start reports, at 4.00 USD/M.
    assert (abandoned["input_tokens"], abandoned["output_tokens"]) == (2, 1)
    assert abandoned["cost_usd"] == "0.0000056"
    assert json.loads(result.stdout)["attempts"][0]["cost_usd"] == "0.0000056"


def test_a_model_timeout_wins_over_its_providers(tmp_path, server, mmr, db_path):
    """Non-streamed: the model's own ``timeout`` bounds the call, not the provider's 30 s."""
    config = write_config(tmp_path / "t.yaml", server.url, timeout=30)
    text = config.read_text().replace("model: claude-small,", "model: claude-small, timeout: 0.5,")
    config.write_text(text)
    server.always("claude-small", reply("late", delay=SLOW))
    started = time.perf_counter()
    result = mmr("ask", "--config", str(config), "--tier", "simple", "--no-stream", "--json", "hello there")
    assert result.returncode == 0, result.stderr.decode()
    assert time.perf_counter() - started < 10
    rows = _answer_rows(db_path)
    assert (rows[0]["model"], rows[0]["error_kind"]) == ("claude-small", "timeout")
    assert rows[0]["duration_ms"] < 3000
    assert rows[-1]["model"] == "gpt-small" and rows[-1]["status"] == "ok"
