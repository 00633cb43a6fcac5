"""The routing dashboard as one self-contained HTML page (``mmr report --html``, ``GET /dashboard``).

    html = page(dashboard(ledger, since))              # the whole page
    parts = sections(data)                             # {section id: its HTML}, for the live page

Charts are our own inline SVG: this module works out the geometry (numbers only), and the
Jinja2 templates in ``templates/`` write the markup with autoescaping on, so every value
from the ledger (user, team and model names, errors) reaches the page escaped. Jinja2 is
imported here only, when a page is rendered: ``mmr --help`` and ``mmr costs`` never load it.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Callable, Sequence

from ..pricing import format_usd

WIDTH, HEIGHT, LEFT, TOP, BOTTOM = 760, 220, 74, 14, 46
PALETTE = 8  # colours s0..s7 in the stylesheet (light and dark)
SECTIONS = ("summary", "spend", "mix", "quality", "feedback", "latency", "budgets", "costliest")


def _money(text: str | None) -> str:
    return format_usd(Decimal(text or 0))


def stacked(periods: Sequence[str], series: dict[str, list[float]], titles: dict[str, list[str]],
            line: tuple[str, Sequence[float], Sequence[str]] | None = None, axis: str = "",
            scale: Callable[[float], str] = str) -> dict:
    """Vertical stacked bars, one per period, one colour per series; ``line``: (name, values,
    titles) drawn over them (the premium baseline). Returns the chart's geometry."""
    n = max(1, len(periods))
    tops = [sum(vs[i] for vs in series.values()) for i in range(len(periods))]
    peak = max([*tops, *(line[1] if line else [])], default=0.0) or 1.0
    step = (WIDTH - LEFT - 10) / n
    bar = max(1.0, step * 0.8)

    def y(value: float) -> float:
        return TOP + HEIGHT - value / peak * HEIGHT

    groups = []
    base = [0.0] * len(periods)
    for k, (name, values) in enumerate(series.items()):
        rects = []
        for i, value in enumerate(values):
            if value > 0:
                rects.append({"x": round(LEFT + i * step, 1), "y": round(y(base[i] + value), 1), "w": round(bar, 1),
                              "h": round(value / peak * HEIGHT, 1), "title": f"{periods[i]} · {name}: {titles[name][i]}"})
            base[i] += value
        groups.append({"name": name, "colour": k % PALETTE, "rects": rects})
    chart: dict[str, Any] = {"kind": "stacked", "width": WIDTH, "height": TOP + HEIGHT + BOTTOM, "groups": groups,
                             "axis": axis, "top_label": axis, "base_y": TOP + HEIGHT, "left": LEFT,
                             "ticks": _ticks(periods, step), "line": None,
                             "grid": [{"y": round(y(peak * f), 1), "label": scale(peak * f)} for f in (0.5, 1.0)]}
    if line is not None:
        name, points, labels = line
        chart["line"] = {"name": name, "points": " ".join(f"{LEFT + i * step + bar / 2:.1f},{y(v):.1f}" for i, v in enumerate(points)),
                         "dots": [{"x": round(LEFT + i * step + bar / 2, 1), "y": round(y(v), 1), "title": f"{periods[i]} · {name}: {labels[i]}"}
                                  for i, v in enumerate(points)]}
    return chart


def _ticks(periods: Sequence[str], step: float) -> list[dict]:
    every = max(1, int(len(periods) / 12) + 1)
    return [{"x": round(LEFT + i * step, 1), "label": p[5:] if len(p) == 10 else p}
            for i, p in enumerate(periods) if i % every == 0]


def bars(rows: Sequence[tuple[str, Sequence[float], Sequence[str]]], names: Sequence[str], limit: float | None = None) -> dict:
    """Horizontal bars: one row per label, one bar per series in ``names`` (values, titles)."""
    peak = max([v for _, vs, _ in rows for v in vs] + [limit or 0], default=0.0) or 1.0
    row_h, left, span = 16 * len(names) + 10, 190, WIDTH - 190 - 70
    rects: list[list[dict]] = [[] for _ in names]
    labels = []
    for i, (label, values, titles) in enumerate(rows):
        labels.append({"y": 8 + i * row_h + row_h / 2, "label": label})
        for k, (value, title) in enumerate(zip(values, titles)):
            rects[k].append({"x": left, "y": 6 + i * row_h + k * 16, "w": round(max(0.0, value) / peak * span, 1),
                                       "h": 14, "title": f"{label} · {names[k]}: {title}", "text": title})
    groups = [{"name": name, "colour": k % PALETTE, "rects": rects[k]} for k, name in enumerate(names)]
    chart: dict[str, Any] = {"kind": "bars", "width": WIDTH, "height": 12 + max(1, len(rows)) * row_h, "groups": groups,
             "labels": labels, "left": left, "line": None, "limit_x": None}
    if limit is not None:
        chart["limit_x"] = round(left + limit / peak * span, 1)
    return chart


def charts(data: dict) -> dict[str, dict]:
    """Every chart's geometry from the dashboard's data."""
    periods = data["periods"]
    spend = {t: [float(Decimal(v)) for v in vs] for t, vs in data["spend_by_tier"].items()}
    baseline = [float(Decimal(v)) for v in data["baseline"]]
    out = {
        "spend": stacked(periods, spend, {t: [_money(v) for v in vs] for t, vs in data["spend_by_tier"].items()},
                         ("premium baseline", baseline, [_money(v) for v in data["baseline"]]), "USD",
                         lambda v: f"${v:,.2f}" if v >= 1 else f"${v:.2g}"),
        "routed": _counts(periods, data["routed_requests"], "requests"),
        "models": _counts(periods, data["model_calls"], "calls"),
        "escalation": bars([(e["tier"], [e["rate"] * 100], [f"{e['rate']:.1%} of {e['requests']:,}"]) for e in data["escalation"]],
                           ["escalated"]),
        "latency": bars([(m["model"], [m["latency_p50_ms"] or 0, m["latency_p95_ms"] or 0],
                          [_ms(m["latency_p50_ms"]), _ms(m["latency_p95_ms"])]) for m in data["models"]], ["p50", "p95"]),
        "budgets": bars([(f"{b['budget']} · {b['who'] or 'everyone'}", [(b["used"] or 0) * 100],
                          [f"{_money(b['spent_usd'])} of {_money(b['limit_usd'])} ({(b['used'] or 0):.0%})"]) for b in data["budgets"]],
                        ["used"], limit=100.0),
    }
    return out


def _counts(periods: Sequence[str], table: dict[str, Sequence[int]], unit: str) -> dict:
    return stacked(periods, {k: [float(v) for v in vs] for k, vs in table.items()},
                   {k: [f"{v:,} {unit}" for v in vs] for k, vs in table.items()}, axis=unit, scale=lambda v: f"{v:,.0f}")


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f} ms"


def _environment():
    import jinja2
    env = jinja2.Environment(loader=jinja2.PackageLoader("router_cli", "render/templates"),
                             autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters["usd"] = _money
    env.filters["pct"] = lambda v: "–" if v is None else f"{v:.1%}"
    env.filters["ms"] = _ms
    env.filters["count"] = lambda v: f"{v:,}"
    return env


def page(data: dict, *, live: bool = False, refresh_seconds: int = 30) -> str:
    """The whole page; ``live``: with the script that refreshes its sections from ``dashboard/data``."""
    env = _environment()
    script = script_hash = ""
    if live:
        import base64
        import hashlib
        from importlib.resources import files

        # Our own file, sent as is; the page's Content-Security-Policy allows this script alone.
        script = files("router_cli").joinpath("render/templates/live.js").read_text(encoding="utf-8")
        script_hash = "sha256-" + base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()
    return env.get_template("dashboard.html").render(
        d=data, c=charts(data), live=live, refresh_ms=refresh_seconds * 1000, sections=SECTIONS,
        script=script, script_hash=script_hash)


def sections(data: dict) -> dict[str, str]:
    """Each section's HTML (the live page swaps them in place)."""
    env = _environment()
    module = env.get_template("sections.html").make_module({"d": data, "c": charts(data)})
    return {name: str(getattr(module, name)()) for name in SECTIONS}


def data_json(data: dict) -> str:
    """The live page's payload: the sections' HTML and when they were made."""
    return json.dumps({"generated": data["generated"], "sections": sections(data)})
