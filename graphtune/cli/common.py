"""What every graphtune command shares: consoles, the --backend/--json options, durations, errors."""

from __future__ import annotations

import json
import re
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape

console = Console(width=None if sys.stdout.isatty() else 140)  # logs and pipes get readable tables
errors = Console(stderr=True, soft_wrap=True, highlight=False)  # one unwrapped line per error

BackendOpt = Annotated[Optional[str], typer.Option("--backend", help="Trace store URL (jsonl:///DIR, sqlite:///FILE, postgresql://...). Default: GRAPHTUNE_TRACES_URL, GRAPHTUNE_DATABASE_URL, sqlite:///.graphtune/graphtune.db")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """'30d', '12h', '15m', '90s', '2w' -> seconds."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text or "")
    if not match:
        raise typer.BadParameter(f"expected a duration such as 30d, 12h, 15m or 90s; got {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def fail(message: str, code: int = 2) -> typer.Exit:
    """Print one error line; the caller raises what this returns. The message is plain text: brackets
    in it (``graphtune[postgres]``, a path) are printed, not read as rich markup."""
    errors.print(f"[red]error:[/red] {escape(message)}")
    return typer.Exit(code)


def print_json(data) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
