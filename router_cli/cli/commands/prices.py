"""``mmr prices``: every configured model's price per token class, and where it came from."""

from __future__ import annotations

from ..options import ConfigOption, JsonOption


def prices(json_output: JsonOption = False, config: ConfigOption = None) -> None:
    """Each configured model's USD per 1M tokens: input, cached input, cache write, output, the
    long-context tier, and the source (the config, or genai-prices and its version); a warning
    where a price typed in the config differs from the maintained one.

    Example: mmr prices; mmr prices --json
    """
    from ...config import load_config
    from ...prices import price_rows
    from ...render.tables import price_table

    price_table(price_rows(load_config(config)), json_output)
