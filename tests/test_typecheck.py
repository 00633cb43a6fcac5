"""The package type-checks (mypy, configured in pyproject.toml)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
# A cold mypy took 138 s on a loaded 2-core machine: more than pytest's default timeout
# (pyproject.toml), so this test has its own, above the subprocess's limit.
MYPY_TIMEOUT = 300


@pytest.mark.timeout(MYPY_TIMEOUT + 30)
def test_mypy_passes():
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True, timeout=MYPY_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
