"""The version of mmr (recorded on every ledger row and in trained models)."""

__version__ = "0.1.0"
