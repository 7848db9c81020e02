"""``experiment_check`` on the real ``langgraph dev`` server: one pass, run over the SDK, resumes the
controller threads parked at ``experiment_pending`` through the server's own API (each gets a look),
and checks recent promotions; a server cron runs the same pass on a schedule."""

from __future__ import annotations

import asyncio

from tests.graphs.conftest import weak_toy_spec  # noqa: F401  (fixture)
from tests.graphs.test_experiment_flow import LIVE_REQUEST, users_send
from tests.test_server import serve
from tests.test_server_experiment import server_log_on_failure

REQUEST = {"messages": [{"role": "user", "content": LIVE_REQUEST}]}


def waiting(thread: dict) -> dict | None:
    """The payload of the interrupt a thread (``threads.get``) waits at."""
    for interrupts in (thread.get("interrupts") or {}).values():
        for item in interrupts:
            return item["value"]
    return None


def test_the_check_graph_looks_at_parked_experiments_and_a_cron_runs_it(tmp_path, weak_toy_spec, monkeypatch):
    from langgraph_sdk import get_client

    monkeypatch.delenv("GRAPHTUNE_TRACES_URL", raising=False)  # the users' traces go to db too
    db = f"sqlite:///{tmp_path}/graphtune.db"
    context = {"specs": {"toy": str(weak_toy_spec.path)}, "batch_size": 2, "seed": 2, "experiment_share": 0.2}
    log = tmp_path / "server" / "server.log"
    # no ./.langgraph_api: other sessions' threads and crons stay out, and this test's cron is never left behind
    with (serve(tmp_path / "server", db, LANGGRAPH_DISABLE_FILE_PERSISTENCE="true") as url,
          server_log_on_failure(log)):
        async def park() -> tuple[str, dict]:
            client = get_client(url=url, api_key=None)  # one client per event loop (asyncio.run)
            thread = (await client.threads.create())["thread_id"]
            parked = await client.runs.wait(thread, "controller", context=context, input=REQUEST)
            assert parked["__interrupt__"][0]["value"]["kind"] == "approval"
            started = await client.runs.wait(thread, "controller", context=context,
                                             command={"resume": {"action": "experiment", "actor": "dana"}})
            return thread, started["__interrupt__"][0]["value"]

        thread, pending = asyncio.run(park())
        assert pending["kind"] == "experiment_pending", pending
        users_send(db, weak_toy_spec, 60, first_user=0)

        async def two_passes() -> tuple[dict, dict, dict]:
            """Two passes queued back to back: ``langgraph dev`` runs one job at a time, so the first
            pass's look is queued behind the second pass, which finds the thread busy and skips it."""
            client = get_client(url=url, api_key=None)
            runs = []
            for _ in range(2):
                holder = (await client.threads.create())["thread_id"]
                runs.append((holder, await client.runs.create(holder, "experiment_check", input={"within_hours": 1})))
            first, second = [await client.runs.join(holder, run["run_id"]) for holder, run in runs]
            look = next(t for t in first["threads"] if t["thread_id"] == thread)
            await client.runs.join(thread, look["run_id"])  # the look itself
            return first, second, await client.threads.get(thread)

        first, second, after = asyncio.run(two_passes())
        [line] = [t for t in first["threads"] if t["thread_id"] == thread]
        assert (line["status"], line["workflow"], line["looks"]) == ("resumed", "toy", pending["looks"]), line
        assert first["summary"]["resumed"] >= 1 and first["summary"]["rollbacks"] == 0, first["summary"]
        assert first["promotions"] == []  # nothing promoted yet
        [busy] = [t for t in second["threads"] if t["thread_id"] == thread]
        assert busy["status"] == "busy" and second["summary"]["skipped_busy"] >= 1, second
        now = waiting(after)  # 60 users decide nothing: still collecting, one more look counted
        assert now["kind"] == "experiment_pending" and now["looks"] == pending["looks"] + 1, (pending, now)

        async def cron() -> tuple[dict, list, dict, list]:
            """A server cron runs the same pass: scheduled every second (the server's cron scheduler
            wakes every few seconds), it gives the parked thread another look, then it is deleted."""
            client = get_client(url=url, api_key=None)
            # no end_time: langgraph-runtime-inmem 0.36.7 compares the stored string with a datetime and
            # its cron scheduler fails on every tick
            made = await client.crons.create("experiment_check", schedule="* * * * * *", input={"within_hours": 24})
            try:
                listed = await client.crons.search(assistant_id=made["assistant_id"])  # search wants the UUID
                deadline = asyncio.get_running_loop().time() + 60
                while True:
                    state = await client.threads.get(thread)
                    payload = waiting(state)
                    if payload and payload.get("looks", 0) >= pending["looks"] + 2:
                        break
                    assert asyncio.get_running_loop().time() < deadline, ("the cron never looked", payload)
                    await asyncio.sleep(0.5)
            finally:
                await client.crons.delete(made["cron_id"])
            return made, listed, payload, await client.crons.search(assistant_id=made["assistant_id"])

        made, listed, looked, left = asyncio.run(cron())
        assert [c["cron_id"] for c in listed] == [made["cron_id"]]
        assert looked["kind"] == "experiment_pending" and looked["looks"] >= pending["looks"] + 2
        assert left == []
