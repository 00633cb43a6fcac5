"""docs/library.md's Python examples run, in order, against the local provider server.

Every ```python block of the page runs in one namespace (later blocks use the
``router`` of earlier ones), with ./tiers.yaml pointing both providers at the
server, so a renamed or removed public name fails here.
"""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import ROOT, KEYS, ledger_rows, write_config
from tests.provider_server import reply

PAGE = ROOT / "docs" / "library.md"


def python_blocks(text: str) -> list[str]:
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.S | re.M)


def test_the_library_page_has_examples():
    assert len(python_blocks(PAGE.read_text())) >= 6


def test_every_library_example_runs(server, tmp_path, capsys):
    write_config(tmp_path / "tiers.yaml", server.url)  # load_config() finds ./tiers.yaml
    server.script("claude-small", reply("0.9"), reply("0.9"), reply("0.9"))
    namespace: dict = {"key": KEYS["TEST_ANTHROPIC_KEY"]}
    for number, block in enumerate(python_blocks(PAGE.read_text()), 1):
        try:
            exec(compile(block, f"{PAGE.name} block {number}", "exec"), namespace)
        except Exception as e:  # name the block that broke
            raise AssertionError(f"{PAGE.name} block {number} failed: {e!r}\n{block}") from e
    router = namespace["router"]
    router.close()
    assert Path("ledger.db").exists() and ledger_rows(Path("ledger.db")), "the examples record to ./ledger.db"
    assert namespace["answer"].text  # the last answer came from the server
    assert "row" in namespace or "ledger" in namespace
