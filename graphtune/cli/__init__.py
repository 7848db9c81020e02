"""The ``graphtune`` command line (typer): one module per command group."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

from graphtune.backends.traces import UnknownBackendError
from graphtune.cli.common import console, fail
from graphtune.cli.config import config_app
from graphtune.cli.evals import register as register_evals
from graphtune.cli.experiment import experiment_app
from graphtune.cli.traces import forget_user, traces_app
from graphtune.cli.tune import register as register_tune
from graphtune.cli.web import register as register_web

app = typer.Typer(help="graphtune: record, observe and tune LangGraph workflows.", no_args_is_help=True, add_completion=False)
app.add_typer(traces_app, name="traces")
app.command("forget-user")(forget_user)
register_evals(app)
register_tune(app)
register_web(app)
app.add_typer(config_app, name="config")
app.add_typer(experiment_app, name="experiment")


@app.command()
def demo(
    requests: Annotated[int, typer.Option(help="Simulated production requests before (and after) tuning.")] = 150,
    db: Annotated[Optional[str], typer.Option("--db", help="Database URL (sqlite:///FILE, postgresql://...). Default: a fresh .graphtune/demo.db, reset at every run.")] = None,
    limit: Annotated[Optional[int], typer.Option(help="Eval examples per candidate (default 144 of the eval set's 288).")] = None,
    no_approve: Annotated[bool, typer.Option("--no-approve", help="Stop at approval: print the thread id and the approve command.")] = False,
    no_live: Annotated[bool, typer.Option("--no-live", help="Approve straight away instead of trying the candidate on live traffic first.")] = False,
):
    """The whole loop on support_qa, offline: production traffic, observe, propose, evaluate, a live experiment, approve, promote."""
    from graphtune.demo import run_demo

    try:
        options = {} if limit is None else {"limit": limit}
        run_demo(requests=requests, db=db, approve=not no_approve, live=not no_live, console=console, **options)
    except UnknownBackendError as exc:
        raise fail(str(exc)) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
