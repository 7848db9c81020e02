"""Recording into PostgreSQL through a real database outage (issue 17, item 3).

The database is a PostgreSQL server of the test's own, stopped and started with ``pg_ctl``. A write
that fails must reach the spill file at once (not after a pool's 30 s wait), and the spill file must
be on disk, so a process killed during the outage loses no run it had recorded; the runs come back
from the spill when the database does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid

import psycopg
import pytest

from graphtune import EventKind, EventQuery, TrajectoryEvent, TrajectoryRecorder
from graphtune.backends.postgres import PostgresTraceStore
from tests.tracing.test_pipeline_faults import PER_RUN, REPO, chain_graph, count_by_id, spill_files
from tests.waiting import wait_until


def events(n: int) -> list[TrajectoryEvent]:
    trace_id = uuid.uuid4().hex
    return [TrajectoryEvent(kind=EventKind.NODE_END, time=time.time(), trace_id=trace_id, span_id=f"{i:016x}",
                            name="n", workflow="qa", duration_ms=1.0) for i in range(n)]


def test_a_write_during_an_outage_fails_with_the_reason_and_the_first_write_after_it_lands(restartable_pg):
    """The store's writes do not wait on a connection pool: a write while the database is down
    fails with libpq's reason (a pool would wait 30 s for a connection and then say only that), and
    the first write once the database is back opens a new connection and lands (a pool would wait
    for its reconnect backoff)."""
    store = PostgresTraceStore(restartable_pg.url)
    try:
        store.write(events(3))
        restartable_pg.stop()
        with pytest.raises(psycopg.OperationalError, match="No such file or directory|Connection refused|terminating"):
            store.write(events(3))
        restartable_pg.start()
        store.write(events(4))  # at once, on the first try
        assert len(store.read()) == 7
        restartable_pg.restart()
        store.write(events(5))  # a connection cut by a restart is replaced within the same write
        assert len(store.read()) == 12
    finally:
        store.close()


CHILD = """
    import sys, uuid
    from tests.tracing.test_pipeline_faults import chain_graph
    from graphtune import TrajectoryRecorder

    rec = TrajectoryRecorder({url!r}, sample_rate=1.0, spill_dir={spill_dir!r}, flush_interval=0.02)
    graph = chain_graph()
    for command in sys.stdin:
        run_id = uuid.uuid4()
        graph.invoke({{"x": 0}}, config={{"callbacks": [rec], "run_id": run_id}})
        if command.strip() == "run-and-flush":  # reported as recorded only once written or spilled
            print(run_id.hex if rec.flush(20) else f"flush timed out: {{rec.stats()}}", flush=True)
"""


def test_runs_recorded_before_a_kill_during_an_outage_are_replayed_from_the_spill(tmp_path, restartable_pg):
    url = restartable_pg.url
    spill_dir = tmp_path / "spill"
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(CHILD.format(url=url, spill_dir=str(spill_dir)))], cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)}, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )

    def recorded() -> str:
        child.stdin.write("run-and-flush\n")
        child.stdin.flush()
        line = child.stdout.readline().strip()
        assert len(line) == 32, line or "the recording process died"
        return line

    try:
        healthy = [recorded() for _ in range(2)]
        restartable_pg.stop()
        during_outage = [recorded() for _ in range(3)]
        child.stdin.write("run\n" * 5)  # more runs in flight, never reported: the kill lands among them
        child.stdin.flush()
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert spill_files(spill_dir), "the outage's runs should be in a spill file"

    restartable_pg.start()
    store = PostgresTraceStore(url)
    rec = TrajectoryRecorder(store, sample_rate=1.0, spill_dir=str(spill_dir), flush_interval=0.02)
    try:
        assert rec.flush(20)
        for run_id in healthy + during_outage:
            assert len(store.read(EventQuery(trace_id=run_id))) == PER_RUN, run_id
        counts = count_by_id(store)
        assert set(counts.values()) == {1}  # nothing stored twice
        assert len(counts) % PER_RUN == 0 and len(counts) >= 5 * PER_RUN
        assert rec.stats()["replayed"] >= 3 * PER_RUN
    finally:
        rec.close()
        store.close()
    assert [p for p in spill_files(spill_dir) if not p.name.startswith(".")] == []


def test_recording_resumes_by_itself_when_the_database_is_back(tmp_path, restartable_pg):
    """Without any flush, the runs of an outage and those after it all reach the store: the writer
    keeps trying on its own, and replays the spill as soon as a write goes through."""
    store = PostgresTraceStore(restartable_pg.url)
    spill_dir = tmp_path / "spill"
    rec = TrajectoryRecorder(store, sample_rate=1.0, spill_dir=str(spill_dir), flush_interval=0.02)
    graph = chain_graph(3)
    try:
        graph.invoke({"x": 0}, config={"callbacks": [rec]})
        assert rec.flush(10) and rec.stats()["written"] == 8
        restartable_pg.stop()
        for i in range(3):
            graph.invoke({"x": i}, config={"callbacks": [rec]})
        wait_until(lambda: rec.stats()["spilled"] >= 3 * 8, what="the outage's runs spilling")
        assert rec.stats()["spilled"] == 3 * 8
        restartable_pg.start()
        graph.invoke({"x": 9}, config={"callbacks": [rec]})
        wait_until(lambda: len(store.read()) >= 5 * 8, what="writes and the spill's replay resuming")
        assert len(count_by_id(store)) == 5 * 8
        assert spill_files(spill_dir) == []
    finally:
        rec.close()
        store.close()
