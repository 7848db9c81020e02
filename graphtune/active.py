"""The one call applications make to run the active config: ``active_config("support_qa")``.

No router, no controller: the config store's active version, cached per (store URL, workflow) for a
few seconds so a request path can call it every time. A promotion reaches every process within
``ttl`` seconds. Thread-safe; one store connection per URL is kept for the life of the process.
"""

from __future__ import annotations

import atexit
import threading
import time

from graphtune.backends.config_store import ConfigStore, ConfigStoreError, ConfigVersion, database_url_from_env, open_config_store

_clock = time.monotonic
_lock = threading.Lock()
_stores: dict[str, ConfigStore] = {}
_cache: dict[tuple[str, str], tuple[float, ConfigVersion | None]] = {}


class NoActiveConfigError(ConfigStoreError, LookupError):
    """The workflow has no active version yet."""


def active_version(workflow: str, *, url: str | None = None, ttl: float = 5.0) -> ConfigVersion | None:
    """The workflow's active version (a copy), read at most once per ``ttl`` seconds; None if there is none."""
    url = url or database_url_from_env()
    key = (url, workflow)
    with _lock:
        hit = _cache.get(key)
        if hit is not None and _clock() - hit[0] < ttl:
            return _copy(hit[1])
        store = _stores.get(url)
        if store is None:
            store = _stores[url] = open_config_store(url)
    read_at = _clock()  # before the read: a promotion committed during the read is not hidden for longer than ttl
    version = store.active(workflow)
    with _lock:
        _cache[key] = (read_at, version)
    return _copy(version)


def active_config(workflow: str, *, url: str | None = None, default: dict | None = None, ttl: float = 5.0) -> dict:
    """The active config of ``workflow`` (a copy the caller may change); ``default`` when it has none,
    or ``NoActiveConfigError`` saying how to set one."""
    version = active_version(workflow, url=url, ttl=ttl)
    if version is not None:
        return version.config
    if default is not None:
        return default
    raise NoActiveConfigError(
        f"workflow {workflow!r} has no active config in {url or database_url_from_env()}: store the spec's config with "
        f"`graphtune config init --spec graphtune.yaml`, or pass default= to active_config"
    )


def _copy(version: ConfigVersion | None) -> ConfigVersion | None:
    return None if version is None else version.model_copy(deep=True)


@atexit.register
def _close_stores() -> None:
    with _lock:
        for store in _stores.values():
            store.close()
        _stores.clear()
        _cache.clear()
