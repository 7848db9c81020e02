"""Hot spots from recorded production traffic: slow, failing and disliked nodes, the earlier-window
comparison, samples, and the window parser. Real LangGraph runs recorded into SQLite, plus events
written directly (for exact times) into SQLite and PostgreSQL."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from langchain_core.messages import AIMessage
from langgraph.graph import END, START, MessagesState, StateGraph

from graphtune.backends.traces import open_trace_store
from graphtune.nodes.trajectory import TrajectoryNode, TrajectoryState
from graphtune.spec import ObserveSpec
from graphtune.tracing.events import RUN_NODE, EventKind, TrajectoryEvent
from graphtune.tracing.recorder import run_tags
from graphtune.tuning.hotspots import (
    MAX_STEPS,
    Observation,
    find_hot_spots,
    format_observation,
    parse_window,
    trim_steps,
)

LONG_ERROR = "backend refused the request " + "x" * 600
LONG_ANSWER = "answer " * 150


class State(MessagesState, TrajectoryState):
    n: int
    slow_plan: bool


def build_graph(recorder):
    def plan(state: State) -> dict:
        if state.get("slow_plan"):
            time.sleep(0.03)
        return {}

    def fetch(state: State) -> dict:
        time.sleep(0.02)  # the slow node
        return {}

    def flaky(state: State) -> dict:
        if state["n"] % 5 == 0:
            raise RuntimeError(f"{LONG_ERROR} #{state['n']}")
        return {}

    def reply(state: State) -> dict:
        return {"messages": [AIMessage(LONG_ANSWER)]}

    builder = StateGraph(State)
    for name, fn in (("plan", plan), ("fetch", fetch), ("flaky", flaky), ("reply", reply)):
        builder.add_node(name, fn)
    builder.add_node("trajectory", TrajectoryNode(recorder))
    builder.add_edge(START, "plan")
    builder.add_edge("plan", "fetch")
    builder.add_edge("fetch", "flaky")
    builder.add_edge("flaky", "reply")
    builder.add_edge("reply", "trajectory")
    builder.add_edge("trajectory", END)
    return builder.compile(name="wf")


def run(graph, recorder, n: int, source: str, slow_plan: bool = False) -> str:
    run_id = uuid.uuid4()
    config = {"run_id": run_id, "callbacks": [recorder], "metadata": run_tags("wf", source=source),
              "configurable": {"thread_id": f"{source}-{n}-{run_id.hex[:6]}"}}
    try:
        graph.invoke({"messages": [("user", f"question {n}")], "n": n, "slow_plan": slow_plan}, config=config)
    except RuntimeError:
        pass
    return run_id.hex


@pytest.fixture
def traffic(recorder, store):
    """30 production runs (fetch slow, flaky fails 1 in 5, 1 in 3 disliked) and 10 eval runs that
    would change every number if they counted (slow plan, always failing, all disliked)."""
    graph = build_graph(recorder)
    disliked = []
    for n in range(30):
        trace_id = run(graph, recorder, n, "production")
        if n % 3 == 1:
            recorder.feedback(trace_id, thumbs_up=False, comment="wrong answer", workflow="wf")
            disliked.append(trace_id)
    for n in range(10):
        trace_id = run(graph, recorder, n * 5, "eval", slow_plan=True)
        recorder.feedback(trace_id, thumbs_up=False, workflow="wf", source="eval")
    assert recorder.flush(10), "the writer did not finish in time"
    return store, disliked


OBSERVE = ObserveSpec(window="1h", p95_ms=15, error_rate=0.05, negative_feedback_rate=0.2)


def test_slow_failing_and_disliked_nodes_are_found_from_production_only(traffic):
    store, disliked = traffic
    obs = find_hot_spots(store, "wf", OBSERVE)

    assert obs.runs == 30  # eval runs are not counted
    stats = {s.node: s for s in obs.node_stats}
    assert stats["flaky"].count == 30 and stats["flaky"].errors == 6
    assert stats["plan"].p95_ms < 15  # eval's slow plan is ignored
    assert stats[RUN_NODE].negative_feedback == 10

    nodes = [h.node for h in obs.hot_spots]
    assert "plan" not in nodes and "reply" not in nodes
    fetch, flaky, whole = obs.hot_spot("fetch"), obs.hot_spot("flaky"), obs.hot_spot(RUN_NODE)
    assert any(r.startswith("p95 ") and "> threshold 15 ms" in r for r in fetch.reasons), fetch.reasons
    assert any(r.startswith("largest share of run time") for r in fetch.reasons), fetch.reasons
    assert fetch.share_of_run_time > 0.5
    assert flaky.reasons == ["error rate 20% > 5% (6 of 30 calls failed)"]
    assert any(r.startswith("negative feedback on 33% of runs > 20%") for r in whole.reasons), whole.reasons
    assert any(r.startswith("error rate 20% > 5%") for r in whole.reasons)
    assert whole.share_of_run_time is None
    severities = [h.severity for h in obs.hot_spots]
    assert severities == sorted(severities, reverse=True)
    # severity: value / threshold per reason, run p95 ratio x share for the largest share, plus the share
    assert flaky.severity == pytest.approx(0.20 / 0.05 + flaky.share_of_run_time, abs=1e-3)
    run_ratio = whole.stats.p95_ms / 15
    expected = fetch.stats.p95_ms / 15 + run_ratio * fetch.share_of_run_time + fetch.share_of_run_time
    assert fetch.severity == pytest.approx(expected, abs=1e-3)
    assert all(h.previous is None for h in obs.hot_spots)
    assert any("earlier" in note for note in obs.notes)

    # samples: slowest run, a failure in the failing hot spot, a disliked run; trimmed
    assert len(obs.samples) == 3
    whys = [s.why for s in obs.samples]
    assert any(w.startswith("slowest run (") for w in whys), whys
    failing = next(s for s in obs.samples if s.why.startswith("failed in flaky: RuntimeError: backend refused"))
    assert failing.status == "error"
    assert len(failing.why) < 260
    error_step = next(step for step in failing.steps if step.get("node") == "flaky")
    assert error_step["status"] == "error" and len(error_step["error"]) <= 200
    liked = next(s for s in obs.samples if s.why.startswith("negative feedback"))
    assert liked.trace_id in disliked and "wrong answer" in liked.why
    assert {"feedback": 0.0, "comment": "wrong answer"} in liked.steps
    messages = [step for step in liked.steps if "message" in step]
    assert messages and all(len(m["content"]) <= 300 for m in messages)
    assert any(m["message"] == "ai" and m["content"].startswith("answer answer") for m in messages)
    assert len({s.trace_id for s in obs.samples}) == 3
    for sample in obs.samples:
        assert len(sample.steps) <= MAX_STEPS
        assert [s["node"] for s in sample.steps if "duration_ms" in s and "tool" not in s][:2] == ["plan", "fetch"]

    assert len(find_hot_spots(store, "wf", OBSERVE, max_samples=1).samples) == 1
    assert find_hot_spots(store, "wf", OBSERVE, max_samples=0).samples == []

    text = format_observation(obs)
    assert text.splitlines()[0].startswith("wf, last 1h: 30 production runs")
    assert "flaky: error rate 20% > 5% (6 of 30 calls failed)" in text
    assert "fetch: p95 " in text


def test_eval_only_traffic_is_not_observed(recorder, store):
    graph = build_graph(recorder)
    for n in range(6):
        run(graph, recorder, n, "eval")
    assert recorder.flush(10)
    obs = find_hot_spots(store, "wf", OBSERVE)
    assert obs.runs == 0 and obs.hot_spots == [] and obs.node_stats == [] and obs.samples == []
    assert obs.notes == ["no production traffic for wf in the last 1h: nothing to observe"]


# -- events written directly, at chosen times ---------------------------------------------------
def _hex(n: int) -> str:
    return os.urandom(n).hex()


def write_runs(store, *, at: float, runs: int, nodes: dict, workflow: str = "wf", source: str = "production") -> list[str]:
    """``runs`` runs ending around ``at``; ``nodes`` maps node -> (duration_ms, fails(i) -> bool)."""
    events, trace_ids = [], []
    for i in range(runs):
        trace_id, root = _hex(16), _hex(8)
        trace_ids.append(trace_id)
        t = at + i * 0.5
        total, failed = 0.0, False
        for name, (duration, fails) in nodes.items():
            bad = fails(i)
            total += duration
            events.append(TrajectoryEvent(
                kind=EventKind.NODE_ERROR if bad else EventKind.NODE_END, time=t + total / 1000, trace_id=trace_id,
                span_id=_hex(8), parent_span_id=root, name=name, node=name, workflow=workflow, source=source,
                duration_ms=duration, status="error" if bad else "ok",
                attributes={"error.type": "TimeoutError", "error.message": "upstream timed out"} if bad else {},
            ))
            if bad:
                failed = True
                break
        events.append(TrajectoryEvent(
            kind=EventKind.RUN_END, time=t + total / 1000, trace_id=trace_id, span_id=root, name=workflow,
            workflow=workflow, source=source, duration_ms=total, status="error" if failed else "ok",
        ))
    store.write(events)
    return trace_ids


def never(i: int) -> bool:
    return False


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_worse_than_the_earlier_window(backend, store, request):
    if backend == "postgres":
        store = open_trace_store(request.getfixturevalue("pg_url"))
        request.addfinalizer(store.close)
    now, hour = time.time(), 3600.0
    before = {"db": (100.0, never), "api": (10.0, never), "cheap": (1.0, never)}
    after = {"db": (200.0, never), "api": (10.0, lambda i: i % 5 == 0), "cheap": (1.0, never)}
    write_runs(store, at=now - 2 * hour + 60, runs=30, nodes=before)
    write_runs(store, at=now - hour + 60, runs=30, nodes=after)
    write_runs(store, at=now - hour + 60, runs=30, nodes={"cheap": (5000.0, lambda i: True)}, source="eval")

    observe = ObserveSpec(window="1h", error_rate=0.5)  # no p95 threshold; error rate far above 20%
    obs = find_hot_spots(store, "wf", observe, now=now)

    assert obs.runs == 30 and obs.window_s == hour and obs.until == now and obs.since == now - hour
    db, api = obs.hot_spot("db"), obs.hot_spot("api")
    assert len(db.reasons) == 1 and db.reasons[0].startswith("p95 up 100% vs earlier window (100 ms -> 200 ms)"), db.reasons
    assert db.previous is not None and db.previous.count == 30
    assert db.severity == pytest.approx(1.0 + db.share_of_run_time, abs=0.05)
    assert api.reasons == ["error rate up from 0% to 20% vs earlier window"]
    assert obs.hot_spot("cheap") is None  # eval traffic is ignored
    assert any("p95_ms" in note for note in obs.notes)
    # samples come from the production traces of the window
    assert any(s.why.startswith("failed in api: TimeoutError: upstream timed out") for s in obs.samples)
    slowest = next(s for s in obs.samples if s.why.startswith("slowest run"))
    assert slowest.duration_ms == pytest.approx(211.0)


def test_empty_window_and_few_events(store):
    now = time.time()
    write_runs(store, at=now - 3 * 86400, runs=10, nodes={"a": (50.0, lambda i: True)})  # older than both windows
    obs = find_hot_spots(store, "wf", ObserveSpec(window="24h", p95_ms=10), now=now)
    assert isinstance(obs, Observation)
    assert obs.hot_spots == [] and obs.runs == 0 and obs.samples == []
    assert obs.notes == ["no production traffic for wf in the last 24h: nothing to observe"]
    assert format_observation(obs).endswith("Note: no production traffic for wf in the last 24h: nothing to observe")

    write_runs(store, at=now - 600, runs=3, nodes={"a": (50.0, lambda i: True)})
    obs = find_hot_spots(store, "wf", ObserveSpec(window="24h", p95_ms=10), now=now)
    assert obs.hot_spots == [] and obs.runs == 3
    assert any(note.startswith("too few events (< 5)") and "a" in note for note in obs.notes)


def test_window_override_and_bad_window(store):
    with pytest.raises(ValueError, match="24 hours"):
        find_hot_spots(store, "wf", ObserveSpec(window="24 hours"))
    for bad in ("", "h", "0h", "-1d", "3x"):
        with pytest.raises(ValueError, match="observe window"):
            parse_window(bad)
    assert parse_window("30m") == 1800 and parse_window("7d") == 7 * 86400 and parse_window("1.5h") == 5400
    assert find_hot_spots(store, "wf", ObserveSpec(window="24 hours"), window_s=60).window_s == 60


def test_long_runs_are_trimmed_to_steps(store):
    now = time.time()
    # runs stop at the failing node, number 30 of 40: the failing sample has 31 steps, the slowest 40
    many = {f"step{i:02d}": (1.0, (lambda i: True) if i == 30 else never) for i in range(40)}
    long_ok = {f"step{i:02d}": (1.0, never) for i in range(40)}
    write_runs(store, at=now - 100, runs=6, nodes=long_ok)
    write_runs(store, at=now - 50, runs=6, nodes=many)
    obs = find_hot_spots(store, "wf", ObserveSpec(window="1h"), now=now, max_samples=2)
    assert len(obs.samples) == 2
    for sample in obs.samples:
        assert len(sample.steps) <= MAX_STEPS
        assert any("omitted" in step for step in sample.steps)
    failing = next(s for s in obs.samples if s.why.startswith("failed in step30"))
    assert any(step.get("node") == "step30" and step["status"] == "error" for step in failing.steps)

    steps = [{"node": f"n{i}", "status": "ok"} for i in range(100)]
    steps[50]["status"] = "error"
    trimmed = trim_steps(steps)
    assert len(trimmed) <= MAX_STEPS and steps[50] in trimmed and trimmed[0] == steps[0] and trimmed[-1] == steps[-1]
    assert sum(s.get("omitted", 0) for s in trimmed) + sum(1 for s in trimmed if "node" in s) == 100
