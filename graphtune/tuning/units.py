"""Numbers as people read them: short, and with their unit (ms, $, tokens, %) wherever a metric has one."""

from __future__ import annotations

TOKEN_METRICS = {"input_tokens", "output_tokens", "total_tokens"}


def format_number(value: float | None, signed: bool = False) -> str:
    """Short, fixed-width-ish numbers for chat and terminal: 0.608, 812, 12.4, 0.000123."""
    if value is None:
        return "n/a"
    sign = "+" if signed else ""
    size = abs(value)
    if size >= 100:
        return f"{value:{sign},.0f}"
    if size >= 10:
        return f"{value:{sign}.1f}"
    if size >= 0.01 or size == 0:
        return f"{value:{sign}.3f}"
    return f"{value:{sign}.3g}"


def format_share(value: float | None, signed: bool = False) -> str:
    """A proportion as a percentage: 0.01289 -> 1.29%."""
    return "n/a" if value is None else f"{value * 100:{'+' if signed else ''}.3g}%"


def format_metric(metric: str, value: float | None, signed: bool = False) -> str:
    """A value of one of the spec's metrics with its unit: 12.9 ms, $0.000291, 436 tokens, 5% errors.
    Quality scores (exact, contains, token_f1, judge, retrieval_hit) are 0-1 scores and stay bare."""
    if value is None:
        return "n/a"
    if metric == "latency_ms":
        return f"{format_number(value, signed)} ms"
    if metric == "cost_usd":
        sign = "-" if value < 0 else "+" if signed else ""
        return f"{sign}${format_number(abs(value))}"
    if metric in TOKEN_METRICS:
        return f"{format_number(value, signed)} tokens"
    if metric == "error":
        return format_share(value, signed)
    return format_number(value, signed)
