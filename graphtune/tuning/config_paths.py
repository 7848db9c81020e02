"""Nested config dicts: dotted paths, canonical hashes and readable diffs.

A workflow config is the nested dict teams already keep (``{"llm": {"temperature": 0.2}}``);
tunables address leaves by dotted path (``llm.temperature``). Two configs with the same content
have the same hash whatever their key order, so the config store can give each distinct config
one version.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any, Iterator

_MISSING = object()  # "no default given"
_ABSENT = object()  # "no value there"


def get_path(config: dict, path: str, default: Any = _MISSING) -> Any:
    """The value at a dotted path; ``KeyError`` naming the path when absent and no default."""
    node: Any = config
    for part in path.split("."):
        if not isinstance(node, dict) or part not in node:
            if default is _MISSING:
                raise KeyError(path)
            return default
        node = node[part]
    return node


def has_path(config: dict, path: str) -> bool:
    return get_path(config, path, _ABSENT) is not _ABSENT


def set_path(config: dict, path: str, value: Any) -> dict:
    """A deep copy of ``config`` with ``path`` set to ``value`` (intermediate dicts created)."""
    result = copy.deepcopy(config)
    node = result
    parts = path.split(".")
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[parts[-1]] = copy.deepcopy(value)
    return result


def flatten(config: dict, prefix: str = "") -> Iterator[tuple[str, Any]]:
    """(dotted path, leaf value) pairs in key order; lists are leaves."""
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            yield from flatten(value, f"{path}.")
        else:
            yield path, value


def canonical_json(config: dict) -> str:
    """Key-sorted compact JSON: the form hashed and stored."""
    return json.dumps(config, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def config_hash(config: dict) -> str:
    """sha256 of the canonical JSON, hex; stable across key order and processes."""
    return hashlib.sha256(canonical_json(config).encode()).hexdigest()


def config_diff(old: dict, new: dict) -> list[tuple[str, Any, Any]]:
    """(path, old value, new value) for every leaf that differs; absent leaves are ``None``."""
    before, after = dict(flatten(old)), dict(flatten(new))
    return [(p, before.get(p), after.get(p)) for p in sorted(before.keys() | after.keys())
            if before.get(p, _MISSING) != after.get(p, _MISSING)]


def format_diff(diff: list[tuple[str, Any, Any]]) -> str:
    """One line per change: ``rag.top_k: 4 -> 8``."""
    if not diff:
        return "(no changes)"
    return "\n".join(f"{path}: {json.dumps(a)} -> {json.dumps(b)}" for path, a, b in diff)
