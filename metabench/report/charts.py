"""Chart geometry for inline SVG, and the colour scale of score cells.

Python computes numbers only (coordinates, tick positions, colours); the
template draws them, so every label passes through jinja2's autoescape and
no markup is built from strings here.

Score vs length is drawn on a log2 length axis (suites double lengths), y
0-100%. The domain always includes the model's native context, so the
"1x" line is visible; "2x" is drawn when it falls inside the domain, and
the region beyond 1x is shaded: that is the extrapolation a reader looks
for first. The 95% interval is a band around the line.

Colours: a light red -> yellow -> green hue ramp (hue 0..130 at 80%
lightness) so that black numbers stay readable on every cell; the number is
always printed, so colour is never the only carrier of the score. Signed
values (the analyses' entropy drops) get a diverging ramp instead: white at
0, blue above, red below, as light at full strength as the score ramp.

Score vs training step (checkpoint series) is drawn on a linear step axis,
y 0-100%, with the 95% interval as a band; the first checkpoint whose drop is
significant (metabench/series.py) gets a dashed vertical line and a larger
dot, and the page says the same in text beside the chart.

Per-layer values (the analyses' residual cosines) are drawn against layer on
a linear axis, several series to a chart, y from 0 (or -1, when a value is
negative) to 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

WIDTH, HEIGHT = 260, 150
LEFT, RIGHT, TOP, BOTTOM = 34, 10, 10, 26  # plot margins in px


def score_colour(score: float) -> str:
    """Background colour for a score fraction in [0, 1]."""
    s = min(1.0, max(0.0, score))
    return f"hsl({130 * s:.0f},65%,80%)"


def diverging_colour(value: float, scale: float) -> str:
    """Background for a signed value: white at 0, full blue (> 0) or red (< 0) at |value| >= scale."""
    t = min(1.0, abs(value) / scale) if scale > 0 else 0.0
    return f"hsl({215 if value >= 0 else 5},70%,{97 - 25 * t:.0f}%)"


def short_tokens(n: int) -> str:
    """4096 -> '4k', 1536 -> '1.5k', 131072 -> '128k', 1000 -> '1000'."""
    if n >= 1024 and n % 512 == 0:
        return f"{n / 1024:g}k"
    return str(n)


def multiple(length: int, context: int | None) -> str:
    """A length as a multiple of the native context: '0.5x', '1x', '1.5x'; '' without a context."""
    if not context:
        return ""
    return f"{round(length / context, 2):g}x"


@dataclass(frozen=True)
class Tick:
    pos: float  # x or y in px
    label: str


@dataclass(frozen=True)
class Dot:
    x: float
    y: float
    tip: str  # tooltip text


@dataclass(frozen=True)
class LineChart:
    title: str
    width: int
    height: int
    line: str  # polyline points "x,y x,y"
    band: str  # polygon points of the 95% interval
    dots: tuple[Dot, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    markers: tuple[Tick, ...]  # vertical lines at 1x and 2x of the native context
    beyond: float | None  # x where lengths above the native context start (shaded to the right)
    threshold_y: float | None  # the effective-length threshold as a dashed line
    plot: tuple[float, float, float, float]  # x0, y0, x1, y1 of the plot area


def line_chart(
    title: str,
    points: Sequence[tuple[int, float, float, float]],
    context: int | None,
    threshold: float | None = None,
) -> LineChart:
    """Score vs length. `points`: (length tokens, mean, ci_low, ci_high) as fractions."""
    if not points:
        raise ValueError(f"line_chart {title!r}: no points")
    points = sorted(points)
    lengths = [p[0] for p in points]
    lo, hi = min(lengths), max(lengths)
    if context:
        lo, hi = min(lo, context), max(hi, context)
    if lo == hi:
        lo, hi = lo / 2, hi * 2
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
    span = math.log2(hi) - math.log2(lo)

    def x(n: float) -> float:
        return round(x0 + (math.log2(n) - math.log2(lo)) / span * (x1 - x0), 1)

    def y(s: float) -> float:
        return round(y1 - min(1.0, max(0.0, s)) * (y1 - y0), 1)

    line = " ".join(f"{x(n)},{y(m)}" for n, m, _, _ in points)
    upper = [f"{x(n)},{y(h)}" for n, _, _, h in points]
    lower = [f"{x(n)},{y(lw)}" for n, _, lw, _ in reversed(points)]
    markers: list[Tick] = []
    if context:
        for k in (1, 2):
            if lo <= k * context <= hi * 1.0001:
                markers.append(Tick(x(k * context), f"{k}x"))
    return LineChart(
        title=title,
        width=WIDTH,
        height=HEIGHT,
        line=line,
        band=" ".join(upper + lower),
        dots=tuple(
            Dot(x(n), y(m), f"{short_tokens(n)} tokens: {100 * m:.1f}% [{100 * lw:.1f}, {100 * h:.1f}]")
            for n, m, lw, h in points
        ),
        x_ticks=tuple(Tick(x(n), short_tokens(n)) for n in lengths),
        y_ticks=tuple(Tick(y(s / 100), f"{s}") for s in (0, 50, 100)),
        markers=tuple(markers),
        beyond=x(context) if context and context < hi else None,
        threshold_y=y(threshold) if threshold is not None else None,
        plot=(x0, y0, x1, y1),
    )


@dataclass(frozen=True)
class Series:
    name: str
    css: str  # class of its line and dots in the page's style
    line: str  # polyline points
    dots: tuple[Dot, ...]


@dataclass(frozen=True)
class LayerChart:
    title: str
    width: int
    height: int
    series: tuple[Series, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    plot: tuple[float, float, float, float]


def layer_chart(title: str, layers: Sequence[int], series: Sequence[tuple[str, str, Sequence[float]]]) -> LayerChart:
    """Values in [-1, 1] against layer. `series`: (name, css class, one value per layer)."""
    if not layers or any(len(vals) != len(layers) for _, _, vals in series):
        raise ValueError(f"layer_chart {title!r}: every series needs one value per layer")
    lo = -1.0 if any(v < 0 for _, _, vals in series for v in vals) else 0.0
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM
    first, span = min(layers), max(1, max(layers) - min(layers))

    def x(layer: int) -> float:
        return round(x0 + (layer - first) / span * (x1 - x0), 1)

    def y(v: float) -> float:
        return round(y1 - (min(1.0, max(lo, v)) - lo) / (1 - lo) * (y1 - y0), 1)

    return LayerChart(
        title=title,
        width=WIDTH,
        height=HEIGHT,
        series=tuple(
            Series(name, css, " ".join(f"{x(n)},{y(v)}" for n, v in zip(layers, vals)),
                   tuple(Dot(x(n), y(v), f"layer {n}, {name}: {v:.3f}") for n, v in zip(layers, vals)))
            for name, css, vals in series
        ),
        x_ticks=tuple(Tick(x(n), str(n)) for n in layers),
        y_ticks=tuple(Tick(y(v), f"{v:g}") for v in (lo, (lo + 1) / 2, 1.0)),
        plot=(x0, y0, x1, y1),
    )


def short_steps(n: int) -> str:
    """1500 -> '1.5k', 20000 -> '20k', 999 -> '999'."""
    return f"{n / 1000:g}k" if n >= 1000 else str(n)


@dataclass(frozen=True)
class StepChart:
    title: str
    width: int
    height: int
    line: str  # polyline points
    band: str  # polygon points of the 95% interval
    dots: tuple[Dot, ...]
    x_ticks: tuple[Tick, ...]
    y_ticks: tuple[Tick, ...]
    drop: Dot | None  # the first significant drop, marked
    plot: tuple[float, float, float, float]


def step_chart(title: str, points: Sequence[tuple[int, float, float, float]], drop_step: int | None = None,
               max_ticks: int = 6) -> StepChart:
    """Score vs training step. `points`: (step, mean, ci_low, ci_high) as fractions; `drop_step` one of the steps."""
    if not points:
        raise ValueError(f"step_chart {title!r}: no points")
    points = sorted(points)
    steps = [p[0] for p in points]
    lo, hi = min(steps), max(steps)
    if lo == hi:
        lo, hi = lo - 1, hi + 1
    x0, x1, y0, y1 = LEFT, WIDTH - RIGHT, TOP, HEIGHT - BOTTOM

    def x(n: float) -> float:
        return round(x0 + (n - lo) / (hi - lo) * (x1 - x0), 1)

    def y(s: float) -> float:
        return round(y1 - min(1.0, max(0.0, s)) * (y1 - y0), 1)

    dots = tuple(Dot(x(n), y(m), f"step {n}: {100 * m:.1f}% [{100 * lw:.1f}, {100 * h:.1f}]") for n, m, lw, h in points)
    # every step when few, else evenly spaced ones (always the first and the last): labels must not overlap
    shown = steps if len(steps) <= max_ticks else [steps[round(i * (len(steps) - 1) / (max_ticks - 1))]
                                                    for i in range(max_ticks)]
    drop = next((d for n, d in zip(steps, dots) if n == drop_step), None)
    if drop_step is not None and drop is None:
        raise ValueError(f"step_chart {title!r}: the drop's step {drop_step} is not among the points")
    return StepChart(
        title=title,
        width=WIDTH,
        height=HEIGHT,
        line=" ".join(f"{d.x},{d.y}" for d in dots),
        band=" ".join([f"{x(n)},{y(h)}" for n, _, _, h in points] + [f"{x(n)},{y(lw)}" for n, _, lw, _ in reversed(points)]),
        dots=dots,
        x_ticks=tuple(Tick(x(n), short_steps(n)) for n in dict.fromkeys(shown)),
        y_ticks=tuple(Tick(y(s / 100), f"{s}") for s in (0, 50, 100)),
        drop=drop,
        plot=(x0, y0, x1, y1),
    )
