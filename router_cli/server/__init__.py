"""``mmr serve``: the router as an OpenAI- and Anthropic-compatible HTTP endpoint (Starlette on uvicorn,
the ``serve`` extra). Nothing here is imported until ``mmr serve`` runs."""
