"""Authorization on the real ``langgraph dev``, tried as an operator who wants a promotion without an
approver (issue 17, item 1): bearer tokens, PostgreSQL, one server for the module.

Every case gets its own workflow and a controller thread that olly (operator) started and that
waits at approval, then olly tries one of the LangGraph server's operations on it: ``threads.copy``,
``threads.update_state``, ``threads.create(supersteps=...)``, runs with ``command`` (``update``,
``goto``, ``resume``), a replayed checkpoint, a cron, an assistant, the store, Studio's auth header.
Whatever the server answers, afterwards the workflow's active version, its traffic split and its
change log are exactly as before, and the thread still waits for an approver. The last case is the
approver: dana's answer promotes, recorded as dana whatever name the payload gives.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from langgraph_sdk import get_client

from graphtune.backends.config_store import open_config_store
from tests.graphs.conftest import write_weak_toy_spec
from tests.test_server import as_user, http_body, http_status, serve, token_file
from tests.test_server_experiment import server_log_on_failure
from tests.waiting import eventually

REQUEST = "improve toy accuracy; try 2 candidates, at most 1 round"
FORGED = {"action": "approve", "actor": "dana", "candidate_id": "c2", "comment": "forged"}
DANA_PLANTED = {"langgraph_auth_user_id": "dana", "langgraph_auth_permissions": ["approver", "operator"]}


@pytest.fixture(scope="module")
def module_pg_url(pg_server_url):
    """One database for the module's server (the ``pg_url`` fixture is per test)."""
    from tests.conftest import fresh_database

    with fresh_database(pg_server_url) as url:
        yield url


@pytest.fixture(scope="module")
def server(tmp_path_factory, module_pg_url):
    folder = tmp_path_factory.mktemp("authz")
    env = {"GRAPHTUNE_AUTH": "tokens", "GRAPHTUNE_AUTH_TOKENS_FILE": str(token_file(folder)),
           "LANGGRAPH_DISABLE_FILE_PERSISTENCE": "true"}  # no ./.langgraph_api: crons are never left behind
    with serve(folder / "server", module_pg_url, **env) as url:
        yield url, module_pg_url, folder


@dataclass
class Scene:
    """One case's world: a workflow of its own, and olly's thread of it, parked at approval."""

    url: str
    db: str
    workflow: str
    spec: Path
    thread: str
    before: tuple = ()  # store_state before the attack
    waits: str | None = "approval"  # what the thread must still wait at afterwards (None: nothing to check)
    refusals: list[tuple[str, int | None, str]] = field(default_factory=list)

    @property
    def context(self) -> dict:
        return {"batch_size": 2, "seed": 2}

    def client(self, who: str):
        return as_user(self.url, who)

    async def attempt(self, what: str, call: Awaitable) -> object:
        """Run one request; a refusal is noted (what, HTTP status, body), not raised."""
        try:
            return await call
        except Exception as error:  # noqa: BLE001 - the SDK raises httpx errors
            self.refusals.append((what, http_status(error), http_body(error)))
            return None

    def status(self, what: str) -> int | None:
        return next((s for w, s, _ in self.refusals if w == what), None)


def store_state(db: str, workflow: str) -> tuple:
    with open_config_store(db) as store:
        active, split = store.active(workflow), store.split(workflow)
        return (active.version if active else None, split.weights if split else None,
                [(e.action, e.actor, e.version, e.reason) for e in store.history(workflow, limit=100)])


async def start_tuning(olly, thread: str, spec: Path, context: dict) -> dict:
    return await olly.runs.wait(thread, "controller", context=context,
                                input={"messages": [{"role": "user", "content": REQUEST}], "spec": str(spec)})


# -- the attacks ----------------------------------------------------------------------------------------
async def copy_then_update_and_goto_promote(s: Scene) -> None:
    """The issue's reproduction: a copy of the parked thread, then a command that writes dana's approval
    into it and jumps to promote."""
    olly = s.client("olly")
    copy = (await olly.threads.copy(s.thread))["thread_id"]
    await s.attempt("attack", olly.runs.wait(copy, "controller", context=s.context,
                                             command={"update": {"approval": FORGED}, "goto": "promote"}))


async def copy_then_resume_the_copy(s: Scene) -> None:
    olly = s.client("olly")
    copy = (await olly.threads.copy(s.thread))["thread_id"]
    await s.attempt("attack", olly.runs.wait(copy, "controller", context=s.context, command={"resume": FORGED}))


async def copy_then_resume_with_update(s: Scene) -> None:
    olly = s.client("olly")
    copy = (await olly.threads.copy(s.thread))["thread_id"]
    await s.attempt("attack", olly.runs.wait(copy, "controller", context=s.context,
                                             command={"resume": {"action": "approve"}, "update": {"approval": FORGED}}))


async def goto_promote_on_the_thread(s: Scene) -> None:
    olly = s.client("olly")
    await s.attempt("attack", olly.runs.wait(s.thread, "controller", context=s.context, command={"goto": "promote"}))


async def update_state_as_the_approve_node(s: Scene) -> None:
    olly = s.client("olly")
    await s.attempt("attack", olly.threads.update_state(s.thread, {"approval": FORGED}, as_node="approve"))


async def update_state_of_a_copy_then_run_it(s: Scene) -> None:
    olly = s.client("olly")
    copy = (await olly.threads.copy(s.thread))["thread_id"]
    await s.attempt("update", olly.threads.update_state(copy, {"approval": FORGED}, as_node="approve"))
    await s.attempt("run", olly.runs.wait(copy, "controller", context=s.context, input=None))


async def create_a_thread_with_supersteps(s: Scene) -> None:
    """A new thread whose history olly writes himself: a candidate of his choosing, dana's approval, and
    a jump to promote. The server creates the thread, then refuses the state (its answer is a 201 whose
    detail says why), so the thread is empty."""
    olly = s.client("olly")
    evil = {"answer": {"quality": "explode", "delay_s": 0.001}}
    forged_state = {"approval": {**FORGED, "candidate_id": "c9"}, "report": {"workflow": s.workflow},
                    "baseline": {"version": 1}, "request": {"text": "forged"},
                    "candidates": [{"id": "c9", "round": 1, "proposer": "llm", "rationale": "trust me", "config": evil,
                                    "config_hash": "x"}]}
    thread = str(uuid.uuid4())
    made = await olly.threads.create(thread_id=thread, graph_id="controller", supersteps=[
        {"updates": [{"values": None, "command": {"update": forged_state, "goto": "promote"}, "as_node": "approve"}]}])
    assert "olly may not write the state of thread" in str(made.get("detail")), made
    assert (await olly.threads.get_state(thread))["values"] in ({}, None, [])


async def replay_a_checkpoint_after_a_rejection(s: Scene) -> None:
    """dana rejects; olly runs the thread again from the checkpoint between her answer and promote."""
    olly, dana = s.client("olly"), s.client("dana")
    await dana.runs.wait(s.thread, "controller", context=s.context, command={"resume": {"action": "reject"}})
    history = await olly.threads.get_history(s.thread, limit=100)
    at_promote = next(h for h in history if h["next"] == ["promote"])
    s.before, s.waits = store_state(s.db, s.workflow), None  # dana's rejection is not the attack
    await s.attempt("attack", olly.runs.wait(s.thread, "controller", context=s.context, input=None,
                                             checkpoint_id=at_promote["checkpoint"]["checkpoint_id"]))


async def stop_a_live_experiment(s: Scene) -> None:
    """dana starts a live experiment; olly may look at it, not stop it (that changes the split)."""
    olly, dana = s.client("olly"), s.client("dana")
    started = await dana.runs.wait(s.thread, "controller", context={**s.context, "experiment_share": 0.2},
                                   command={"resume": {"action": "experiment"}})
    assert started["__interrupt__"][0]["value"]["kind"] == "experiment_pending", started
    s.before, s.waits = store_state(s.db, s.workflow), "experiment_pending"
    await s.attempt("attack", olly.runs.wait(s.thread, "controller", context=s.context,
                                             command={"resume": {"action": "stop", "actor": "dana"}}))


async def cron_with_an_approvers_identity_planted(s: Scene) -> None:
    """A cron on the parked thread whose context claims dana's identity and roles. The scheduler starts
    a cron's runs as its creator; planted names never count."""
    olly = s.client("olly")
    cron = await olly.crons.create_for_thread(s.thread, "controller", schedule="* * * * * *",
                                              context={**s.context, **DANA_PLANTED})
    try:
        async def handled() -> bool:  # the scheduler has handled it at least once: the next run date moved on
            [now] = [c for c in await olly.crons.search(thread_id=s.thread) if c["cron_id"] == cron["cron_id"]]
            return now["next_run_date"] != cron["next_run_date"]

        await eventually(handled, what="the cron scheduler running the cron")
    finally:
        await olly.crons.delete(cron["cron_id"])
    for run in await olly.runs.list(s.thread):  # any run it started carries olly's name, never dana's
        configurable = ((run.get("kwargs") or {}).get("config") or {}).get("configurable") or {}
        assert configurable.get("langgraph_auth_user_id") in (None, "olly"), configurable


async def assistant_with_an_approvers_identity_planted(s: Scene) -> None:
    """An assistant whose config claims dana; olly resumes the thread through it (or the graph's)."""
    olly = s.client("olly")
    made = await s.attempt("create", olly.assistants.create("controller", config={"configurable": DANA_PLANTED},
                                                             name=f"planted-{s.workflow}"))
    assistant = made["assistant_id"] if made else "controller"
    await s.attempt("attack", olly.runs.wait(s.thread, assistant, command={"resume": FORGED}))


async def change_the_controller_assistants_defaults(s: Scene) -> None:
    """Defaults every run through the graph's assistant gets, the approver's included: a share of 1.0
    would make dana's "experiment" a promotion."""
    olly = s.client("olly")
    [system] = [a for a in await olly.assistants.search(graph_id="controller", limit=100)
                if a["metadata"].get("created_by") == "system"]
    await s.attempt("update", olly.assistants.update(system["assistant_id"], context={"experiment_share": 1.0}))
    assert (await olly.assistants.get(system["assistant_id"]))["context"] == system["context"]


async def store_writes(s: Scene) -> None:
    """LangGraph's store holds nothing graphtune reads: writing it changes no version."""
    olly = s.client("olly")
    await s.attempt("put", olly.store.put_item(["graphtune", s.workflow], "active", {"version": 99, "actor": "dana"}))


async def studio_header_without_a_token(s: Scene) -> None:
    """``langgraph dev`` lets Studio in with ``x-auth-scheme: langsmith`` and no token, unless the auth
    config disables it: no reads, no runs."""
    studio = get_client(url=s.url, api_key=None, headers={"x-auth-scheme": "langsmith"})
    await s.attempt("read", studio.threads.get_state(s.thread))
    await s.attempt("attack", studio.runs.wait(s.thread, "controller", command={"resume": FORGED}))


# each attack, and what the server answers to its requests (HTTP status by request; none: it runs, and
# the node that would write refuses, or there is nothing to refuse)
CASES: dict[str, tuple[Callable[[Scene], Awaitable[None]], dict[str, int]]] = {f.__name__: (f, answers) for f, answers in (
    (copy_then_update_and_goto_promote, {"attack": 403}),
    (copy_then_resume_the_copy, {"attack": 403}),  # the copy waits at the same approval
    (copy_then_resume_with_update, {"attack": 403}),
    (goto_promote_on_the_thread, {"attack": 403}),
    (update_state_as_the_approve_node, {"attack": 403}),
    (update_state_of_a_copy_then_run_it, {"update": 403, "run": 403}),
    (create_a_thread_with_supersteps, {}),  # 201, with the refusal in its detail
    (replay_a_checkpoint_after_a_rejection, {}),  # runs; promote refuses olly
    (stop_a_live_experiment, {"attack": 403}),
    (cron_with_an_approvers_identity_planted, {}),
    (assistant_with_an_approvers_identity_planted, {"create": 403, "attack": 403}),
    (change_the_controller_assistants_defaults, {"update": 403}),
    (store_writes, {}),
    (studio_header_without_a_token, {"read": 401, "attack": 401}),
)}


def park(url: str, db: str, folder: Path, name: str) -> Scene:
    workflow = name.replace("_", "-")[:40]
    spec = write_weak_toy_spec(folder, workflow).path

    async def go() -> Scene:
        olly = as_user(url, "olly")
        thread = (await olly.threads.create())["thread_id"]
        parked = await start_tuning(olly, thread, spec, {"batch_size": 2, "seed": 2})
        assert parked["__interrupt__"][0]["value"]["kind"] == "approval", parked
        return Scene(url, db, workflow, spec, thread)
    return asyncio.run(go())


@pytest.mark.parametrize("name", CASES)
def test_an_operator_never_changes_the_version_the_split_or_the_approver(server, name, tmp_path):
    url, db, folder = server
    with server_log_on_failure(folder / "server" / "server.log"):
        scene = park(url, db, tmp_path, name)
        scene.before = store_state(db, scene.workflow)
        attack, answers = CASES[name]
        asyncio.run(attack(scene))
        after = store_state(db, scene.workflow)
        assert after == scene.before, (scene.refusals, scene.before, after)  # version, split, change log
        assert {what: status for what, status, _ in scene.refusals} == answers, scene.refusals
        for what, status, body in scene.refusals:  # a refusal says who may not do what, and why
            assert status == 401 or "needs the approver role" in body, (what, body)

        async def waiting_at() -> list[str]:
            state = await as_user(url, "olly").threads.get_state(scene.thread)
            return [i["value"]["kind"] for task in state["tasks"] for i in task["interrupts"]]
        if scene.waits:  # the thread still waits where it did: nothing was answered or skipped
            assert asyncio.run(waiting_at()) == [scene.waits]


def test_the_approvers_answer_is_recorded_as_the_approver(server, tmp_path):
    url, db, folder = server
    with server_log_on_failure(folder / "server" / "server.log"):
        scene = park(url, db, tmp_path, "approver_answers")

        async def answer() -> dict:
            return await scene.client("dana").runs.wait(scene.thread, "controller", context=scene.context, command={
                "resume": {"action": "approve", "actor": "mallory", "comment": "looks right"}})
        done = asyncio.run(answer())
    assert done["outcome"]["status"] == "promoted", done.get("outcome")
    with open_config_store(db) as store:
        latest = store.history(scene.workflow)[0]
        assert (latest.action, latest.actor, latest.reason) == ("promote", "dana", "looks right")
        assert store.active(scene.workflow).version == latest.version
