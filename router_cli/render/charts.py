"""Charts: the text bars and frontier printed in reports, and the standalone SVG files of
``--plot``."""

from __future__ import annotations

from ..pricing import format_usd


def frontier_lines(name: str, sweep: dict) -> list[str]:
    """The cost-quality frontier of a score threshold sweep, as a small text chart."""
    width, height = 50, 10
    points = [(f["cost_vs_premium"], f["quality_vs_premium"]) for f in sweep["frontier"]]
    low, top = min(q for _, q in points), max(q for _, q in points)
    span = (top - low) or 1.0
    grid = [[" "] * (width + 1) for _ in range(height + 1)]
    for cost, quality in points:
        grid[height - round((quality - low) / span * height)][min(width, round(cost * width))] = "•"
    lines = [f"\n{name}: quality vs cost (both as a fraction of always-premium), by score thresholds"]
    for i, cells in enumerate(grid):
        label = f"{top:.0%}" if i == 0 else f"{low:.0%}" if i == height else ""
        lines.append(f"{label:>5} |{''.join(cells)}")
    lines.append("      +" + "-" * (width + 1))
    lines.append("       0%" + " " * (width - 8) + "100% cost")
    best = sweep["cheapest_at_target"]
    if best:
        lines.append(f"cheapest thresholds keeping {sweep['target_quality']:.0%} quality: {best['thresholds']} "
                     f"-> {best['quality_vs_premium']:.1%} quality at {best['cost_vs_premium']:.1%} of the premium cost")
    else:
        lines.append(f"no thresholds keep {sweep['target_quality']:.0%} of premium quality")
    return lines


def frontier_svg(report: dict) -> str:
    """Each classifier's cost-quality frontier as a standalone SVG line chart."""
    from html import escape

    size, pad = 360, 50
    colours = ["#3b7dd8", "#d8633b", "#3bd87d", "#a03bd8"]
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size + 2 * pad}" height="{size + 2 * pad}" font-family="sans-serif" font-size="11">',
             f'<rect x="{pad}" y="{pad}" width="{size}" height="{size}" fill="none" stroke="#444"/>',
             f'<text x="{pad}" y="{pad - 10}" font-size="13">Quality vs cost (fraction of always-premium)</text>',
             f'<text x="{pad + size / 2}" y="{pad + size + 30}" text-anchor="middle">cost</text>',
             f'<text x="{pad - 30}" y="{pad + size / 2}" transform="rotate(-90 {pad - 30} {pad + size / 2})" text-anchor="middle">quality</text>']
    for i, (name, m) in enumerate(n for n in report["classifiers"].items() if "sweep" in n[1]):
        colour = colours[i % len(colours)]
        xy = [(pad + f["cost_vs_premium"] * size, pad + size - min(1.0, f["quality_vs_premium"]) * size) for f in m["sweep"]["frontier"]]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts.append(f'<text x="{pad + size - 5}" y="{pad + 15 + 14 * i}" text-anchor="end" fill="{colour}">{escape(name)}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"


def daily_chart(daily: dict) -> list[str]:
    """One bar per day, scaled to the largest day, with eighth-block resolution."""
    if len(daily) < 2:
        return []
    top = max(daily.values())
    width = 40
    lines = []
    for day, spend in daily.items():
        eighths = int(spend / top * width * 8) if top else 0
        bar = "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]
        lines.append(f"{day}  {bar:<{width}}  {format_usd(spend)}")
    return lines


def spend_svg(daily: dict) -> str:
    """A bar chart of daily spend as a standalone SVG document."""
    from decimal import Decimal
    from html import escape

    days = list(daily.items())
    bar, gap, height, left, bottom = 18, 4, 240, 70, 60
    width = left + max(1, len(days)) * (bar + gap) + 20
    top = max((v for _, v in days), default=Decimal(0)) or Decimal(1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + bottom + 30}" font-family="sans-serif" font-size="11">',
        f'<text x="{left}" y="18" font-size="14">Daily spend (USD), total {escape(format_usd(sum((v for _, v in days), Decimal(0))))}</text>',
        f'<line x1="{left}" y1="{height + 30}" x2="{width - 10}" y2="{height + 30}" stroke="#444"/>',
        f'<text x="{left - 6}" y="38" text-anchor="end">{escape(format_usd(top))}</text>',
    ]
    for i, (day, spend) in enumerate(days):
        h = float(spend / top) * (height - 10)
        x = left + i * (bar + gap)
        parts.append(f'<rect x="{x}" y="{height + 30 - h:.1f}" width="{bar}" height="{h:.1f}" fill="#3b7dd8"><title>{escape(day)}: {escape(format_usd(spend))}</title></rect>')
        parts.append(f'<text x="{x + bar / 2}" y="{height + 42}" transform="rotate(60 {x + bar / 2} {height + 42})">{escape(day[5:])}</text>')
    parts.append("</svg>")
    return "\n".join(parts) + "\n"
