"""After a promotion, a guardrail the new version breaks on live traffic rolls it back, in the change log."""

import asyncio

from graphtune.backends.config_store import open_config_store
from graphtune.backends.traces import open_trace_store
from graphtune.guard import check_recent_promotions
from graphtune.serving import ServedWorkflow
from tests.graphs.conftest import weak_toy_spec  # noqa: F401  (fixture)


def traffic(db, spec, n):
    async def send(served):
        for i in range(n):
            run = await served.ainvoke({"question": "capital of france"}, unit_key=f"user-{i}")
            await served.afeedback(run.trace_id, thumbs_up=True)

    with ServedWorkflow(spec, db, refresh_s=0.0) as served:
        asyncio.run(send(served))
        served.flush()


def test_a_promotion_that_breaks_the_latency_guardrail_is_rolled_back(tmp_path, weak_toy_spec):
    db = f"sqlite:///{tmp_path}/gt.db"
    good = {"answer": {"quality": "good", "delay_s": 0.001}}
    with open_config_store(db) as store:
        v1 = store.put("toy", good, actor="t", source="test")
        store.promote("toy", v1.version, expected_active=None, actor="t", reason="init")
    traffic(db, weak_toy_spec, 150)
    with open_config_store(db) as store:
        slow = store.put("toy", {"answer": {"quality": "good", "delay_s": 0.02}}, actor="t", source="test")
        store.promote("toy", slow.version, expected_active=v1.version, actor="dana", reason="looks fine offline")
    traffic(db, weak_toy_spec, 150)

    with open_config_store(db) as configs, open_trace_store(db) as traces:
        (check,) = check_recent_promotions(configs, traces)
        assert check.status == "rolled_back" and check.from_version == v1.version
        assert configs.active("toy").version == v1.version
        entry = configs.history("toy")[0]
        assert (entry.action, entry.actor) == ("rollback", "graphtune")
        assert entry.reason.startswith("automatic rollback: latency_ms broken after promotion")
        assert check_recent_promotions(configs, traces) == []  # rolled back once, then nothing to watch


def test_a_promotion_that_holds_is_left_alone(tmp_path, weak_toy_spec):
    db = f"sqlite:///{tmp_path}/gt.db"
    with open_config_store(db) as store:
        v1 = store.put("toy", {"answer": {"quality": "good", "delay_s": 0.001}}, actor="t", source="test")
        store.promote("toy", v1.version, expected_active=None, actor="t", reason="init")
    traffic(db, weak_toy_spec, 60)
    with open_config_store(db) as store:
        v2 = store.put("toy", {"answer": {"quality": "good", "delay_s": 0.001, "style": "terse"}}, actor="t", source="test")
        store.promote("toy", v2.version, expected_active=v1.version, actor="dana", reason="r")
    traffic(db, weak_toy_spec, 60)
    with open_config_store(db) as configs, open_trace_store(db) as traces:
        (check,) = check_recent_promotions(configs, traces)
        assert check.status in ("holds", "watching") and configs.active("toy").version == v2.version
