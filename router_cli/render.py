"""Everything users see. stdout carries only the answer (or JSON); notes and
errors go to stderr, coloured only on a terminal and never with ``NO_COLOR``.
"""

from __future__ import annotations

import json
import os
import sys

from .pricing import format_usd
from .providers.base import redact


def stderr_is_terminal() -> bool:
    return sys.stderr is not None and sys.stderr.isatty()


def _color(text: str, code: str) -> str:
    if stderr_is_terminal() and not os.environ.get("NO_COLOR") and os.environ.get("TERM") != "dumb":
        return f"\x1b[{code}m{text}\x1b[0m"
    return text


def error(message: str) -> None:
    """``Error: <message>`` on stderr, with anything key-shaped removed."""
    print(_color("Error:", "1;31"), redact(message, None), file=sys.stderr, flush=True)


def note(message: str) -> None:
    print(_color(f"mmr: {message}", "2"), file=sys.stderr, flush=True)


def stream_text(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def _json(obj: dict) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def answer(answer, *, json_output: bool, streamed: bool, show_note: bool) -> None:
    """Print an :class:`~router_cli.router.Answer`, and the routing note when wanted."""
    if json_output:
        _json(answer.to_json())
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
    if final.stop_reason in ("max_tokens", "length"):
        note(f"the answer was cut off at the token limit ({final.output_tokens} tokens); raise --max-tokens for more")


def estimate(estimate, json_output: bool) -> None:
    """Print a dry run's decision and worst-case cost."""
    if json_output:
        _json(estimate.to_json())
        return
    d = estimate.decision
    lines = [
        f"tier      {estimate.tier}  ({d.classifier}: {d.reason}; score {d.score})",
        f"model     {estimate.provider}/{estimate.model}",
        f"tokens    ~{estimate.input_tokens} in, up to {estimate.max_output_tokens} out",
        f"cost      at most {format_usd(estimate.cost)} (premium baseline at most {format_usd(estimate.baseline_cost)})",
    ]
    if estimate.missing_key:
        lines.append(f"warning   {estimate.missing_key} is not set: this call would fail")
    sys.stdout.write("\n".join(lines) + "\n")


def decision(decision, json_output: bool) -> None:
    if json_output:
        _json({
            "tier": decision.tier, "score": decision.score, "classifier": decision.classifier,
            "reason": decision.reason, "latency_ms": round(decision.latency_ms, 3),
        })
    else:
        sys.stdout.write(decision.tier + "\n")
