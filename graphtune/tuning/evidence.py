"""Moves the eval runs' own failures point to: which tunable a failure names, and which way to move it.

A trajectory says more than a score. When a node fails with "crm did not answer within 0.20 s", the
limit that was hit is a tunable whose path shares a word with the message (``crm``) and whose
current value the message quotes (0.2); a timeout means that limit should go up. This module turns
hot spots of eval runs (``find_hot_spots(..., source="eval")``, each with its distinct error
messages) into such directed moves, for any workflow: it knows words every service uses (timeout,
retries, iterations), never a workflow's own names.

- Naming: a tunable is named by a failure when one of its path's words appears in the message or
  the node's name, and more strongly when its current value is quoted in the message (as is, or
  in milliseconds for a value in seconds and back).
- Direction: transient failures (timeouts, refused or dropped connections, 429/5xx answers) raise
  timeouts and retries; a recursion or iteration limit raises iterations. Other failures only
  focus the search on the tunables they name.
- Size: a timeout goes up by a factor of 3 and 8 (two candidates), never past its bound; retries
  by 1 and 2; iterations double.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from graphtune.tuning.hotspots import HotSpot

TRANSIENT = re.compile(r"timeout|timed out|did not answer|deadline|connection|refused|reset|unavailable|\b(?:429|50[0-4])\b|"
                       r"rate limit|too many requests|temporar", re.I)
LIMIT_HIT = re.compile(r"recursion|iteration|max(?:imum)? (?:steps|turns|rounds)", re.I)
TIMEOUT_PATH = re.compile(r"timeout|deadline|wait", re.I)
RETRY_PATH = re.compile(r"retr(?:y|ies)|attempts", re.I)
ITERATION_PATH = re.compile(r"iteration|max_steps|max_turns|recursion", re.I)
_WORD = re.compile(r"[a-z0-9]+")
_GENERIC = {"the", "and", "with", "for", "max", "min", "enabled", "timeout", "timeouts", "retries", "retry", "ms", "s",
            "seconds", "config", "node", "nodes", "tool", "tools", "value", "size", "error", "did", "not", "answer", "within"}


@dataclass(frozen=True)
class Move:
    path: str
    values: tuple[Any, ...]  # the values to try, one per candidate, nearest first
    why: str


def _words(text: str) -> set[str]:
    return {w for w in _WORD.findall(text.lower()) if len(w) >= 3 and w not in _GENERIC}


def _quotes(message: str, value: Any) -> bool:
    """Whether the message states the value (0.2 as "0.2" or "0.20", or as "200" ms for a value in seconds)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    numbers = {float(n) for n in re.findall(r"\d+(?:\.\d+)?", message)}
    return any(math.isclose(n, value, rel_tol=0.02) or math.isclose(n, value * 1000, rel_tol=0.02)
               or math.isclose(n * 1000, value, rel_tol=0.02) for n in numbers)


def named_paths(spot: HotSpot, paths: list[str], config_value) -> dict[str, float]:
    """How strongly the failures of ``spot`` name each tunable (0: not at all)."""
    text = " ".join(f"{e.type} {e.message}" for e in spot.errors)
    words = _words(text) | _words(spot.node)
    strength: dict[str, float] = {}
    for path in paths:
        score = 0.0
        if _words(path.replace(".", " ").replace("_", " ")) & words:
            score += 1.0
        if any(_quotes(e.message, config_value(path)) for e in spot.errors):
            score += 2.0
        if score:
            strength[path] = score
    return strength


def evidence_moves(hot_spots: list[HotSpot], domains: dict[str, Any], config_value) -> list[Move]:
    """Directed moves for the tunables the eval failures name, strongest evidence first.

    ``domains``: searchable path -> its domain (FloatDomain / IntDomain / ...); ``config_value(path)``
    reads the value the moves start from.
    """
    from graphtune.tuning.space import FloatDomain, IntDomain

    moves: list[tuple[float, Move]] = []
    done: set[str] = set()
    for spot in hot_spots:
        if not spot.errors:
            continue
        text = " ".join(f"{e.type} {e.message}" for e in spot.errors)
        transient, limited = bool(TRANSIENT.search(text)), bool(LIMIT_HIT.search(text))
        failed = sum(e.count for e in spot.errors)
        for path, strength in named_paths(spot, list(domains), config_value).items():
            domain, current = domains[path], config_value(path)
            if path in done or not isinstance(domain, (FloatDomain, IntDomain)) or not isinstance(current, (int, float)):
                continue
            if transient and TIMEOUT_PATH.search(path):
                values, why = [current * 3, current * 8], "raise the timeout the failures hit"
            elif transient and RETRY_PATH.search(path):
                values, why = [current + 1, current + 2], "retry the transient failures"
            elif limited and ITERATION_PATH.search(path):
                values, why = [current * 2, current * 4], "allow more iterations than the limit the runs hit"
            else:
                continue
            fitted = _fit(domain, values, current)
            if fitted:
                done.add(path)
                quoted = f"{spot.errors[0].type}: {spot.errors[0].message}"
                moves.append((strength * failed, Move(path, fitted, f"{why} ({spot.node} failed {failed}x in the eval runs: {quoted})")))
    return [m for _, m in sorted(moves, key=lambda pair: -pair[0])]


def _fit(domain, values: list[float], current: float) -> tuple[Any, ...]:
    """The values inside the domain (on its step, integers for an int domain), distinct from the current one."""
    from graphtune.tuning.space import IntDomain

    out: list[Any] = []
    for raw in values:
        value = min(max(raw, domain.low), domain.high)
        if domain.step:
            value = domain.low + round((value - domain.low) / domain.step) * domain.step
            value = min(value, domain.high)
        value = int(round(value)) if isinstance(domain, IntDomain) else round(float(value), 6)
        if value != current and value not in out:
            out.append(value)
    return tuple(out)
