import logging
import random
import statistics

import optuna
import pytest

from graphtune.spec import load_spec
from graphtune.tuning.config_paths import config_hash, get_path
from graphtune.tuning.mutations import apply_mutations, check_candidate
from graphtune.tuning.search import Observation, SearchProposer
from graphtune.tuning.space import SearchSpace, TextDomain

KEYWORDS = [["a"], ["a", "b"], ["a", "b", "c"]]
TOY = SearchSpace.model_validate({"tunables": {
    "model.x": {"type": "float", "low": 0, "high": 1},
    "model.k": {"type": "int", "low": 1, "high": 10},
    "model.flag": {"type": "bool"},
    "model.keywords": {"type": "choice", "values": KEYWORDS},
    "model.note": {"type": "text"},
}})
TOY_BASE = {"model": {"x": 0.1, "k": 9, "flag": False, "keywords": ["a"], "note": "hi"}}
TOY_OPTIMUM = 0.4


def toy_score(config):
    m = config["model"]
    return -(m["x"] - 0.7) ** 2 - (m["k"] - 3) ** 2 / 10 + (0.2 if m["flag"] else 0) + 0.1 * KEYWORDS.index(m["keywords"])


def run_loop(proposer, base, score, rounds, n, feasible=lambda config: True):
    """Propose, 'evaluate', feed back: the history a tuning loop would build."""
    history = [Observation(config=base, score=score(base), feasible=feasible(base))]
    for _ in range(rounds):
        for candidate in proposer.propose(base, history, n):
            config = apply_mutations(base, candidate.mutations)
            history.append(Observation(config=config, score=score(config), feasible=feasible(config)))
    return history


@pytest.mark.parametrize("model_available", [False, True])
def test_candidates_on_the_bundled_spec_are_valid_new_and_distinct(model_available):
    spec = load_spec("support_qa")
    space, base = spec.space, spec.config
    proposer = SearchProposer(space, direction=spec.objective.direction, seed=3, model_available=model_available)
    rng = random.Random(0)
    history = [Observation(config=base, score=0.5)]
    for n in (1, 4, 6, 4, 4):
        candidates = proposer.propose(base, history, n)
        assert len(candidates) == n
        configs = [apply_mutations(base, c.mutations) for c in candidates]
        assert len({config_hash(c) for c in configs}) == n
        assert not {config_hash(c) for c in configs} & {config_hash(o.config) for o in history}
        for candidate in candidates:
            assert check_candidate(space, base, candidate, model_available=model_available) == []
            assert candidate.proposer == "optuna"
            assert f"{len(history)} earlier result" in candidate.rationale
            for mutation in candidate.mutations:
                domain = space.tunables[mutation.path]
                assert not isinstance(domain, TextDomain)
                assert model_available or not domain.requires_model
                assert mutation.value != get_path(base, mutation.path)  # only what differs from the base
        history += [Observation(config=c, score=rng.random(), feasible=rng.random() > 0.2) for c in configs]
    assert proposer.propose(base, history, 0) == []


def test_warm_start_finds_the_optimum_better_than_random_search():
    rounds, n, seeds = 12, 4, range(4)

    def random_search(seed):
        rng, best = random.Random(seed), toy_score(TOY_BASE)
        for _ in range(rounds * n):
            config = {"model": {"x": rng.random(), "k": rng.randint(1, 10), "flag": rng.random() < 0.5,
                                "keywords": rng.choice(KEYWORDS), "note": "hi"}}
            best = max(best, toy_score(config))
        return best

    tpe = [max(o.score for o in run_loop(SearchProposer(TOY, direction="maximize", seed=s), TOY_BASE, toy_score, rounds, n))
           for s in seeds]
    rand = [random_search(s) for s in seeds]
    assert max(tpe) > TOY_OPTIMUM - 0.01
    assert statistics.mean(tpe) > TOY_OPTIMUM - 0.03
    assert statistics.mean(tpe) > statistics.mean(rand) + 0.05


def test_minimize_direction_is_honoured():
    def late_mean_and_best(direction):
        history = run_loop(SearchProposer(TOY, direction=direction, seed=0), TOY_BASE, lambda c: -toy_score(c), 10, 4)
        return statistics.mean(o.score for o in history[-16:]), min(o.score for o in history)

    (minimizing, best), (maximizing, _) = late_mean_and_best("minimize"), late_mean_and_best("maximize")
    assert best < -TOY_OPTIMUM + 0.05
    assert minimizing < maximizing - 1.0


def test_infeasible_region_is_proposed_less():
    space = SearchSpace.model_validate({"tunables": {"x": {"type": "float", "low": 0, "high": 1},
                                                     "y": {"type": "float", "low": 0, "high": 1}}})
    base = {"x": 0.2, "y": 0.2}

    def share_in_region(seed, flag_infeasible):
        history = run_loop(SearchProposer(space, direction="maximize", seed=seed), base,
                           lambda c: c["x"] + 0.1 * c["y"], rounds=10, n=4,
                           feasible=lambda c: not flag_infeasible or c["x"] <= 0.6)
        late = [o.config["x"] > 0.6 for o in history[-28:]]  # after the random start
        return sum(late) / len(late)

    flagged = statistics.mean(share_in_region(s, True) for s in range(3))
    unflagged = statistics.mean(share_in_region(s, False) for s in range(3))
    assert flagged < 0.55
    assert flagged < unflagged - 0.25


def test_history_outside_the_space_is_skipped_without_error():
    proposer = SearchProposer(TOY, direction="maximize", seed=0)
    good = [Observation(config={"model": {**TOY_BASE["model"], "x": x / 10, "k": k}}, score=x / 10)
            for x, k in [(2, 3), (5, 4), (7, 3)]]
    odd = [
        Observation(config={"model": {**TOY_BASE["model"], "k": 42}}, score=9.0),  # out of range
        Observation(config={"model": {**TOY_BASE["model"], "x": "high"}}, score=9.0),  # wrong type
        Observation(config={"model": {**TOY_BASE["model"], "keywords": ["zzz"]}}, score=9.0),  # not a choice
        Observation(config={"model": {"x": 0.3}}, score=9.0),  # paths missing
        Observation(config={"other": {"path": 1}, "model": {**TOY_BASE["model"], "x": 0.9}}, score=0.1),  # extra path: used
        Observation(config={"model": {**TOY_BASE["model"], "x": 0.4}}, score=float("nan")),  # failed eval: bad, used
    ]
    candidates = proposer.propose(TOY_BASE, good + odd, 4)
    assert len(candidates) == 4
    assert all(check_candidate(TOY, TOY_BASE, c, model_available=False) == [] for c in candidates)
    assert "5 earlier results; 4 outside the current space skipped" in candidates[0].rationale


def test_changed_domains_skip_old_history_and_step_grids_are_respected():
    space = SearchSpace.model_validate({"tunables": {
        "t": {"type": "float", "low": 0.1, "high": 2.0, "step": 0.05},
        "r": {"type": "float", "low": 0.0, "high": 1.0, "step": 0.3},  # high off the grid: top is 0.9
        "n": {"type": "int", "low": 0, "high": 9, "step": 4},  # top is 8
        "m": {"type": "int", "low": 16, "high": 1024, "log": True},
    }})
    base = {"t": 0.25, "r": 0.3, "n": 4, "m": 512}
    history = run_loop(SearchProposer(space, direction="maximize", seed=2), base,
                       lambda c: c["t"] + c["r"] + c["n"] - c["m"] / 1024, rounds=10, n=4)
    assert len(history) == 41
    for observation in history[1:]:
        config = observation.config
        assert all(space.check_value(path, config[path]) is None for path in base)
        assert config["r"] in (0.0, 0.3, 0.6, 0.9) and config["n"] in (0, 4, 8)
        assert round(config["t"], 2) == config["t"]  # 0.35, not 0.35000000000000003


def test_exactly_one_over_three_bools_always_yields_valid_candidates():
    space = SearchSpace.model_validate({
        "tunables": {"a": {"type": "bool"}, "b": {"type": "bool"}, "c": {"type": "bool"},
                     "x": {"type": "float", "low": 0, "high": 1}},
        "constraints": [{"type": "exactly_one", "paths": ["a", "b", "c"]}],
    })
    base = {"a": True, "b": False, "c": False, "x": 0.5}
    for seed in range(3):
        proposer = SearchProposer(space, direction="maximize", seed=seed)
        history = run_loop(proposer, base, lambda c: c["x"] + (0.5 if c["c"] else 0), rounds=6, n=5)
        assert len(history) == 31
        assert all(space.check_config(o.config) == [] for o in history)
        assert {p for o in history for p in "abc" if o.config[p]} == {"a", "b", "c"}


def test_constraint_repair_with_only_constrained_bools_exhausts_the_space():
    space = SearchSpace.model_validate({
        "tunables": {p: {"type": "bool"} for p in "abc"},
        "constraints": [{"type": "exactly_one", "paths": ["a", "b", "c"]}],
    })
    base = {"a": True, "b": False, "c": False}
    candidates = SearchProposer(space, direction="maximize").propose(base, [], 5)
    configs = sorted(tuple(apply_mutations(base, c.mutations).values()) for c in candidates)
    assert configs == [(False, False, True), (False, True, False)]
    assert all(check_candidate(space, base, c) == [] for c in candidates)


def test_repair_keeps_a_constrained_path_the_search_may_not_change():
    space = SearchSpace.model_validate({
        "tunables": {"a": {"type": "bool", "requires_model": True}, "b": {"type": "bool"}, "c": {"type": "bool"},
                     "d": {"type": "bool"}, "e": {"type": "bool"}, "x": {"type": "int", "low": 0, "high": 5}},
        "constraints": [{"type": "exactly_one", "paths": ["a", "b", "c"]},
                        {"type": "at_least_one", "paths": ["d", "e"]},
                        {"type": "at_most_one", "paths": ["d", "e"]}],
    })
    base = {"a": True, "b": False, "c": False, "d": True, "e": False, "x": 0}
    candidates = SearchProposer(space, direction="maximize", seed=5).propose(base, [], 6)
    assert len(candidates) == 6
    for candidate in candidates:
        assert check_candidate(space, base, candidate, model_available=False) == []
        assert {m.path for m in candidate.mutations} <= {"d", "e", "x"}


def test_same_seed_and_history_give_the_same_candidates():
    history = run_loop(SearchProposer(TOY, direction="maximize", seed=0), TOY_BASE, toy_score, rounds=4, n=4)

    def propose(seed):
        return [c.model_dump() for c in SearchProposer(TOY, direction="maximize", seed=seed).propose(TOY_BASE, history, 4)]

    assert propose(7) == propose(7)
    assert propose(7) != propose(8)
    assert run_loop(SearchProposer(TOY, direction="maximize", seed=4), TOY_BASE, toy_score, 3, 3) == \
        run_loop(SearchProposer(TOY, direction="maximize", seed=4), TOY_BASE, toy_score, 3, 3)


def test_a_space_with_nothing_to_search_proposes_nothing():
    space = SearchSpace.model_validate({"tunables": {"prompt": {"type": "text"},
                                                     "t": {"type": "float", "low": 0, "high": 1, "requires_model": True}}})
    assert SearchProposer(space, direction="maximize").propose({"prompt": "p", "t": 0.2}, [], 3) == []


def test_optuna_logging_is_quiet_while_proposing_and_restored_after():
    records = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    optuna_logger, root_level = logging.getLogger("optuna"), logging.getLogger().level
    before = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.INFO)
    optuna_logger.addHandler(handler)
    try:
        SearchProposer(TOY, direction="maximize").propose(TOY_BASE, [], 2)
        assert optuna.logging.get_verbosity() == optuna.logging.INFO
        assert logging.getLogger().level == root_level
        assert records == []  # no "A new study created in memory", no "Trial 3 pruned."
    finally:
        optuna_logger.removeHandler(handler)
        optuna.logging.set_verbosity(before)


def test_direction_is_checked():
    with pytest.raises(ValueError, match="maximize"):
        SearchProposer(TOY, direction="up")


def test_moves_are_scaled_to_the_range_not_to_the_step():
    import random

    from graphtune.tuning.search import _nearby

    space = SearchSpace.model_validate({"tunables": {
        "timeout_ms": {"type": "int", "low": 20, "high": 2000, "log": True},
        "chunk": {"type": "int", "low": 20, "high": 500},
        "few": {"type": "int", "low": 0, "high": 5}}})
    params = {p.path: p for p in SearchProposer(space, direction="maximize").params}
    rng = random.Random(0)
    logs = [_nearby(params["timeout_ms"], 40, rng) for _ in range(200)]
    assert all(v != 40 for v in logs) and sum(v >= 80 or v <= 20 for v in logs) >= 0.8 * len(logs)  # else a jump
    linear = [_nearby(params["chunk"], 40, rng) for _ in range(200)]
    assert sum(abs(v - 40) >= 0.1 * 480 for v in linear) >= 0.8 * len(linear)  # not 40 -> 41
    far = [_nearby(params["chunk"], 40, rng, far=True) for _ in range(200)]
    assert sum(abs(v - 40) >= 0.25 * 480 for v in far) >= 0.7 * len(far)
    assert {_nearby(params["few"], 0, rng) for _ in range(100)} <= {1, 2, 3, 4, 5}


def test_with_nothing_feasible_the_local_start_leaves_from_the_least_broken_config():
    space = SearchSpace.model_validate({"tunables": {
        "timeout_ms": {"type": "int", "low": 20, "high": 2000, "log": True},
        "retries": {"type": "int", "low": 0, "high": 3},
        "model": {"type": "choice", "values": ["small", "large"]},
        "cache": {"type": "bool"}}})
    base = {"timeout_ms": 40, "retries": 0, "model": "small", "cache": False}
    less_broken = {"timeout_ms": 400, "retries": 1, "model": "small", "cache": False}
    history = [Observation(config=base, score=0.1, feasible=False, violation=13.0),
               Observation(config=less_broken, score=0.5, feasible=False, violation=2.0)]
    proposer = SearchProposer(space, direction="maximize", seed=1, n_startup_trials=10)
    candidates = proposer.propose(base, history, 6)
    assert len(candidates) == 6
    assert all("toward feasibility" in c.rationale for c in candidates)
    configs = [apply_mutations(base, c.mutations) for c in candidates]
    assert all(sum(c[k] != less_broken[k] for k in c) >= 2 for c in configs)  # several tunables at once
    assert sum(c["timeout_ms"] != base["timeout_ms"] for c in configs) >= 3


def test_broken_configs_warm_start_tpe_in_order_of_how_far_they_break():
    import optuna

    space = SearchSpace.model_validate({"tunables": {"t": {"type": "int", "low": 1, "high": 100}}})
    proposer = SearchProposer(space, direction="maximize", n_startup_trials=1)
    history = [Observation(config={"t": 10}, score=0.9, feasible=False, violation=5.0),
               Observation(config={"t": 50}, score=0.1, feasible=False, violation=0.5),
               Observation(config={"t": 90}, score=0.3, feasible=True)]
    study = optuna.create_study(direction="maximize")
    proposer._warm_start(study, history)
    values = {t.params["t"]: t.value for t in study.trials}
    assert values[90] > values[50] > values[10]


def _four_tunables():
    space = SearchSpace.model_validate({"tunables": {
        "top_k": {"type": "int", "low": 1, "high": 20},
        "rewrite": {"type": "bool"},
        "rerank": {"type": "bool"},
        "model": {"type": "choice", "values": ["small", "large"]}}})
    return space, {"top_k": 2, "rewrite": False, "rerank": False, "model": "small"}


def test_a_gain_within_noise_does_not_move_the_local_start_a_clear_one_does():
    """A neighbour 0.002 better than the baseline inside its interval is noise: moving the centre there
    sends the whole start phase around it (support_qa: rerank at +0.002, while rewrite alone was the answer)."""
    space, base = _four_tunables()
    noisy = dict(base, rerank=True)
    proposer = SearchProposer(space, direction="maximize", seed=3, n_startup_trials=10)
    for clear, centre in ((False, "the baseline"), (True, "the best config so far")):
        history = [Observation(config=base, score=0.608, clear=False), Observation(config=noisy, score=0.610, clear=clear)]
        candidates = proposer.propose(base, history, 3)
        assert candidates and all(f"moved from {centre}" in c.rationale for c in candidates), [c.rationale for c in candidates]
        kept = [apply_mutations(base, c.mutations)["rerank"] for c in candidates]
        assert all(kept) if clear else not all(kept)


def test_far_moves_from_the_baseline_only_after_every_tunable_was_moved_once():
    space, base = _four_tunables()
    proposer = SearchProposer(space, direction="maximize", seed=3, n_startup_trials=20)
    history = [Observation(config=base, score=0.6, clear=False),
               Observation(config=dict(base, rerank=True), score=0.59, clear=False),
               Observation(config=dict(base, top_k=8), score=0.58, clear=False)]
    candidates = proposer.propose(base, history, 2)
    assert candidates and not any("far" in c.rationale for c in candidates)  # rewrite and model not moved yet
    history += [Observation(config=dict(base, rewrite=True), score=0.6, clear=False),
                Observation(config=dict(base, model="large"), score=0.55, clear=False)]
    candidates = proposer.propose(base, history, 2)
    assert candidates and all("moving several tunables far" in c.rationale for c in candidates)
