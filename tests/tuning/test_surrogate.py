"""The goal and guardrail models: encoding, combining what separate evals taught, handing over when converged."""

import math

import pytest

from graphtune.tuning.search import Observation, SearchProposer
from graphtune.tuning.space import SearchSpace
from graphtune.tuning.surrogate import GuardedModel, Measured, encode

SPACE = SearchSpace.model_validate({"tunables": {
    "fast": {"type": "bool", "description": "cuts latency, loses accuracy"},
    "rerank": {"type": "bool", "description": "gains accuracy"},
    "cache": {"type": "bool"},
    "tokens": {"type": "int", "low": 16, "high": 1024, "log": True},
    "model": {"type": "choice", "values": ["nano", "mini", "pro"]},
}})
BASE = {"fast": False, "rerank": False, "cache": False, "tokens": 64, "model": "pro"}


def params():
    return SearchProposer(SPACE, direction="minimize", seed=0).params


def test_encoding_puts_every_tunable_in_the_unit_interval_log_ranges_on_their_log_scale():
    point = encode(params(), {**BASE, "rerank": True, "tokens": 128})
    # fast, rerank, cache, tokens (log place of 128 in 16..1024 = 3/6), one indicator per model
    assert point == pytest.approx([0.0, 1.0, 0.0, 0.5, 0.0, 0.0, 1.0])
    assert encode(params(), {**BASE, "tokens": 5000})[3] == 1.0  # clamped, never outside


def latency(config):
    return 1000.0 - 400.0 * config["fast"] + 30.0 * config["rerank"] - 20.0 * config["cache"]


def accuracy_slack(config):
    """> 0 broken: 'fast' alone loses 0.3 of accuracy past the limit, 'rerank' gives 1.0 back."""
    return -0.2 + 0.5 * config["fast"] - 1.0 * config["rerank"]


def measured(config):
    c = accuracy_slack(config)
    return Measured(config=config, goal=latency(config), constraints=(c,), feasible=c <= 0)


def test_two_single_moves_are_combined_when_each_model_learned_its_half():
    seen = [BASE, {**BASE, "fast": True}, {**BASE, "rerank": True}, {**BASE, "cache": True}, {**BASE, "tokens": 256}]
    model = GuardedModel(params(), [measured(c) for c in seen], maximize=False, seed=0)
    options = {
        "fast+rerank": {**BASE, "fast": True, "rerank": True},
        "fast+cache": {**BASE, "fast": True, "cache": True},
        "rerank+cache": {**BASE, "rerank": True, "cache": True},
        "model": {**BASE, "model": "mini"},
    }
    rating = dict(zip(options, model.acquisition(list(options.values()))))
    assert max(rating, key=rating.get) == "fast+rerank"
    assert rating["fast+rerank"] > 10 * rating["fast+cache"]  # fast without rerank is predicted to break the guardrail


def test_the_search_proposes_the_combination_once_the_model_takes_over():
    history = [Observation(config=c, score=latency(c), feasible=accuracy_slack(c) <= 0, constraints=[accuracy_slack(c)])
               for c in [BASE, {**BASE, "fast": True}, {**BASE, "rerank": True}, {**BASE, "cache": True}]]
    proposer = SearchProposer(SPACE, direction="minimize", seed=1, n_startup_trials=4)
    candidates = proposer.propose(BASE, history, 2)
    first = {m.path: m.value for m in candidates[0].mutations}
    assert first.get("fast") is True and first.get("rerank") is True
    assert candidates[0].rationale.startswith("model of the goal and each guardrail (4 earlier results)")
    assert {m.path: m.value for m in candidates[1].mutations} != first  # the believer moved the second pick elsewhere


def test_a_model_with_nothing_to_learn_hands_the_batch_to_tpe():
    space = SearchSpace.model_validate({"tunables": {"x": {"type": "float", "low": 0, "high": 1}}})
    history = [Observation(config={"x": x / 10}, score=0.5) for x in range(6)]  # flat: every config scores the same
    candidates = SearchProposer(space, direction="maximize", seed=0, n_startup_trials=4).propose({"x": 0.5}, history, 2)
    assert len(candidates) == 2
    assert all(c.rationale.startswith("TPE sample") for c in candidates)


def test_unmeasured_guardrails_and_goals_are_left_out_not_fatal():
    rows = [Measured(config=BASE, goal=math.nan, constraints=(math.nan,), feasible=False),
            Measured(config={**BASE, "fast": True}, goal=900.0, constraints=(math.nan,), feasible=True)]
    model = GuardedModel(params(), rows, maximize=False)
    assert not model.usable  # too little to model: the caller falls back to its other samplers


def test_a_model_that_cannot_be_fitted_leaves_the_batch_to_tpe(monkeypatch, caplog):
    import graphtune.tuning.search as search

    def degenerate(*args, **kwargs):
        raise ValueError("array must not contain infs or NaNs")

    monkeypatch.setattr(search, "GuardedModel", degenerate)
    history = [Observation(config=c, score=latency(c), feasible=accuracy_slack(c) <= 0, constraints=[accuracy_slack(c)])
               for c in [BASE, {**BASE, "fast": True}, {**BASE, "rerank": True}, {**BASE, "cache": True}]]
    candidates = SearchProposer(SPACE, direction="minimize", seed=1, n_startup_trials=4).propose(BASE, history, 2)
    assert len(candidates) == 2 and all(c.rationale.startswith("TPE sample") for c in candidates)
    assert "could not be fitted" in caplog.text
