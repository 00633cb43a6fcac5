"""The engine: one request from decision to ledger rows (see engine/router.py)."""
