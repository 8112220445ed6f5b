"""Server-side SVG charts for the panel's pages, returned as ready-to-embed markup.

Hand-written rather than a chart library: the panel's Content-Security-Policy allows no inline
``style`` (an SVG ``<style>`` element or ``style=`` attribute included) and no script, which is
what chart libraries emit. Colours come from classes in ``admin/static/app.css``; every chart has
a ``<title>`` and an ``aria-label``, and each bar a ``<title>`` a browser shows on hover.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

_FONT_PX = 11  # the axis text size set in app.css, used to leave room for labels


@dataclass(frozen=True)
class Bar:
    """One bar: its axis label, value, a CSS modifier (``kind``) and a hover text."""

    label: str
    value: float
    kind: str = ""
    title: str = ""


@dataclass(frozen=True)
class Stay:
    """One row of the length-of-stay chart: a median against a target, in days."""

    label: str
    median_days: float | None
    target_days: int | None
    count: int


def nice_step(top: float, ticks: int = 4) -> float:
    """A round gridline step (1, 2, 2.5 or 5 times a power of ten) giving about ``ticks`` lines."""
    if top <= 0:
        return 1.0
    raw = top / ticks
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)


def _number(value: float) -> str:
    return f"{value:g}" if value == int(value) else f"{value:.1f}"


def _svg(width: int, height: int, title: str, body: list[str], css: str) -> Markup:
    label = escape(title)
    return Markup(
        f'<svg class="chart {css}" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{label}" xmlns="http://www.w3.org/2000/svg">'
        f"<title>{label}</title>{''.join(body)}</svg>"
    )


def bar_chart(
    bars: Sequence[Bar],
    *,
    title: str,
    threshold: float | None = None,
    threshold_label: str = "",
    unit: str = "",
    height: int = 220,
    bar_width: int = 26,
    gap: int = 8,
) -> Markup:
    """Vertical bars on a value axis from 0, with an optional horizontal threshold line."""
    left, right, top_pad, bottom = 40, 90 if threshold is not None else 12, 24, 34
    plot_h = height - top_pad - bottom
    width = left + right + max(len(bars), 1) * (bar_width + gap)
    top = max([b.value for b in bars] + [threshold or 0, 0]) * 1.1 or 1.0
    step = nice_step(top)
    top = math.ceil(top / step) * step

    def y(value: float) -> float:
        return top_pad + plot_h - value / top * plot_h

    body = []
    tick = 0.0
    while tick <= top + 1e-9:  # gridlines and their values
        body.append(f'<line class="gridline" x1="{left}" x2="{width - right}" y1="{y(tick):.1f}" '
                    f'y2="{y(tick):.1f}"/><text x="{left - 6}" y="{y(tick) + 4:.1f}" '
                    f'text-anchor="end">{_number(tick)}</text>')
        tick += step
    if unit:
        body.append(f'<text x="4" y="10">{escape(unit)}</text>')
    every = max(1, math.ceil(len(bars) * _FONT_PX * 3 / (width - left - right)))  # label spacing
    for i, bar in enumerate(bars):
        x = left + gap / 2 + i * (bar_width + gap)
        h = max(bar.value / top * plot_h, 2)  # a zero still shows, as a stub on the axis
        kind = f" {escape(bar.kind)}" if bar.kind else ""
        hover = escape(bar.title or f"{bar.label}: {_number(bar.value)} {unit}".strip())
        body.append(f'<rect class="mark{kind}" x="{x:.1f}" y="{y(0) - h:.1f}" '
                    f'width="{bar_width}" height="{h:.1f}"><title>{hover}</title></rect>')
        if i % every == 0:
            body.append(f'<text x="{x + bar_width / 2:.1f}" y="{height - bottom + 14}" '
                        f'text-anchor="middle">{escape(bar.label)}</text>')
    body.append(f'<line class="axis" x1="{left}" x2="{width - right}" y1="{y(0):.1f}" '
                f'y2="{y(0):.1f}"/>')
    if threshold is not None:
        ty = y(threshold)
        body.append(f'<line class="threshold" x1="{left}" x2="{width - right + 4}" y1="{ty:.1f}" '
                    f'y2="{ty:.1f}"/><text class="threshold-label" x="{width - right + 8}" '
                    f'y="{ty + 4:.1f}">{escape(threshold_label or _number(threshold))}</text>')
    return _svg(width, height, title, body, "bars")


def stay_chart(rows: Sequence[Stay], *, title: str, width: int = 660) -> Markup:
    """One horizontal bar per row: the median stay, with a tick at the target and the percent."""
    label_w, value_w, row_h, top_pad = 170, 190, 30, 22
    plot_w = width - label_w - value_w
    height = top_pad + max(len(rows), 1) * row_h + 8
    top = max([r.median_days or 0 for r in rows] + [r.target_days or 0 for r in rows] + [0]) * 1.05
    top = top or 1.0

    def x(days: float) -> float:
        return label_w + days / top * plot_w

    caption = "days: median stay of discharged episodes; tick: the program's target"
    body = [f'<text x="{label_w}" y="12">{escape(caption)}</text>']
    for i, row in enumerate(rows):
        y = top_pad + i * row_h
        body.append(f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">'
                    f"{escape(_clip(row.label, 26))}</text>")
        body.append(f'<rect class="track" x="{label_w}" y="{y + 4}" width="{plot_w}" height="16"/>')
        over = bool(row.median_days and row.target_days and row.median_days > row.target_days)
        if row.median_days:
            hover = escape(f"{row.label}: median {_number(row.median_days)} days of "
                           f"{row.count} discharged episodes")
            body.append(f'<rect class="mark{" over" if over else ""}" x="{label_w}" y="{y + 4}" '
                        f'width="{x(row.median_days) - label_w:.1f}" height="16">'
                        f"<title>{hover}</title></rect>")
        if row.target_days:
            tx = x(row.target_days)
            body.append(f'<line class="target" x1="{tx:.1f}" x2="{tx:.1f}" y1="{y}" y2="{y + 24}">'
                        f"<title>target {row.target_days} days</title></line>")
        body.append(f'<text x="{width - value_w + 8}" y="{y + 15}">'
                    f"{escape(_stay_text(row))}</text>")
    return _svg(width, height, title, body, "stays")


def _stay_text(row: Stay) -> str:
    if not row.median_days:
        return f"no discharges yet (target {row.target_days or '–'} d)"
    text = f"{_number(row.median_days)} d"
    if row.target_days:
        text += f" / {row.target_days} d ({row.median_days / row.target_days * 100:.0f}%)"
    return f"{text}, n={row.count}"


def _clip(text: str, length: int) -> str:
    return text if len(text) <= length else text[: length - 1] + "…"


def progress(percent: float | None, *, title: str) -> Markup:
    """A thin bar filled to ``percent`` (capped at 100), red past 100: day N of a target."""
    filled = max(0.0, min(percent or 0.0, 100.0))
    over = " over" if (percent or 0) > 100 else ""
    label = escape(title)
    return Markup(
        f'<svg class="progress{over}" viewBox="0 0 100 8" preserveAspectRatio="none" role="img" '
        f'aria-label="{label}" xmlns="http://www.w3.org/2000/svg"><title>{label}</title>'
        f'<rect class="track" x="0" y="0" width="100" height="8" rx="3"/>'
        f'<rect class="fill" x="0" y="0" width="{filled:.1f}" height="8" rx="3"/></svg>'
    )
