"""hotspots: per-node statistics over 1M stored events, from the PostgreSQL store's rollup, beside
an exact GROUP BY with percentile_cont over the raw rows.

One workflow with 20 nodes, source production, an hour of runs with lognormal latencies (each node
its own scale), 2% node errors, llm_usage on some nodes and some thumbs-down feedback. The events go
in through ``PostgresTraceStore.write`` (not timed), then ``VACUUM ANALYZE`` stands in for
autovacuum's steady state. The window's edges fall mid-minute, so both paths of ``aggregate`` run:
rollup minutes inside, raw rows at the edges. Timed runs alternate store / raw query.
"""

from __future__ import annotations

import os
import random
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, fresh_database, log, median, paired_ratio, parse_args, postgres_server  # noqa: E402

T0 = 1_800_000_000.0
WORKFLOW = "support_qa"
NODES = tuple(f"node_{i:02d}" for i in range(20))
SINCE, UNTIL = T0 + 90.5, T0 + 3510.25  # mid-minute edges inside the hour

EXACT_SQL = """
SELECT CASE WHEN kind = 'run_end' THEN '__run__' ELSE name END AS node,
       count(*), count(*) FILTER (WHERE kind = 'node_error' OR (kind = 'run_end' AND status = 'error')),
       percentile_cont(0.5) WITHIN GROUP (ORDER BY duration_ms),
       percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms)
FROM graphtune_events
WHERE workflow = %s AND source = 'production' AND kind IN ('node_end', 'node_error', 'run_end')
  AND time >= %s AND time < %s
GROUP BY 1"""


def generate(n: int, seed: int = 11):
    """Yields batches of 2000 events, about n in all, in time order over one hour."""
    from graphtune.tracing.events import EventKind, TrajectoryEvent

    rnd = random.Random(seed)
    scale = {node: 5.0 * (1.25 ** i) for i, node in enumerate(NODES)}  # 5 ms ... ~350 ms medians
    runs = n // 8  # ~8 events per run
    batch: list = []
    made = 0
    for r in range(runs):
        t = T0 + 3600.0 * r / runs
        trace = f"{rnd.getrandbits(128):032x}"
        start = t
        failed_run = False
        for node in rnd.sample(NODES, k=6):
            duration = rnd.lognormvariate(0, 0.6) * scale[node]
            t += duration / 1000
            failed = rnd.random() < 0.02
            failed_run |= failed
            batch.append(TrajectoryEvent(
                kind=EventKind.NODE_ERROR if failed else EventKind.NODE_END, time=t, trace_id=trace,
                span_id=f"{rnd.getrandbits(64):016x}", name=node, node=node, workflow=WORKFLOW, duration_ms=duration,
                status="error" if failed else "ok",
            ))
            if node in NODES[-4:]:
                batch.append(TrajectoryEvent(kind=EventKind.LLM_USAGE, time=t, trace_id=trace, span_id="0" * 16, name="chat",
                                             node=node, workflow=WORKFLOW, input_tokens=rnd.randint(100, 900), output_tokens=50))
        batch.append(TrajectoryEvent(kind=EventKind.RUN_END, time=t, trace_id=trace, span_id="1" * 16, name=WORKFLOW,
                                     workflow=WORKFLOW, duration_ms=(t - start) * 1000, status="error" if failed_run else "ok"))
        if rnd.random() < 0.01:
            batch.append(TrajectoryEvent(kind=EventKind.FEEDBACK, time=t + 30, trace_id=trace, span_id="2" * 16,
                                         name="user_feedback", workflow=WORKFLOW, score=0.0))
        if len(batch) >= 2000:
            made += len(batch)
            yield batch
            batch = []
    if batch:
        yield batch


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], events=(int, 1_000_000, "events to load"), runs=(int, 7, "timed runs of each query"))
    import psycopg

    from graphtune.backends.postgres import PostgresTraceStore

    with postgres_server() as server, fresh_database(server) as url:
        store = PostgresTraceStore(url)
        log(f"loading ~{args.events:,} events through PostgresTraceStore.write (not timed) ...")
        loaded, started = 0, time.perf_counter()
        for batch in generate(args.events):
            store.write(batch)
            loaded += len(batch)
        load_seconds = time.perf_counter() - started
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("VACUUM ANALYZE graphtune_events")
            conn.execute("VACUUM ANALYZE graphtune_node_rollup")
            rollup_rows = conn.execute("SELECT count(*) FROM graphtune_node_rollup").fetchone()[0]
            log(f"loaded {loaded:,} events in {load_seconds:.1f} s; {rollup_rows} rollup rows; timing ...")
            store_s, raw_s = [], []
            for _ in range(args.runs):
                t = time.perf_counter()
                stats = store.aggregate(workflow=WORKFLOW, since=SINCE, until=UNTIL)
                store_s.append(time.perf_counter() - t)
                t = time.perf_counter()
                exact = conn.execute(EXACT_SQL, (WORKFLOW, SINCE, UNTIL)).fetchall()
                raw_s.append(time.perf_counter() - t)
        store.close()

    got = {s.node: s for s in stats}
    p95_errors, p50_errors, counts_exact = [], [], True
    for node, count, errors, p50, p95 in exact:
        s = got[node]
        counts_exact &= (s.count, s.errors) == (count, errors)
        p95_errors.append(abs(s.p95_ms - p95) / p95)
        p50_errors.append(abs(s.p50_ms - p50) / p50)
    result = {
        "events": loaded,
        "seconds": round(median(store_s), 4),
        "raw_group_by_seconds": round(median(raw_s), 4),
        "p95_max_rel_error": round(max(p95_errors), 5),
        "p50_max_rel_error": round(max(p50_errors), 5),
        "counts_exact": counts_exact,
        "speedup_vs_raw": round(paired_ratio(raw_s, store_s), 1),
        "nodes": len(exact),
        "rollup_rows": rollup_rows,
        "window_seconds": UNTIL - SINCE,
        "load_events_per_s": round(loaded / load_seconds),
    }
    emit(result, args.json, "hotspots (aggregate over the window; medians)")


if __name__ == "__main__":
    main()
