"""The ``mmr`` commands, one module per group; each parses, calls the core, renders."""
