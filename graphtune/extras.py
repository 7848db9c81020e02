"""Optional features and the extra that installs each.

``pip install graphtune`` records to JSONL/SQLite, tunes and evaluates. PostgreSQL, Langfuse's own
callback handler, the LangGraph server, the web view and the bundled example's retrieval are extras
(``pyproject.toml``, ``docs/install.md``); the packages graphtune itself imports from them are imported only where the feature is used, inside
:func:`needs_extra`, so using one without its extra says which extra to install instead of a bare
``ModuleNotFoundError``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

# the modules each extra brings (dotted prefixes: langgraph.checkpoint.postgres is not all of langgraph)
EXTRA_MODULES: dict[str, tuple[str, ...]] = {
    "postgres": ("psycopg", "psycopg_pool", "psycopg_binary", "langgraph.checkpoint.postgres"),
    "langfuse": ("langfuse",),
    "examples": ("bm25s", "Stemmer"),
    "web": ("jinja2", "matplotlib", "multipart", "python_multipart", "starlette", "uvicorn"),
}


class MissingExtraError(ImportError):
    """A feature was used whose optional packages are not installed."""

    def __init__(self, feature: str, extra: str, module: str):
        self.feature, self.extra, self.module = feature, extra, module
        super().__init__(f"{feature} needs the '{extra}' extra ({module} is not installed): "
                         f"pip install 'graphtune[{extra}]'")


def _belongs_to(module: str, extra: str) -> bool:
    return any(module == prefix or module.startswith(prefix + ".") for prefix in EXTRA_MODULES[extra])


@contextmanager
def needs_extra(extra: str, feature: str) -> Iterator[None]:
    """Imports inside this block that fail for a package of ``extra`` raise :class:`MissingExtraError`
    naming ``feature`` and the install line; any other import error passes through unchanged."""
    try:
        yield
    except ModuleNotFoundError as exc:
        if exc.name and _belongs_to(exc.name, extra):
            raise MissingExtraError(feature, extra, exc.name) from exc
        raise
