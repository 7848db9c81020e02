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


async def endpoint_problem(model: Any, timeout_s: float = 10.0) -> str | None:
    """Why ``model``'s endpoint cannot serve this run (unreachable, or the key refused), else None.

    One ``GET /models`` with the model's own client, base URL and key: no tokens spent. A run whose
    model cannot be reached would otherwise label every call "malformed output", fail every example
    and end as ``no_change``. Models without an OpenAI client (scripted test models), servers
    without ``/models`` (404) and transient answers (429, 5xx) are not judged here."""
    import openai

    client = getattr(model, "root_async_client", None)
    if not isinstance(client, openai.AsyncOpenAI):
        return None
    where = f"the model endpoint {client.base_url}"
    try:
        await client.with_options(timeout=timeout_s, max_retries=1).models.list()
    except (openai.AuthenticationError, openai.PermissionDeniedError) as error:
        return (f"{where} refused the API key (HTTP {error.status_code}: {_message(error)}): set OPENAI_API_KEY "
                "to a key it accepts, or unset GRAPHTUNE_MODEL to run offline")
    except openai.APIConnectionError as error:
        cause = error.__cause__ or error
        return (f"cannot reach {where} ({type(cause).__name__}: {cause}): check OPENAI_BASE_URL and that the "
                "server runs, or unset GRAPHTUNE_MODEL to run offline")
    except openai.APIStatusError:
        return None
    return None


def _message(error: Any) -> str:
    body = getattr(error, "body", None)
    if isinstance(body, dict):
        return str(body.get("message") or body)
    return str(error)
