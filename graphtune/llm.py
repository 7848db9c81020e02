"""The one place graphtune decides whether an LLM is configured, and builds chat models lazily.

A model is named ``provider:model`` as LangChain's ``init_chat_model`` reads it (``anthropic:claude-sonnet-4-5``,
``ollama:llama3.1``); a bare name (``gpt-4.1-mini``, ``llama3:8b``) means any OpenAI-compatible server,
reached through ``OPENAI_BASE_URL`` with ``OPENAI_API_KEY``. A provider other than OpenAI needs only
its LangChain integration package (``pip install 'graphtune[anthropic]'``). The name comes from
``GRAPHTUNE_MODEL``, or from the controller's context / ``--model`` for one run (``using``). Without one
every part still runs (offline answerer, search proposer, deterministic parsers) and says so.

Every model built here shares the process's rate limiter for its requests/s and retries throttles
(429) and server errors (5xx) through its provider SDK's own retry loop (exponential backoff with
jitter, ``Retry-After`` honoured), ``max_retries`` times; ``graphtune.throttling`` says how. Nothing
is built at import.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from graphtune.throttling import DEFAULT_MAX_RETRIES, paced_http_clients, shared_limiter

OFFLINE_NOTICE = ("no LLM configured (set GRAPHTUNE_MODEL or --model to provider:model, or a bare name with "
                  "OPENAI_BASE_URL / OPENAI_API_KEY): running offline")
OPENAI_COMPATIBLE = "openai"
# provider -> graphtune's extra that installs its LangChain integration
EXTRAS = {"anthropic": "anthropic", "ollama": "ollama"}


class ModelUnavailable(RuntimeError):
    """The configured model cannot be built (its integration is not installed, the provider is unknown)."""


@dataclass(frozen=True)
class ModelSettings:
    """Which model, where, and how hard it may be called. Fields left None fall back to the environment."""

    model: str | None = None  # provider:model, or a bare OpenAI-compatible name
    base_url: str | None = None  # for OpenAI-compatible models only
    requests_per_s: float | None = None  # None: no client-side limit
    max_retries: int = DEFAULT_MAX_RETRIES

    @classmethod
    def from_env(cls) -> ModelSettings:
        return cls(model=os.environ.get("GRAPHTUNE_MODEL") or None, base_url=os.environ.get("OPENAI_BASE_URL") or None)

    @classmethod
    def for_run(cls, *, model: str | None = None, base_url: str | None = None, requests_per_s: float | None = None,
                spec: Any = None) -> ModelSettings:
        """A run's settings: what the run was given (context, CLI), else the spec's ``rate_limit``, else the environment."""
        env = cls.from_env()
        limits = spec.rate_limit if spec is not None else None
        return cls(model=model or env.model, base_url=base_url or env.base_url,
                   requests_per_s=requests_per_s or (limits.requests_per_s if limits else None),
                   max_retries=limits.max_retries if limits else DEFAULT_MAX_RETRIES)


_current: ContextVar[ModelSettings | None] = ContextVar("graphtune_model_settings", default=None)


def current_settings() -> ModelSettings:
    """The settings of the running scope (``using``), else the environment's."""
    return _current.get() or ModelSettings.from_env()


@contextlib.contextmanager
def using(settings: ModelSettings) -> Iterator[ModelSettings]:
    """Model settings for this scope: a workflow built and run inside it (eval examples) uses them too."""
    token = _current.set(settings)
    try:
        yield settings
    finally:
        _current.reset(token)


def configured_model() -> str | None:
    return current_settings().model


def model_available() -> bool:
    return configured_model() is not None


def split_model(name: str) -> tuple[str, str]:
    """(provider, model): ``provider:model`` when the prefix is a LangChain provider, else OpenAI-compatible.

    ``llama3:8b`` stays one OpenAI-compatible name: ``llama3`` is no provider."""
    prefix, sep, rest = name.partition(":")
    if sep and rest and prefix.replace("-", "_").lower() in _providers():
        return prefix.replace("-", "_").lower(), rest
    return OPENAI_COMPATIBLE, name


def chat_model(model: str | None = None, *, settings: ModelSettings | None = None, **kwargs: Any):
    """A LangChain chat model for ``model`` (default: the configured one), rate-limited and retrying.

    Explicit ``kwargs`` (temperature, max_tokens, base_url, ...) win over the settings."""
    from langchain.chat_models import init_chat_model

    settings = settings or current_settings()
    name = model or settings.model
    if not name:
        raise ModelUnavailable(OFFLINE_NOTICE)
    provider, model_name = split_model(name)
    limiter = shared_limiter(settings.requests_per_s)
    options: dict[str, Any] = {}
    if _has_field(provider, "max_retries"):
        options["max_retries"] = settings.max_retries
    if provider == OPENAI_COMPATIBLE:
        options["api_key"] = os.environ.get("OPENAI_API_KEY") or "not-needed"  # local servers take any key
        if settings.base_url:
            options["base_url"] = settings.base_url
        if limiter is not None:  # every HTTP attempt paced, the SDK's retries included
            options.update(paced_http_clients(limiter))
        else:
            # A client of this model's own: langchain-openai otherwise shares one async client per
            # (base_url, timeout) for the whole process, and a client whose connections belong to an
            # event loop that has closed fails every later call ("Event loop is closed").
            import openai

            options["http_async_client"] = openai.DefaultAsyncHttpxClient()
    elif limiter is not None:  # other providers: LangChain paces each call's first attempt
        options["rate_limiter"] = limiter
    options.update(kwargs)
    try:
        return init_chat_model(model_name, model_provider=provider, **options)
    except ImportError as exc:
        raise ModelUnavailable(_missing_integration(name, provider)) from exc


def _missing_integration(name: str, provider: str) -> str:
    package = _providers().get(provider, ("langchain_" + provider,))[0].split(".")[0].replace("_", "-")
    extra = EXTRAS.get(provider)
    how = f"pip install 'graphtune[{extra}]' (or pip install {package})" if extra else f"pip install {package}"
    return f"the model {name!r} needs the {package} package, which is not installed: {how}"


def _providers() -> dict[str, tuple]:
    """LangChain's provider registry: provider -> (module, class name, creator)."""
    from langchain.chat_models.base import _BUILTIN_PROVIDERS  # the registry init_chat_model parses prefixes with

    return _BUILTIN_PROVIDERS


def _has_field(provider: str, field: str) -> bool:
    """Whether the provider's chat model class takes ``field`` (False when its package is not installed)."""
    import importlib

    module, class_name = _providers().get(provider, (None, None))[:2]
    if module is None:
        return False
    try:
        cls = getattr(importlib.import_module(module), class_name)
    except (ImportError, AttributeError):
        return False
    return field in getattr(cls, "model_fields", {})


async def endpoint_problem(model: Any, timeout_s: float = 10.0) -> str | None:
    """Why ``model``'s endpoint cannot serve this run (unreachable, or the key refused), else None.

    One ``GET /models`` with the model's own client, base URL and key: no tokens spent. A run whose
    model cannot be reached would otherwise label every call "malformed output", fail every example
    and end as ``no_change``. Models without an OpenAI client (scripted test models, other providers),
    servers without ``/models`` (404) and transient answers (429, 5xx) are not judged here."""
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
