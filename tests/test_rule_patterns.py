"""Rule patterns cannot hang classification: the config refuses patterns whose backtracking
can blow up, and the rules look at a bounded slice of a long prompt. Through the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from router_cli.config.patterns import backtracking_risk
from router_cli.config.schema import SEED_COMPLEX_PATTERNS, SEED_SIMPLE_PATTERNS
from router_cli.errors import EXIT_CONFIG

CONFIG = """\
version: 1
providers:
  anthropic: {{type: anthropic}}
tiers:
  - name: simple
    models: [{{provider: anthropic, model: claude-small, price: {{input: 1, output: 1}}}}]
  - name: complex
    models: [{{provider: anthropic, model: claude-big, price: {{input: 1, output: 1}}}}]
classifier:
  rules:
    patterns:
      complex: ["debug", {pattern}]
"""


def classify(config, prompt: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """``mmr classify --json --classifier rules`` with the prompt on stdin; a hang fails the test (generous timeout)
    instead of blocking it."""
    return subprocess.run([sys.executable, "-m", "router_cli", "classify", "--json", "--classifier", "rules", "--config", str(config)],
                          input=prompt.encode(), capture_output=True, timeout=timeout)


def write(tmp_path, pattern: str):
    path = tmp_path / "tiers.yaml"
    path.write_text(CONFIG.format(pattern=json.dumps(pattern)))
    return path


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(a*)*", r"(a|a)*", r"(a|ab)*c", r"(\w+\s?)+$", r"a*a*$",
                                     r"\s*\s*$", r".*a.*b.*c", r"(a)\1"])
def test_a_pattern_that_can_hang_is_refused_at_config_load(tmp_path, pattern):
    path = write(tmp_path, pattern)
    result = classify(path, "hello")
    assert result.returncode == EXIT_CONFIG, result.stderr
    (line,) = result.stderr.decode().splitlines()
    assert line.startswith(f"Error: {path}: classifier.rules.patterns.complex[1]: pattern {pattern!r} could hang on a long prompt: ")


@pytest.mark.parametrize("pattern", [*SEED_COMPLEX_PATTERNS, *SEED_SIMPLE_PATTERNS, r"(foo|bar)+", r"[a-z]+\s*\d+",
                                     r"\w+@\w+\.\w+", r"please\s+(write|draft)\s+an?\s+essay", r"\b(sql|regex)s?\b",
                                     r"^\s*$", r"(hi|hello)+", r"\bv\d+\.\d+"])
def test_ordinary_patterns_are_accepted(pattern):
    assert backtracking_risk(pattern) is None


@pytest.mark.parametrize("prompt,tier", [
    ("compar and" * 10_000, "medium"),  # the seed's compar.*and.*contrast: cubic on this, unbounded
    ("x" * 100_000 + " summarize this", "simple"),  # the end of a long prompt is still read
    ("please debug this: " + "x" * 100_000, "complex"),  # and its start
])
def test_a_100kb_prompt_with_the_seed_patterns_is_classified(prompt, tier):
    from tests.conftest import ROOT

    result = classify(ROOT / "tiers.example.yaml", prompt)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tier"] == tier


def test_the_slowest_accepted_pattern_finishes_on_a_hostile_100kb_prompt(tmp_path):
    path = write(tmp_path, r".*abc.*def")
    assert backtracking_risk(r".*abc.*def") is None
    result = classify(path, "abc" * 33_000)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["tier"] == "complex"  # no match; the default tier of two is the second
