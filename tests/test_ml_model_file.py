"""What loading an ml model file can and cannot do: only a regular file under the size cap is
read, sizes are bounded before any array is read, and the checksum is documented as what it
is (corruption, not tampering). Through the real CLI where a user would meet it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from router_cli.classify.ml import DEFAULT_MODEL, MAX_MODEL_BYTES, MAX_TERMS, MLModel, checksum
from router_cli.errors import EXIT_CONFIG, ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "tiers.example.yaml"
TIERS = ["simple", "medium", "complex"]


def classify_with(model: str | Path, timeout: float = 30) -> subprocess.CompletedProcess:
    """``mmr classify --classifier ml --ml-model MODEL hi``; a hang fails the test instead of blocking it."""
    return subprocess.run([sys.executable, "-m", "router_cli", "classify", "--classifier", "ml", "--ml-model", str(model),
                           "--config", str(EXAMPLE), "hi"], capture_output=True, timeout=timeout)


def assert_config_error(result, text: str):
    assert result.returncode == EXIT_CONFIG, result.stderr
    (line,) = result.stderr.decode().splitlines()
    assert line.startswith("Error: ") and text in line, line


def test_a_device_is_refused_not_read():
    assert_config_error(classify_with("/dev/zero"), "/dev/zero: not a regular file")


def test_a_fifo_is_refused_not_waited_on(tmp_path):
    fifo = tmp_path / "model.fifo"
    os.mkfifo(fifo)
    assert_config_error(classify_with(fifo), f"{fifo}: not a regular file")


def test_a_directory_is_refused(tmp_path):
    assert_config_error(classify_with(tmp_path), f"{tmp_path}: not a regular file")


def test_a_file_over_the_cap_is_refused_before_it_is_parsed(tmp_path):
    path = tmp_path / "big.json"
    with path.open("wb") as f:
        f.truncate(MAX_MODEL_BYTES + 1)  # sparse: no 16 MiB written
    assert_config_error(classify_with(path), f"{MAX_MODEL_BYTES + 1:,} bytes, more than a model file can be (16 MiB at most)")


def test_the_cap_is_far_above_the_shipped_model():
    assert DEFAULT_MODEL.stat().st_size * 50 < MAX_MODEL_BYTES


def _model_with_terms(n: int) -> dict:
    """The shipped model grown to ``n`` terms, consistent and re-signed: what a forger can make."""
    data = json.loads(DEFAULT_MODEL.read_text())
    vectorizer = data["vectorizer"]
    extra = range(len(vectorizer["idf"]), n)
    vectorizer["vocabulary"].update({f"forged{i}": i for i in extra})
    vectorizer["idf"] += [1.0] * len(extra)
    for part in ("quality", "cost"):
        for model in data[part].values():
            shape = model["coef"][-15:]
            model["coef"] = model["coef"][:-15] + [0.0] * len(extra) + shape
    del data["checksum"]
    data["checksum"] = checksum(data)
    return data


def test_a_model_with_more_terms_than_training_keeps_is_refused(tmp_path):
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(_model_with_terms(MAX_TERMS + 1000), separators=(",", ":")))
    assert path.stat().st_size < MAX_MODEL_BYTES
    assert_config_error(classify_with(path), f"malformed model: vectorizer.idf: {MAX_TERMS + 1000:,} terms, more than the 20,000")


def test_a_model_at_the_term_limit_loads(tmp_path):
    path = tmp_path / "full.json"
    path.write_text(json.dumps(_model_with_terms(MAX_TERMS), separators=(",", ":")))
    assert len(MLModel.load(path, TIERS).idf) == MAX_TERMS


def test_too_many_tiers_is_refused_before_the_checksum(tmp_path):
    data = json.loads(DEFAULT_MODEL.read_text())
    data["tiers"] = [f"t{i}" for i in range(101)]  # checksum left stale: the size check comes first
    path = tmp_path / "tiers.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="tiers: 101 tiers, more than the 100 a model may have"):
        MLModel.load(path)


def test_a_forged_model_with_a_fresh_checksum_loads_and_the_docs_say_so(tmp_path):
    # The checksum cannot stop this: the docs must not claim it does.
    data = json.loads(DEFAULT_MODEL.read_text())
    data["lambda"] = 0.0  # quality at any price: the top tier wins whenever it is likely to be better
    del data["checksum"]
    data["checksum"] = checksum(data)
    path = tmp_path / "forged.json"
    path.write_text(json.dumps(data))
    assert MLModel.load(path, TIERS).lam == 0.0
    routing = " ".join((ROOT / "docs" / "routing.md").read_text().split())
    assert "forged with a fresh checksum is refused" not in routing
    assert "The checksum detects corruption (a truncated file, a hand edit), **not tampering**" in routing
    assert "plain JSON, never pickle" in routing
