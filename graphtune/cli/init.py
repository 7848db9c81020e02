"""``graphtune init``: a starter spec from a graph factory (placeholder)."""

import typer


def register(app: typer.Typer) -> None:
    pass
