"""The search space a workflow declares: tunable domains, constraints, and why a change is invalid.

Proposers (the LLM and Optuna) only see this; validation returns reasons precise enough for an LLM
to fix its proposal on the next try: unknown path, out of range, wrong type, violated constraint.
"""

from __future__ import annotations

import difflib
import math
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from graphtune.tuning.config_paths import get_path, has_path

RejectionCode = Literal[
    "unknown_path", "wrong_type", "out_of_range", "off_step", "not_allowed", "needs_model", "constraint", "duplicate_path"
]


class _Domain(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = ""
    requires_model: bool = Field(False, description="Tunable only when an LLM is configured (e.g. temperature).")


class FloatDomain(_Domain):
    type: Literal["float"]
    low: float
    high: float
    step: float | None = None
    log: bool = False

    @model_validator(mode="after")
    def _bounds(self):
        _check_bounds(self.low, self.high, self.step, self.log)
        return self


class IntDomain(_Domain):
    type: Literal["int"]
    low: int
    high: int
    step: int = 1
    log: bool = False

    @model_validator(mode="after")
    def _bounds(self):
        _check_bounds(self.low, self.high, self.step, self.log)
        return self


class ChoiceDomain(_Domain):
    type: Literal["choice"]
    values: list[Any] = Field(min_length=1)


class BoolDomain(_Domain):
    type: Literal["bool"]


class TextDomain(_Domain):
    """A prompt template: free text, with placeholders it must keep."""

    type: Literal["text"]
    max_length: int = Field(4000, gt=0)
    placeholders: list[str] = Field(default_factory=list, description="e.g. ['{question}', '{context}']")


Domain = Annotated[Union[FloatDomain, IntDomain, ChoiceDomain, BoolDomain, TextDomain], Field(discriminator="type")]


class Constraint(BaseModel):
    """A rule over several bool tunables, e.g. exactly one answer node enabled."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["exactly_one", "at_most_one", "at_least_one"]
    paths: list[str] = Field(min_length=2)

    def holds(self, config: dict) -> bool:
        on = sum(1 for p in self.paths if get_path(config, p, False) is True)
        return {"exactly_one": on == 1, "at_most_one": on <= 1, "at_least_one": on >= 1}[self.type]

    def describe(self) -> str:
        return f"{self.type.replace('_', ' ')} of {', '.join(self.paths)} must be true"


class Rejection(BaseModel):
    """Why one change (or the whole candidate) is invalid, in words a proposer can act on."""

    code: RejectionCode
    path: str | None = None
    message: str


class SearchSpace(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tunables: dict[str, Domain] = Field(default_factory=dict)
    constraints: list[Constraint] = Field(default_factory=list)

    def available(self, model_available: bool) -> dict[str, Any]:
        """The tunables a proposer may change now (model-only knobs drop out offline)."""
        return {p: d for p, d in self.tunables.items() if model_available or not d.requires_model}

    def restricted(self, scope: list[str]) -> SearchSpace:
        """The part of the space a tuning request may change: tunables matching ``scope``.

        Scope entries are paths or prefixes: ``rag``, ``rag.*`` and ``rag.top_k`` all match
        ``rag.top_k``; an empty scope is the whole space. A constraint is dropped only when none of
        its paths is in scope: one that touches the scope still binds, because the out-of-scope
        paths keep their current values and a candidate must not break the rule through them.
        """
        prefixes = [s.strip().removesuffix("*").removesuffix(".") for s in scope]
        prefixes = [p for p in prefixes if p]
        if not prefixes:
            return self.model_copy(deep=True)

        def in_scope(path: str) -> bool:
            return any(path == p or path.startswith(p + ".") for p in prefixes)

        tunables = {p: d for p, d in self.tunables.items() if in_scope(p)}
        constraints = [c for c in self.constraints if any(p in tunables for p in c.paths)]
        return SearchSpace(tunables=tunables, constraints=constraints).model_copy(deep=True)

    def check_value(self, path: str, value: Any, *, model_available: bool = True) -> Rejection | None:
        domain = self.tunables.get(path)
        if domain is None:
            close = difflib.get_close_matches(path, list(self.tunables), n=3, cutoff=0.8)
            hint = f"; did you mean {', '.join(close)}?" if close else f"; tunable paths: {', '.join(sorted(self.tunables))}"
            return Rejection(code="unknown_path", path=path, message=f"{path} is not a tunable{hint}")
        if domain.requires_model and not model_available:
            return Rejection(code="needs_model", path=path, message=f"{path} only matters with an LLM configured; none is")
        return _check_domain(path, domain, value)

    def check_config(self, config: dict) -> list[Rejection]:
        """Constraint violations of a whole config."""
        return [Rejection(code="constraint", message=f"constraint violated: {c.describe()}")
                for c in self.constraints if not c.holds(config)]

    def check_covers(self, config: dict) -> list[str]:
        """Problems with a spec's own default config: paths it lacks, values outside their domain."""
        problems = []
        for path, domain in self.tunables.items():
            if not has_path(config, path):
                problems.append(f"tunable {path} has no value in config")
                continue
            rejection = _check_domain(path, domain, get_path(config, path))
            if rejection:
                problems.append(f"config value of {rejection.message}")
        for constraint in self.constraints:
            for path in constraint.paths:
                if path not in self.tunables or not isinstance(self.tunables[path], BoolDomain):
                    problems.append(f"constraint path {path} must be a bool tunable")
        return problems


def _check_bounds(low, high, step, log) -> None:
    if low > high:
        raise ValueError(f"low ({low}) must not exceed high ({high})")
    if step is not None and step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    if log and low <= 0:
        raise ValueError(f"a log-scale domain needs low > 0, got {low}")


def _check_domain(path: str, domain, value: Any) -> Rejection | None:
    def reject(code: RejectionCode, expected: str) -> Rejection:
        return Rejection(code=code, path=path, message=f"{path}: expected {expected}, got {value!r}")

    if isinstance(domain, (FloatDomain, IntDomain)):
        is_int = isinstance(value, int) and not isinstance(value, bool)
        if isinstance(domain, IntDomain) and not is_int:
            return reject("wrong_type", "an integer")
        if isinstance(domain, FloatDomain) and not (is_int or isinstance(value, float)) or (
            isinstance(value, float) and not math.isfinite(value)
        ):
            return reject("wrong_type", "a finite number")
        if not domain.low <= value <= domain.high:
            return reject("out_of_range", f"a value in [{domain.low}, {domain.high}]")
        if domain.step and not _on_step(value, domain.low, domain.step):
            return reject("off_step", f"{domain.low} plus a multiple of {domain.step}")
    elif isinstance(domain, BoolDomain):
        if not isinstance(value, bool):
            return reject("wrong_type", "true or false")
    elif isinstance(domain, ChoiceDomain):
        if value not in domain.values:
            return reject("not_allowed", f"one of {domain.values!r}")
    elif isinstance(domain, TextDomain):
        if not isinstance(value, str):
            return reject("wrong_type", "text")
        if len(value) > domain.max_length:
            return Rejection(code="out_of_range", path=path,
                             message=f"{path}: expected at most {domain.max_length} characters, got {len(value)}")
        missing = [p for p in domain.placeholders if p not in value]
        if missing:
            return Rejection(code="not_allowed", path=path, message=f"{path}: the text must keep the placeholders {missing}")
    return None


def _on_step(value: float, low: float, step: float) -> bool:
    k = (value - low) / step
    return abs(k - round(k)) < 1e-9 * max(1.0, abs(k))
