"""The router: which config version serves a request, from the workflow's traffic split.

Assignment is a pure function of (workflow, salt, unit key, split): no state, no I/O, no randomness.
The same user (or session, or whatever unit the caller keys on) therefore gets the same variant on
every request and in every process, which per-request random splits cannot give: a user who sees
the candidate on one request and the baseline on the next muddles both arms' figures and the
user's experience.

How a unit is placed: weighted rendezvous hashing. Each version ``v`` of the split draws a uniform
``u_v`` in (0, 1] from ``blake2b(workflow, salt, v, unit key)`` and scores ``-ln(u_v) / w_v``, an
exponential variable with rate ``w_v``; the lowest score wins. So a unit lands on ``v`` with
probability exactly ``w_v`` (the race of independent exponentials), and the outcome depends on the
weights only through their ratios. That gives the ramp guarantee, exactly:

    A unit assigned to version ``v`` under weights ``w`` stays on ``v`` under new weights ``w'``
    whenever ``w'_v / w'_x >= w_v / w_x`` for every other version ``x`` still in the split.
    A unit only ever moves to a version whose weight grew relative to the version it left.

Consequences the controller relies on:

- Ramping a candidate up (5% -> 20% -> 50%, the baseline shrinking) never moves a unit already on
  the candidate; the units that switch are baseline units, and they are exactly ``w'_c - w_c`` of
  all units, the least any scheme could move. Ramping down moves candidate units back to the
  baseline only.
- Adding a version to a split (the others shrinking in proportion) only moves units into it;
  removing one spreads its units over the rest and moves no one else.

Hashes include the workflow, so two workflows' experiments are independent, and a ``salt``. Keep the
salt fixed for the life of one experiment (the controller can pass the experiment id); a new salt
reshuffles every unit, which is what a new experiment wants, so the same users are not always the
ones kept on the baseline.

A unit key that is missing or empty is routed to the baseline: such requests cannot be kept sticky,
and sending them to a candidate would give it traffic nobody can follow across requests.

Cost: one blake2b and one logarithm per version in the split, about 1-3 us per assignment with a
prebuilt :class:`Router` (``benchmarks/ab_stats.py`` reports ``router_us_per_assign``).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Protocol, Union

__all__ = ["Router", "RouterError", "UnitKey", "assign", "validate_weights"]

UnitKey = Union[str, bytes, int, None]

_WEIGHT_SUM_TOLERANCE = 1e-6
_TWO_POW_53 = float(2**53)


class RouterError(ValueError):
    """A split or unit key the router cannot use; the message names what was expected."""


class _HasWeights(Protocol):  # graphtune.backends.config_store.TrafficSplit, without importing the backends
    weights: Mapping[int, float]


def validate_weights(weights: Mapping[int, float] | _HasWeights) -> dict[int, float]:
    """The split's weights as ``{version: weight}``, checked: integer versions, finite weights >= 0
    (0 pauses a version), at least one positive, summing to 1 (within 1e-6, so percentages such as
    ``{1: 95, 2: 5}`` are refused rather than silently normalised)."""
    raw = getattr(weights, "weights", weights)
    if not isinstance(raw, Mapping):
        raise RouterError(f"a traffic split is a mapping of config version -> weight, got {type(raw).__name__}")
    if not raw:
        raise RouterError("a traffic split needs at least one version; got an empty mapping")
    checked: dict[int, float] = {}
    for version, weight in raw.items():
        if isinstance(version, bool) or not isinstance(version, int):
            raise RouterError(f"traffic split versions are integers (config versions); got {version!r}")
        if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight) or weight < 0:
            raise RouterError(f"traffic split weight of version {version} must be a finite number >= 0; got {weight!r}")
        checked[version] = float(weight)
    total = math.fsum(checked.values())
    if abs(total - 1.0) > _WEIGHT_SUM_TOLERANCE:
        raise RouterError(f"traffic split weights must sum to 1; {dict(checked)} sums to {total!r}")
    return checked


def _key_bytes(unit_key: UnitKey) -> bytes | None:
    """The key's bytes, or None when it is missing or empty (routed to the baseline)."""
    if unit_key is None:
        return None
    if isinstance(unit_key, str):
        return unit_key.encode("utf-8") if unit_key else None
    if isinstance(unit_key, bytes):
        return unit_key or None
    if isinstance(unit_key, int) and not isinstance(unit_key, bool):
        return str(unit_key).encode("ascii")
    raise RouterError(f"a unit key is a str, bytes or int (user, session or request id); got {type(unit_key).__name__}")


class Router:
    """Assigns unit keys to versions for one workflow's split. Build once per split revision and reuse:
    the per-version hash prefixes are computed here, so :meth:`assign` only hashes the key.

    ``weights`` is a ``TrafficSplit`` (anything with ``.weights``), a ``{version: weight}`` mapping, or
    None (no experiment: everything goes to the baseline). ``baseline_version`` is the workflow's
    active version; it need not be in the split, but empty keys always go to it.
    """

    __slots__ = ("workflow", "salt", "baseline_version", "weights", "_lanes")

    def __init__(self, weights: Mapping[int, float] | _HasWeights | None, baseline_version: int, *,
                 workflow: str = "", salt: str = ""):
        if isinstance(baseline_version, bool) or not isinstance(baseline_version, int):
            raise RouterError(f"baseline_version is an integer config version; got {baseline_version!r}")
        if not isinstance(workflow, str) or not isinstance(salt, str):
            raise RouterError(f"workflow and salt are strings; got {type(workflow).__name__} and {type(salt).__name__}")
        self.workflow, self.salt, self.baseline_version = workflow, salt, baseline_version
        self.weights = validate_weights(weights) if weights is not None else {baseline_version: 1.0}
        prefix = b"\x00".join((b"graphtune-router-v1", workflow.encode("utf-8"), salt.encode("utf-8")))
        # (version, 1/weight, hasher with everything but the key fed); sorted so ties break the same way everywhere
        self._lanes = tuple(
            (version, 1.0 / weight, hashlib.blake2b(prefix + b"\x00" + str(version).encode("ascii") + b"\x00", digest_size=8))
            for version, weight in sorted(self.weights.items()) if weight > 0
        )

    def assign(self, unit_key: UnitKey) -> int:
        """The config version for this unit: the same on every call for the same key and split."""
        key = _key_bytes(unit_key)
        if key is None:
            return self.baseline_version
        lanes = self._lanes
        if len(lanes) == 1:
            return lanes[0][0]
        best_version, best_score = self.baseline_version, math.inf
        for version, inverse_weight, prefix in lanes:
            h = prefix.copy()
            h.update(key)
            # 53 high bits -> u in (0, 1]; -ln(u) / w is Exp(w); the smallest wins
            u = ((int.from_bytes(h.digest(), "big") >> 11) + 1) / _TWO_POW_53
            score = -math.log(u) * inverse_weight
            if score < best_score:
                best_version, best_score = version, score
        return best_version

    def is_baseline(self, version: int) -> bool:
        """Whether ``version`` is the baseline (for the ``graphtune_variant`` run tag)."""
        return version == self.baseline_version

    def __repr__(self) -> str:
        return f"Router(workflow={self.workflow!r}, weights={self.weights}, baseline_version={self.baseline_version}, salt={self.salt!r})"


def assign(unit_key: UnitKey, weights: Mapping[int, float] | _HasWeights | None, baseline_version: int, *,
           workflow: str = "", salt: str = "") -> int:
    """One-off assignment; same result as ``Router(weights, baseline_version, ...).assign(unit_key)``.

    Serving code should keep a :class:`Router` per split revision instead: this builds one per call.
    """
    return Router(weights, baseline_version, workflow=workflow, salt=salt).assign(unit_key)
