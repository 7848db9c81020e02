"""The web view's charts: matplotlib figures rendered to inline SVG strings.

Why matplotlib: it renders on the server with no browser, no JavaScript and no network (the SVG
travels inside the page, so a saved report stays self-contained); it is the best-kept plotting
library in Python. Vega-Lite through altair needs a JavaScript runtime in the browser or the
vl-convert binary to render offline. Every chart has a text fallback in the page (tables), so a
reader without SVG loses nothing.
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")  # no display, no GUI toolkit: a server renders files

from matplotlib.figure import Figure  # noqa: E402  (after choosing the backend)

BETTER, WORSE, NEUTRAL, BASE = "#1a7f37", "#cf222e", "#6e7781", "#0969da"
WIDTH = 6.4


def _svg(fig: Figure, title: str) -> str:
    """The figure as an ``<svg>`` element (no XML prologue, fixed ids made unique), titled for screen readers."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    text = re.sub(r"<metadata>.*?</metadata>", "", text, flags=re.S)  # RDF licence boilerplate
    prefix = re.sub(r"\W", "", title.lower())[:24] or "chart"
    text = re.sub(r'id="([^"]+)"', lambda m: f'id="{prefix}-{m.group(1)}"', text)
    text = re.sub(r'(href="|url\()#', lambda m: f"{m.group(1)}#{prefix}-", text)
    return text.replace("<svg ", f'<svg role="img" aria-label="{title}" class="chart" ', 1)


def _figure(height: float) -> Figure:
    fig = Figure(figsize=(WIDTH, height))
    fig.set_facecolor("white")
    return fig


def metric_deltas(rows: Sequence[dict]) -> str:
    """One row per candidate: the change in the goal metric with its 95% interval, coloured by verdict.

    ``rows``: ``{"label", "delta", "low", "high", "better"}`` (better: True / False / None)."""
    rows = [r for r in rows if r.get("delta") is not None]
    fig = _figure(0.6 + 0.45 * max(len(rows), 1))
    ax = fig.add_subplot()
    for i, row in enumerate(rows):
        colour = {True: BETTER, False: WORSE}.get(row.get("better"), NEUTRAL)
        low, high = row.get("low"), row.get("high")
        if low is not None and high is not None:
            ax.plot([low, high], [i, i], color=colour, linewidth=3, solid_capstyle="butt")
        ax.plot([row["delta"]], [i], "o", color=colour, markersize=7)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), [r["label"] for r in rows])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.invert_yaxis()
    ax.set_xlabel("change vs baseline (95% CI)")
    _tidy(ax)
    return _svg(fig, "metric changes with intervals")


def example_outcomes(improved: int, regressed: int, unchanged: int, metric: str) -> str:
    """Per-example wins and losses of the candidate on the goal metric: one stacked bar."""
    fig = _figure(1.3)
    ax = fig.add_subplot()
    left = 0
    for count, colour, label in ((improved, BETTER, "improved"), (unchanged, NEUTRAL, "unchanged"), (regressed, WORSE, "regressed")):
        if count:
            ax.barh([0], [count], left=left, color=colour, label=f"{label} ({count})")
            ax.text(left + count / 2, 0, str(count), ha="center", va="center", color="white", fontsize=9)
        left += count
    ax.set_yticks([])
    ax.set_xlim(0, max(left, 1))
    ax.set_xlabel(f"examples, by change in {metric}")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.6), ncol=3, frameon=False, fontsize=8)
    _tidy(ax)
    return _svg(fig, "per-example wins and losses")


def latency_distribution(baseline: Sequence[float], candidate: Sequence[float]) -> str:
    """Latency of each example, baseline vs candidate: two overlaid histograms on a shared log scale."""
    fig = _figure(2.4)
    ax = fig.add_subplot()
    values = [v for v in (*baseline, *candidate) if v and v > 0]
    if values:
        low, high = min(values), max(values)
        if high <= low:
            high = low * 1.01
        edges = [low * (high / low) ** (i / 30) for i in range(31)]
        ax.hist([v for v in baseline if v > 0], bins=edges, alpha=0.55, color=BASE, label=f"baseline (n={len(baseline)})")
        ax.hist([v for v in candidate if v > 0], bins=edges, alpha=0.55, color="#bf8700", label=f"candidate (n={len(candidate)})")
        ax.set_xscale("log")
        ax.legend(frameon=False, fontsize=8)
    ax.set_xlabel("latency per example (ms, log scale)")
    ax.set_ylabel("examples")
    _tidy(ax)
    return _svg(fig, "latency distribution baseline vs candidate")


def interval_over_looks(looks: Sequence[dict], metric: str) -> str:
    """The live experiment's always-valid interval of the effect at each look: it narrows as data arrive.

    ``looks``: ``{"look", "estimate", "lower", "upper"}`` (bounds may be None: not yet bounded)."""
    fig = _figure(2.4)
    ax = fig.add_subplot()
    shown = [lk for lk in looks if lk.get("estimate") is not None]
    xs = [lk["look"] for lk in shown]
    finite = [v for lk in shown for v in (lk.get("lower"), lk.get("upper"), lk["estimate"]) if v is not None and math.isfinite(v)]
    span = (max(finite) - min(finite)) if finite else 1.0
    far = span or 1.0
    lows = [lk["lower"] if lk.get("lower") is not None and math.isfinite(lk["lower"]) else min(finite, default=0) - far for lk in shown]
    highs = [lk["upper"] if lk.get("upper") is not None and math.isfinite(lk["upper"]) else max(finite, default=0) + far for lk in shown]
    if shown:
        ax.fill_between(xs, lows, highs, step="mid", color=BASE, alpha=0.2, label="always-valid interval")
        ax.plot(xs, [lk["estimate"] for lk in shown], "o-", color=BASE, label="estimate")
        ax.legend(frameon=False, fontsize=8)
    ax.axhline(0, color="black", linewidth=0.8)
    ax.set_xlabel("look")
    ax.set_ylabel(f"effect on {metric}")
    _tidy(ax)
    return _svg(fig, "experiment interval over looks")


def _tidy(ax) -> None:
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8)
