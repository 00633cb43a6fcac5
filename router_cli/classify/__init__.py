"""Classifiers turn a prompt into a :class:`Decision` (tier, score, reason)."""

from .base import Classifier, Decision, available_classifiers, get_classifier

__all__ = ["Classifier", "Decision", "available_classifiers", "get_classifier"]
