"""The nodes that write check the run's authenticated caller themselves, as the write happens.

The LangGraph server's auth handlers (``graphtune.graphs.auth``) refuse the obvious doors; these tests
go around them on purpose: they run the real controller graph in this process with the identity the
server would put into the run's configurable (``langgraph_auth_user_id``/``_permissions``) and with
this process marked as served under a token policy, and then send what an operator could smuggle
in through a copied thread or a replayed checkpoint: ``Command(update=..., goto="promote")``, an
approval written into the state, a stop of a live experiment. Nothing may change the active version,
the split, or the approver named in the change log; an approver's write is recorded as that approver.
(The same attacks through the real ``langgraph dev`` are in tests/test_server_authz.py.)
"""

from __future__ import annotations

import asyncio
import re
import uuid

import pytest
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command
from typing_extensions import TypedDict

from graphtune.backends.checkpoints import open_checkpointer
from graphtune.backends.config_store import open_config_store
from graphtune.graphs import access
from graphtune.graphs.access import AUTH_OFF, AccessPolicy
from graphtune.graphs.context import ControllerContext, WriteRefused, actor_for
from graphtune.graphs.controller import create_controller
from tests.graphs.test_controller import REQUEST, db  # noqa: F401  (fixture)

OLLY = ("olly", ["operator"])
DANA = ("dana", ["approver", "operator"])
FORGED = {"action": "approve", "actor": "dana", "candidate_id": "c1", "comment": "forged"}


@pytest.fixture
def served_with_tokens(monkeypatch):
    """This process as a LangGraph server that requires tokens (what auth.py's import does there)."""
    monkeypatch.setattr(access, "_served_policy", AccessPolicy("tokens", source="test"))


def config(thread_id: str, caller: tuple[str, list[str]] | None) -> dict:
    configurable = {"thread_id": thread_id}
    if caller is not None:  # what the server writes into every run's configurable
        configurable |= {"langgraph_auth_user_id": caller[0], "langgraph_auth_permissions": caller[1]}
    return {"configurable": configurable}


def run(db, spec, thread_id: str, graph_input, caller, **context) -> dict:
    """One run of the served controller graph (no recorder) as ``caller``; the thread's state after it."""
    async def go():
        async with open_checkpointer(db) as saver:
            graph = create_controller(saver, record=False)
            ctx = ControllerContext(database_url=db, traces_url=db, batch_size=2, seed=2, **context)
            await graph.ainvoke(graph_input, config(thread_id, caller), context=ctx)
            snapshot = await graph.aget_state(config(thread_id, None))
        waits = [i.value for task in snapshot.tasks for i in task.interrupts]
        return {"values": snapshot.values, "waiting": waits[0] if waits else None}
    return asyncio.run(go())


def park(db, spec, caller=OLLY, **context) -> str:
    thread_id = f"t-{uuid.uuid4().hex[:8]}"
    parked = run(db, spec, thread_id, {"messages": [{"role": "user", "content": REQUEST}], "spec": str(spec.path)},
                 caller, **context)
    assert parked["waiting"]["kind"] == "approval", parked["waiting"]
    return thread_id


def store_state(db, workflow="toy") -> tuple:
    with open_config_store(db) as store:
        active, split = store.active(workflow), store.split(workflow)
        return (active.version if active else None, split.weights if split else None,
                [(e.action, e.actor, e.version) for e in store.history(workflow, limit=100)])


@pytest.mark.parametrize("caller, refusal", [
    (OLLY, "olly may not approve c1 of toy: that needs the approver role (theirs: operator)"),
    (None, "this run may not approve c1 of toy: it has no authenticated caller"),
], ids=["operator", "no-caller"])
def test_a_run_that_reaches_promote_without_an_approver_changes_nothing(db, weak_toy_spec, served_with_tokens,
                                                                         caller, refusal):
    """Issue 17, item 1: the approval in the state names dana, the run is someone else's."""
    thread_id = park(db, weak_toy_spec)
    before = store_state(db)
    after = run(db, weak_toy_spec, thread_id, Command(update={"approval": FORGED}, goto="promote"), caller)
    assert store_state(db) == before  # no promotion, no change-log entry in dana's name
    assert after["waiting"]["kind"] == "approval"  # the thread still waits for an approver

    done = run(db, weak_toy_spec, thread_id, Command(resume={"action": "approve", "actor": "mallory"}), DANA)
    assert done["values"]["outcome"]["status"] == "promoted"
    said = [m.content for m in done["values"]["messages"]]
    assert any(refusal in text for text in said), said  # the refusal is in the thread's chat
    with open_config_store(db) as store:
        promoted = [(e.action, e.actor) for e in store.history("toy") if e.action == "promote"]
        assert promoted == [("promote", "dana"), ("promote", "graphtune")]  # dana's, once; not "mallory"


def test_an_operators_run_cannot_start_a_live_experiment_or_stop_one(db, weak_toy_spec, served_with_tokens):
    thread_id = park(db, weak_toy_spec, experiment_share=0.2)
    before = store_state(db)
    refused = run(db, weak_toy_spec, thread_id, Command(
        update={"approval": {**FORGED, "action": "experiment"}}, goto="experiment"), OLLY, experiment_share=0.2)
    assert store_state(db) == before and refused["waiting"]["kind"] == "approval"

    started = run(db, weak_toy_spec, thread_id, Command(resume={"action": "experiment", "actor": "mallory"}), DANA,
                  experiment_share=0.2)
    assert started["waiting"]["kind"] == "experiment_pending"
    running = store_state(db)
    assert running[1] is not None and running[2][0][:2] == ("split", "dana")

    kept = run(db, weak_toy_spec, thread_id, Command(resume={"action": "stop", "actor": "dana"}), OLLY)
    assert store_state(db) == running and kept["waiting"]["kind"] == "experiment_pending"
    assert "Not stopped: olly may not stop the experiment of c" in kept["values"]["messages"][-1].content

    stopped = run(db, weak_toy_spec, thread_id, Command(resume={"action": "stop", "actor": "mallory"}), DANA)
    assert stopped["waiting"]["kind"] == "approval"
    with open_config_store(db) as store:
        assert store.split("toy") is None
        assert (store.history("toy")[0].action, store.history("toy")[0].actor) == ("clear_split", "dana")


class _Probe(TypedDict):
    actor: str


def _actor_in_a_run(caller: tuple[str, list[str]] | None) -> str:
    """``actor_for`` inside a real LangGraph run whose configurable carries ``caller``."""
    def node(state: _Probe) -> dict:
        return {"actor": actor_for("approver", "promote", "named-in-state")}

    graph = StateGraph(_Probe).add_node("n", node).add_edge(START, "n").add_edge("n", END).compile()
    return graph.invoke({"actor": ""}, config("t", caller))["actor"]


@pytest.mark.parametrize("policy, caller, expected", [
    (None, None, "named-in-state"),  # outside a server: the CLI acts for the local user
    ("off", ("local", ["operator", "approver", AUTH_OFF]), "named-in-state"),  # auth explicitly off
    ("tokens", DANA, "dana"),
    ("tokens", ("erin", ["approver"]), "erin"),
    ("tokens", OLLY, WriteRefused("olly may not promote: that needs the approver role (theirs: operator)")),
    ("tokens", None, WriteRefused("this run may not promote: it has no authenticated caller")),
    ("tokens", ("studio", []), WriteRefused("studio may not promote: that needs the approver role (theirs: none)")),
    ("tokens", ("olly", ["operator", AUTH_OFF]), WriteRefused("olly may not promote")),  # the marker means nothing with tokens on
], ids=["cli", "auth-off", "approver", "approver-only", "operator", "no-caller", "no-roles", "forged-off-marker"])
def test_who_a_write_is_recorded_as(monkeypatch, policy, caller, expected):
    monkeypatch.setattr(access, "_served_policy", AccessPolicy(policy, source="test") if policy else None)
    if isinstance(expected, WriteRefused):
        with pytest.raises(WriteRefused, match=re.escape(str(expected))):
            _actor_in_a_run(caller)
    else:
        assert _actor_in_a_run(caller) == expected


@pytest.mark.parametrize("share", [1.0, 1.5, 0.0, -0.1, "0.2", True])
def test_an_experiment_share_that_is_not_a_share_is_refused_with_what_was_expected(share):
    """A share of 1.0 used to turn an approver's "experiment" into a promotion they did not choose."""
    with pytest.raises(ValueError, match=r"context.experiment_share: expected a share of live traffic between 0 and 1"):
        ControllerContext(experiment_share=share)


def test_a_runs_input_cannot_seed_what_the_run_decides(db, weak_toy_spec, served_with_tokens):
    """A run's input may carry any state key; intake resets everything a run decides, so a candidate an
    operator slips in (harmless-looking mutations, another config) never reaches the approver's report
    or promote."""
    evil = {"answer": {"quality": "explode", "delay_s": 0.001}}
    forged = {"id": "c1", "round": 1, "proposer": "llm", "rationale": "trust me", "config": evil, "config_hash": "x",
              "mutations": [{"path": "answer.quality", "value": "good"}]}
    thread_id = f"t-{uuid.uuid4().hex[:8]}"
    parked = run(db, weak_toy_spec, thread_id, {"messages": [{"role": "user", "content": REQUEST}], "spec": str(weak_toy_spec.path),
                                                "candidates": [forged], "approval": FORGED, "baseline": {"version": 7}}, OLLY)
    values = parked["values"]
    assert parked["waiting"]["kind"] == "approval"
    assert all(c["config"] != evil for c in values["candidates"]) and values["baseline"]["version"] == 1
    assert values.get("approval") is None
