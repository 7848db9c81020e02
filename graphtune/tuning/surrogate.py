"""A model of the goal and of every guardrail, so the search can combine what separate evals taught it.

TPE ranks trials by one number, so a config that broke a guardrail only tells it "bad". An eval
report says more: the goal moved by this much, and each guardrail ended this far from its limit
(``tuning.decision.GuardrailCheck.constraint``). This module fits one Gaussian process per quantity
over the searched tunables and scores configs by the expected improvement of the goal times the
probability that every guardrail holds (constrained expected improvement, Gardner et al., ICML 2014),
counting only configs at least as likely to keep the guardrails as to break one; while nothing
evaluated is feasible, by the probability of feasibility alone. So a move that cut
latency but lost accuracy and another that gained accuracy are combined: each model learned its half.

Encoding: a numeric tunable is its place in its range (on a log scale when the range is), a bool is
0 or 1, a choice is one indicator per value. Guardrail distances are compressed with a signed
``log1p`` (a config with 70% errors against a 5% limit is not 13 times as informative as one just
over it); their sign, which is all feasibility needs, is kept. Observations stopped early enter with
the goal estimated on the examples they ran (the paired change over the baseline's).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy.stats import norm
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

from graphtune.tuning.config_paths import get_path
from graphtune.tuning.space import BoolDomain, ChoiceDomain, FloatDomain, IntDomain

MIN_OBSERVATIONS = 3  # fewer than this and a model says nothing a neighbour step would not
MIN_FEASIBLE_CHANCE = 0.5  # once something is feasible, a config must be at least as likely to keep the guardrails


@dataclass(frozen=True)
class Measured:
    """One evaluated config as the models see it."""

    config: dict
    goal: float  # the goal's statistic, NaN when not measured
    constraints: tuple[float, ...]  # per guardrail: > 0 broken, <= 0 kept, NaN not measured
    feasible: bool  # a complete eval that kept every guardrail


def encode(params: Sequence[Any], config: dict) -> list[float]:
    """The config as a point in [0, 1]^d (``params``: objects with ``path`` and ``domain``)."""
    point: list[float] = []
    for param in params:
        domain, value = param.domain, get_path(config, param.path, None)
        if isinstance(domain, BoolDomain):
            point.append(1.0 if value is True else 0.0)
        elif isinstance(domain, ChoiceDomain):
            point += [1.0 if _same(value, allowed) else 0.0 for allowed in domain.values]
        elif isinstance(domain, (FloatDomain, IntDomain)):
            number = float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else domain.low
            point.append(min(max(place(domain, number), 0.0), 1.0))
    return point


def place(domain: FloatDomain | IntDomain, value: float) -> float:
    """Where ``value`` sits in the range, 0 at the low end and 1 at the high end (log scale on a log range)."""
    low, high = float(domain.low), float(domain.high)
    if domain.log and low > 0:
        value, low, high = math.log(max(value, low)), math.log(low), math.log(high)
    return 0.5 if high == low else (value - low) / (high - low)


class GuardedModel:
    """Gaussian processes of the goal (as a gain: higher is better) and of each guardrail's distance."""

    def __init__(self, params: Sequence[Any], measured: list[Measured], *, maximize: bool, seed: int = 0):
        self.params = list(params)
        self.sign = 1.0 if maximize else -1.0
        self.seed = seed
        self._x: list[list[float]] = []
        self._goal: list[float] = []
        self.incumbent: float | None = None
        width = max((len(m.constraints) for m in measured), default=0)
        self._limits: list[list[float]] = [[] for _ in range(width)]
        self._limit_x: list[list[list[float]]] = [[] for _ in range(width)]
        goal_x = []
        for m in measured:
            point = encode(self.params, m.config)
            if math.isfinite(m.goal):
                goal_x.append(point)
                self._goal.append(self.sign * m.goal)
                if m.feasible:
                    self.incumbent = max(self.incumbent, self.sign * m.goal) if self.incumbent is not None else self.sign * m.goal
            for i, c in enumerate(m.constraints):
                if math.isfinite(c):
                    self._limit_x[i].append(point)
                    self._limits[i].append(math.copysign(math.log1p(abs(c)), c))
        self._goal_x = goal_x
        self.goal_model = self._fit(goal_x, self._goal)
        self.limit_models = [self._fit(xs, ys) for xs, ys in zip(self._limit_x, self._limits)]

    @property
    def usable(self) -> bool:
        return self.goal_model is not None or any(m is not None for m in self.limit_models)

    def acquisition(self, configs: list[dict]) -> np.ndarray:
        """Per config: expected improvement x probability of feasibility (or the latter alone while nothing is feasible)."""
        x = np.array([encode(self.params, c) for c in configs])
        feasible = np.ones(len(configs))
        for model in self.limit_models:
            if model is not None:
                mean, std = model.predict(x, return_std=True)
                feasible *= norm.cdf(-mean / np.maximum(std, 1e-9))
        if self.incumbent is None or self.goal_model is None:
            return feasible
        # With a feasible incumbent to beat, a config more likely broken than not is not worth an eval:
        # its predicted gain is usually the very thing that breaks the guardrail (on the tuning suite this
        # raised the worst workflow from 0.62 to 0.76 of its headroom and left the others unchanged).
        feasible = np.where(feasible >= MIN_FEASIBLE_CHANCE, feasible, 0.0)
        mean, std = self.goal_model.predict(x, return_std=True)
        std = np.maximum(std, 1e-9)
        z = (mean - self.incumbent) / std
        improvement = (mean - self.incumbent) * norm.cdf(z) + std * norm.pdf(z)
        return np.maximum(improvement, 0.0) * feasible

    def negligible(self, rating: float) -> bool:
        """Whether an acquisition value promises nothing: an expected gain under 0.01% of the spread of the
        measured goal (or a chance of feasibility under 0.1%). Then the model has converged, or knows
        nothing, and another sampler should choose."""
        if self.incumbent is None or self.goal_model is None:
            return rating < 1e-3
        spread = max(self._goal) - min(self._goal)
        return rating <= 1e-4 * spread

    def believe(self, config: dict) -> None:
        """Add ``config`` as if measured at the models' predictions and refit with the kernels they have
        (the kriging believer), so the next pick of a batch looks elsewhere."""
        point = encode(self.params, config)
        x = np.array([point])
        if self.goal_model is not None:
            self._goal_x.append(point)
            self._goal.append(float(self.goal_model.predict(x)[0]))
            self.goal_model = self._fit(self._goal_x, self._goal, self.goal_model.fitted_kernel)
        for i, model in enumerate(self.limit_models):
            if model is not None:
                self._limit_x[i].append(point)
                self._limits[i].append(float(model.predict(x)[0]))
                self.limit_models[i] = self._fit(self._limit_x[i], self._limits[i], model.fitted_kernel)

    def _fit(self, xs: list[list[float]], ys: list[float], kernel=None) -> GaussianProcessRegressor | None:
        if len(xs) < MIN_OBSERVATIONS or len(set(ys)) < 2:
            return None
        width = len(xs[0])
        if kernel is None:
            kernel = (ConstantKernel(1.0, (1e-2, 1e2)) * Matern(length_scale=np.full(width, 0.5), length_scale_bounds=(0.05, 20.0), nu=2.5)
                      + WhiteKernel(1e-2, (1e-6, 0.5)))
            model = GaussianProcessRegressor(kernel, normalize_y=True, n_restarts_optimizer=2, random_state=self.seed)
        else:
            model = GaussianProcessRegressor(kernel, normalize_y=True, optimizer=None)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.simplefilter("ignore", RuntimeWarning)
            model.fit(np.array(xs), np.array(ys))
        model.fitted_kernel = model.kernel_
        # Predict the quantity itself, not a new noisy measurement of it: the fit kept the noise term,
        # the prediction drops it (a white-noise kernel adds nothing between distinct points).
        model.kernel_ = model.kernel_.k1
        return model


def _same(a: Any, b: Any) -> bool:
    return isinstance(a, bool) == isinstance(b, bool) and a == b
