"""The search proposer: a local start, then models of the goal and each guardrail, with Optuna TPE behind them.

It runs beside the LLM proposer, and alone when no model is configured. It knows nothing about any
particular workflow: it sees the search space, the current config and what earlier evals measured.

Three phases, by how much is known:

1. Local start (fewer results than ``n_startup_trials``): neighbours of the best config so far, one
   tunable at a time, so each result says what one tunable does (below).
2. Models (``tuning.surrogate``): one Gaussian process per measured quantity, the goal and each
   guardrail's distance from its limit, rate a pool of random points, neighbours and crossovers of
   the best configs; the batch takes the configs with the highest expected gain among those likely to
   keep every guardrail. This is where two moves that each broke something alone get combined.
3. TPE fills whatever the models leave: when they rate nothing worth an eval (converged, or nothing
   varied yet) or the pool ran out. Each ``propose`` call builds a fresh in-memory study, replays
   every earlier observation into it as a completed trial (the warm start), then asks the TPE sampler
   for new points until it has ``n`` valid, new candidates or runs out of asks.

Text tunables are never searched (that is the LLM's job), nor are ``requires_model`` tunables when no
model is available.

Choices about Optuna:

- Infeasible observations (a broken guardrail) and non-finite scores are replayed with a value
  strictly worse than the worst feasible score. TPE only ranks trials, so this puts them in the
  "bad" density after every feasible trial and the sampler steers away from their region. This
  works with every Optuna version and sampler, unlike per-trial constraints (new in Optuna 5).
- Startup: until the study holds ``n_startup_trials`` finished trials, TPE samples at random. The
  default, ``clamp(number of searched tunables + 1, 4, 10)``, explores a few points per dimension
  before modelling, and stays at Optuna's usual 10 for larger spaces.
- A batch is diversified with the constant liar: accepted candidates stay ``RUNNING`` in the study,
  and TPE counts them as bad points while it samples the rest of the batch.
- A sample that duplicates a known config, or breaks a constraint, is told ``PRUNED``: a bad point
  for TPE, so the sampler moves away from it instead of drawing it again. Constraint violations
  are repaired deterministically (see ``_repair``); the repaired config is re-entered as the
  running trial, so the liar sees what was actually proposed.
- The sampler's seed is derived from ``seed`` and the history's content: the same seed and history
  give the same candidates, while a grown history does not replay the same random start points.
- Local start. Until TPE has enough finished trials to model, a random point changes most tunables
  at once and tells little. Instead the start phase proposes neighbours of the best feasible config
  so far (the baseline at first): one or two tunables moved a few steps, flipped or re-chosen. The
  tunables to move are drawn with ``focus`` weights, so the ones that name a production hot spot
  (``focus_from_hot_spots``) are tried first, divided by how often each was moved already (in
  earlier results and in this batch), so a batch covers different tunables. Every result still
  warm-starts TPE afterwards.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
import re
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Iterator, Literal

import numpy as np
import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from pydantic import BaseModel, Field

from graphtune.tuning.config_paths import config_hash, get_path, has_path, set_path
from graphtune.tuning.mutations import Candidate, Mutation, check_candidate
from graphtune.tuning.space import BoolDomain, ChoiceDomain, FloatDomain, IntDomain, SearchSpace
from graphtune.tuning.surrogate import GuardedModel, Measured, place

_log = logging.getLogger(__name__)

_ASKS_PER_CANDIDATE = 10
_FEW_STEPS = 12  # a numeric range with at most this many steps is moved step by step
_MIN_ASKS = 30
_POOL_RANDOM = 300  # random points the guardrail models rate
_POOL_NEIGHBOURS = 60  # per promising config
_POOL_CROSSOVERS = 12  # per pair of promising configs


class Observation(BaseModel):
    """One evaluated config and what it scored on the objective."""

    config: dict = Field(description="The full evaluated config")
    score: float = Field(description="The objective value measured for it (mean of the objective metric)")
    feasible: bool = Field(True, description="False when it broke a guardrail: the search treats it as bad")
    violation: float = Field(0.0, ge=0, description="How far past their limits its guardrails are (0: none broken)")
    clear: bool = Field(True, description="Its score beats the baseline's beyond noise (paired 95% interval): only "
                                          "such a config becomes the local start's centre")
    constraints: list[float | None] = Field(default_factory=list, description="Per guardrail, how far past its limit "
                                            "(> 0 broken, <= 0 kept, None not measured): what the guardrail models learn")
    complete: bool = Field(True, description="Evaluated on every example (False: the race or the early stop cut it)")


@dataclass(frozen=True)
class _Param:
    """One searched tunable and its Optuna distribution (choices are searched by index)."""

    path: str
    domain: FloatDomain | IntDomain | ChoiceDomain | BoolDomain
    distribution: BaseDistribution

    def to_optuna(self, value: Any) -> Any:
        """The value in Optuna's terms; ``ValueError`` when the domain cannot hold it."""
        if isinstance(self.domain, ChoiceDomain):
            for index, allowed in enumerate(self.domain.values):
                if _same(allowed, value):
                    return index
            raise ValueError(f"{self.path}: {value!r} is not one of the choices")
        if isinstance(self.domain, FloatDomain):
            return float(value)
        return value

    def from_optuna(self, raw: Any) -> Any:
        domain = self.domain
        if isinstance(domain, ChoiceDomain):
            return domain.values[int(raw)]
        if isinstance(domain, BoolDomain):
            return bool(raw)
        if isinstance(domain, IntDomain):
            return int(raw)
        value = min(max(float(raw), domain.low), domain.high)
        if domain.step:
            k = round((value - domain.low) / domain.step)
            value = domain.low + k * domain.step
            clean = round(value, 12)  # 0.30000000000000004 -> 0.3, when that stays on the grid
            if abs((clean - domain.low) / domain.step - k) < 1e-9:
                value = clean
        return value


class SearchProposer:
    """Proposes candidates by TPE over the searchable tunables of ``space``.

    ``direction`` is the objective's. ``model_available`` decides whether ``requires_model``
    tunables are searched. ``n_startup_trials`` overrides the number of finished trials before TPE
    models (random sampling until then).
    """

    def __init__(self, space: SearchSpace, *, direction: Literal["maximize", "minimize"], seed: int = 0,
                 model_available: bool = False, n_startup_trials: int | None = None):
        if direction not in ("maximize", "minimize"):
            raise ValueError(f"direction must be 'maximize' or 'minimize', got {direction!r}")
        self.space = space
        self.direction = direction
        self.seed = seed
        self.model_available = model_available
        self.params = [
            _Param(path, domain, _distribution(domain))
            for path, domain in space.available(model_available).items()
            if isinstance(domain, (FloatDomain, IntDomain, ChoiceDomain, BoolDomain))
        ]
        self.n_startup_trials = (n_startup_trials if n_startup_trials is not None
                                 else min(10, max(4, len(self.params) + 1)))
        self._distributions = {p.path: p.distribution for p in self.params}

    def propose(self, base_config: dict, history: list[Observation], n: int,
                focus: dict[str, float] | None = None, moves_from=None) -> list[Candidate]:
        """Up to n new valid candidates (as mutations of base_config), none equal to a config in history or to each other.

        ``focus``: tunable path -> weight (default 1) for the local start's choice of what to move.
        ``moves_from(config)``: the directed moves evidence points to from ``config``
        (``tuning.evidence.Move``), tried first while nothing feasible is known.
        """
        if n <= 0 or not self.params:
            return []
        call_seed = self._call_seed(history)
        seen = {_config_key(base_config, self.params)} | {_config_key(o.config, self.params) for o in history}
        candidates: list[Candidate] = []
        with _quiet_optuna():
            study = self._new_study(call_seed)
            used, skipped = self._warm_start(study, history)
            if used < self.n_startup_trials:
                return self._local_start(base_config, history, n, seen, random.Random(call_seed), focus or {}, moves_from)
            rationale = self._rationale(used, skipped)
            candidates = self._modelled(base_config, history, n, seen, random.Random(call_seed), call_seed,
                                        self._history_note(used, skipped))
            for _ in range(max(_MIN_ASKS, _ASKS_PER_CANDIDATE * n)):
                if len(candidates) == n:
                    break
                trial = study.ask(self._distributions)
                sampled = base_config
                for param in self.params:
                    value = param.from_optuna(trial.params[param.path])
                    if not _same(get_path(base_config, param.path, None), value) or not has_path(base_config, param.path):
                        sampled = set_path(sampled, param.path, value)
                config = self._repair(sampled, random.Random(f"{call_seed}:{trial.number}"))
                candidate = None if config is None else self._candidate(base_config, config, rationale)
                if candidate is None or _config_key(config, self.params) in seen:
                    study.tell(trial, state=TrialState.PRUNED)
                    continue
                if config is not sampled:
                    # The sample broke a constraint: it stays a bad point, and the repaired config
                    # becomes the running trial the constant liar keeps the rest of the batch away from.
                    study.tell(trial, state=TrialState.PRUNED)
                    study.enqueue_trial({p.path: p.to_optuna(get_path(config, p.path)) for p in self.params})
                    study.ask(self._distributions)
                seen.add(_config_key(config, self.params))
                candidates.append(candidate)
        return candidates

    # -- internals -------------------------------------------------------------------------------

    def _local_start(self, base_config: dict, history: list[Observation], n: int, seen: set[str],
                     rng: random.Random, focus: dict[str, float], moves_from=None) -> list[Candidate]:
        """Neighbours of the best feasible config so far: one or two tunables moved (see the module docstring)."""
        good = [o for o in history if o.feasible and math.isfinite(o.score) and isinstance(o.config, dict)]
        sign = 1.0 if self.direction == "maximize" else -1.0
        broken = [o for o in history if not o.feasible and o.violation > 0 and isinstance(o.config, dict)]
        clear = [o for o in good if o.clear]
        if clear:  # a score that beats the baseline only within noise does not move the centre
            best, lost = max(clear, key=lambda o: sign * o.score).config, False
        elif good:
            best, lost = base_config, False
        elif broken:  # nothing feasible yet: start from the config that breaks its guardrails least
            best, lost = min(broken, key=lambda o: o.violation).config, True
        else:
            best, lost = base_config, False
        weights = [max(focus.get(p.path, 1.0), 0.0) or 0.01 for p in self.params]
        from_baseline = best is base_config or _config_key(best, self.params) == _config_key(base_config, self.params)
        where = "the baseline" if from_baseline else "the best config so far"
        if lost:
            where += " (every result so far breaks a guardrail: moving several tunables far, toward feasibility)"
        candidates: list[Candidate] = []
        # configs moved from ``best`` already: a tunable moved before is drawn less, so a batch covers more of them
        batch = [o.config for o in history if isinstance(o.config, dict)]
        if not lost and from_baseline and all(any(not _same(get_path(c, p.path, None), get_path(best, p.path, None)) for c in batch)
                                              for p in self.params):
            lost = True  # every tunable was moved from the baseline and none clearly beat it: look further out
            where += " (no neighbour tried so far clearly beats it: moving several tunables far)"
        no_feasible = not good and (lost or not [o for o in history if o.feasible])
        for config, why in self._directed(best, moves_from, rng) if moves_from and (no_feasible or lost) else []:
            if len(candidates) == n:
                break
            config = self._repair(config, rng)
            candidate = None if config is None else self._candidate(base_config, config, f"evidence from the eval runs: {why}")
            if candidate is None or _config_key(config, self.params) in seen:
                continue
            seen.add(_config_key(config, self.params))
            batch.append(config)
            candidates.append(candidate)
        for _ in range(max(_MIN_ASKS, _ASKS_PER_CANDIDATE * n) * 2):
            if len(candidates) == n:
                break
            if lost:  # around an infeasible point, one small step rarely crosses back into feasibility
                count = min(len(self.params), rng.choice([2, 3, 4]))
            else:
                count = 1 if rng.random() < 0.6 or len(self.params) == 1 else 2
            tried = [1 + sum(1 for c in batch if not _same(get_path(c, p.path, None), get_path(best, p.path, None)))
                     for p in self.params]
            moved = _weighted_sample(self.params, [w / t ** 3 for w, t in zip(weights, tried)], count, rng)
            config = best
            for param in moved:
                first = tried[self.params.index(param)] == 1  # never moved from this centre yet
                config = set_path(config, param.path, _nearby(param, get_path(config, param.path, None), rng, far=lost,
                                                              roomier=first))
            config = self._repair(config, rng)
            if config is None or _config_key(config, self.params) in seen:
                continue
            what = ", ".join(p.path for p in moved)
            candidate = self._candidate(base_config, config, f"local start: {what} moved from {where} "
                                                             f"({len(history)} earlier results; TPE models from {self.n_startup_trials})")
            if candidate is None:
                continue
            seen.add(_config_key(config, self.params))
            batch.append(config)
            candidates.append(candidate)
        for _ in range(_ASKS_PER_CANDIDATE * n):  # a small space ran out of neighbours: random points fill the batch
            if len(candidates) == n:
                break
            config = self._repair(self._anywhere(best, rng), rng)
            candidate = None if config is None else self._candidate(
                base_config, config, f"random start sample: no untried neighbour of {where} left")
            if candidate is None or _config_key(config, self.params) in seen:
                continue
            seen.add(_config_key(config, self.params))
            candidates.append(candidate)
        return candidates

    def _modelled(self, base_config: dict, history: list[Observation], n: int, seen: set[str], rng: random.Random,
                  seed: int, note: str) -> list[Candidate]:
        """The configs the models of the goal and the guardrails rate best (``tuning.surrogate``), from a
        pool of random points, neighbours of the best configs so far and crossovers of evaluated ones."""
        known = [o for o in history if self._observed_params(o.config) is not None]
        flags_only = not any(o.constraints for o in known)  # feasibility without distances: one constraint, +-1

        def constraints(o: Observation) -> tuple[float, ...]:
            if flags_only:
                return (-1.0 if o.feasible else max(o.violation, 1.0),)
            return tuple(math.nan if c is None else float(c) for c in o.constraints)

        measured = [Measured(config=o.config, goal=o.score if math.isfinite(o.score) else math.nan,
                             constraints=constraints(o), feasible=o.feasible and o.complete) for o in known]
        try:
            model = GuardedModel(self.params, measured, maximize=self.direction == "maximize", seed=seed)
        except (ValueError, ArithmeticError, np.linalg.LinAlgError) as error:  # a degenerate fit: TPE proposes instead
            _log.warning("search: the goal and guardrail models could not be fitted (%s); TPE proposes this batch", error)
            return []
        if not model.usable:
            return []
        pool, keys = [], set(seen)
        for config in self._pool(base_config, measured, rng):
            config = self._repair(config, rng)
            key = None if config is None else _config_key(config, self.params)
            if key is not None and key not in keys:
                keys.add(key)
                pool.append(config)
        candidates: list[Candidate] = []
        while pool and len(candidates) < n:
            scores = model.acquisition(pool)
            rating = float(scores.max())
            if model.negligible(rating):  # nothing the model rates: TPE fills the rest of the batch
                break
            pick = pool.pop(int(scores.argmax()))
            kind = "expected gain x chance every guardrail holds" if model.incumbent is not None else "chance every guardrail holds"
            candidate = self._candidate(base_config, pick, f"model of the goal and each guardrail ({note}): "
                                                           f"{kind} {rating:.3g}, the best of {len(pool) + 1} configs")
            if candidate is None:
                continue
            seen.add(_config_key(pick, self.params))
            candidates.append(candidate)
            model.believe(pick)
        return candidates

    def _pool(self, base_config: dict, measured: list[Measured], rng: random.Random) -> list[dict]:
        """Configs for the models to rate: random points, neighbours of the best feasible and the least
        broken configs, and crossovers (each tunable that differs taken from one parent or the other)."""
        sign = 1.0 if self.direction == "maximize" else -1.0
        finite = [m for m in measured if math.isfinite(m.goal)]
        good = sorted([m for m in finite if m.feasible], key=lambda m: -sign * m.goal)[:3]
        broken = sorted([m for m in measured if not m.feasible],
                        key=lambda m: sum(max(c, 0.0) for c in m.constraints if math.isfinite(c)))[:2]
        promising = sorted([m for m in finite if not m.feasible], key=lambda m: -sign * m.goal)[:2]
        parents = [m.config for m in [*good, *broken, *promising]] or [base_config]
        pool = [self._anywhere(base_config, rng) for _ in range(_POOL_RANDOM)]
        for parent in parents:
            for _ in range(_POOL_NEIGHBOURS):
                config = parent
                for param in rng.sample(self.params, min(len(self.params), rng.choice([1, 1, 2, 3]))):
                    config = set_path(config, param.path, _nearby(param, get_path(config, param.path, None), rng))
                pool.append(config)
        for i, a in enumerate(parents):
            for b in parents[i + 1:]:
                for _ in range(_POOL_CROSSOVERS):
                    config = a
                    for param in self.params:
                        if rng.random() < 0.5:
                            config = set_path(config, param.path, get_path(b, param.path, None))
                    pool.append(config)
        return pool

    def _anywhere(self, config: dict, rng: random.Random) -> dict:
        """``config`` with every searched tunable drawn anew (``_anywhere``)."""
        for param in self.params:
            config = set_path(config, param.path, _anywhere(param, rng))
        return config

    def _directed(self, best: dict, moves_from, rng: random.Random) -> list[tuple[dict, str]]:
        """Configs the evidence points to from ``best``: every move at its nearest value, then every
        move at its farthest, then the strongest move alone."""
        moves = [m for m in moves_from(best) if m.values]
        if not moves:
            return []
        out = []
        for pick in (0, -1):
            config = best
            for move in moves:
                config = set_path(config, move.path, move.values[pick])
            out.append((config, "; ".join(f"{m.path}={m.values[pick]!r}: {m.why}" for m in moves)))
        out.append((set_path(best, moves[0].path, moves[0].values[0]), f"{moves[0].path}={moves[0].values[0]!r}: {moves[0].why}"))
        return out

    def _new_study(self, call_seed: int) -> optuna.Study:
        with warnings.catch_warnings():
            # Optuna 4 marks multivariate and constant_liar experimental; they are stable in 5.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.TPESampler(seed=call_seed, multivariate=True, constant_liar=True,
                                                 n_startup_trials=self.n_startup_trials)
        return optuna.create_study(direction=self.direction, sampler=sampler)

    def _warm_start(self, study: optuna.Study, history: list[Observation]) -> tuple[int, int]:
        """Replay history as completed trials; (number used, number skipped as outside the space)."""
        feasible = [o.score for o in history if o.feasible and math.isfinite(o.score)]
        finite = feasible or [o.score for o in history if math.isfinite(o.score)] or [0.0]
        worse = -1.0 if self.direction == "maximize" else 1.0
        penalty = (min(finite) if worse < 0 else max(finite)) + worse * (1.0 + max(finite) - min(finite))
        used = skipped = 0
        for observation in history:
            params = self._observed_params(observation.config)
            if params is None:
                skipped += 1
                continue
            good = observation.feasible and math.isfinite(observation.score)
            # broken configs rank below every feasible one, and among themselves by how far they break
            graded = penalty + worse * (1.0 + max(finite) - min(finite)) * observation.violation
            try:
                study.add_trial(optuna.trial.create_trial(
                    params=params, distributions=self._distributions,
                    value=observation.score if good else graded,
                ))
            except ValueError as error:  # Optuna's own range check disagrees with ours: skip, don't fail
                _log.debug("search: skipped an observation: %s", error)
                skipped += 1
                continue
            used += 1
        return used, skipped

    def _observed_params(self, config: Any) -> dict[str, Any] | None:
        """An evaluated config in Optuna's terms, or None when it does not fit the current domains."""
        if not isinstance(config, dict):
            return None
        params = {}
        for param in self.params:
            if not has_path(config, param.path):
                return None
            value = get_path(config, param.path)
            if self.space.check_value(param.path, value, model_available=True) is not None:
                return None
            try:
                params[param.path] = param.to_optuna(value)
            except (TypeError, ValueError):
                return None
        return params

    def _repair(self, config: dict, rng: random.Random) -> dict | None:
        """The config with every constraint made to hold, or None when that is impossible.

        Only searched paths are flipped; others keep their value. exactly_one / at_most_one keep one
        true path (a true path that cannot be flipped if there is one, else a seeded choice among the
        true ones) and turn the rest off; exactly_one / at_least_one with none true switch on a seeded
        choice among the searchable paths. Groups are repaired in order, then all are checked again.
        """
        searched = {p.path for p in self.params if isinstance(p.domain, BoolDomain)}
        repaired = config
        for constraint in self.space.constraints:
            if constraint.holds(repaired):
                continue
            on = [p for p in constraint.paths if get_path(repaired, p, False) is True]
            free = [p for p in constraint.paths if p in searched]
            if len(on) > 1 and constraint.type in ("exactly_one", "at_most_one"):
                fixed_on = [p for p in on if p not in searched]
                if len(fixed_on) > 1:
                    return None
                keep = fixed_on[0] if fixed_on else rng.choice(on)
                for path in on:
                    if path != keep:
                        repaired = set_path(repaired, path, False)
            elif not on and constraint.type in ("exactly_one", "at_least_one"):
                if not free:
                    return None
                repaired = set_path(repaired, rng.choice(free), True)
        return None if self.space.check_config(repaired) else repaired

    def _candidate(self, base_config: dict, config: dict, rationale: str) -> Candidate | None:
        mutations = [Mutation(path=p.path, value=get_path(config, p.path)) for p in self.params
                     if not has_path(base_config, p.path) or not _same(get_path(base_config, p.path), get_path(config, p.path))]
        if not mutations:
            return None
        candidate = Candidate(mutations=mutations, rationale=rationale, proposer="optuna")
        if check_candidate(self.space, base_config, candidate, model_available=self.model_available):
            return None
        return candidate

    def _rationale(self, used: int, skipped: int) -> str:
        kind = "TPE sample" if used >= self.n_startup_trials else "random start sample"
        return f"{kind} ({self._history_note(used, skipped)})"

    def _history_note(self, used: int, skipped: int) -> str:
        note = f"{used} earlier result{'s' if used != 1 else ''}"
        if used < self.n_startup_trials:
            note += f"; TPE models from {self.n_startup_trials}"
        if skipped:
            note += f"; {skipped} outside the current space skipped"
        return note

    def _call_seed(self, history: list[Observation]) -> int:
        digest = hashlib.sha256(f"{self.seed}".encode())
        for observation in history:
            digest.update(f"|{_safe_hash(observation.config)}:{observation.score!r}:{observation.feasible}".encode())
        return int.from_bytes(digest.digest()[:4], "big")


def _weighted_sample(params: list[_Param], weights: list[float], count: int, rng: random.Random) -> list[_Param]:
    pool, chosen = list(zip(params, weights)), []
    for _ in range(min(count, len(pool))):
        total = sum(w for _, w in pool)
        pick = rng.uniform(0, total)
        for index, (param, weight) in enumerate(pool):
            pick -= weight
            if pick <= 0 or index == len(pool) - 1:
                chosen.append(param)
                pool.pop(index)
                break
    return chosen


def _anywhere(param: _Param, rng: random.Random) -> Any:
    """A value drawn uniformly from the domain (log-uniformly on a log range)."""
    domain = param.domain
    if isinstance(domain, BoolDomain):
        return rng.random() < 0.5
    if isinstance(domain, ChoiceDomain):
        return rng.choice(domain.values)
    if domain.log:
        raw = math.exp(rng.uniform(math.log(domain.low), math.log(domain.high)))
    else:
        raw = rng.uniform(domain.low, domain.high)
    return param.from_optuna(round(raw) if isinstance(domain, IntDomain) else raw)


def _nearby(param: _Param, value: Any, rng: random.Random, *, far: bool = False, roomier: bool = False) -> Any:
    """A different value near ``value``: a flip, another choice, or a move scaled to the range.

    Numeric moves are relative to the domain, not to its step, so one candidate can cross most of a
    wide range: a linear range moves by 10-50% of its width, a log range by a factor of 2-8; with
    ``far`` (nothing feasible yet) by 25-75% or a factor of 4-16. A short range (a dozen steps or
    fewer) moves 1-3 steps. Sometimes it jumps anywhere. With ``roomier`` (a tunable's first move from
    a centre) it heads to the side of the range with more room (on the log scale for a log range), where
    most of the untried values are.
    """
    domain = param.domain
    if isinstance(domain, BoolDomain):
        return not bool(value)
    if isinstance(domain, ChoiceDomain):
        others = [v for v in domain.values if not _same(v, value)]
        return rng.choice(others) if others else value
    low, high = domain.low, domain.high
    current = value if isinstance(value, (int, float)) and not isinstance(value, bool) else (low + high) / 2
    direction = rng.choice([-1.0, 1.0])
    if roomier:
        position = place(domain, current)
        direction = 1.0 if position < 0.5 else -1.0 if position > 0.5 else direction
    if not roomier and rng.random() < 0.25:
        raw = rng.uniform(low, high) if not domain.log else math.exp(rng.uniform(math.log(low), math.log(high)))
    else:
        raw = _step_from(domain, current, direction, rng, far)
        if abs(min(max(raw, low), high) - current) < 0.5 * abs(raw - current):  # mostly past a bound: go the other way
            raw = _step_from(domain, current, -direction, rng, far)
    raw = min(max(raw, low), high)
    moved = param.from_optuna(round(raw) if isinstance(domain, IntDomain) else raw)
    if _same(moved, value):  # a jump back to the same value: one step, inward
        unit = domain.step or (1 if isinstance(domain, IntDomain) else (high - low) / 10)
        raw = current + unit if current + unit <= high else current - unit
        moved = param.from_optuna(round(raw) if isinstance(domain, IntDomain) else raw)
    return moved


def _step_from(domain: FloatDomain | IntDomain, current: float, direction: float, rng: random.Random, far: bool) -> float:
    """One move of ``_nearby`` in ``direction``, before clamping to the domain."""
    low, high = domain.low, domain.high
    if domain.log:
        factor = rng.choice([4.0, 8.0, 16.0] if far else [2.0, 4.0, 8.0])
        return max(current, low) * factor ** direction
    unit = domain.step or (1 if isinstance(domain, IntDomain) else 0.0)
    if unit and (high - low) / unit <= _FEW_STEPS:  # a short range: a few of its steps
        return current + direction * rng.choice([1, 2, 3]) * unit
    share = rng.choice([0.25, 0.5, 0.75] if far else [0.1, 0.25, 0.5])
    return current + direction * max(share * (high - low), unit)


_GENERIC_TOKENS = {"the", "and", "with", "node", "nodes", "agent", "enabled", "run"}


def _tokens(text: str) -> set[str]:
    return {t for t in re.split(r"[^a-z0-9]+", text.lower()) if len(t) >= 3 and t not in _GENERIC_TOKENS}


def focus_from_hot_spots(paths: list[str], hot_spots: list[tuple[str, float]]) -> dict[str, float]:
    """Weights for the local start from production hot spots (node name, severity): a tunable whose
    path names a hot node (a path segment equal to the node's name) gets its severity, one sharing a
    word with it half of that. Generic on purpose: only names, no rules for any workflow."""
    focus: dict[str, float] = {}
    for path in paths:
        segments = set(path.lower().split("."))
        words = set().union(*(_tokens(seg) for seg in segments))
        weight = 1.0
        for node, severity in hot_spots:
            if node.lower() in segments:
                weight += max(severity, 1.0)
            elif _tokens(node) & words:
                weight += max(severity, 1.0) / 2
        focus[path] = weight
    return focus


def _distribution(domain) -> BaseDistribution:
    """Optuna's distribution for a domain. Optuna refuses log together with step: step wins."""
    if isinstance(domain, FloatDomain):
        if domain.step:
            return FloatDistribution(domain.low, _grid_high(domain.low, domain.high, domain.step), step=domain.step)
        return FloatDistribution(domain.low, domain.high, log=domain.log)
    if isinstance(domain, IntDomain):
        high = domain.low + (domain.high - domain.low) // domain.step * domain.step
        return IntDistribution(domain.low, high, log=domain.log and domain.step == 1, step=domain.step)
    if isinstance(domain, BoolDomain):
        return CategoricalDistribution([False, True])
    return CategoricalDistribution(list(range(len(domain.values))))


def _grid_high(low: float, high: float, step: float) -> float:
    """The largest ``low + k * step`` not above ``high`` (decimal arithmetic, as Optuna does)."""
    d_low, d_step = Decimal(str(low)), Decimal(str(step))
    return float((Decimal(str(high)) - d_low) // d_step * d_step + d_low)


def _same(a: Any, b: Any) -> bool:
    """Equal as config values: 1 == 1.0, but True is not 1."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


def _config_key(config: Any, params: list[_Param]) -> str:
    """A hash that treats 1 and 1.0, or 0.30000000000000004 and 0.3, in float tunables as equal."""
    if isinstance(config, dict):
        for param in params:
            if isinstance(param.domain, FloatDomain):
                value = get_path(config, param.path, None)
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    config = set_path(config, param.path, float(f"{float(value):.12g}"))
    return _safe_hash(config)


def _safe_hash(config: Any) -> str:
    try:
        return config_hash(config)
    except (TypeError, ValueError):  # NaN or something JSON cannot hold: still a stable key
        return hashlib.sha256(repr(config).encode()).hexdigest()


_quiet_lock = threading.Lock()
_quiet_depth = 0
_saved_verbosity = optuna.logging.WARNING


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Optuna's own logger at WARNING while proposing (no study chatter), restored afterwards."""
    global _quiet_depth, _saved_verbosity
    with _quiet_lock:
        if _quiet_depth == 0:
            _saved_verbosity = optuna.logging.get_verbosity()
            optuna.logging.set_verbosity(max(_saved_verbosity, optuna.logging.WARNING))
        _quiet_depth += 1
    try:
        yield
    finally:
        with _quiet_lock:
            _quiet_depth -= 1
            if _quiet_depth == 0:
                optuna.logging.set_verbosity(_saved_verbosity)
