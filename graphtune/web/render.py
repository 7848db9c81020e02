"""Jinja2 templates of the web view, autoescaped; the page's styles are inline (no asset to fetch)."""

from __future__ import annotations

import datetime as dt
from functools import cache
from typing import Any

from jinja2 import Environment, PackageLoader, select_autoescape

from graphtune.tuning.decision import format_number


def _when(value: Any) -> str:
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    return str(value or "")


def _ms(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    return f"{value / 1000:.2f} s" if value >= 1000 else f"{value:.0f} ms"


@cache
def environment() -> Environment:
    env = Environment(loader=PackageLoader("graphtune.web", "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters.update(num=lambda v, signed=False: format_number(v, signed=signed) if v is not None else "–",
                       when=_when, ms=_ms, pct=lambda v: f"{v:.0%}" if isinstance(v, (int, float)) else "–")
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
