"""Small self-contained SVG charts for the HTML report: lines over time and percentile bars.

No library, no script: each function returns one `<svg>` element as text, with its own axes,
ticks and legend, so the report opens anywhere (offline, in a mail attachment).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from html import escape

PALETTE = ("#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777")
_W, _H = 760, 260
_LEFT, _RIGHT, _TOP, _BOTTOM = 64, 16, 28, 40

Line = Sequence[tuple[float, float]]


def nice_ceiling(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above `value` (1 for nothing)."""
    if value <= 0 or not math.isfinite(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


def _fmt(value: float) -> str:
    if value >= 100 or value == int(value):
        return f"{value:.0f}"
    return f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def line_chart(
    title: str,
    lines: Mapping[str, Line],
    *,
    x_label: str = "seconds since start",
    y_label: str = "ms",
    dashed: Sequence[str] = (),
) -> str:
    """Named polylines of (x, y) points on shared axes starting at 0."""
    points = [point for line in lines.values() for point in line]
    x_max = nice_ceiling(max((x for x, _ in points), default=1.0))
    y_max = nice_ceiling(max((y for _, y in points), default=1.0))
    plot_w, plot_h = _W - _LEFT - _RIGHT, _H - _TOP - _BOTTOM

    def sx(x: float) -> float:
        return _LEFT + plot_w * x / x_max

    def sy(y: float) -> float:
        return _TOP + plot_h * (1 - y / y_max)

    parts = [_frame(title, x_label, y_label)]
    for tick in range(6):
        y = y_max * tick / 5
        x = x_max * tick / 5
        parts.append(
            f'<line x1="{_LEFT}" x2="{_W - _RIGHT}" y1="{sy(y):.1f}" y2="{sy(y):.1f}" '
            'stroke="#e5e7eb"/>'
            f'<text x="{_LEFT - 6}" y="{sy(y) + 4:.1f}" text-anchor="end">{_fmt(y)}</text>'
            f'<text x="{sx(x):.1f}" y="{_H - _BOTTOM + 16}" text-anchor="middle">{_fmt(x)}</text>'
        )
    for index, (name, line) in enumerate(lines.items()):
        color = PALETTE[index % len(PALETTE)]
        dash = ' stroke-dasharray="5 3"' if name in dashed else ""
        if len(line) == 1:
            x, y = line[0]
            parts.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}"/>')
        elif line:
            path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in line)
            parts.append(
                f'<polyline fill="none" stroke="{color}" stroke-width="1.6"{dash} points="{path}"/>'
            )
        parts.append(_legend(index, name, color))
    parts.append("</svg>")
    return "".join(parts)


def percentile_bars(title: str, rows: Mapping[str, Mapping[str, float]]) -> str:
    """One row of bars per metric (p50, p90, p99, max), each row scaled to its own max."""
    labels = ("p50", "p90", "p99", "max")
    row_h = 4 * 14 + 18
    height = _TOP + max(1, len(rows)) * row_h + 12
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {height}" '
        f'width="{_W}" height="{height}" font-family="sans-serif" font-size="11">'
        f'<text x="{_LEFT}" y="18" font-size="14" font-weight="bold">{escape(title)}</text>'
    ]
    left = 150
    width = _W - left - 90
    for row, (metric, values) in enumerate(rows.items()):
        top = _TOP + row * row_h
        scale = max(values.values(), default=1.0) or 1.0
        parts.append(f'<text x="8" y="{top + 30}" font-weight="bold">{escape(metric)}</text>')
        for index, label in enumerate(labels):
            value = values.get(label, 0.0)
            y = top + index * 14
            bar = width * value / scale
            color = PALETTE[index % len(PALETTE)]
            parts.append(
                f'<text x="{left - 6}" y="{y + 10}" text-anchor="end">{label}</text>'
                f'<rect x="{left}" y="{y}" width="{bar:.1f}" height="11" fill="{color}"/>'
                f'<text x="{left + bar + 4:.1f}" y="{y + 10}">{_fmt(value)} ms</text>'
            )
    parts.append("</svg>")
    return "".join(parts)


def _frame(title: str, x_label: str, y_label: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" width="{_W}" '
        f'height="{_H}" font-family="sans-serif" font-size="11">'
        f'<text x="{_LEFT}" y="18" font-size="14" font-weight="bold">{escape(title)}</text>'
        f'<line x1="{_LEFT}" y1="{_H - _BOTTOM}" x2="{_W - _RIGHT}" y2="{_H - _BOTTOM}" '
        'stroke="#374151"/>'
        f'<line x1="{_LEFT}" y1="{_TOP}" x2="{_LEFT}" y2="{_H - _BOTTOM}" stroke="#374151"/>'
        f'<text x="{(_W + _LEFT) / 2:.0f}" y="{_H - 6}" text-anchor="middle">'
        f"{escape(x_label)}</text>"
        f'<text x="14" y="{(_H - _BOTTOM + _TOP) / 2:.0f}" text-anchor="middle" '
        f'transform="rotate(-90 14 {(_H - _BOTTOM + _TOP) / 2:.0f})">{escape(y_label)}</text>'
    )


def _legend(index: int, name: str, color: str) -> str:
    x = _W - _RIGHT - 150
    y = _TOP + 4 + index * 14
    return (
        f'<rect x="{x}" y="{y}" width="10" height="10" fill="{color}"/>'
        f'<text x="{x + 14}" y="{y + 9}">{escape(name)}</text>'
    )
