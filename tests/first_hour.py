"""Run the real ``mmr`` CLI as if some packages were not installed.

``without_packages`` lays out a copy of this interpreter's site-packages (symlinks)
that lacks the named top-level entries and their ``*.dist-info``; ``python -S``
with that directory first on ``PYTHONPATH`` then sees exactly that install.
"""

from __future__ import annotations

import os
import site
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def without_packages(tmp_path: Path, *names: str) -> Path:
    """A site directory like this interpreter's, without ``names`` (import names, e.g. ``llama_cpp``)."""
    (source,) = [Path(p) for p in site.getsitepackages() if Path(p, "typer").exists()]
    target = tmp_path / "site"
    target.mkdir()
    hidden = {n.lower() for n in names}
    for entry in source.iterdir():
        stem = entry.name.split("-")[0].lower()
        if stem in hidden or entry.name.endswith(".pth"):
            continue
        (target / entry.name).symlink_to(entry)
    return target


def run_mmr(site_dir: Path, *args: str, env: dict | None = None, input: bytes = b"") -> subprocess.CompletedProcess:
    """The real CLI, seeing only ``site_dir`` (and this checkout) as installed."""
    full_env = {**os.environ, **(env or {}), "PYTHONPATH": f"{ROOT}{os.pathsep}{site_dir}"}
    return subprocess.run([sys.executable, "-S", "-m", "router_cli", *args], input=input, capture_output=True,
                          env=full_env, timeout=60)
