"""The LangGraph server's support_qa routes runs that name no version by the workflow's traffic split:
each user keeps one version across requests, and both versions of a 50/50 split get traffic."""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict

from graphtune.backends.config_store import open_config_store
from graphtune.backends.traces import EventQuery, open_trace_store
from graphtune.serving import experiment_salt
from graphtune.spec import load_spec
from graphtune.tracing.events import EventKind
from graphtune.tracing.privacy import SALT_ENV, hash_user_id
from graphtune.tuning.router import Router
from tests.test_server import serve

WEIGHTS = {1: 0.5, 2: 0.5}
SALT = "served-routing-test"  # user hashes the test can compute, whatever the server's store does


def test_support_qa_keeps_each_user_on_one_version_of_the_split(tmp_path):
    from langgraph_sdk import get_client

    db = f"sqlite:///{tmp_path}/graphtune.db"
    spec = load_spec("support_qa")
    with open_config_store(db) as store:
        store.ensure_active("support_qa", spec.config, actor="test")
        v2 = store.put("support_qa", {**spec.config, "llm": {**spec.config["llm"], "max_tokens": 16}}, actor="test", source="test")
        assert v2.version == 2
        store.set_split("support_qa", WEIGHTS, expected_revision=None, actor="test", reason="live experiment")
    router = Router(WEIGHTS, 1, workflow="support_qa", salt=experiment_salt(WEIGHTS, 1))
    candidates = [f"user-{i}" for i in range(40)]
    users = ([u for u in candidates if router.assign(u) == 1][:3] + [u for u in candidates if router.assign(u) == 2][:3])
    question = {"messages": [{"role": "user", "content": "How do I reset my password?"}]}

    with serve(tmp_path, db, **{SALT_ENV: SALT}) as url:
        async def ask():
            client = get_client(url=url, api_key=None)
            for _ in range(2):
                for user in users:
                    await client.runs.wait(None, "support_qa", input=question, context={"user_id": user})
            # a run that names a version keeps getting it, whatever the split says
            await client.runs.wait(None, "support_qa", input=question, context={"config_version": 1, "user_id": users[-1]})

        asyncio.run(ask())
        deadline = time.monotonic() + 60  # the server's recorder writes in the background
        while True:
            with open_trace_store(db) as traces:
                ends = traces.read(EventQuery(workflow="support_qa", kinds=[EventKind.RUN_END]))
            if len(ends) >= 2 * len(users) + 1 or time.monotonic() > deadline:
                break
            time.sleep(0.2)

    seen = [(e.user_hash and e.user_hash[:6], e.config_version, e.variant) for e in ends]
    routed = [e for e in ends if e.variant is not None]
    pinned = [e for e in ends if e.variant is None]
    assert len(routed) == 2 * len(users) and [e.config_version for e in pinned] == [1], seen
    versions_of = defaultdict(set)
    for event in routed:
        versions_of[event.user_hash].add((event.config_version, event.variant))
        assert event.source == "production" and event.status == "ok"
    expected = {hash_user_id(u, SALT): {(router.assign(u), "baseline" if router.assign(u) == 1 else "candidate")}
                for u in users}
    assert dict(versions_of) == expected, seen  # sticky, and where the router puts each user
    assert {e.config_version for e in routed} == {1, 2}  # both versions get traffic
