"""A live experiment driven through the real ``langgraph dev`` server with ``langgraph_sdk``.

The controller thread lives in the server (PostgreSQL for checkpoints, configs and traces; bearer-token
auth on). Simulated users send traffic with feedback in-process through ``ServedWorkflow`` against the
same database, and every look is a resume over the SDK. It proves, end to end over the API:

- an approver's ``{"action": "experiment"}`` parks the thread at an ``experiment_pending`` interrupt and
  the config store's split gives the candidate the context's ``experiment_share``;
- an operator (no approver role) may resume that wait to look at the data, but gets a 403, and changes
  nothing, when resuming the approval the thread returns to with the live evidence;
- the approver's approval ramps the candidate to 50%; the operator's looks find the ramp holding its
  guardrails but do not promote (an operator never changes the active version): the thread returns to
  approval, and the approver's approval promotes: the candidate is active, the split is gone and the
  history holds the promotion and both splits, all in the approver's name.
"""

from __future__ import annotations

import asyncio
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from graphtune.backends.config_store import open_config_store
from tests.graphs.conftest import weak_toy_spec  # noqa: F401  (fixture)
from tests.graphs.test_experiment_flow import LIVE_REQUEST, users_send
from tests.test_server import as_user, http_body, http_status, serve, token_file

REQUEST = {"messages": [{"role": "user", "content": LIVE_REQUEST}]}  # latency allowance: see test_experiment_flow


def call(url: str, who: str, thread_id: str, context: dict, **run: Any) -> dict:
    """One ``runs.wait`` on the controller thread as ``who`` (``input=`` or ``command=``)."""
    async def go():
        return await as_user(url, who).runs.wait(thread_id, "controller", context=context, **run)
    return asyncio.run(go())


def resume(url: str, who: str, thread_id: str, context: dict, answer: dict) -> dict:
    return call(url, who, thread_id, context, command={"resume": answer})


def waiting(result: dict) -> dict | None:
    """The payload of the interrupt the run stopped at; None when it finished."""
    interrupts = result.get("__interrupt__") or []
    return interrupts[0]["value"] if interrupts else None


def thread_state(url: str, who: str, thread_id: str) -> dict:
    async def go():
        return await as_user(url, who).threads.get_state(thread_id)
    return asyncio.run(go())


@contextmanager
def server_log_on_failure(log: Path):
    """A failure's report ends with the end of the server's log (a run's error is only logged there)."""
    try:
        yield
    except BaseException as error:
        if log.exists():
            error.add_note(f"--- end of {log} ---\n{log.read_text()[-4000:]}")
        raise


def send_and_look_until_decided(url, db, spec, thread_id, context, per_look: int, first_user: int, looks: int = 6):
    """Traffic, then a look by the operator over the API, until the thread leaves ``experiment_pending``."""
    for i in range(looks):
        users_send(db, spec, per_look, first_user=first_user + i * per_look)
        result = resume(url, "olly", thread_id, context, {"action": "check"})
        payload = waiting(result)
        if payload is None or payload["kind"] != "experiment_pending":
            return result
    return result


def test_a_live_experiment_over_the_api_ramps_and_promotes_with_roles_enforced(tmp_path, pg_url, weak_toy_spec,
                                                                                monkeypatch):
    monkeypatch.delenv("GRAPHTUNE_TRACES_URL", raising=False)  # the users' traces go to pg_url too
    context = {"specs": {"toy": str(weak_toy_spec.path)}, "batch_size": 2, "seed": 2, "experiment_share": 0.2}
    env = {"GRAPHTUNE_AUTH": "tokens", "GRAPHTUNE_AUTH_TOKENS_FILE": str(token_file(tmp_path))}
    with serve(tmp_path / "server", pg_url, **env) as url, server_log_on_failure(tmp_path / "server" / "server.log"):
        async def create_thread():
            return (await as_user(url, "olly").threads.create())["thread_id"]
        thread = asyncio.run(create_thread())

        parked = call(url, "olly", thread, context, input=REQUEST)  # an operator starts the run
        assert waiting(parked)["kind"] == "approval"

        started = resume(url, "dana", thread, context, {"action": "experiment", "actor": "mallory"})
        pending = waiting(started)
        assert pending["kind"] == "experiment_pending", pending
        assert (pending["stage"], pending["share"], pending["baseline_version"]) == ("experiment", 0.2, 1)
        candidate = pending["candidate_version"]
        with open_config_store(pg_url) as store:
            assert store.split("toy").weights == {1: 0.8, candidate: 0.2}
            assert store.history("toy")[0].actor == "dana"  # the token's identity, not the payload's "mallory"

        back = send_and_look_until_decided(url, pg_url, weak_toy_spec, thread, context, 750, first_user=0)
        approval = waiting(back)
        assert approval and approval["kind"] == "approval", approval  # decided: back at approval
        assert "verdict: promote" in "\n".join(approval["report"]["live"])

        before = thread_state(url, "olly", thread)
        try:
            resume(url, "olly", thread, context, {"action": "approve"})
            refused = None
        except Exception as error:  # noqa: BLE001 - the SDK raises the HTTP error
            refused = (http_status(error), http_body(error))
        after = thread_state(url, "olly", thread)
        assert refused and refused[0] == 403 and "needs the approver role" in refused[1], refused
        assert before["checkpoint"]["checkpoint_id"] == after["checkpoint"]["checkpoint_id"]  # nothing ran

        ramp = waiting(resume(url, "dana", thread, context, {"action": "approve"}))
        assert ramp["kind"] == "experiment_pending" and (ramp["stage"], ramp["share"]) == ("ramp", 0.5), ramp
        with open_config_store(pg_url) as store:
            assert store.split("toy").weights == {1: 0.5, candidate: 0.5}

        held = send_and_look_until_decided(url, pg_url, weak_toy_spec, thread, context, 400, first_user=100_000)
        final = waiting(held)
        assert final and final["kind"] == "approval", held.get("outcome")  # olly's look did not promote
        assert any("held its guardrails; an approver's approval makes it active" in m["content"] for m in held["messages"])
        with open_config_store(pg_url) as store:
            assert store.active("toy").version == 1 and store.split("toy").weights == {1: 0.5, candidate: 0.5}
        done = resume(url, "dana", thread, context, {"action": "approve"})
    assert done["outcome"]["status"] == "promoted", waiting(done)
    with open_config_store(pg_url) as store:
        assert store.active("toy").version == candidate and store.split("toy") is None
        history = store.history("toy", limit=10)
        assert [e.action for e in history[:3]] == ["promote", "split", "split"]
        assert {e.actor for e in history[:3]} == {"dana"}
