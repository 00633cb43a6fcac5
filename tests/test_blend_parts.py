"""``mmr train --router blend --parts A,B``: a blend of any two of ml, knn and rules, its weight chosen on
held-out folds; ml + rules needs neither the embed extra nor numpy at classify time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from router_cli.errors import EXIT_USAGE

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "tiers.example.yaml"


def rows() -> list[dict]:
    """Greetings every tier answers; the rest only complex answers: the seed rules send 'debug' to complex."""
    out = []
    for i in range(40):
        out.append({"prompt": f"hello there friend number {i}", "outcomes": {"simple": 1, "medium": 1, "complex": 1}})
        out.append({"prompt": f"please debug the failing job number {i}", "outcomes": {"simple": 0, "medium": 0, "complex": 1}})
    return out


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    pytest.importorskip("sklearn")
    d = tmp_path_factory.mktemp("parts")
    data = d / "train.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    result = subprocess.run([sys.executable, "-m", "router_cli", "train", str(data), "--router", "blend", "--parts", "ml,rules",
                             "-o", str(d / "blend.json"), "--config", str(EXAMPLE), "--folds", "3"],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    return d, result.stderr


def test_a_blend_of_ml_and_rules_writes_one_part_file_and_a_chosen_weight(trained):
    from router_cli.classify.blend_train import WEIGHTS

    d, stderr = trained
    data = json.loads((d / "blend.json").read_text())
    assert [p["router"] for p in data["parts"]] == ["ml", "rules"] and "file" not in data["parts"][1]
    assert (d / "blend.ml.json").exists() and not (d / "blend.knn.npz").exists()
    w = data["weights"][0]
    assert w in WEIGHTS and data["weights"] == [w, 1 - w]
    assert all(f"weight {x:g} on ml: held-out quality" in stderr for x in WEIGHTS)
    assert "guaranteed at least" in stderr  # --confidence 0.9 by default
    assert f"blend.json: 80 rows; {w:g} ml + {1 - w:g} rules, lambda " in stderr


@pytest.mark.parametrize("prompt, tier", [("hello there friend number 77", "simple"),
                                          ("please debug the failing job number 77", "complex")])
def test_classify_with_the_ml_and_rules_blend_imports_no_numpy(trained, prompt, tier):
    d, _ = trained
    code = (
        "import sys, io, json, contextlib\n"
        "from router_cli.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        f"    assert main(['classify', '--json', '--classifier', 'blend', '--blend-model', {str(d / 'blend.json')!r}, "
        f"'--config', {str(EXAMPLE)!r}, {prompt!r}]) == 0\n"
        "d = json.loads(out.getvalue())\n"
        "print(d['classifier'], d['tier'], sorted(m for m in ('numpy', 'sklearn', 'tokenizers') if m in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stdout.strip() == f"blend {tier} []", result.stderr


def test_an_edited_rules_part_is_refused(trained, mmr, tmp_path):
    from router_cli.classify.blend import blend_checksum

    d, _ = trained
    data = json.loads((d / "blend.json").read_text())
    data["parts"] = [data["parts"][1], {"router": "rules"}]
    data["checksum"] = blend_checksum(data)
    bad = d / "twice.json"
    bad.write_text(json.dumps(data))
    result = mmr("classify", "--classifier", "blend", "--blend-model", str(bad), "--config", str(EXAMPLE), "hi", db=False)
    assert result.returncode == 3 and "malformed blend file (two different parts of ml, knn and rules" in result.stderr.decode()


@pytest.mark.parametrize("args, message", [
    (["--router", "blend", "--parts", "ml,ml"], "--parts: expected two different routers of ml, knn, rules (e.g. ml,knn), got 'ml,ml'"),
    (["--router", "blend", "--parts", "ml,llm"], "--parts: expected two different routers of ml, knn, rules"),
    (["--router", "blend", "--parts", "rules"], "--parts: expected two different routers"),
    (["--parts", "ml,rules"], "--parts goes with --router blend"),
])
def test_bad_parts_are_usage_errors(tmp_path, mmr, args, message):
    data = tmp_path / "t.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows()))
    result = mmr("train", str(data), "-o", str(tmp_path / "b.json"), *args, "--config", str(EXAMPLE), db=False)
    assert result.returncode == EXIT_USAGE and message in result.stderr.decode()


def test_rules_edited_since_training_are_refused(trained, mmr, tmp_path):
    d, _ = trained
    data = json.loads((d / "blend.json").read_text())
    assert len(data["parts"][1]["sha256"]) == 64  # the rules it was trained with
    edited = tmp_path / "edited.yaml"
    text = EXAMPLE.read_text()
    assert "        - debug\n" in text
    edited.write_text(text.replace("        - debug\n", "        - debugging\n", 1))
    blend = str(d / "blend.json")
    ok = mmr("classify", "--classifier", "blend", "--blend-model", blend, "--config", str(EXAMPLE), "hi", db=False)
    assert ok.returncode == 0, ok.stderr
    result = mmr("classify", "--classifier", "blend", "--blend-model", blend, "--config", str(edited), "hi", db=False)
    assert result.returncode == 3
    assert result.stderr.decode().strip().endswith(
        "blend.json: the config's classifier.rules changed since the blend was trained (SHA-256 differs); retrain the blend")
