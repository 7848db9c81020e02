"""The recording pipeline under faults: store outages (spill and replay), spill files left by dead
processes, a full queue, sampling, interpreter exit, corrupt JSONL lines and stores that never open.

In every case the workflow runs normally and no event is lost or duplicated without being counted.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from pathlib import Path
from typing import TypedDict

import pytest
from langgraph.graph import START, StateGraph

from graphtune import EventKind, EventQuery, TrajectoryEvent, TrajectoryRecorder
from graphtune.backends.jsonl import JsonlTraceStore, event_line
from graphtune.backends.sqlite import SqliteTraceStore
from tests.waiting import wait_until

REPO = Path(__file__).resolve().parents[2]
NODES = 20
PER_RUN = 2 + 2 * NODES  # run_start/run_end + node_start/node_end per node


class S(TypedDict):
    x: int


def chain_graph(n: int = NODES, fail_at: int | None = None):
    def inc(state: S) -> dict:
        return {"x": state["x"] + 1}

    def fail(state: S) -> dict:
        raise RuntimeError("node failed")

    builder = StateGraph(S)
    prev = START
    for i in range(n):
        builder.add_node(f"n{i}", fail if i == fail_at else inc)
        builder.add_edge(prev, f"n{i}")
        prev = f"n{i}"
    return builder.compile(name="chain")


class FlakyStore(SqliteTraceStore):
    """A real SQLite store whose writes fail while ``down`` is set (a database outage)."""

    def __init__(self, url: str):
        super().__init__(url)
        self.down = threading.Event()
        self.failed_writes = 0

    def write(self, events):
        if self.down.is_set():
            self.failed_writes += 1
            raise ConnectionError("trace store unavailable")
        super().write(events)


class GatedStore(SqliteTraceStore):
    """A real SQLite store whose writes block until ``gate`` opens (a very slow database)."""

    def __init__(self, url: str):
        super().__init__(url)
        self.gate = threading.Event()

    def write(self, events):
        self.gate.wait(30)
        super().write(events)


def spill_files(spill_dir: Path) -> list[Path]:
    return [p for p in spill_dir.rglob("*") if p.is_file()] if spill_dir.exists() else []


def count_by_id(store) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in store.read():
        counts[e.event_id] = counts.get(e.event_id, 0) + 1
    return counts


def run_script(code: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc


# -- (a) a store outage -------------------------------------------------------------------------------


def test_store_outage_spills_then_replays_every_event_exactly_once(tmp_path):
    store = FlakyStore(f"sqlite:///{tmp_path}/traces.db")
    spill_dir = tmp_path / "spill"
    rec = TrajectoryRecorder(store, sample_rate=1.0, spill_dir=str(spill_dir), flush_interval=0.02)
    graph = chain_graph()
    cfg = {"callbacks": [rec]}
    try:
        for i in range(2):  # healthy
            assert graph.invoke({"x": i}, config=cfg) == {"x": i + NODES}
        assert rec.flush(10)
        assert len(store.read()) == 2 * PER_RUN

        store.down.set()
        for i in range(3):  # outage: the workflow does not notice
            assert graph.invoke({"x": i}, config=cfg) == {"x": i + NODES}
        assert rec.flush(10)
        assert store.failed_writes >= 1
        assert rec.stats()["spilled"] == 3 * PER_RUN
        assert spill_files(spill_dir), "the outage's events should wait in spill files"
        assert len(store.read()) == 2 * PER_RUN
        for i in range(2):  # still down: replay attempts fail, nothing is lost
            graph.invoke({"x": i}, config=cfg)
        assert rec.flush(10)
        assert len(store.read()) == 2 * PER_RUN

        store.down.clear()
        graph.invoke({"x": 0}, config=cfg)  # back: new events and the spilled ones both arrive
        assert rec.flush(10)

        counts = count_by_id(store)
        assert len(counts) == 8 * PER_RUN
        assert set(counts.values()) == {1}
        assert spill_files(spill_dir) == []
        stats = rec.stats()
        # the outage's runs come back from the spill; so may the first batches after it, written
        # while the recorder still waited out its short retry backoff
        assert stats["replayed"] >= 5 * PER_RUN
        assert stats["written"] + stats["replayed"] == 8 * PER_RUN
        assert stats["dropped"] == 0
        traces: dict[str, list] = {}
        for e in store.read():
            traces.setdefault(e.trace_id, []).append(e)
        assert len(traces) == 8 and all(len(v) == PER_RUN for v in traces.values())
    finally:
        rec.close()
        store.close()


def test_outage_without_flush_recovers_on_its_own(tmp_path):
    store = FlakyStore(f"sqlite:///{tmp_path}/traces.db")
    spill_dir = tmp_path / "spill"
    rec = TrajectoryRecorder(store, sample_rate=1.0, spill_dir=str(spill_dir), flush_interval=0.02)
    try:
        store.down.set()
        chain_graph(3).invoke({"x": 0}, config={"callbacks": [rec]})
        wait_until(lambda: spill_files(spill_dir), what="the batch spilled during the outage")
        store.down.clear()
        # the writer replays by itself: the events land first, then the replayed spill file is removed
        wait_until(lambda: len(store.read()) == 8 and spill_files(spill_dir) == [], what="the spill replayed and removed")
        assert len(store.read()) == 8
        assert spill_files(spill_dir) == []
    finally:
        rec.close()
        store.close()


# -- (b) spill files of a dead process ---------------------------------------------------------------


def test_spill_files_of_a_dead_process_are_replayed_by_a_new_pipeline(tmp_path):
    url = f"sqlite:///{tmp_path}/traces.db"
    spill_dir = tmp_path / "spill"
    run_script(f"""
        import os
        from typing import TypedDict
        from langgraph.graph import START, StateGraph
        from graphtune import TrajectoryRecorder
        from graphtune.backends.sqlite import SqliteTraceStore

        class Down(SqliteTraceStore):
            def write(self, events):
                raise ConnectionError("database is down")

        class S(TypedDict):
            x: int

        b = StateGraph(S)
        b.add_node("a", lambda s: {{"x": s["x"] + 1}})
        b.add_node("b", lambda s: {{"x": s["x"] + 1}})
        b.add_edge(START, "a")
        b.add_edge("a", "b")
        g = b.compile()
        rec = TrajectoryRecorder(Down({url!r}), sample_rate=1.0, spill_dir={str(spill_dir)!r})
        for i in range(3):
            assert g.invoke({{"x": i}}, config={{"callbacks": [rec]}}) == {{"x": i + 2}}
        assert rec.flush(10)
        assert rec.stats()["spilled"] == 18, rec.stats()
        os._exit(0)  # die without atexit handlers: the spill file stays behind
    """)
    assert spill_files(spill_dir), "the dead process should have left a spill file"
    store = SqliteTraceStore(url)
    assert store.read() == []
    rec = TrajectoryRecorder(store, sample_rate=1.0, spill_dir=str(spill_dir), flush_interval=0.02)
    try:
        # replayed without any flush: the events land first, then the replayed spill file is removed
        wait_until(lambda: len(store.read()) >= 18 and spill_files(spill_dir) == [], what="the dead process's spill replayed")
        assert rec.flush(10)
        counts = count_by_id(store)
        assert len(counts) == 18 and set(counts.values()) == {1}
        assert len({e.trace_id for e in store.read()}) == 3
        assert spill_files(spill_dir) == []
        assert rec.stats()["replayed"] == 18
    finally:
        rec.close()
        store.close()


def test_file_of_a_replayer_that_died_mid_replay_is_replayed_again(tmp_path):
    store = FlakyStore(f"sqlite:///{tmp_path}/traces.db")
    spill_dir = tmp_path / "spill"
    rec = TrajectoryRecorder(store, sample_rate=1.0, spill_dir=str(spill_dir), flush_interval=0.02)
    try:
        store.down.set()
        chain_graph(2).invoke({"x": 0}, config={"callbacks": [rec]})
        assert rec.flush(10)
        rec.close()
        (path,) = spill_files(spill_dir)
        path.rename(f"{path}.replaying-999999")  # claimed by a process that then died
        store.down.clear()
        rec2 = TrajectoryRecorder(store, sample_rate=1.0, spill_dir=str(spill_dir), flush_interval=0.02)
        assert rec2.flush(10)
        rec2.close()
        counts = count_by_id(store)
        assert len(counts) == 6 and set(counts.values()) == {1}
        assert spill_files(spill_dir) == []
    finally:
        rec.close()
        store.close()


def test_spill_replay_skips_a_truncated_last_line(tmp_path):
    """A process killed mid-write leaves half a line: the rest of its spill file is still replayed."""
    store = FlakyStore(f"sqlite:///{tmp_path}/traces.db")
    spill_dir = tmp_path / "spill"
    rec = TrajectoryRecorder(store, sample_rate=1.0, spill_dir=str(spill_dir), flush_interval=0.02)
    try:
        store.down.set()
        chain_graph(2).invoke({"x": 0}, config={"callbacks": [rec]})
        assert rec.flush(10)
        rec.close()  # the store is still down: the spill file stays
        (path,) = spill_files(spill_dir)
        with open(path, "ab") as fh:
            fh.write(event_line(TrajectoryEvent(kind=EventKind.CUSTOM, time=1.0, trace_id="a" * 32, span_id="b" * 16))[:40])
        store.down.clear()
        rec2 = TrajectoryRecorder(store, sample_rate=1.0, spill_dir=str(spill_dir), flush_interval=0.02)
        assert rec2.flush(10)
        rec2.close()
        assert len(count_by_id(store)) == 6
        assert spill_files(spill_dir) == []
    finally:
        rec.close()
        store.close()


def test_two_recorders_sharing_a_spill_dir_lose_nothing(tmp_path):
    """One recorder's store is down while another, on the same store URL, is healthy and replays.
    The healthy one must not take the spill file the other one is still writing to."""
    url = f"sqlite:///{tmp_path}/traces.db"
    spill_dir = tmp_path / "spill"
    broken_store, healthy_store = FlakyStore(url), SqliteTraceStore(url)
    broken = TrajectoryRecorder(broken_store, sample_rate=1.0, spill_dir=str(spill_dir), flush_interval=0.02)
    healthy = TrajectoryRecorder(healthy_store, sample_rate=1.0, spill_dir=str(spill_dir), flush_interval=0.02)
    graph = chain_graph(2)

    def wait_spilled(n):
        wait_until(lambda: broken.stats()["spilled"] >= n, what=f"{n} events spilled")
        assert broken.stats()["spilled"] == n

    try:
        broken_store.down.set()
        graph.invoke({"x": 0}, config={"callbacks": [broken]})
        wait_spilled(6)  # spilled; the spill file stays open for the next failed batch
        graph.invoke({"x": 1}, config={"callbacks": [healthy]})
        assert healthy.flush(10)  # the healthy recorder replays what it finds in the shared spill dir
        graph.invoke({"x": 2}, config={"callbacks": [broken]})
        wait_spilled(12)
        broken_store.down.clear()
        assert broken.flush(10)
        assert healthy.flush(10)
        counts = count_by_id(healthy_store)
        assert len(counts) == 3 * 6, "events spilled by one recorder were lost"
        assert set(counts.values()) == {1}
        assert spill_files(spill_dir) == []
    finally:
        broken.close()
        healthy.close()
        broken_store.close()
        healthy_store.close()


# -- (c) a full queue --------------------------------------------------------------------------------------


def test_full_queue_drops_are_counted_logged_and_recorded(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="graphtune.recorder")
    store = GatedStore(f"sqlite:///{tmp_path}/traces.db")
    rec = TrajectoryRecorder(store, sample_rate=1.0, max_queue=30, spill_dir=str(tmp_path / "spill"), flush_interval=0.01)
    graph = chain_graph()
    try:
        for i in range(10):  # the writer is stuck in a slow write; the workflow is not
            assert graph.invoke({"x": i}, config={"callbacks": [rec]}) == {"x": i + NODES}
        dropped = rec.stats()["dropped"]
        assert dropped > 0
        assert rec.stats()["queued"] <= 30
        store.gate.set()
        assert rec.flush(10)
        assert rec.stats()["dropped"] == dropped

        drop_events = store.read(EventQuery(kinds=(EventKind.CUSTOM,)))
        drop_events = [e for e in drop_events if e.name == "graphtune.events_dropped"]
        assert drop_events
        assert sum(e.attributes["dropped"] for e in drop_events) == dropped
        assert drop_events[-1].attributes["dropped_total"] == dropped
        assert drop_events[-1].attributes["max_queue"] == 30
        stored = len(store.read()) - len(drop_events)
        assert stored < 10 * PER_RUN

        warnings = [r for r in caplog.records if r.name == "graphtune.recorder" and r.levelno == logging.WARNING]
        assert any("dropped" in r.getMessage() and "queue" in r.getMessage() for r in warnings)

        # after the burst the recorder works normally again (a run small enough for the queue)
        run_id = uuid.uuid4()
        chain_graph(3).invoke({"x": 0}, config={"callbacks": [rec], "run_id": run_id})
        assert rec.flush(10)
        assert rec.stats()["dropped"] == dropped
        assert len(store.read(EventQuery(trace_id=run_id.hex))) == 8
    finally:
        store.gate.set()
        rec.close()
        store.close()


# -- (d) sampling ---------------------------------------------------------------------------------------


def test_sampling_drops_ordinary_traces_but_keeps_traces_with_errors(tmp_path):
    store = SqliteTraceStore(f"sqlite:///{tmp_path}/traces.db")
    rec = TrajectoryRecorder(store, sample_rate=0.0, spill_dir=str(tmp_path / "spill"), flush_interval=0.02)
    try:
        ok = chain_graph(5)
        for i in range(3):
            ok.invoke({"x": i}, config={"callbacks": [rec]})
        failing = chain_graph(5, fail_at=3)
        run_id = uuid.uuid4()
        with pytest.raises(RuntimeError):
            failing.invoke({"x": 0}, config={"callbacks": [rec], "run_id": run_id})
        assert rec.flush(10)
        assert rec.stats()["sampled_out"] == 3 * (2 + 2 * 5)
        events = store.read()
        assert {e.trace_id for e in events} == {run_id.hex}
        assert [(e.kind.value, e.name) for e in events] == [
            ("run_start", "chain"),
            ("node_start", "n0"), ("node_end", "n0"), ("node_start", "n1"), ("node_end", "n1"),
            ("node_start", "n2"), ("node_end", "n2"), ("node_start", "n3"), ("node_error", "n3"),
            ("run_end", "chain"),
        ]
    finally:
        rec.close()
        store.close()


def test_partial_sampling_keeps_whole_traces_or_none(tmp_path):
    store = SqliteTraceStore(f"sqlite:///{tmp_path}/traces.db")
    rec = TrajectoryRecorder(store, sample_rate=0.5, spill_dir=str(tmp_path / "spill"), flush_interval=0.02)
    try:
        graph = chain_graph(3)
        for i in range(40):
            graph.invoke({"x": i}, config={"callbacks": [rec]})
        assert rec.flush(10)
        per_trace: dict[str, int] = {}
        for e in store.read():
            per_trace[e.trace_id] = per_trace.get(e.trace_id, 0) + 1
        assert set(per_trace.values()) <= {8}
        assert 0 < len(per_trace) < 40
        assert rec.stats()["sampled_out"] == (40 - len(per_trace)) * 8
    finally:
        rec.close()
        store.close()


# -- (e) interpreter exit ---------------------------------------------------------------------------------


def test_events_are_flushed_at_interpreter_exit(tmp_path):
    sqlite_url = f"sqlite:///{tmp_path}/exit.db"
    jsonl_url = f"jsonl:///{tmp_path}/exit-traces"
    run_script(f"""
        from typing import TypedDict
        from langgraph.graph import START, StateGraph
        import graphtune
        from graphtune import TrajectoryRecorder

        class S(TypedDict):
            x: int

        b = StateGraph(S)
        for name in ("a", "b", "c"):
            b.add_node(name, lambda s: {{"x": s["x"] + 1}})
        b.add_edge(START, "a")
        b.add_edge("a", "b")
        b.add_edge("b", "c")
        g = b.compile()
        rec = TrajectoryRecorder({sqlite_url!r}, sample_rate=1.0, flush_interval=60)
        for i in range(4):
            g.invoke({{"x": i}}, config={{"callbacks": [rec]}})
        traced = graphtune.trace(g, workflow="exit_test")  # the default recorder from the environment
        for i in range(2):
            traced.invoke({{"x": i}})
        # no flush, no close: the interpreter exits here
    """, env={"GRAPHTUNE_TRACES_URL": jsonl_url, "GRAPHTUNE_SPILL_DIR": str(tmp_path / "spill"),
              "GRAPHTUNE_SAMPLE_RATE": "1.0"})
    with SqliteTraceStore(sqlite_url) as store:
        assert len(store.read()) == 4 * 8
    with JsonlTraceStore(jsonl_url) as store:
        events = store.read()
        assert len(events) == 2 * 8
        assert {e.workflow for e in events} == {"exit_test"}
    assert spill_files(tmp_path / "spill") == []


# -- (f) corrupt JSONL lines ---------------------------------------------------------------------------


def test_corrupt_and_truncated_jsonl_lines_are_skipped_and_counted(tmp_path):
    url = f"jsonl:///{tmp_path}/traces"
    store = JsonlTraceStore(url)
    rec = TrajectoryRecorder(store, sample_rate=1.0, spill_dir=str(tmp_path / "spill"), flush_interval=0.02)
    try:
        chain_graph(2).invoke({"x": 0}, config={"callbacks": [rec]})
        assert rec.flush(10)
        files = sorted((tmp_path / "traces").glob("events-*.jsonl"))
        assert len(files) == 1
        good = event_line(TrajectoryEvent(kind=EventKind.CUSTOM, time=time.time(), trace_id="c" * 32, span_id="d" * 16, name="late"))
        # files of other (crashed) writer processes
        (tmp_path / "traces" / "events-otherhost-1-deadbeef.jsonl").write_bytes(
            b"this is not json\n"
            + b'{"event_id": "x", "kind": "nonsense"}\n'  # JSON, but not an event
            + b"\n"  # blank lines are not corruption
            + good
            + good[: len(good) // 2]  # a write cut short by a crash
        )
        (tmp_path / "traces" / "events-otherhost-2-cafebabe.jsonl").write_bytes(b"\x00\xff\xfe garbage\n" + good)

        events = store.read()
        assert len(events) == 6 + 1  # the graph's events plus one copy of "late" (ids are deduplicated)
        assert store.skipped_lines == 4
        fresh = JsonlTraceStore(url)
        assert len(fresh.read()) == 7 and fresh.skipped_lines == 4
        assert len(fresh.traces()) == 2
        assert {s.node for s in fresh.aggregate()} >= {"n0", "n1"}
        fresh.close()
        # the store keeps accepting writes after reading corrupt files
        chain_graph(2).invoke({"x": 0}, config={"callbacks": [rec]})
        assert rec.flush(10)
        assert len(store.read()) == 13
    finally:
        rec.close()
        store.close()


# -- (g) stores that cannot be opened ---------------------------------------------------------------------


def test_unopenable_sqlite_path_never_breaks_the_run(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("a file, not a directory")
    spill_dir = tmp_path / "spill"
    rec = TrajectoryRecorder(f"sqlite:///{blocker}/sub/traces.db", sample_rate=1.0, spill_dir=str(spill_dir), flush_interval=0.02)
    try:
        graph = chain_graph(3)
        for i in range(2):
            assert graph.invoke({"x": i}, config={"callbacks": [rec], "metadata": {"user_id": "u1"}}) == {"x": i + 3}
        assert rec.flush(10)
        stats = rec.stats()
        assert stats["spilled"] == 2 * 8 and stats["store_errors"] >= 1 and stats["written"] == 0
        assert spill_files(spill_dir)
    finally:
        rec.close()


def test_unknown_store_scheme_never_breaks_the_run(tmp_path):
    rec = TrajectoryRecorder("mongodb://nowhere/traces", sample_rate=1.0, spill_dir=str(tmp_path / "spill"), flush_interval=0.02)
    try:
        assert chain_graph(2).invoke({"x": 0}, config={"callbacks": [rec]}) == {"x": 2}
        assert rec.flush(10)
        stats = rec.stats()
        assert stats["spilled"] == 6 and stats["store_errors"] >= 1
    finally:
        rec.close()


def test_unwritable_spill_dir_counts_drops_instead_of_failing(tmp_path):
    blocker = tmp_path / "blocker"
    blocker.write_text("x")
    rec = TrajectoryRecorder(f"sqlite:///{blocker}/traces.db", sample_rate=1.0, spill_dir=str(blocker / "spill"), flush_interval=0.02)
    try:
        assert chain_graph(2).invoke({"x": 0}, config={"callbacks": [rec]}) == {"x": 2}
        assert rec.flush(10)
        stats = rec.stats()
        assert stats["dropped"] == 6 and stats["spilled"] == 0
    finally:
        rec.close()
