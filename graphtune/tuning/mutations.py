"""Candidates: a list of ``{path, value}`` changes with a rationale, validated and applied to a config."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from graphtune.tuning.config_paths import config_diff, set_path
from graphtune.tuning.space import Rejection, SearchSpace


class Mutation(BaseModel):
    path: str = Field(description="Dotted path of a tunable, e.g. rag.top_k")
    value: Any = Field(description="The new value, inside the tunable's domain")


class Candidate(BaseModel):
    mutations: list[Mutation] = Field(min_length=1)
    rationale: str = ""
    proposer: str = Field("", description="Who proposed it: llm, optuna, human, ...")

    def describe(self) -> str:
        return ", ".join(f"{m.path}={m.value!r}" for m in self.mutations)


class InvalidCandidate(ValueError):
    """A candidate with rejections; ``str()`` lists them one per line."""

    def __init__(self, rejections: list[Rejection]):
        self.rejections = rejections
        super().__init__("\n".join(r.message for r in rejections))


def apply_mutations(config: dict, mutations: list[Mutation]) -> dict:
    """A new config with every change applied (the input is untouched)."""
    for mutation in mutations:
        config = set_path(config, mutation.path, mutation.value)
    return config


def check_candidate(space: SearchSpace, config: dict, candidate: Candidate, *, model_available: bool = True) -> list[Rejection]:
    """Every reason ``candidate`` cannot be applied to ``config``; empty when it is valid."""
    rejections: list[Rejection] = []
    seen: set[str] = set()
    for mutation in candidate.mutations:
        if mutation.path in seen:
            rejections.append(Rejection(code="duplicate_path", path=mutation.path,
                                        message=f"{mutation.path} is changed twice in one candidate"))
        seen.add(mutation.path)
        rejection = space.check_value(mutation.path, mutation.value, model_available=model_available)
        if rejection:
            rejections.append(rejection)
    if rejections:
        return rejections
    new_config = apply_mutations(config, candidate.mutations)
    rejections = space.check_config(new_config)
    if not rejections and not config_diff(config, new_config):
        rejections.append(Rejection(code="not_allowed", message="the candidate changes nothing: every value equals the current config"))
    return rejections


def build_candidate(space: SearchSpace, config: dict, candidate: Candidate, *, model_available: bool = True) -> dict:
    """The candidate's config, or ``InvalidCandidate`` with every reason."""
    rejections = check_candidate(space, config, candidate, model_available=model_available)
    if rejections:
        raise InvalidCandidate(rejections)
    return apply_mutations(config, candidate.mutations)
