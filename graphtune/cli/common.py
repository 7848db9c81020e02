"""What every graphtune command shares: consoles, one option vocabulary (--db, --as, --reason/-m, --json),
the deprecated spellings that still work, durations, errors."""

from __future__ import annotations

import json
import os
import re
import sys
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from typer.core import TyperGroup
from rich.markup import escape

console = Console(width=None if sys.stdout.isatty() else 140)  # logs and pipes get readable tables
errors = Console(stderr=True, soft_wrap=True, highlight=False)  # one unwrapped line per error

_DB_DEFAULT = "Default: GRAPHTUNE_DATABASE_URL or sqlite:///.graphtune/graphtune.db"
DbOpt = Annotated[Optional[str], typer.Option("--db", help=f"Database URL (sqlite:///FILE, postgresql://...) of checkpoints, configs, traces and the eval cache. {_DB_DEFAULT}")]
TracesDbOpt = Annotated[Optional[str], typer.Option("--db", help="Trace store URL (jsonl:///DIR, sqlite:///FILE, postgresql://..., langfuse://). Default: GRAPHTUNE_TRACES_URL, GRAPHTUNE_DATABASE_URL, sqlite:///.graphtune/graphtune.db")]
AsOpt = Annotated[Optional[str], typer.Option("--as", help="Who: kept in the change log (default: the OS user).")]
ReasonOpt = Annotated[str, typer.Option("--reason", "-m", help="Why: kept in the change log.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
ModelOpt = Annotated[Optional[str], typer.Option("--model", help="Chat model as provider:model (anthropic:claude-sonnet-4-5, ollama:llama3.1) or an OpenAI-compatible name (OPENAI_BASE_URL). Default: GRAPHTUNE_MODEL; none runs offline.")]
RateLimitOpt = Annotated[Optional[float], typer.Option("--rate-limit", help="Model requests per second, shared by every model call of the run. Default: the spec's rate_limit.requests_per_s, else no limit.")]

# Old spellings, still accepted where the new one exists, with a one-line notice on stderr.
DEPRECATED_OPTIONS = {"--backend": "--db", "--actor": "--as", "--comment": "--reason"}


def _renamed(command, args: list[str]) -> list[str]:
    known = {name for param in command.params for name in param.opts}
    out: list[str] = []
    for position, token in enumerate(args):
        if token == "--":  # everything after is an argument, spelled as the user typed it
            return out + args[position:]
        name, equals, value = token.partition("=")
        new = DEPRECATED_OPTIONS.get(name)
        if new and name not in known and new in known:
            errors.print(f"[yellow]deprecated:[/yellow] {name} is now {new}; the old spelling will go in a later release")
            token = new + equals + value
        out.append(token)
    return out


class Group(TyperGroup):
    """A command group whose commands also accept the deprecated option spellings."""

    def resolve_command(self, ctx, args: list[str]):
        name, command, rest = super().resolve_command(ctx, args)
        if command is not None and not isinstance(command, TyperGroup):  # typer carries its own click
            rest = _renamed(command, rest)
        return name, command, rest


def group(help: str) -> typer.Typer:
    """A command group of the graphtune CLI (sub-groups included): one vocabulary everywhere."""
    return typer.Typer(cls=Group, help=help, no_args_is_help=True, add_completion=False)


def actor(who: str | None) -> str:
    """``--as``, else ``GRAPHTUNE_ACTOR``, else the OS user (``access.local_actor``)."""
    from graphtune.graphs.access import local_actor

    return local_actor(who)


def use_db(db: str | None) -> None:
    """One URL for everything this process touches, the recorder included."""
    if db:
        os.environ["GRAPHTUNE_DATABASE_URL"] = db


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


def check_rate_limit(rate: float | None) -> float | None:
    if rate is not None and not rate > 0:
        raise fail(f"--rate-limit: expected model requests per second above 0, e.g. 5 or 0.5; got {rate:g}")
    return rate


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
