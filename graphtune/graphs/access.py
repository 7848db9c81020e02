"""Who may do what on graphtune's LangGraph server: bearer tokens, the identity behind each, its roles.

Roles:

- ``operator`` starts tuning runs, resumes waits other than approval, manages threads;
- ``approver`` answers an approval: approve, reject or edit a proposed config.

Tokens come from a YAML or JSON file (``GRAPHTUNE_AUTH_TOKENS_FILE``) or the same document inline
(``GRAPHTUNE_AUTH_TOKENS``)::

    tokens:
      - identity: dana
        roles: [approver, operator]
        token_sha256: 9f86d08...   # sha256 of the token (or `token: <the token>`, at least 16 characters)

``GRAPHTUNE_AUTH=off`` turns auth off for a laptop; it is also what an unconfigured server does, and
it says so in its log. A configured token source that is missing or invalid stops the server from
starting: it never falls back to no auth.
"""

from __future__ import annotations

import getpass
import hashlib
import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

APPROVER = "approver"
OPERATOR = "operator"
AUTH_OFF = "graphtune:auth-off"  # a permission marking callers of a server without auth

AUTH_ENV = "GRAPHTUNE_AUTH"
ACTOR_ENV = "GRAPHTUNE_ACTOR"
TOKENS_FILE_ENV = "GRAPHTUNE_AUTH_TOKENS_FILE"
TOKENS_ENV = "GRAPHTUNE_AUTH_TOKENS"
LOCAL_IDENTITY = "local"
MIN_TOKEN_CHARS = 16


class AccessConfigError(ValueError):
    """The auth settings cannot be used; the message names the variable, file or entry."""


class AuthenticationError(Exception):
    """A request without a valid token (HTTP 401)."""


class TokenEntry(BaseModel):
    model_config = ConfigDict(extra="forbid")

    identity: str = Field(min_length=1)
    roles: list[Literal["approver", "operator"]] = Field(min_length=1)
    token: str | None = Field(None, min_length=MIN_TOKEN_CHARS)
    token_sha256: str | None = Field(None, pattern=r"^[0-9a-fA-F]{64}$")

    @model_validator(mode="after")
    def _one_secret(self) -> TokenEntry:
        if (self.token is None) == (self.token_sha256 is None):
            raise ValueError("give exactly one of token, token_sha256")
        return self

    @property
    def digest(self) -> str:
        return (self.token_sha256 or token_digest(self.token or "")).lower()


class TokenDocument(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tokens: list[TokenEntry] = Field(min_length=1)


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: what the server records as the user and its permissions."""

    identity: str
    permissions: tuple[str, ...]


def token_digest(token: str) -> str:
    """What a token file may store instead of the token: ``sha256`` of it, hex."""
    return hashlib.sha256(token.encode()).hexdigest()


class AccessPolicy:
    """Turns an ``Authorization`` (or ``X-Api-Key``) header into a ``Principal``, or refuses it."""

    def __init__(self, mode: Literal["off", "tokens"], entries: list[TokenEntry] = (), *, source: str = ""):
        self.mode = mode
        self.source = source
        self._by_digest = {e.digest: e for e in entries}

    def describe(self) -> str:
        if self.mode == "off":
            return (f"graphtune auth is OFF ({self.source}): anyone who can reach this server can start runs and "
                    f"approve promotions. Fine on a laptop; elsewhere set {AUTH_ENV}=tokens and {TOKENS_FILE_ENV}.")
        return f"graphtune auth: {len(self._by_digest)} bearer tokens from {self.source}"

    def authenticate(self, authorization: str | None, api_key: str | None = None) -> Principal:
        """The caller behind ``Authorization: Bearer <token>``, or behind ``X-Api-Key: <token>`` (what
        LangChain's JavaScript SDK and Agent Chat UI send) when there is no Authorization header."""
        if self.mode == "off":
            return Principal(LOCAL_IDENTITY, (OPERATOR, APPROVER, AUTH_OFF))
        if authorization:
            scheme, _, token = authorization.strip().partition(" ")
            if scheme.lower() != "bearer" or not token.strip():
                raise AuthenticationError("the Authorization header must be 'Bearer <token>'")
        elif api_key and api_key.strip():
            token = api_key
        else:
            raise AuthenticationError("missing credentials: send 'Authorization: Bearer <token>' or 'X-Api-Key: <token>'")
        digest = token_digest(token.strip())
        for known, entry in self._by_digest.items():
            if hmac.compare_digest(known, digest):
                return Principal(entry.identity, tuple(entry.roles))
        raise AuthenticationError("invalid bearer token" if authorization else "invalid X-Api-Key")


def local_actor(named: str | None = None) -> str:
    """Who acts where nobody is authenticated (auth off, the CLI): the name given, else
    ``GRAPHTUNE_ACTOR``, else the OS user; the change log never says "anonymous"."""
    if named or os.environ.get(ACTOR_ENV):
        return str(named or os.environ[ACTOR_ENV])
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name, e.g. a container with an unnamed uid
        return "unknown"


_served_policy: AccessPolicy | None = None


def serve_with(policy: AccessPolicy) -> AccessPolicy:
    """Mark this process as a LangGraph server under ``policy`` (called by the server's auth module and
    graph factories). With tokens required, a run that carries no authenticated caller may not write."""
    global _served_policy
    _served_policy = policy
    return policy


def served_policy() -> AccessPolicy | None:
    """The policy this process serves under; None outside a LangGraph server (CLI, tests, notebooks)."""
    return _served_policy


def load_policy(env: Mapping[str, str] | None = None) -> AccessPolicy:
    """The policy the environment configures; ``AccessConfigError`` rather than a guess."""
    env = os.environ if env is None else env
    mode = (env.get(AUTH_ENV) or "").strip().lower()
    path, inline = env.get(TOKENS_FILE_ENV) or "", env.get(TOKENS_ENV) or ""
    if mode not in ("", "off", "tokens"):
        raise AccessConfigError(f"{AUTH_ENV}={env.get(AUTH_ENV)!r}: expected 'off' or 'tokens'")
    if mode == "off":
        if path or inline:
            raise AccessConfigError(f"{AUTH_ENV}=off but {TOKENS_FILE_ENV if path else TOKENS_ENV} is set: "
                                    f"unset one of them, so it is clear whether tokens are required")
        return AccessPolicy("off", source=f"{AUTH_ENV}=off")
    if not path and not inline:
        if mode == "tokens":
            raise AccessConfigError(f"{AUTH_ENV}=tokens needs {TOKENS_FILE_ENV} (a YAML or JSON file) or {TOKENS_ENV}")
        return AccessPolicy("off", source=f"the local default: neither {AUTH_ENV} nor a token source is set")
    entries: list[TokenEntry] = []
    sources = []
    if path:
        file = Path(path)
        try:
            text = file.read_text()
        except OSError as error:
            raise AccessConfigError(f"{TOKENS_FILE_ENV}={path}: cannot read the token file ({error.strerror or error})") from None
        entries += _parse(text, str(file))
        sources.append(str(file))
    if inline:
        entries += _parse(inline, TOKENS_ENV)
        sources.append(TOKENS_ENV)
    _check_unique(entries, " and ".join(sources))
    return AccessPolicy("tokens", entries, source=" and ".join(sources))


def _parse(text: str, where: str) -> list[TokenEntry]:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise AccessConfigError(f"{where}: not valid YAML or JSON: {error}") from None
    try:
        return TokenDocument.model_validate(raw).tokens
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'document'}: {e['msg']}" for e in error.errors())
        raise AccessConfigError(f"{where}: {problems} (expected: tokens: [{{identity, roles: [approver|operator], "
                                f"token or token_sha256}}])") from None


def _check_unique(entries: list[TokenEntry], where: str) -> None:
    seen: dict[str, str] = {}
    for entry in entries:
        if entry.digest in seen:
            raise AccessConfigError(f"{where}: {entry.identity!r} and {seen[entry.digest]!r} share a token")
        seen[entry.digest] = entry.identity
