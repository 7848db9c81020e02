"""Charts are inline SVG that a page can hold side by side: every reference inside a chart (glyphs,
clip paths) resolves within it, and two charts never share an id."""

from __future__ import annotations

import re

from graphtune.web import charts


def all_charts() -> list[str]:
    return [
        charts.metric_deltas([{"label": "c1", "delta": 0.0, "low": -0.1, "high": 0.1, "better": None},
                              {"label": "c2", "delta": 0.2, "low": 0.1, "high": 0.3, "better": True}]),
        charts.example_outcomes(12, 3, 45, "contains"),
        charts.latency_distribution([100.0, 120.0, 300.0], [80.0, 90.0, 250.0]),
        charts.interval_over_looks([{"look": 1, "estimate": 0.1, "lower": None, "upper": None},
                                    {"look": 2, "estimate": 0.08, "lower": -0.2, "upper": 0.3},
                                    {"look": 3, "estimate": 0.09, "lower": 0.01, "upper": 0.15}], "error"),
    ]


def test_every_reference_resolves_inside_its_chart_and_ids_are_unique_across_charts():
    seen: set[str] = set()
    for svg in all_charts():
        assert svg.startswith("<svg") and 'role="img"' in svg and "<metadata>" not in svg
        ids = re.findall(r'id="([^"]+)"', svg)
        refs = set(re.findall(r'(?:href="|url\()#([^")]+)', svg))
        assert refs <= set(ids), refs - set(ids)
        assert not seen & set(ids)
        seen |= set(ids)


def test_charts_draw_nothing_from_empty_data_without_failing():
    assert charts.metric_deltas([]).startswith("<svg")
    assert charts.latency_distribution([], []).startswith("<svg")
    assert charts.interval_over_looks([], "error").startswith("<svg")
