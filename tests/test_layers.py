"""The import graph runs one way: each part of router_cli imports only parts on a lower floor.

The floors are docs/design.md's layout, bottom first. Every import counts, also
those inside functions (lazy imports) and under TYPE_CHECKING: a lazy import
from a higher floor is still an upward dependency.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "router_cli"
FLOORS = [
    {"errors", "ids", "version", "process", "jsonl"},
    {"config"},
    {"ledger"},
    {"pricing"},
    {"providers", "policy", "labelled", "render", "prices"},
    {"classify"},
    {"engine", "reports"},
    {"batch", "server"},
    {"cli"},
    {"__init__", "__main__"},
]
FLOOR = {part: number for number, parts in enumerate(FLOORS) for part in parts}


def part_of(module: str) -> str:
    """``router_cli.engine.router`` -> ``engine``; the package itself -> ``__init__``."""
    names = module.split(".")
    return names[1] if len(names) > 1 else "__init__"


def imports(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """(line, module) of every router_cli module that ``path`` (or ``text`` as if it were there) imports."""
    module = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    package = module.removesuffix(".__init__") if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(text if text is not None else path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package.split(".")[: len(package.split(".")) - node.level + 1]
            if node.module:
                found.append((node.lineno, ".".join([*base, node.module])))
            else:
                found.extend((node.lineno, ".".join([*base, alias.name])) for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("router_cli"):
            found.append((node.lineno, node.module))
        elif isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names if a.name.startswith("router_cli"))
    return found


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_part_has_a_floor():
    parts = {part_of(".".join(p.relative_to(PACKAGE.parent).with_suffix("").parts)) for p in MODULES}
    assert parts - set(FLOOR) == set(), "a new part of router_cli: give it a floor here and in docs/design.md"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_down(path):
    assert upward_imports(path) == [], f"{path.relative_to(PACKAGE)} imports from its own floor or above"


def upward_imports(path: Path, text: str | None = None) -> list[str]:
    here = part_of(".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts))
    return [f"line {line}: {target}" for line, target in imports(path, text)
            if part_of(target) != here and FLOOR[part_of(target)] >= FLOOR[here]]


def test_the_check_sees_an_upward_import():
    # A guard against a check that cannot fail: a lazy import of the engine from inside the ledger.
    probe = PACKAGE / "ledger" / "probe.py"
    assert upward_imports(probe, "def f():\n    from ..engine.router import Router\n") == ["line 2: router_cli.engine.router"]
    assert upward_imports(probe, "from ..errors import LedgerError\n") == []
