"""The served controller outlives its database's restarts (issue 17, item 2).

A real ``langgraph dev`` on a PostgreSQL server of the test's own; the database is restarted with
``pg_ctl`` while a controller run waits at approval, and the run is resumed through the SDK from
the same server process, which is never restarted. Everything else the server holds on the
database (the config store behind routing, the recorder's trace writes) must recover as well.
"""

from __future__ import annotations

import asyncio

from graphtune.backends.config_store import open_config_store
from graphtune.backends.traces import EventQuery, open_trace_store
from graphtune.spec import load_spec
from graphtune.tracing.events import EventKind
from tests.graphs.conftest import weak_toy_spec  # noqa: F401  (fixture)
from tests.test_server import serve
from tests.waiting import wait_until


def test_a_parked_approval_survives_database_restarts_without_a_server_restart(tmp_path, restartable_pg, weak_toy_spec):
    from langgraph_sdk import get_client

    db = restartable_pg.url
    context = {"specs": {"toy": str(weak_toy_spec.path)}, "batch_size": 2, "seed": 2}
    request = {"messages": [{"role": "user", "content": "improve toy accuracy; try 2 candidates, at most 1 round"}]}
    question = {"messages": [{"role": "user", "content": "How do I reset my password?"}]}
    with open_config_store(db) as store:
        store.ensure_active("support_qa", load_spec("support_qa").config, actor="test")
    with serve(tmp_path / "server", db) as url:
        async def drive():
            client = get_client(url=url, api_key=None)
            await client.runs.wait(None, "support_qa", input=question)  # routed through the config store
            thread_id = (await client.threads.create())["thread_id"]
            parked = await client.runs.wait(thread_id, "controller", context=context, input=request)
            before = await client.threads.get_state(thread_id)
            await asyncio.to_thread(restartable_pg.restart)  # every connection the server held is cut
            after_first = await client.threads.get_state(thread_id)
            await asyncio.to_thread(restartable_pg.restart)  # and again: recovery is not a one-off
            done = await client.runs.wait(thread_id, "controller", context=context,
                                          command={"resume": {"action": "approve", "actor": "dana", "comment": "after restarts"}})
            thread = await client.threads.get(thread_id)
            answered = await client.runs.wait(None, "support_qa", input=question)
            return parked, before, after_first, done, thread, answered

        parked, before, after_first, done, thread, answered = asyncio.run(drive())
        # the server's recorder writes in the background
        wait_until(lambda: len(support_qa_run_ends(db)) >= 2, what="the server's recorder storing both support_qa runs")
        ends = support_qa_run_ends(db)
    assert parked["__interrupt__"][0]["value"]["kind"] == "approval"
    assert before["next"] == after_first["next"] == ["approve"]
    assert before["checkpoint"]["checkpoint_id"] == after_first["checkpoint"]["checkpoint_id"]
    assert done["outcome"]["status"] == "promoted", done
    assert thread["status"] == "idle"
    assert answered["answer"]
    assert len(ends) == 2, "the server's recorder should store the runs after the restarts too"
    with open_config_store(db) as store:
        assert store.active("toy").config["answer"]["quality"] == "good"
        latest = store.history("toy")[0]
        assert (latest.action, latest.actor, latest.reason) == ("promote", "dana", "after restarts")


def support_qa_run_ends(db: str) -> list:
    with open_trace_store(db) as traces:
        return traces.read(EventQuery(workflow="support_qa", kinds=[EventKind.RUN_END]))
