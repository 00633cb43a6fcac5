"""The knn and blend routers: mmr train --router knn|blend, then mmr classify / mmr eval with the files it wrote;
the model files' checks; calibration to a lower bootstrap bound (--confidence)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from router_cli.errors import EXIT_CONFIG
from tests.conftest import need_embed

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "tiers.example.yaml"
SUBJECTS = ["friend", "neighbour", "team", "family", "colleague", "teacher", "cousin", "coach", "doctor", "pilot"]


@pytest.fixture(autouse=True)
def embed_parts():
    need_embed()


def rows() -> list[dict]:
    """Greetings every tier answers; summaries from medium up; proofs only complex answers."""
    out = []
    for s in SUBJECTS:
        out.append({"prompt": f"Say hello to my {s} and wish them a good morning",
                    "outcomes": {"simple": 1, "medium": 1, "complex": 1}})
        out.append({"prompt": f"Summarise the quarterly sales report my {s} wrote in three bullet points",
                    "outcomes": {"simple": 0, "medium": 1, "complex": 1}})
        out.append({"prompt": f"Prove rigorously the number theory theorem my {s} stated about infinitely many primes",
                    "outcomes": {"simple": 0, "medium": 0, "complex": 1}})
    for r in out:
        r["label"] = next(t for t in ("simple", "medium", "complex") if r["outcomes"][t])
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """mmr train --router knn and --router blend on the same file (run once: each embeds the prompts)."""
    import subprocess
    import sys

    d = tmp_path_factory.mktemp("knn")
    data = d / "labelled.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    out = {}
    for router, name in (("knn", "knn.npz"), ("blend", "blend.json")):
        result = subprocess.run([sys.executable, "-m", "router_cli", "train", str(data), "--router", router,
                                 "-o", str(d / name), "--config", str(EXAMPLE), "--folds", "3"],
                                capture_output=True, timeout=300)
        assert result.returncode == 0, result.stderr.decode()
        out[router] = (d / name, result.stderr.decode())
    out["data"] = (data, "")
    return out


def test_train_knn_reports_expected_and_guaranteed_quality(trained):
    path, stderr = trained["knn"]
    assert re.search(r"wrote .*knn.npz: 30 rows; k (25|50|100|200|400), lambda ", stderr), stderr
    assert "expected " in stderr and "of premium quality, guaranteed at least " in stderr
    assert "at 90% confidence on 30 rows, each routed by a router fitted without it" in stderr  # cross-fitted
    path, stderr = trained["blend"]
    held = json.loads(path.read_text())["training"]["held_out"]
    assert held["method"] == "cross-fit" and held["calibration_rows"] == 30 and held["confidence"] == 0.9
    assert "at 90% confidence on 30 rows, each routed by a router fitted without it" in stderr


def test_knn_lambda_is_the_bound_on_every_rows_out_of_fold_estimates(trained):
    """Cross-fitted knn: lambda and its record are the bound on the out-of-fold estimates at the chosen k,
    not on the estimates of the model that ships (which keeps, and so has seen, every row)."""
    import numpy as np

    from router_cli.classify.calibration import calibrate_bound
    from router_cli.classify.knn_train import embed_rows, knn_out_of_fold
    from router_cli.classify.ml_train import fold_splits, priced, targets
    from router_cli.config import load_config
    from router_cli.labelled import read_labelled

    path, _ = trained["knn"]
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(str(z["header"]))
    config = load_config(EXAMPLE)
    labelled, _ = read_labelled(trained["data"][0], config.tier_names)
    config = priced(labelled, config)
    _, quality, costs = targets(labelled, config)
    q, c = knn_out_of_fold(np, embed_rows(labelled), quality, costs, fold_splits(len(labelled), 3, 0), header["k"])
    lam, held = calibrate_bound(q, c, quality, costs, config.tier_names.index(config.baseline_tier), 0.95, 0.9, seed=0)
    assert header["lambda"] == lam and header["training"]["held_out"] == held


@pytest.mark.parametrize("prompt, tier", [
    ("Say hello to my grandmother and wish her a good morning", "simple"),
    ("Summarise the annual sales report in three bullet points", "medium"),
    ("Prove rigorously that there are infinitely many primes", "complex"),
])
@pytest.mark.parametrize("router", ["knn", "blend"])
def test_classify_with_the_trained_router(trained, mmr, router, prompt, tier):
    path, _ = trained[router]
    result = mmr("classify", "--classifier", router, f"--{router}-model", str(path), "--config", str(EXAMPLE),
                 "--json", prompt, db=False)
    assert result.returncode == 0, result.stderr.decode()
    out = json.loads(result.stdout)
    assert out["tier"] == tier and out["classifier"] == router


def test_eval_scores_knn_and_blend_next_to_ml(trained, mmr):
    data, _ = trained["data"]
    result = mmr("eval", str(data), "--classifier", "ml,knn,blend", "--knn-model", str(trained["knn"][0]),
                 "--blend-model", str(trained["blend"][0]), "--config", str(EXAMPLE), "--json", db=False)
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout)["classifiers"]
    # On its own training data the vote is right on every row: premium's quality at a third of the cost saved or more.
    assert report["knn"]["quality_vs_premium"] == 1.0 and report["knn"]["savings_vs_premium"] > 0.3
    assert report["blend"]["quality_vs_premium"] >= 0.95 and "apgr" in report["knn"]


def test_an_edited_knn_file_is_refused(trained, mmr, tmp_path):
    import numpy as np

    path, _ = trained["knn"]
    with np.load(path, allow_pickle=False) as z:
        arrays = {name: z[name] for name in z.files}
    header = json.loads(str(arrays["header"]))
    header["lambda"] = 0.0
    edited = tmp_path / "edited.npz"
    np.savez(edited, **{**arrays, "header": np.array(json.dumps(header))})
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, **{**arrays, "vectors": np.array([object()], dtype=object)})
    for bad, message in ((edited, "the checksum does not match"), (pickled, "not an mmr knn model file")):
        result = mmr("classify", "--classifier", "knn", "--knn-model", str(bad), "--config", str(EXAMPLE), "hi", db=False)
        err = result.stderr.decode()
        assert result.returncode == EXIT_CONFIG and err.count("\n") == 1 and message in err and str(bad) in err


def test_a_blend_whose_part_changed_is_refused(trained, mmr, tmp_path):
    import shutil

    path, _ = trained["blend"]
    for f in path.parent.glob("blend.*"):
        shutil.copy(f, tmp_path / f.name)
    (tmp_path / "blend.ml.json").write_text((tmp_path / "blend.ml.json").read_text().replace('"lambda":', '"lambda": '))
    result = mmr("classify", "--classifier", "blend", "--blend-model", str(tmp_path / "blend.json"),
                 "--config", str(EXAMPLE), "hi", db=False)
    err = result.stderr.decode()
    assert result.returncode == EXIT_CONFIG and "blend.ml.json: missing or changed since the blend was trained" in err


def test_the_bound_is_below_the_mean_and_costs_more():
    """Calibrating to the lower bootstrap bound picks a setting whose held-out mean is at least as high."""
    import numpy as np

    from router_cli.classify.ml_train import calibrate

    rng = np.random.default_rng(3)
    n = 400
    difficulty = rng.random(n)
    quality = np.stack([(rng.random(n) > difficulty).astype(float), np.ones(n)], axis=1)
    costs = np.tile([1.0, 10.0], (n, 1))
    pred_q = np.stack([1 - difficulty + rng.normal(0, 0.2, n), np.ones(n)], axis=1)
    pred_c = costs.copy()
    _, mean = calibrate(pred_q, pred_c, quality, costs, 1, 0.9)
    _, bound = calibrate(pred_q, pred_c, quality, costs, 1, 0.9, confidence=0.9)
    assert "guaranteed_quality_vs_premium" not in mean
    assert bound["confidence"] == 0.9 and bound["guaranteed_quality_vs_premium"] >= 0.9
    assert bound["guaranteed_quality_vs_premium"] < bound["quality_vs_premium"]
    assert bound["quality_vs_premium"] > mean["quality_vs_premium"] and bound["savings_vs_premium"] < mean["savings_vs_premium"]


def test_ask_routes_with_knn_from_the_config(trained, server, mmr, tmp_path):
    """mmr ask loads the model in a thread while the SDKs import; the answer and the ledger row say knn routed it."""
    from tests.conftest import ledger_rows, write_config

    config = write_config(tmp_path / "knn.yaml", server.url, extra=f"classifier:\n  name: knn\n  knn_model: {trained['knn'][0]}\n")
    db = tmp_path / "ask.db"
    result = mmr("ask", "--json", "--config", str(config), "--db", str(db),
                 "Prove rigorously that there are infinitely many primes")
    assert result.returncode == 0, result.stderr.decode()
    out = json.loads(result.stdout)
    assert out["classifier"] == "knn" and out["tier"] == "complex" and out["model"] == "claude-big"
    assert [(r["classifier"], r["routed_tier"]) for r in ledger_rows(db)] == [("knn", "complex")]


def test_eval_reports_the_quality_bound(trained, mmr):
    data, _ = trained["data"]
    result = mmr("eval", str(data), "--classifier", "rules", "--config", str(EXAMPLE), "--json", db=False)
    rules = json.loads(result.stdout)["classifiers"]["rules"]
    bound = rules["quality_vs_premium_bound"]
    assert bound["confidence"] == 0.9 and bound["lower"] < rules["quality_vs_premium"]
    table = mmr("eval", str(data), "--classifier", "rules", "--config", str(EXAMPLE), db=False).stdout.decode()
    assert f"at least {bound['lower']:.1%} at 90% confidence" in table
    off = json.loads(mmr("eval", str(data), "--classifier", "rules", "--config", str(EXAMPLE), "--json",
                         "--confidence", "0", db=False).stdout)
    assert "quality_vs_premium_bound" not in off["classifiers"]["rules"]


def test_the_bound_of_a_router_that_always_matches_premium_is_its_quality():
    from router_cli.labelled import LabelledRow
    from router_cli.reports.evaluate import Prediction, quality_bound

    rows = [LabelledRow(f"p{i}", "complex", i, outcomes={"simple": 0.0, "medium": 0.0, "complex": float(i % 2)})
            for i in range(50)]
    assert quality_bound(rows, [Prediction("complex", None, 0.0)] * 50, "complex", 0.9) == 1.0
    assert quality_bound(rows, [Prediction("simple", None, 0.0)] * 50, "complex", 0.9) == 0.0
