"""Classifiers turn a prompt into a :class:`Decision` (tier, score, reason)."""

from .base import NEEDS_CALLER, Classifier, Decision, ModelCaller, ModelReply, available_classifiers, get_classifier

__all__ = ["NEEDS_CALLER", "Classifier", "Decision", "ModelCaller", "ModelReply", "available_classifiers", "get_classifier"]
