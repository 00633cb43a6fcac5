"""Reports read from the ledger and from labelled data."""
