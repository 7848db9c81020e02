"""Where Langfuse is and how to authenticate, read from the variables Langfuse's own SDK uses.

``LANGFUSE_PUBLIC_KEY`` and ``LANGFUSE_SECRET_KEY`` (Basic auth: public key as user name, secret
key as password), and ``LANGFUSE_BASE_URL`` or ``LANGFUSE_HOST`` (default: Langfuse Cloud, as in
the SDK). Missing keys switch Langfuse features off with one log line per process, never an
exception: a team without Langfuse must not notice that graphtune supports it.
"""

from __future__ import annotations

import base64
import logging
import os
from collections.abc import Mapping

from pydantic import BaseModel, SecretStr, field_validator

log = logging.getLogger("graphtune.langfuse")

DEFAULT_BASE_URL = "https://cloud.langfuse.com"
OTEL_TRACES_PATH = "/api/public/otel/v1/traces"
# Langfuse asks direct OpenTelemetry senders for this header: spans then take its real-time
# ingestion path (without it, data can be delayed by up to 15 minutes on v4 servers).
INGESTION_VERSION_HEADER = ("x-langfuse-ingestion-version", "4")

_logged: set[str] = set()


def _log_once(level: int, message: str) -> None:
    if message not in _logged:
        _logged.add(message)
        log.log(level, message)


class LangfuseSettings(BaseModel):
    public_key: str
    secret_key: SecretStr
    base_url: str = DEFAULT_BASE_URL

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"Langfuse base URL must start with http:// or https://, got {value!r}")
        return value

    def authorization(self) -> str:
        token = f"{self.public_key}:{self.secret_key.get_secret_value()}".encode()
        return "Basic " + base64.b64encode(token).decode("ascii")

    def otel_traces_url(self) -> str:
        return self.base_url + OTEL_TRACES_PATH

    def otel_headers(self) -> dict[str, str]:
        return {"Authorization": self.authorization(), INGESTION_VERSION_HEADER[0]: INGESTION_VERSION_HEADER[1]}


def langfuse_settings_from_env(env: Mapping[str, str] | None = None, *, base_url: str | None = None) -> LangfuseSettings | None:
    """Settings from the environment, or None (logged once) when the keys are missing or tracing
    is switched off with ``LANGFUSE_TRACING_ENABLED=false``."""
    env = os.environ if env is None else env
    public, secret = env.get("LANGFUSE_PUBLIC_KEY"), env.get("LANGFUSE_SECRET_KEY")
    if not public and not secret:
        _log_once(logging.DEBUG, "Langfuse off: LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY are not set")
        return None
    if not public or not secret:
        missing = "LANGFUSE_SECRET_KEY" if public else "LANGFUSE_PUBLIC_KEY"
        _log_once(logging.WARNING, f"Langfuse off: {missing} is not set (both LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY are needed)")
        return None
    url = base_url or env.get("LANGFUSE_BASE_URL") or env.get("LANGFUSE_HOST") or DEFAULT_BASE_URL
    try:
        return LangfuseSettings(public_key=public, secret_key=secret, base_url=url)
    except ValueError as exc:
        _log_once(logging.WARNING, f"Langfuse off: LANGFUSE_BASE_URL/LANGFUSE_HOST {url!r} is not usable ({exc})")
        return None


def tracing_disabled(env: Mapping[str, str] | None = None) -> bool:
    env = os.environ if env is None else env
    return str(env.get("LANGFUSE_TRACING_ENABLED", "true")).strip().lower() in ("0", "false", "no", "off")
