"""The ``graphtune`` command line (typer): one module per command group, one option vocabulary
(``--db``, ``--as``, ``--reason``/``-m``, ``--json``; see ``common``)."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from graphtune.backends.traces import UnknownBackendError
from graphtune.cli.common import JsonOpt, console, fail, group, print_json
from graphtune.cli.config import config_app
from graphtune.cli.evals import register as register_evals
from graphtune.cli.experiment import experiment_app
from graphtune.cli.init import register as register_init
from graphtune.cli.traces import forget_user, traces_app
from graphtune.cli.tune import register as register_tune
from graphtune.extras import MissingExtraError
from graphtune.cli.web import register as register_web

app = group("graphtune: record, observe and tune LangGraph workflows.")
app.add_typer(traces_app, name="traces")
app.command("forget-user")(forget_user)
register_init(app)
register_evals(app)
register_tune(app)
register_web(app)
app.add_typer(config_app, name="config")
app.add_typer(experiment_app, name="experiment")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("graphtune")
    except PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown (not installed)"


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"graphtune {_version()}")
        raise typer.Exit()


@app.callback()
def root(
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print graphtune's version and exit.")] = False,
):
    """graphtune: record, observe and tune LangGraph workflows."""


@app.command()
def demo(
    requests: Annotated[int, typer.Option(help="Simulated production requests before (and after) tuning.")] = 150,
    db: Annotated[Optional[str], typer.Option("--db", help="Database URL (sqlite:///FILE, postgresql://...). Default: a fresh .graphtune/demo.db, reset at every run.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Eval examples per candidate (default 144 of the eval set's 288).")] = None,
    no_approve: Annotated[bool, typer.Option("--no-approve", help="Stop at approval: print the thread id and the approve command.")] = False,
    no_live: Annotated[bool, typer.Option("--no-live", help="Approve straight away instead of trying the candidate on live traffic first.")] = False,
    as_json: JsonOpt = False,
):
    """The whole loop on support_qa, offline: production traffic, observe, propose, evaluate, a live experiment, approve, promote."""
    from rich.console import Console

    from graphtune.demo import run_demo

    try:
        options = {} if limit is None else {"limit": limit}
        quiet = Console(quiet=True) if as_json else console  # --json: only the summary, on stdout
        result = run_demo(requests=requests, db=db, approve=not no_approve, live=not no_live, console=quiet, **options)
    except UnknownBackendError as exc:
        raise fail(str(exc)) from None
    if as_json:
        print_json(result)


def main() -> None:
    try:
        app()
    except MissingExtraError as exc:  # any command, any depth: one line naming the extra to install
        raise SystemExit(fail(str(exc)).exit_code) from None


if __name__ == "__main__":
    main()
