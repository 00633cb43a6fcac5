"""A JSONL line that Python's json cannot take (nested 1,000 deep, a 10,000-digit integer,
a line of more than 16 MiB) is one bad line with its file and line, never a crash:
through the real CLI for every reader of a user's JSONL file."""

from __future__ import annotations

import json

import pytest

from router_cli.errors import EXIT_ROWS_FAILED
from router_cli.jsonl import MAX_LINE_BYTES, NotJSON, lines, loads
from tests.provider_server import reply_text

DEEP = '{"prompt": "d", "label": "simple", "x": ' + "[" * 1000 + "]" * 1000 + "}"
HUGE = '{"prompt": "d", "label": "simple", "x": ' + "1" * 10_000 + "}"
BAD = {"deep": (DEEP, "not usable JSON (nested more than 100 deep)"),
       "huge-int": (HUGE, "not usable JSON (an integer of more than 4300 digits)")}
CASES = pytest.mark.parametrize("case", list(BAD))


def labelled(tmp_path, bad: str):
    path = tmp_path / "labelled.jsonl"
    rows = [{"prompt": f"hello {i}", "label": "simple"} for i in range(3)] + [
        {"prompt": f"write a proof {i}", "label": "complex"} for i in range(3)]
    path.write_text(json.dumps(rows[0]) + "\n" + bad + "\n" + "".join(json.dumps(r) + "\n" for r in rows[1:]))
    return path


def assert_usage_error(result, message: str):
    assert result.returncode == 2, result.stderr
    (line,) = result.stderr.decode().splitlines()
    assert line == f"Error: {message}"


@CASES
def test_eval_names_the_line(mmr, tmp_path, case):
    line, why = BAD[case]
    path = labelled(tmp_path, line)
    assert_usage_error(mmr("eval", str(path)), f"{path}:2: {why}")


@CASES
def test_eval_skip_bad_skips_the_line(mmr, tmp_path, case):
    line, why = BAD[case]
    path = labelled(tmp_path, line)
    result = mmr("eval", str(path), "--skip-bad", "--json")
    assert result.returncode == 0, result.stderr
    assert f"{path}:2: {why}" in result.stderr.decode()
    assert json.loads(result.stdout)["rows"] == 6


@CASES
def test_train_names_the_line(mmr, tmp_path, case):
    line, why = BAD[case]
    path = labelled(tmp_path, line)
    assert_usage_error(mmr("train", str(path), "-o", str(tmp_path / "m.json")), f"{path}:2: {why}")


@CASES
def test_classify_jsonl_names_the_line(mmr, case):
    line, why = BAD[case]
    assert_usage_error(mmr("classify", "--jsonl", db=False, input='{"prompt": "hi"}\n' + line + "\n"), f"stdin:2: {why}")


@CASES
def test_classify_jsonl_skip_bad_makes_an_error_row(mmr, case):
    line, why = BAD[case]
    result = mmr("classify", "--jsonl", "--skip-bad", db=False, input='{"prompt": "hi"}\n' + line + '\n{"id": 3, "prompt": "hey"}\n')
    assert result.returncode == 0, result.stderr
    first, bad, last = map(json.loads, result.stdout.decode().splitlines())
    assert first["tier"] == "simple" and last["id"] == 3
    assert bad == {"line": 2, "error": f"stdin:2: {why}"}


@CASES
def test_batch_makes_an_error_row_and_answers_the_rest(server, mmr, case):
    line, why = BAD[case]
    result = mmr("ask", "--batch", "-", "--tier", "simple", input='{"id": "a", "prompt": "first"}\n' + line + '\n{"id": "c", "prompt": "last"}\n')
    assert result.returncode == EXIT_ROWS_FAILED, result.stderr
    first, bad, last = map(json.loads, result.stdout.decode().splitlines())
    assert first["text"] == reply_text("first") and last["text"] == reply_text("last")
    assert bad["error"]["message"] == f"line 2: {why}" and bad["error"]["kind"] == "input"
    assert sorted(c["prompt"] for c in server.calls()) == ["first", "last"]


@CASES
@pytest.mark.parametrize("from_file", [False, True], ids=["stdin", "file"])
def test_batch_strict_names_the_line(server, mmr, tmp_path, case, from_file):
    line, why = BAD[case]
    rows = '{"prompt": "one"}\n' + line + "\n"
    source = "-"
    if from_file:
        source = str(tmp_path / "in.jsonl")
        (tmp_path / "in.jsonl").write_text(rows)
    result = mmr("ask", "--batch", source, "--strict", "--tier", "simple", input="" if from_file else rows)
    name = source if from_file else "stdin"
    assert_usage_error(result, f"{name}:2: {why} (--strict: nothing was sent)")
    assert server.calls() == []


@CASES
def test_resume_counts_the_line_as_not_understood(server, mmr, tmp_path, case):
    line, _ = BAD[case]
    previous = tmp_path / "out.jsonl"
    previous.write_text('{"id": "a", "text": "done before"}\n' + line.replace('"prompt"', '"id": "b", "p') + "\n")
    result = mmr("ask", "--batch", "-", "--resume", str(previous), "--tier", "simple",
                 input='{"id": "a", "prompt": "pa"}\n{"id": "b", "prompt": "pb"}\n')
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in map(json.loads, result.stdout.decode().splitlines())] == ["b"]
    assert "1 line(s)" in result.stderr.decode() and "Traceback" not in result.stderr.decode()


def test_a_line_over_the_limit_is_refused_without_being_parsed(server, mmr):
    long_line = json.dumps({"id": "long", "prompt": "x" * MAX_LINE_BYTES})
    result = mmr("ask", "--batch", "-", "--tier", "simple", input=long_line + '\n{"id": "b", "prompt": "after"}\n')
    assert result.returncode == EXIT_ROWS_FAILED, result.stderr[-500:]
    bad, after = map(json.loads, result.stdout.decode().splitlines())
    assert bad["error"]["message"] == "line 1: not usable JSON (a line longer than 16 MiB)"
    assert after["text"] == reply_text("after")
    assert [c["prompt"] for c in server.calls()] == ["after"]


def test_the_parser_bounds_depth_whatever_the_recursion_headroom():
    # 150 deep parses in Python's json, but code walking it (repr, json.dumps) must never come near the limit.
    with pytest.raises(NotJSON, match="nested more than 100 deep"):
        loads('{"a": ' + "[" * 150 + "]" * 150 + "}")
    assert loads('{"a": ' + "[" * 99 + "]" * 99 + "}")["a"]
    assert loads('{"n": -' + "9" * 4300 + "}")["n"] < 0


def test_lines_drops_the_rest_of_an_over_long_line_and_sees_every_byte(tmp_path):
    path = tmp_path / "long.jsonl"
    data = b'{"a": 1}\n' + b"x" * (MAX_LINE_BYTES + 10) + b'\n{"b": 2}\n'
    path.write_bytes(data)
    seen = []
    with path.open("rb") as handle:
        got = list(lines(handle, seen.append))
    assert [len(line) for line in got] == [9, MAX_LINE_BYTES + 1, 9]
    assert b"".join(seen) == data
