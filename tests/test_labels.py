"""Training labels from the ledger: cascade outcomes, feedback overrides, skips counted; train --from-ledger."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from router_cli import cascade
from router_cli.config import load_config
from router_cli.errors import AllAttemptsFailed
from router_cli.labelled import read_labelled
from router_cli.reports.feedback import record
from router_cli.reports.labels import (
    DUPLICATE,
    NO_ANSWER,
    NO_OUTCOME,
    NOT_STORED,
    TOP_BAD,
    ledger_labels,
)
from router_cli.ledger import open_ledger
from router_cli import Router
from tests.conftest import require_ml, write_config
from tests.ledger_factory import NOW, attempt, merge, request
from tests.provider_server import error, reply

TIERS = ["simple", "medium", "complex"]
WEAK = reply("I don't know.")
GOOD = reply("Because shorter wavelengths scatter more in the atmosphere.")


def _labels(db_path) -> dict:
    with open_ledger(db_path) as ledger:
        result = ledger_labels(ledger, TIERS, NOW - timedelta(days=1), NOW + timedelta(hours=1))
    return result


def test_labels_from_real_cascades_and_feedback(server, tmp_path, db_path):
    full = load_config(write_config(tmp_path / "full.yaml", server.url))
    hashed = load_config(write_config(tmp_path / "hash.yaml", server.url, extra="ledger: {store: hash}\n"))
    with Router(full, db_path, sleep=lambda s: None) as router, Router(hashed, db_path) as hashing:
        server.script("claude-small", WEAK)
        escalated = cascade(router, "Explain why the sky is blue", gate="heuristic")  # simple fails, medium passes
        first_try = cascade(router, "Explain how tides work", gate="heuristic")  # simple passes
        server.script("claude-small", WEAK)
        server.script("claude-mid", WEAK)
        server.script("claude-big", WEAK)
        cascade(router, "Explain the Riemann hypothesis", gate="heuristic")  # nothing passes: best effort at the top
        plain = router.ask("Explain what a monad is")  # no gate: teaches nothing by itself
        rated = router.ask("Explain what a functor is")
        overruled = cascade(router, "Explain why ice floats", gate="heuristic")  # passes at simple...
        server.script("claude-small", error(500), error(500), error(500))
        server.script("gpt-small", error(500), error(500), error(500))
        server.script("claude-mid", error(500), error(500), error(500))
        server.script("gpt-mid", error(500), error(500), error(500))
        server.script("claude-big", error(500), error(500), error(500))
        server.script("gpt-big", error(500), error(500), error(500))
        with pytest.raises(AllAttemptsFailed):
            cascade(router, "Explain gravity", gate="heuristic")  # every call fails: no answer
        cascade(hashing, "Explain entropy", gate="heuristic")  # prompt kept only as a hash
        cascade(router, "Explain how tides work", gate="heuristic")  # asked again: one row per prompt
    with open_ledger(db_path) as ledger:
        record(ledger, rated.final.call_id, "bad", should_be="complex", tiers=TIERS)
        record(ledger, overruled.final.call_id, "bad", tiers=TIERS)  # ...but the user says it was not good enough
        record(ledger, plain.final.call_id, "good", tiers=TIERS)
        record(ledger, plain.final.call_id, "bad", tiers=TIERS)  # the latest counts
    result = _labels(db_path)
    rows = {r["prompt"]: (r["label"], r["source"]) for r in result.rows}
    assert rows == {
        "Explain why the sky is blue": ("medium", "cascade"),
        "Explain how tides work": ("simple", "cascade"),
        "Explain the Riemann hypothesis": ("complex", "cascade"),
        "Explain what a monad is": (TIERS[TIERS.index(plain.final.tier) + 1], "feedback"),
        "Explain what a functor is": ("complex", "feedback"),
        "Explain why ice floats": ("medium", "feedback"),
    }
    assert result.requests == 9
    assert result.skipped == {NO_ANSWER: 1, NOT_STORED: 1, DUPLICATE: 1}
    sky = next(r for r in result.rows if r["id"] == escalated.request_id)
    assert sky["evidence"] == {"gate": {"simple": 0.1, "medium": 1.0}}
    assert first_try.request_id != next(r["id"] for r in result.rows if r["prompt"] == "Explain how tides work")  # the later one
    assert "skipped 3: " in result.summary() and "prompt not stored in full (1)" in result.summary()


def test_label_rules_on_constructed_requests(db_path):
    parts = {
        "capped": request([attempt("simple", "rejected", quality=0.2), attempt("medium", "best_effort", quality=0.4)],
                          prompt="capped at medium"),  # --max-tier medium, nothing passed: the tier above
        "plain": request([attempt("medium")], prompt="plain ask", command="ask"),
        "top-bad": request([attempt("complex")], prompt="top tier, rated bad", command="ask"),
        "good": request([attempt("medium")], prompt="rated good", command="ask"),
    }
    with open_ledger(db_path) as ledger:
        ledger.record(merge(*parts.values()))
        record(ledger, parts["top-bad"]["calls"][0]["id"], "bad", tiers=TIERS)
        record(ledger, parts["good"]["calls"][0]["id"], "good", tiers=TIERS)
    result = _labels(db_path)
    assert {r["prompt"]: r["label"] for r in result.rows} == {"capped at medium": "complex", "rated good": "medium"}
    assert result.skipped == {NO_OUTCOME: 1, TOP_BAD: 1}


def test_feedback_beats_a_later_cascade_of_the_same_prompt(db_path):
    earlier = request([attempt("simple")], prompt="same prompt", command="ask", request_id="R1")
    later = request([attempt("simple", quality=1.0)], prompt="same prompt", request_id="R2")
    with open_ledger(db_path) as ledger:
        ledger.record(merge(earlier, later))
        record(ledger, "R1-00", "bad", should_be="complex", tiers=TIERS)
    result = _labels(db_path)
    assert [(r["id"], r["label"]) for r in result.rows] == [("R1", "complex")]
    assert result.skipped == {DUPLICATE: 1}


def test_mmr_labels_writes_jsonl_that_eval_and_train_read(db_path, mmr, tmp_path):
    with open_ledger(db_path) as ledger:
        ledger.record(merge(*[request([attempt("simple", "rejected", quality=0.1), attempt("medium", quality=1.0)], prompt=f"p{i}")
                              for i in range(3)], request([attempt("simple")], prompt="no gate", command="ask")))
    out = tmp_path / "labels.jsonl"
    result = mmr("labels", "--since", "1d", "-o", str(out))
    assert result.returncode == 0, result.stderr
    assert "3 labelled rows from 4 requests; skipped 1: answered without a quality gate or feedback (1)" in result.stderr.decode()
    rows, problems = read_labelled(out, TIERS)
    assert [(r.prompt, r.label) for r in rows] == [("p0", "medium"), ("p1", "medium"), ("p2", "medium")] and not problems
    stdout = mmr("labels", "--since", "1d").stdout.decode().splitlines()
    assert [json.loads(line)["label"] for line in stdout] == ["medium"] * 3


def test_train_from_ledger(db_path, mmr, tmp_path):
    require_ml()  # mmr train needs the ml extra
    easy = ["What is {}?", "Define {}", "Translate {} to French"]
    hard = ["Prove that {} holds for every n, step by step", "Write code to compute {} and analyze its complexity"]
    words = ["a monad", "entropy", "a prime", "a graph", "recursion", "a tensor", "a lattice", "an integral"]
    parts = []
    for i, word in enumerate(words):
        for template in easy:
            parts.append(request([attempt("simple", quality=1.0)], prompt=template.format(word)))
        for template in hard:
            parts.append(request([attempt("simple", "rejected", quality=0.1), attempt("medium", "rejected", quality=0.3),
                                  attempt("complex", quality=1.0)], prompt=template.format(word)))
    parts.append(request([attempt("simple")], prompt="hashed", stored="hash"))
    with open_ledger(db_path) as ledger:
        ledger.record(merge(*parts))
    model = tmp_path / "router.json"
    result = mmr("train", "--from-ledger", "--since", "2d", "-o", str(model), "--folds", "3")
    assert result.returncode == 0, result.stderr
    assert "40 labelled rows from 41 requests; skipped 1: prompt not stored in full (1)" in result.stderr.decode()
    trained = json.loads(model.read_text())
    assert trained["training"]["rows"] == 40 and trained["training"]["labels"] == {"simple": 24, "medium": 0, "complex": 16}


@pytest.mark.parametrize("args, message", [
    (["train", "-o", "m.json"], "give a labelled FILE or --from-ledger (one of the two)"),
    (["train", "x.jsonl", "--from-ledger", "-o", "m.json"], "give a labelled FILE or --from-ledger (one of the two)"),
    (["train", "--from-ledger"], "give --output FILE"),
    (["labels", "--since", "soon"], "--since: cannot read 'soon'"),
])
def test_bad_label_options(mmr, db_path, args, message):
    open_ledger(db_path).close()
    result = mmr(*args)
    assert result.returncode == 2 and message in result.stderr.decode(), result.stderr


def test_labels_on_stdout_hold_no_raw_control_or_bidi_character(db_path, mmr):
    hostile = "Evil \u202egnirts\u0085 \x7f prompt"
    with open_ledger(db_path) as ledger:
        ledger.record(request([attempt("simple", "rejected", quality=0.1), attempt("medium", quality=1.0)], prompt=hostile))
    result = mmr("labels", "--since", "1d")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert "\u202e" not in out and "\u0085" not in out and "\x7f" not in out
    assert [json.loads(line)["prompt"] for line in out.splitlines()] == [hostile]  # still exactly the prompt
