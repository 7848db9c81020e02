"""Links to the web view that the CLI and the demo print beside their commands."""

from __future__ import annotations

import os
from urllib.parse import quote

WEB_URL_ENV = "GRAPHTUNE_WEB_URL"
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8765  # where ``graphtune ui`` listens by default


def web_url() -> str:
    """Where people open the web view: ``GRAPHTUNE_WEB_URL`` (a LangGraph server's address, say), else
    ``graphtune ui``'s default address."""
    return (os.environ.get(WEB_URL_ENV) or f"http://{DEFAULT_HOST}:{DEFAULT_PORT}").rstrip("/")


def thread_url(thread_id: str) -> str:
    """The approval page of a tuning thread."""
    return f"{web_url()}/graphtune/threads/{quote(thread_id)}"
