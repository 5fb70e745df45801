"""Line charts as numbers only: each series scaled to a round maximum, None values left out of the line."""

from __future__ import annotations

from relaybus.console.charts import line_chart


def test_series_are_scaled_to_a_round_maximum() -> None:
    chart = line_chart("t", "tasks/s", {"a": [0.0, 1.0, 3.7], "b": [None, 2.0, None]})
    assert chart.y_max == 4.0
    [a, b] = chart.lines
    ys = [float(point.split(",")[1]) for point in a.points.split()]
    assert ys[0] == chart.bottom  # zero at the axis
    assert ys[2] < ys[1] < ys[0]  # higher values higher up
    assert len(b.points.split()) == 1
    assert (a.mean, b.mean) == (4.7 / 3, 2.0)


def test_an_empty_chart_has_a_unit_scale_and_no_line() -> None:
    chart = line_chart("t", "s", {"p50": [None, None]})
    assert chart.y_max == 1.0
    assert chart.lines[0].points == ""
    assert chart.lines[0].mean is None


def test_small_and_large_maxima_round_up() -> None:
    assert line_chart("t", "", {"x": [0.03]}).y_max >= 0.03
    assert line_chart("t", "", {"x": [0.03]}).y_max <= 0.1
    assert line_chart("t", "", {"x": [1234.0]}).y_max in (1500.0, 2000.0)
