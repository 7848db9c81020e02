"""Concurrent ramp and promotion steps: exactly one wins.

Two ``graphtune experiment check`` passes (cron overlapping a person's SDK resume) can run the same
step of a thread at once, and a person can act on the workflow while a step runs. The steps are
compare-and-set on the config store, so on a real PostgreSQL server (row locks) and on SQLite:
the same step twice writes the change log once and both see the same result; two different steps
from the same state: one wins, the other is told it lost.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from graphtune.backends.config_store import ConflictError, open_config_store
from graphtune.graphs.context import ControllerContext
from graphtune.graphs.state import Approval
from graphtune.nodes.experiment import _set_split
from graphtune.nodes.promote import _apply

BASE = {"answer": {"quality": "bad"}}
CANDIDATES = [{"id": "c1", "config": {"answer": {"quality": "good"}}, "proposer": "optuna", "rationale": "better answers"},
              {"id": "c2", "config": {"answer": {"quality": "ok"}}, "proposer": "optuna", "rationale": "other answers"}]


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path):
    url = f"sqlite:///{tmp_path}/gt.db" if request.param == "sqlite" else request.getfixturevalue("pg_url")
    with open_config_store(url) as store:
        store.ensure_active("toy", BASE, actor="test")
    return url


def state() -> dict:
    return {"report": {"workflow": "toy", "table": []}, "baseline": {"version": 1}, "candidates": CANDIDATES,
            "request": {"text": "improve toy accuracy"}}


def at_once(*calls):
    """Run the calls in threads released together; each result, or the exception it raised."""
    barrier = threading.Barrier(len(calls))

    def run(call):
        barrier.wait()
        try:
            return call()
        except Exception as error:  # noqa: BLE001 - the race's loser is part of the result
            return error

    with ThreadPoolExecutor(len(calls)) as pool:
        return list(pool.map(run, calls))


def test_the_same_ramp_step_twice_writes_one_split(url):
    ctx = ControllerContext(database_url=url)
    approval = Approval(action="approve", candidate_id="c1", actor="dana")
    first, second = at_once(*[lambda: _set_split(ctx, state(), approval, None, 0.5, "ramp")] * 2)
    assert not isinstance(first, Exception) and not isinstance(second, Exception), (first, second)
    assert first.split_revision == second.split_revision and first.candidate_version == second.candidate_version
    with open_config_store(url) as store:
        assert store.split("toy").weights == {1: 0.5, first.candidate_version: 0.5}
        assert [e.action for e in store.history("toy", limit=10)].count("split") == 1


def test_two_different_steps_from_the_same_state_one_wins(url):
    ctx = ControllerContext(database_url=url)
    with open_config_store(url) as store:  # an experiment runs: c1 at 10%
        c1 = store.put("toy", CANDIDATES[0]["config"], actor="dana", source="controller")
        running = store.set_split("toy", {1: 0.9, c1.version: 0.1}, expected_revision=None, actor="dana",
                                  reason="experiment c1 at 10%")

    def ramp():  # the thread's ramp step, from the split it knows
        with open_config_store(url) as store:
            return store.set_split("toy", {1: 0.5, c1.version: 0.5}, expected_revision=running.revision, actor="graphtune",
                                   reason="ramp c1 at 50%")

    def kill_switch():  # an operator's `graphtune experiment stop toy` at the same moment
        with open_config_store(url) as store:
            return store.clear_split("toy", expected_revision=running.revision, actor="sam", reason="stop")

    results = at_once(ramp, kill_switch)
    assert sum(isinstance(r, ConflictError) for r in results) == 1, results
    with open_config_store(url) as store:
        actions = [e.action for e in store.history("toy", limit=10)]
        winner = "split" if store.split("toy") is not None else "clear_split"
    assert actions[0] == winner and actions.count("split") + actions.count("clear_split") == 2  # the 10% split + the winner


def test_the_same_promotion_twice_promotes_once(url):
    ctx = ControllerContext(database_url=url)
    approval = Approval(action="approve", candidate_id="c1", actor="dana", comment="ramp held")
    outcomes = at_once(*[lambda: _apply(ctx, state(), approval)] * 2)
    assert [o.status for o in outcomes] == ["promoted", "promoted"], outcomes  # the second finds its own version active
    with open_config_store(url) as store:
        assert store.active("toy").version == outcomes[0].version
        assert [e.action for e in store.history("toy", limit=10)].count("promote") == 2  # v1's initial one + this


def test_two_candidates_promoted_from_the_same_baseline_one_wins(url):
    ctx = ControllerContext(database_url=url)
    outcomes = at_once(lambda: _apply(ctx, state(), Approval(action="approve", candidate_id="c1", actor="dana")),
                       lambda: _apply(ctx, state(), Approval(action="approve", candidate_id="c2", actor="sam")))
    assert sorted(o.status for o in outcomes) == ["conflict", "promoted"], outcomes
    winner = next(o for o in outcomes if o.status == "promoted")
    loser = next(o for o in outcomes if o.status == "conflict")
    assert "Run the tuning again" in loser.message
    with open_config_store(url) as store:
        assert store.active("toy").version == winner.version
