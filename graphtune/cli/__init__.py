"""The ``graphtune`` command line (typer): one module per command group."""

from __future__ import annotations

from typing import Annotated

import typer

from graphtune.backends.traces import UnknownBackendError
from graphtune.cli.common import BackendOpt, console, fail
from graphtune.cli.config import config_app
from graphtune.cli.evals import register as register_evals
from graphtune.cli.traces import traces_app

app = typer.Typer(help="graphtune: record, observe and tune LangGraph workflows.", no_args_is_help=True, add_completion=False)
app.add_typer(traces_app, name="traces")
register_evals(app)
app.add_typer(config_app, name="config")


@app.command()
def demo(
    requests: Annotated[int, typer.Option(help="Simulated production requests.")] = 60,
    backend: BackendOpt = None,
):
    """Record simulated production traffic of an example workflow, then show its hot spots and a trace."""
    from graphtune.demo import run_demo

    try:
        run_demo(requests=requests, backend=backend, console=console)
    except UnknownBackendError as exc:
        raise fail(str(exc)) from None


def main() -> None:
    app()


if __name__ == "__main__":
    main()
