"""The seed's keyword rules and their YAML overrides."""

from __future__ import annotations

from pathlib import Path

import pytest

from router_cli.classify import get_classifier
from router_cli.config import load_config, parse_config

EXAMPLE = Path(__file__).resolve().parent.parent / "tiers.example.yaml"


@pytest.mark.parametrize(
    "prompt,tier,reason",
    [
        ("Hello!", "simple", "matched /^(hi|hello|hey)\\b/"),
        ("What is a monad?", "simple", "matched /^what is/"),
        ("Translate 'good morning' into French, and keep the tone polite and friendly", "simple", "matched /translate/"),
        ("Analyze the quarterly revenue figures", "complex", "matched /analyz/"),
        ("Compare and contrast TCP and UDP", "complex", "matched /compar.*and.*contrast/"),
        ("What is wrong here? Please debug it", "complex", "matched /debug/"),  # complex rules are checked first
        ("History of Rome", "simple", "short prompt"),  # 'hi' is not a greeting inside a word
        ("Tell me about the history of the Roman empire and its long decline", "medium", "no rule matched"),
    ],
)
def test_seed_rules(prompt, tier, reason):
    decision = get_classifier("rules", load_config(EXAMPLE)).classify(prompt)
    assert decision.tier == tier
    assert reason in decision.reason


def test_scores_rise_with_the_tier():
    classifier = get_classifier("rules", load_config(EXAMPLE))
    scores = [classifier.classify(p).score for p in ("hi", "Tell me about the history of the Roman empire and its long decline", "debug this")]
    assert scores == sorted(scores) and 0 <= scores[0] < scores[-1] <= 1


def test_patterns_and_cutoff_are_configurable():
    text = EXAMPLE.read_text()
    text = text.replace("      simple:\n", "      medium:\n        - recipe\n      simple:\n", 1)
    text = text.replace("short_prompt_chars: 50", "short_prompt_chars: 5", 1)
    classifier = get_classifier("rules", parse_config(text, "t.yaml"))
    assert classifier.classify("A recipe for bread").tier == "medium"
    assert classifier.classify("Tell me a joke").tier == "medium"  # no longer short


def test_every_classifier_name_the_config_accepts_is_registered():
    from router_cli.classify import base
    from router_cli.config import CLASSIFIERS

    assert sorted(base._REGISTRY) == sorted(CLASSIFIERS) == base.available_classifiers()
