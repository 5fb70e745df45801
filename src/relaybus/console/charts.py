"""Line charts as plain geometry for a server-side SVG: numbers only, so the template draws them safely.

:func:`line_chart` scales one or more series of per-minute values (None: no value in that minute) into
polylines on a ``width`` x ``height`` canvas with a margin for the axis labels.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Chart", "Line", "line_chart"]

WIDTH = 640
HEIGHT = 170
_LEFT, _RIGHT, _TOP, _BOTTOM = 48, 8, 10, 22


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    points: str
    """``x,y x,y ...`` in canvas coordinates; empty when the series has no value."""
    mean: float | None
    """The mean of the series' values over the chart (None when it has none): what the legend says."""


@dataclass(frozen=True, slots=True)
class Chart:
    title: str
    unit: str
    width: int
    height: int
    top: int
    bottom: int
    left: int
    right: int
    y_max: float
    lines: tuple[Line, ...]


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    step = 10 ** len(str(int(value))) / 10 if value >= 1 else 1.0
    while step > 0.001 and value <= step / 2:
        step /= 2
    top = step
    while top < value:
        top += step
    return float(top)


def line_chart(title: str, unit: str, series: dict[str, list[float | None]]) -> Chart:
    """``series`` (name -> values, oldest first, all of one length) as a chart scaled to their maximum."""
    values = [v for row in series.values() for v in row if v is not None]
    y_max = _nice_max(max(values, default=0.0))
    inner_w = WIDTH - _LEFT - _RIGHT
    inner_h = HEIGHT - _TOP - _BOTTOM
    lines = []
    for name, row in series.items():
        step = inner_w / max(1, len(row) - 1)
        points = [
            f"{_LEFT + i * step:.1f},{_TOP + inner_h * (1 - value / y_max):.1f}"
            for i, value in enumerate(row)
            if value is not None
        ]
        known = [v for v in row if v is not None]
        mean = sum(known) / len(known) if known else None
        lines.append(Line(name=name, points=" ".join(points), mean=mean))
    return Chart(
        title=title,
        unit=unit,
        width=WIDTH,
        height=HEIGHT,
        top=_TOP,
        bottom=HEIGHT - _BOTTOM,
        left=_LEFT,
        right=WIDTH - _RIGHT,
        y_max=y_max,
        lines=tuple(lines),
    )
