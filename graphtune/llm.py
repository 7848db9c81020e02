"""The one place graphtune decides whether an LLM is configured, and builds ``ChatOpenAI`` lazily.

A model is configured when ``GRAPHTUNE_MODEL`` names one; ``OPENAI_BASE_URL`` points at any
OpenAI-compatible server and ``OPENAI_API_KEY`` authenticates. Without it every part still runs
(offline answerer, search proposer, deterministic parsers) and says so. Nothing is built at import.
"""

from __future__ import annotations

import os
from typing import Any

OFFLINE_NOTICE = "no LLM configured (set GRAPHTUNE_MODEL, and OPENAI_BASE_URL / OPENAI_API_KEY): running offline"


def configured_model() -> str | None:
    return os.environ.get("GRAPHTUNE_MODEL") or None


def model_available() -> bool:
    return configured_model() is not None


def chat_model(model: str | None = None, **kwargs: Any):
    """A ``ChatOpenAI`` for ``model`` (default: ``GRAPHTUNE_MODEL``) at the configured endpoint."""
    from langchain_openai import ChatOpenAI

    name = model or configured_model()
    if not name:
        raise RuntimeError(OFFLINE_NOTICE)
    settings: dict[str, Any] = {"model": name, "api_key": os.environ.get("OPENAI_API_KEY") or "not-needed"}
    if os.environ.get("OPENAI_BASE_URL"):
        settings["base_url"] = os.environ["OPENAI_BASE_URL"]
    settings.update(kwargs)  # explicit settings (base_url, temperature, ...) win over the environment
    return ChatOpenAI(**settings)
