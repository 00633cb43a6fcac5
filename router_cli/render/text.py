"""Everything users see, as text. stdout carries only the answer (or JSON); notes and
errors go to stderr, coloured only on a terminal and never with ``NO_COLOR``.

Text that came from users, files, providers or the ledger is shown, never obeyed: every note,
error, report line and table cell passes through :func:`safe_text`, and JSON through
:func:`json_text`. The answer itself is printed as the model wrote it.
"""

from __future__ import annotations

import json
import os
import re
import sys

from ..errors import redact
from ..pricing import format_usd


# What a terminal acts on instead of showing: C0 controls (ESC among them), DEL, C1 controls
# (0x9b is a one-character CSI), and the invisible marks that reorder or break a line (bidi
# embeddings, overrides and isolates; the line and paragraph separators).
_INERT = "\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069"
_UNSAFE = re.compile(f"[\x00-\x1f{_INERT}]")
# JSON escapes C0 itself; the rest is written as \uXXXX, which decodes to the same string.
_JSON_UNSAFE = re.compile(f"[{_INERT}]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def safe_text(value: object, *, lines: bool = False) -> str:
    """``value`` as text safe for a terminal: control and bidi characters become visible escapes
    (``\\x1b``, ``\\u202e``, ``\\n``). With ``lines``, newlines are kept and each line is escaped."""
    text = "" if value is None else str(value)
    if lines:
        return "\n".join(_UNSAFE.sub(_escape, line) for line in text.split("\n"))
    return _UNSAFE.sub(_escape, text)


def json_text(obj: object) -> str:
    """``obj`` as JSON that decodes to exactly ``obj`` and holds no raw control or bidi character."""
    return _JSON_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", json.dumps(obj, ensure_ascii=False))


def shown(message: str) -> str:
    """A one-line message as printed: key-shaped text and URL passwords removed, controls escaped."""
    return safe_text(redact(message, None))


def write_lines(lines: list[str]) -> None:
    """Report lines on stdout, each made safe for a terminal."""
    sys.stdout.write("".join(safe_text(line) + "\n" for line in lines))


def stderr_is_terminal() -> bool:
    return sys.stderr is not None and sys.stderr.isatty()


def _color(text: str, code: str) -> str:
    if stderr_is_terminal() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb":
        return f"\x1b[{code}m{text}\x1b[0m"
    return text


def error(message: str) -> None:
    """``Error: <message>`` on one line of stderr: key-shaped text and URL passwords removed, controls escaped."""
    print(_color("Error:", "1;31"), shown(message), file=sys.stderr, flush=True)


def note(message: str) -> None:
    """``mmr: <message>`` on stderr (dim on a terminal), made safe like an error."""
    print(_color(f"mmr: {shown(message)}", "2"), file=sys.stderr, flush=True)


def stream_text(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def stream_restart(message: str) -> None:
    """A stream broke after text went out and another model starts over: say so, always."""
    sys.stdout.write("\n")
    sys.stdout.flush()
    note(message)


def emit_json(obj: dict) -> None:
    """One JSON object on a line of stdout."""
    sys.stdout.write(json_text(obj) + "\n")


def failure_json(e) -> dict:
    """The ``--json`` object of a request that failed (an :class:`~router_cli.errors.MmrError`): the
    error as a ``--batch`` error row has it, its exit code, and every attempt with what it cost."""
    from decimal import Decimal

    from ..errors import error_kind
    from ..pricing import decimal_str

    attempts = getattr(e, "attempts", None) or []
    return {
        "error": {"kind": error_kind(e), "message": shown(str(e)), "exit_code": e.exit_code},
        "exit_code": e.exit_code,
        "request_id": e.request_id,
        "attempts": [a.to_json() for a in attempts],
        "cost_usd": decimal_str(sum((a.cost for a in attempts), Decimal(0))),
    }


def answer(answer, *, json_output: bool, streamed: bool, show_note: bool) -> None:
    """Print an :class:`~router_cli.engine.types.Answer`, and the routing note when wanted."""
    if json_output:
        emit_json(answer.to_json())
    elif streamed:
        sys.stdout.write("" if answer.text.endswith("\n") else "\n")
    else:
        sys.stdout.write(answer.text if answer.text.endswith("\n") else answer.text + "\n")
    sys.stdout.flush()
    final = answer.final
    if show_note:
        tries = sum(1 for a in answer.attempts if a.status != "skipped")
        retried = f" · {tries} attempts" if tries > 1 else ""
        note(
            f"{final.tier} · {final.provider}/{final.model} · {final.input_tokens}→{final.output_tokens} tokens · "
            f"{format_usd(answer.cost)} (premium {format_usd(answer.baseline_cost)}) · {answer.latency_ms / 1000:.2f} s{retried}"
        )
    for warning in answer.budget_warnings:  # shown whatever the verbosity: money is running out
        note(f"warning: {warning}")
    if answer.best_effort:
        note(f"no tier passed the quality gate; this is the best answer ({final.tier}, score {final.quality:.2f}: {final.gate_reason})")
    if final.stop_reason in ("max_tokens", "length"):
        note(f"the answer was cut off at the token limit ({final.output_tokens} tokens); raise --max-tokens for more")


def estimate(estimate, json_output: bool) -> None:
    """Print a dry run's decision and worst-case cost."""
    if json_output:
        emit_json(estimate.to_json())
        return
    d = estimate.decision
    lines = [
        f"tier      {estimate.tier}  ({d.classifier}: {d.reason}; score {d.score})",
        f"model     {estimate.provider}/{estimate.model}",
        f"tokens    ~{estimate.input_tokens} in, up to {estimate.max_input_tokens} in and {estimate.max_output_tokens} out",
        f"cost      at most {format_usd(estimate.cost)}, the worst case (premium baseline at most {format_usd(estimate.baseline_cost)})",
    ]
    if estimate.policy:
        lines.append(f"policy    {estimate.policy}")
    if estimate.missing_key:
        lines.append(f"warning   {estimate.missing_key} is not set: this call would fail")
    lines += wording_lines(estimate.candidates)
    write_lines(lines)


def wording_lines(candidates) -> list[str]:
    """A dry run's fallback chain, each model with what it would be sent, when a wording, stop
    sequences or a temperature change the request for any of them (``--json`` has every text whole)."""
    lines: list[str] = []
    if not any(sent.wording or sent.stop or sent.temperature is not None for *_, sent in candidates):
        return lines
    for i, (tier, provider, model, sent) in enumerate(candidates):
        head = "sends" if i == 0 else ""
        extra = "".join([f"; stop {json.dumps(list(sent.stop), ensure_ascii=False)}" if sent.stop else "",
                         f"; temperature {sent.temperature:g}" if sent.temperature is not None else ""])
        wording = sent.wording or "as written"
        lines.append(f"{head:<9} {tier} {provider}/{model}: {wording}{extra}")
        if sent.template:
            lines.append(f"{'':<12}system {_preview(sent.system)}")
            lines.append(f"{'':<12}user   {_preview(sent.prompt)}")
    return lines


def _preview(text: str | None, limit: int = 120) -> str:
    """A sent text on one line, quoted; cut at ``limit`` characters."""
    if text is None:
        return "(none)"
    return json.dumps(text if len(text) <= limit else text[:limit] + "…", ensure_ascii=False)


def cascade_estimate(plan, json_output: bool) -> None:
    """Print a cascade dry run: where it starts, how far it may go, and the cost bounds."""
    if json_output:
        emit_json(plan.to_json())
        return
    estimate(plan.first, False)
    limits = ", ".join(f"{tier} {limit:g}" for tier, limit in plan.thresholds.items())
    write_lines([
        f"cascade   {' -> '.join(plan.tiers)}; gate {plan.gate}; thresholds {limits}",
        f"worst     {format_usd(plan.worst_cost)} if every tier answers{' and is judged' if plan.gate != 'heuristic' else ''}",
    ])


def decision_json(decision) -> dict:
    """The ``classify --json`` object (a contract: see docs/configuration.md)."""
    return {
        "tier": decision.tier, "score": decision.score, "classifier": decision.classifier,
        "reason": decision.reason, "latency_ms": round(decision.latency_ms, 3),
    }


def decision(decision, json_output: bool) -> None:
    if json_output:
        emit_json(decision_json(decision))
    else:
        write_lines([decision.tier])


def trained(model: dict, path: str) -> None:
    """What mmr train made: where it went, and how it did on held-out folds (stderr)."""
    t = model["training"]
    held = t["held_out"]
    reached = "" if held["reached_target"] else f" (short of the {t['target_quality']:.0%} target: the best it could do)"
    k = f"k {model['k']}, " if "k" in model else ""
    if "weights" in model and "parts" in model:
        k = f"{model['weights'][0]:g} {model['parts'][0]['router']} + {model['weights'][1]:g} {model['parts'][1]['router']}, "
    head = f"wrote {path}: {t['rows']} rows; {k}lambda {model['lambda']:.4g} (quality per USD)"
    if "guaranteed_quality_vs_premium" in held:
        if not held["reached_target"]:
            reached = f" (the bound is short of the {t['target_quality']:.0%} target: the best it could do)"
        where = (f" on {held['calibration_rows']} rows, each routed by a router fitted without it"
                 if held.get("method") == "cross-fit" else " on held-out folds")
        note(f"{head}; expected {held['quality_vs_premium']:.1%} of premium quality, guaranteed at least "
             f"{held['guaranteed_quality_vs_premium']:.1%} at {held['confidence']:.0%} confidence{where}; "
             f"{held['savings_vs_premium']:.1%} cheaper{reached}")
        return
    note(f"{head}; held out: {held['quality_vs_premium']:.1%} of premium quality, {held['savings_vs_premium']:.1%} cheaper{reached}")


def jsonl_row(obj: dict) -> None:
    emit_json(obj)
    sys.stdout.flush()


def feedback_recorded(entry, json_output: bool) -> None:
    """``mmr feedback``: the stored record as JSON, or a one-line confirmation on stderr."""
    if json_output:
        emit_json(entry.to_json())
        return
    should = f"; should be {entry.should_be}" if entry.should_be else ""
    note(f"recorded: {entry.verdict} for call {entry.call_id} (answered by {entry.tier}){should}")


def usd(text: str | None) -> str:
    """A decimal string of USD as the reports show money; None is blank."""
    from decimal import Decimal

    return "" if text is None else format_usd(Decimal(text))


def explain(report: dict, json_output: bool) -> None:
    """``mmr explain``: the routing decision, the attempts and the feedback of one request."""
    if json_output:
        emit_json(report)
        return
    r = report["routing"]
    who = " ".join(f"{k} {report[k]}" for k in ("user", "team") if report.get(k))
    lines = [f"request    {report['request_id']}  {report['datetime_utc']}  mmr {report['command']}" + (f"  ({who})" if who else "")]
    if report.get("prompt"):
        text = report["prompt"].strip()
        first = text.splitlines()[0] if text else ""
        more = "…" if len(first) > 100 or len(first) < len(text) else ""
        lines.append(f"prompt     {first[:100]}{more}")
    else:
        lines.append(f"prompt     not stored (ledger.store: {report.get('prompt_stored') or 'none'})")
    lines.append(f"routed     {r['routed_tier']} by {r['classifier']} (score {r['score']}): {r['reason']}")
    for kind, limits in (r.get("thresholds") or {}).items():
        label = "classifier thresholds" if kind == "classifier" else "gate thresholds"
        lines.append(f"           {label}: " + ", ".join(f"{t} {v:g}" for t, v in limits.items()))
    current = {True: " (the current config)", False: " (the config has changed since)", None: ""}[r.get("config_is_current")]
    lines.append(f"config     {r['config_hash'] or 'unknown'}{current}")
    lines.append(f"variant    {r['variant'] or 'none (no experiment)'}")
    if r.get("policy"):
        lines.append(f"policy     {r['policy']}")
    lines.append("attempts")
    for a in report["attempts"]:
        role = "" if a["role"] == "answer" else f" [{a['role']}]"
        detail = a["error"] or ""
        if a.get("quality") is not None or a.get("gate_reason"):
            q = "" if a.get("quality") is None else f"{a['quality']:.2f}"
            detail = f"gate {q} {a.get('gate_reason') or ''}".rstrip() if a["role"] == "answer" else f"verdict {q or a.get('gate_reason')}"
        if a.get("policy"):
            detail = f"{detail} · {a['policy']}".strip(" ·")
        lines.append(f"  {a['attempt'] if a['attempt'] is not None else '-':>2}  {a['tier']:<10} {a['provider']}/{a['model']}{role}  "
                     f"{a['status']}  {usd(a['cost_usd'])}  {a['duration_ms'] or 0:,.0f} ms" + (f"  {detail}" if detail else ""))
        if a.get("template_hash"):
            lines.append(f"{'':<16}template {a['template']} ({a['template_hash']})"
                         + ("" if "template_text" in a else ": not in the current config"))
            for key, text in a.get("template_text", {}).items():
                lines.append(f"{'':<18}{key:<14}{_preview(text)}")
    by = report["answered_by"]
    if by is None:
        lines.append("answered   no: every attempt failed")
    else:
        escalated = f" (escalated from {r['routed_tier']})" if report["escalated"] else ""
        lines.append(f"answered   {by['tier']} {by['provider']}/{by['model']}{escalated}; call {by['call_id']}")
    lines.append(f"cost       {usd(report['cost_usd'])} (premium baseline {usd(report['baseline_cost_usd'])})")
    for f in report["feedback"]:
        should = f", should be {f['should_be']}" if f["should_be"] else ""
        text = f": {f['note']!r}" if f["note"] else ""
        latest = "" if f["latest"] else " (superseded)"
        lines.append(f"feedback   {f['datetime_utc']} {f['verdict']}{should}{text}{latest}")
    write_lines(lines)
