"""Experiments: config validation, deterministic assignment, the variant applied and recorded, --by variant."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest

from router_cli import cascade
from router_cli.config import load_config, parse_config
from router_cli.reports.costs import cost_report
from router_cli.errors import ConfigError
from router_cli.ledger import open_ledger
from router_cli.policy.experiments import apply, assign, bucket, pick
from router_cli import Router
from tests.conftest import ROOT, TEST_CONFIG, ledger_rows, write_config
from tests.ledger_factory import NOW, attempt, merge, request
from tests.provider_server import error, reply

TWO_ARMS = """
experiments:
  mid-models:
    variants:
      control: {weight: 1}
      gpt: {weight: 3, tiers: {medium: [{provider: openai, model: gpt-mid, price: {input: 2.50, output: 10.00}}]}}
"""


# The variants of user-0 ... user-11 in mid-models (weights control 1 : gpt 3), pinned once.
PINNED_USERS = ["gpt"] * 6 + ["control"] * 4 + ["gpt"] * 2


def _config(extra: str, url: str = "http://127.0.0.1:9"):
    return parse_config(TEST_CONFIG.format(url=url, timeout=2) + extra, "t.yaml")


def test_experiments_parse():
    config = _config(TWO_ARMS + """
  ml-thresholds:
    variants:
      control: {weight: 50}
      strict: {weight: 50, classifier: ml, thresholds: {simple: 0.8, medium: 0.6}}
""")
    assert [e.name for e in config.experiments] == ["mid-models", "ml-thresholds"]
    gpt = config.experiments[0].variants[1]
    assert gpt.weight == 3 and [m.model for m in gpt.tiers["medium"]] == ["gpt-mid"]
    assert config.experiments[1].variants[1].thresholds == {"simple": 0.8, "medium": 0.6}


@pytest.mark.parametrize("extra, message", [
    ("experiments:\n  e:\n    variants:\n      a: {weight: 0}\n      b: {weight: 0}\n",
     "t.yaml: experiments.e.variants: the weights must sum to a positive number (they sum to 0)"),
    ("experiments:\n  e:\n    variants:\n      a: {weight: -1}\n",
     "t.yaml: experiments.e.variants.a.weight: must be a number between 0 and 1e+06"),
    ("experiments:\n  e:\n    variants:\n      a: {}\n", "t.yaml: experiments.e.variants.a.weight: required key is missing"),
    ("experiments:\n  e:\n    variants: {}\n", "t.yaml: experiments.e.variants: at least one variant is required"),
    ("experiments:\n  e:\n    variants:\n      a: {weight: 1, classifier: magic}\n",
     "t.yaml: experiments.e.variants.a.classifier: unknown classifier 'magic'"),
    ("experiments:\n  e:\n    variants:\n      a: {weight: 1, thresholds: {complex: 0.5}}\n",
     "t.yaml: experiments.e.variants.a.thresholds.complex: unknown key (allowed: medium, simple)"),
    ("experiments:\n  e:\n    variants:\n      on: {weight: 1}\n",
     "t.yaml: experiments.e.variants.True: a variant name must be a word (letters, digits, _ . -); YAML reads True as a boolean"),
    ("experiments:\n  e:\n    variants:\n      a: {weight: 1, colour: red}\n", "t.yaml: experiments.e.variants.a.colour: unknown key"),
    ("experiments:\n  e:\n    variants:\n      a: {weight: 1, tiers: {medium: [{provider: nobody, model: x, price: {input: 1, output: 1}}]}}\n",
     "t.yaml: experiments.e.variants.a.tiers.medium[0].provider: unknown provider 'nobody'"),
    ("experiments:\n  e:\n    variants:\n      a: {weight: 1, classifier: ml}\n  f:\n    variants:\n      b: {weight: 1, thresholds: {simple: 0.5}}\n",
     "t.yaml: experiments.f.variants.b.thresholds: experiment 'e' already changes the classifier; two experiments may not claim the same field"),
    (TWO_ARMS + "  other:\n    variants:\n      x: {weight: 1, tiers: {medium: [{provider: anthropic, model: y, price: {input: 1, output: 1}}]}}\n",
     "t.yaml: experiments.other.variants.x.tiers.medium: experiment 'mid-models' already changes tier medium's models"),
])
def test_bad_experiments_are_clear_errors(extra, message):
    with pytest.raises(ConfigError) as e:
        _config(extra)
    assert str(e.value).startswith(message)


def test_assignment_is_deterministic_and_pinned():
    config = _config(TWO_ARMS)
    experiment = config.experiments[0]
    # Pinned: a change to the hashing would silently move users between variants. Weights 1:3 give
    # control [0, 0.25) and gpt [0.25, 1); alice's bucket, 0.639..., falls in gpt's.
    assert bucket("mid-models", "alice") == 0.6391766722778909
    assert pick(experiment, "alice").name == "gpt"
    assert assign(config.experiments, "alice").label == "mid-models/gpt"
    # The same in fresh processes under other string-hash seeds: nothing rests on Python's hash() or process state.
    code = ("from tests.test_experiments import _config, TWO_ARMS; from router_cli.policy.experiments import pick; "
            "e = _config(TWO_ARMS).experiments[0]; print(' '.join(pick(e, f'user-{i}').name for i in range(12)))")
    for seed in ("0", "1", "4242"):
        out = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONHASHSEED": seed}, cwd=ROOT,
                             capture_output=True, text=True, timeout=60, check=True).stdout.split()
        assert out == PINNED_USERS


def test_split_proportions_follow_the_weights_over_many_users():
    config = _config(TWO_ARMS)
    counts = Counter(pick(config.experiments[0], f"user-{i}").name for i in range(20000))
    assert counts["gpt"] / 20000 == pytest.approx(0.75, abs=0.01)  # 1:3; the binomial s.d. is 0.003


ANOTHER_EXPERIMENT = """
  judges:
    variants:
      a: {weight: 1}
      b: {weight: 1, classifier: ml}
"""


def test_adding_users_does_not_move_the_ones_already_assigned(server, tmp_path, db_path):
    first = [f"user-{i}" for i in range(12)]
    config = load_config(write_config(tmp_path / "t.yaml", server.url, extra=TWO_ARMS))
    with Router(config, db_path, sleep=lambda s: None) as router:
        before = {u: router.ask("hello", tier="medium", user=u).to_json()["variant"] for u in first}
        for i in range(30):  # more users arrive, and the ledger fills with their rows
            router.ask("hello", tier="medium", user=f"newcomer-{i}")
        again = {u: router.ask("hello", tier="medium", user=u).to_json()["variant"] for u in first}
    assert again == before == {u: f"mid-models/{v}" for u, v in zip(first, PINNED_USERS)}
    # A later config adds an experiment and reprices an unrelated tier; a new router, the same ledger.
    changed = write_config(tmp_path / "t2.yaml", server.url, extra=TWO_ARMS + ANOTHER_EXPERIMENT)
    changed.write_text(changed.read_text().replace("price: {input: 0.80, output: 4.00}", "price: {input: 0.90, output: 4.50}"))
    with Router(load_config(changed), db_path, sleep=lambda s: None) as router:
        later = {u: router.ask("hello", tier="medium", user=u).to_json()["variant"].split(",")[0] for u in first}
    assert later == before
    stored = {(r["user"], r["variant"].split(",")[0]) for r in ledger_rows(db_path) if r["user"] in first}
    assert stored == set(before.items())


def test_experiments_are_assigned_independently():
    config = _config("""
experiments:
  a:
    variants: {x: {weight: 1}, y: {weight: 1, classifier: ml}}
  b:
    variants: {p: {weight: 1}, q: {weight: 1, tiers: {simple: [{provider: openai, model: gpt-small, price: {input: 1, output: 1}}]}}}
""")
    cells = Counter(assign(config.experiments, f"u{i}").label for i in range(8000))
    assert set(cells) == {"a/x,b/p", "a/x,b/q", "a/y,b/p", "a/y,b/q"}
    assert all(v / 8000 == pytest.approx(0.25, abs=0.02) for v in cells.values())


def test_a_zero_weight_variant_gets_nobody():
    config = _config("experiments:\n  e:\n    variants:\n      paused: {weight: 0, classifier: ml}\n      live: {weight: 2}\n")
    assert {pick(config.experiments[0], f"u{i}").name for i in range(2000)} == {"live"}


def test_apply_overrides_only_what_the_variant_names():
    config = _config(TWO_ARMS)
    gpt = next(a for a in (assign(config.experiments, f"u{i}") for i in range(50)) if a.chosen[0][1].name == "gpt")
    changed = apply(config, gpt)
    assert [m.model for m in changed.tier("medium").models] == ["gpt-mid"]
    assert changed.tier("simple") == config.tier("simple") and changed.classifier == config.classifier
    assert changed.config_hash == config.config_hash


def _user_in(config, variant: str) -> str:
    return next(f"user-{i}" for i in range(1000) if pick(config.experiments[0], f"user-{i}").name == variant)


def test_the_router_applies_the_variant_and_records_it_on_every_row(server, tmp_path, db_path):
    config = load_config(write_config(tmp_path / "t.yaml", server.url, extra=TWO_ARMS))
    server.script("gpt-mid", error(500), error(500), error(500))  # the variant's model fails: several rows per request
    with Router(config, db_path, sleep=lambda s: None) as router:
        treated = router.ask("hello there", tier="medium", user=_user_in(config, "gpt"))
        control = router.ask("hello there", tier="medium", user=_user_in(config, "control"))
    assert treated.final.model == "claude-big"  # the variant's only medium model failed: fell back up
    assert control.final.model == "claude-mid"
    rows = ledger_rows(db_path)
    assert (treated.to_json()["variant"], control.to_json()["variant"]) == ("mid-models/gpt", "mid-models/control")
    variants = {(r["request_id"], r["variant"]) for r in rows}
    assert variants == {(treated.request_id, "mid-models/gpt"), (control.request_id, "mid-models/control")}
    assert len([r for r in rows if r["request_id"] == treated.request_id]) > 1


def test_without_a_user_the_request_id_decides(server, tmp_path, db_path):
    config = load_config(write_config(tmp_path / "t.yaml", server.url, extra=TWO_ARMS))
    with Router(config, db_path) as router:
        answers = [router.ask("hello", tier="medium") for _ in range(6)]
    for a in answers:
        expected = pick(config.experiments[0], a.request_id)
        assert a.final.model == ("gpt-mid" if expected.name == "gpt" else "claude-mid")
    assert {r["variant"] for r in ledger_rows(db_path)} <= {"mid-models/gpt", "mid-models/control"}


def test_cascades_run_under_the_variant_and_record_thresholds(server, tmp_path, db_path):
    config = load_config(write_config(tmp_path / "t.yaml", server.url, extra=TWO_ARMS + "cascade: {thresholds: {simple: 0.9}}\n"))
    server.script("claude-small", reply("I don't know."))
    with Router(config, db_path) as router:
        answer = cascade(router, "Explain why the sky is blue", gate="heuristic", user=_user_in(config, "gpt"))
    assert answer.final.model == "gpt-mid"
    rows = ledger_rows(db_path)
    assert {r["variant"] for r in rows} == {"mid-models/gpt"}
    assert {r["thresholds_json"] for r in rows} == {json.dumps({"gate": {"simple": 0.9, "medium": 0.7, "complex": 0.7}})}


def test_a_threshold_variant_reaches_the_ml_classifier(tmp_path):
    config = _config("experiments:\n  e:\n    variants:\n      strict: {weight: 1, classifier: ml, thresholds: {simple: 0.99, medium: 0.99}}\n")
    routed = Router(config).decide("What is the capital of France?")
    strict = Router(apply(config, assign(config.experiments, "anyone"))).decide("What is the capital of France?")
    assert routed.classifier == "rules" and strict.classifier == "ml"
    assert strict.thresholds == {"simple": 0.99, "medium": 0.99}
    assert strict.tier == "complex"  # nothing clears 0.99


# ------------------------------------------------------------------ the per-variant report


def _traffic(ledger, variant: str, requests: int, errors: int, escalations: int, cost: str, rated: int = 0, good: int = 0):
    parts = []
    for i in range(requests):
        if i < errors:
            attempts = [attempt("simple", "error", cost="0"), attempt("simple", cost=cost)]
        elif i < errors + escalations:
            attempts = [attempt("simple", "rejected", quality=0.1, cost=cost), attempt("medium", quality=1.0, cost=cost)]
        else:
            attempts = [attempt("simple", cost=cost)]
        parts.append(request(attempts, variant=variant, when=NOW - timedelta(minutes=i)))
    ledger.record(merge(*parts))
    answered = [r for p in parts for r in p["calls"] if r["status"] == "ok"]
    feedback = [{"id": f"F{variant}{i:05d}", "call_id": answered[i]["id"], "request_id": answered[i]["request_id"],
                 "datetime_utc": answered[i]["datetime_utc"], "verdict": "good" if i < good else "bad",
                 "should_be": None if i < good else "complex", "needs_higher": None if i < good else 1, "note": None, "user": None}
                for i in range(rated)]
    if feedback:
        ledger.record({"feedback": feedback})


def test_by_variant_compares_side_by_side_and_says_what_is_not_yet_significant(db_path):
    with open_ledger(db_path) as ledger:
        _traffic(ledger, "exp/control", 400, errors=8, escalations=40, cost="0.002", rated=40, good=30)
        _traffic(ledger, "exp/new", 400, errors=40, escalations=44, cost="0.002", rated=40, good=32)
        _traffic(ledger, None, 10, errors=0, escalations=0, cost="0.5")  # outside any experiment
        report = cost_report(ledger, NOW - timedelta(days=1), by=["variant"])
    rows = {r.key["variant"]: r for r in report.rows}
    control, new = rows["exp/control"], rows["exp/new"]
    assert control.requests == 400 and control.calls == 448 and control.errors == 8
    assert control.rated == 40 and control.feedback_score == 0.75 and control.misrouting_rate == 0.25
    assert control.needs_higher_share == 1.0
    assert new.spend == Decimal("0.002") * (484 - 40)  # error calls here billed nothing
    tests = report.comparison["experiments"]["exp"]["tests"]["new"]
    assert report.comparison["experiments"]["exp"]["reference"] == "control"
    assert tests["error_rate"]["significant"] and tests["error_rate"]["p_value"] < 0.001
    assert not tests["escalation_rate"]["significant"] and not tests["feedback_score"]["significant"]
    assert tests["feedback_score"]["n"] == [40, 40]
    statements = report.comparison["statements"]
    assert any(s.startswith("exp: error rate of new vs control: 8.3% vs 1.8% (484 vs 448 calls); the difference is significant")
               for s in statements), statements
    assert any(s.startswith("exp: escalation rate of new vs control: 11.0% vs 10.0% (400 vs 400 requests); not yet significant (p = ")
               for s in statements), statements
    assert any("feedback score of new vs control: 80.0% vs 75.0% (40 vs 40 rated answers); not yet significant" in s for s in statements)
    # Cost per call: every call costs the same, except error calls (free): Welch sees the difference.
    assert tests["cost_per_call"]["reference"] == "0.001964285714" and tests["cost_per_call"]["significant"]


def test_small_samples_are_never_called_significant(db_path):
    with open_ledger(db_path) as ledger:
        _traffic(ledger, "exp/a", 10, errors=0, escalations=0, cost="0.001")
        _traffic(ledger, "exp/b", 10, errors=9, escalations=0, cost="0.001")
        report = cost_report(ledger, NOW - timedelta(days=1), by=["variant"])
    test = report.comparison["experiments"]["exp"]["tests"]["b"]["error_rate"]
    assert test["p_value"] < 0.05 and not test["significant"]
    assert any("error rate of b vs a" in s and "not yet significant: fewer than 30 on a side" in s for s in report.comparison["statements"])


def test_by_variant_cli_json_and_table(db_path, mmr):
    with open_ledger(db_path) as ledger:
        _traffic(ledger, "exp/control", 40, errors=1, escalations=2, cost="0.001", rated=4, good=3)
        _traffic(ledger, "exp/new", 40, errors=1, escalations=2, cost="0.001")
    result = mmr("costs", "--by", "variant", "--json", config=False)
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {r["variant"]: r["rated"] for r in data["rows"]} == {"exp/control": 4, "exp/new": 0}
    assert {r["variant"]: r["feedback_score"] for r in data["rows"]} == {"exp/control": 0.75, "exp/new": None}
    assert "not yet significant" in " ".join(data["comparison"]["statements"])
    table = mmr("costs", "--by", "variant", config=False, env={"COLUMNS": "250"})
    text = table.stdout.decode()
    assert "Experiments" in text and "exp: error rate of new vs control: 2.3% vs 2.3% (43 vs 43 calls); not yet significant (p = 1)" in text
    assert "misrouted" in text


def test_by_variant_with_no_experiment_traffic(db_path):
    with open_ledger(db_path) as ledger:
        _traffic(ledger, None, 5, errors=0, escalations=0, cost="0.001")
        report = cost_report(ledger, NOW - timedelta(days=1), by=["variant"])
    assert report.comparison["statements"] == ["no calls in this window ran under an experiment"]


def test_a_dry_run_shows_the_users_variant(tmp_path):
    config = _config(TWO_ARMS)
    router = Router(config)
    assert router.estimate("hello", tier="medium", user=_user_in(config, "gpt")).model == "gpt-mid"
    assert router.estimate("hello", tier="medium", user=_user_in(config, "control")).model == "claude-mid"


LLM_VARIANT = """
experiments:
  judge-tier:
    variants:
      cheap-gpt: {weight: 1, classifier: llm, tiers: {simple: [{provider: openai, model: gpt-small, price: {input: 0.15, output: 0.60}, max_tokens: 64}]}}
"""


def test_an_llm_classifier_under_a_variant_asks_the_variants_cheapest_tier(server, tmp_path, db_path):
    config = load_config(write_config(tmp_path / "t.yaml", server.url, extra=LLM_VARIANT))
    server.script("gpt-small", reply("complex"))
    with Router(config, db_path) as router:
        answer = router.ask("Prove it", user="ana")
    assert answer.decision.classifier == "llm" and answer.decision.tier == "complex"
    # The classifier's call went to the variant's simple tier (gpt-small), not the base config's claude-small.
    assert [c["body"]["model"] for c in server.calls()][:1] == ["gpt-small"]
    assert not server.calls("claude-small")
    assert [(r["role"], r["model"]) for r in ledger_rows(db_path)][0] == ("classifier", "gpt-small")


def test_a_cascade_dry_run_plans_under_the_users_variant(server, tmp_path):
    config = load_config(write_config(tmp_path / "t.yaml", server.url, extra=TWO_ARMS))
    from router_cli.engine.cascade import estimate

    router = Router(config)
    assert estimate(router, "hello", tier="medium", user=_user_in(config, "gpt")).first.model == "gpt-mid"
    assert estimate(router, "hello", tier="medium", user=_user_in(config, "control")).first.model == "claude-mid"
