"""ingest: how fast the trace stores take events, beside a raw PostgreSQL COPY, and the recorder's
peak memory under a burst.

Variants, interleaved per round (the order alternates) on one server, fresh tables each round:
- ``store``: ``PostgresTraceStore.write`` in batches of 2000, from TrajectoryEvent objects (row
  building, binary COPY into the indexed events table, rollup upsert, one transaction per batch);
- ``copy``: a text COPY of the same rows, pre-built before timing with ``sql_schema.event_to_row``,
  into a table with the same columns and no indexes, also one transaction per 2000 rows: what the
  server does for the bare rows with the same commit pattern. ``ratio_vs_copy`` is the median of
  the per-round ratios store/copy;
- ``copy_single``: the same rows in one COPY and one transaction (the server's best case), for
  reference (``ratio_vs_single_copy``);
- ``jsonl``: ``JsonlTraceStore.write`` in batches of 2000.

``peak_rss_mb`` comes from a subprocess that pushes 1M events through
``graphtune.tracing.pipeline.EventPipeline`` into the PostgreSQL store as fast as it can
(``measure_burst_rss``): the queue is bounded, so memory must stay flat while excess events are
dropped and counted.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import current_rss_mb, emit, fresh_database, log, median, paired_ratio, parse_args, peak_rss_mb, postgres_server  # noqa: E402

BATCH = 2000
T0 = 1_800_000_000.0
NODES = ("retrieve", "rerank", "answer", "check", "format")


def build_events(n: int, seed: int = 42) -> list:
    """A realistic mix: per run a run_start, per node node_start/message/node_end, llm_usage on
    model nodes, a run_end; small attributes. Ids are time-ordered like ``new_event_id``'s."""
    from graphtune.tracing.events import EventKind, TrajectoryEvent

    rnd = random.Random(seed)
    events: list = []
    t = T0

    def add(kind, name, trace, span, **fields):
        events.append(TrajectoryEvent(
            event_id=f"{int(t * 1000):012x}7{rnd.getrandbits(76):019x}", kind=kind, time=t, trace_id=trace,
            span_id=span, name=name, workflow="support_qa", config_version=3, variant="control", source="production",
            thread_id=f"thread-{trace[:8]}", **fields,
        ))

    while len(events) < n:
        trace = f"{rnd.getrandbits(128):032x}"
        run_span = f"{rnd.getrandbits(64):016x}"
        run_start = t
        add(EventKind.RUN_START, "support_qa", trace, run_span, attributes={"input_keys": ["messages"]})
        for step, node in enumerate(rnd.sample(NODES, k=rnd.randint(3, 5))):
            span = f"{rnd.getrandbits(64):016x}"
            duration = rnd.lognormvariate(3.5, 0.7)
            common = dict(parent_span_id=run_span, node=node)
            add(EventKind.NODE_START, node, trace, span, attributes={"langgraph_step": step + 1, "langgraph_triggers": [f"branch:to:{node}"]}, **common)
            t += duration / 1000
            add(EventKind.MESSAGE, "gen_ai.assistant.message", trace, span, attributes={"role": "assistant", "content": f"step {step} of the answer, {rnd.randint(0, 10**6)} tokens later"}, **common)
            if node in ("answer", "check"):
                add(EventKind.LLM_USAGE, "ChatOpenAI", trace, span, input_tokens=rnd.randint(200, 2000), output_tokens=rnd.randint(20, 400),
                    attributes={"gen_ai.request.model": "gpt-4o-mini", "gen_ai.operation.name": "chat"}, **common)
            failed = rnd.random() < 0.02
            add(EventKind.NODE_ERROR if failed else EventKind.NODE_END, node, trace, span, duration_ms=duration,
                status="error" if failed else "ok", attributes={"error.type": "TimeoutError"} if failed else {}, **common)
        add(EventKind.RUN_END, "support_qa", trace, run_span, duration_ms=(t - run_start) * 1000, status="ok")
        t += rnd.expovariate(1 / 0.02)
    return events[:n]


def reset_store(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("TRUNCATE graphtune_events, graphtune_node_rollup")
        conn.execute("CHECKPOINT")


def reset_raw(url: str) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP TABLE IF EXISTS raw_events")
        conn.execute("CREATE TABLE raw_events (LIKE graphtune_events)")  # same columns and types, no indexes or keys
        conn.execute("CHECKPOINT")


def time_store(store, events) -> float:
    start = time.perf_counter()
    for i in range(0, len(events), BATCH):
        store.write(events[i:i + BATCH])
    return len(events) / (time.perf_counter() - start)


def time_copy(conn, rows, batch: int) -> float:
    from graphtune.backends.sql_schema import COLUMN_LIST

    start = time.perf_counter()
    for i in range(0, len(rows), batch):
        with conn.transaction(), conn.cursor() as cur, cur.copy(f"COPY raw_events ({COLUMN_LIST}) FROM STDIN") as copy:
            for row in rows[i:i + batch]:
                copy.write_row(row)
    return len(rows) / (time.perf_counter() - start)


def time_jsonl(directory: str, events) -> float:
    from graphtune.backends.jsonl import JsonlTraceStore

    store = JsonlTraceStore(f"jsonl:///{directory}")
    start = time.perf_counter()
    for i in range(0, len(events), BATCH):
        store.write(events[i:i + BATCH])
    rate = len(events) / (time.perf_counter() - start)
    store.close()
    return rate


# -- burst memory ------------------------------------------------------------------------------
def measure_burst_rss(url: str, events: int = 1_000_000) -> dict:
    """Peak RSS of a fresh process pushing ``events`` events through EventPipeline into the store."""
    proc = subprocess.run(
        [sys.executable, os.path.abspath(__file__), "--burst-child", url, "--burst-events", str(events)],
        capture_output=True, text=True, timeout=900,
    )
    if proc.returncode != 0:
        return {"peak_rss_mb": None, "peak_rss_note": f"burst subprocess failed: {proc.stderr.strip()[-500:]}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def burst_child(url: str, n: int) -> None:
    """Runs in the subprocess: events are made on the fly, so only what the pipeline holds stays alive."""
    try:
        from graphtune.tracing.pipeline import EventPipeline
    except ImportError as exc:
        print(json.dumps({"peak_rss_mb": None, "peak_rss_note": f"graphtune.tracing.pipeline unavailable: {exc}"}))
        return
    from graphtune.backends.postgres import PostgresTraceStore
    from graphtune.tracing.events import EventKind, TrajectoryEvent

    store = PostgresTraceStore(url)
    pipeline = EventPipeline(store, spill_dir=tempfile.mkdtemp(prefix="graphtune-bench-spill-"))
    baseline = current_rss_mb()  # imports, store and pipeline, before the burst
    rnd = random.Random(7)
    start = time.perf_counter()
    trace = ""
    for i in range(n):
        if i % 20 == 0:
            trace = f"{rnd.getrandbits(128):032x}"
        node = NODES[i % len(NODES)]
        pipeline.submit_event(TrajectoryEvent(
            kind=EventKind.NODE_END, time=T0 + i * 0.001, trace_id=trace, span_id=f"{i:016x}", name=node, node=node,
            workflow="support_qa", duration_ms=rnd.lognormvariate(3.5, 0.7), status="ok",
            attributes={"langgraph_step": i % 7, "content": "a short answer"},
        ))
    submitted = time.perf_counter() - start
    pipeline.flush(timeout=600)
    stats = pipeline.stats()
    pipeline.close()
    store.close()
    print(json.dumps({
        "peak_rss_mb": round(peak_rss_mb(), 1), "baseline_rss_mb": round(baseline, 1), "burst_events": n,
        "burst_submit_seconds": round(submitted, 2), "burst_seconds": round(time.perf_counter() - start, 2),
        "burst_written": stats["written"], "burst_dropped": stats["dropped"], "pipeline_max_queue": pipeline.max_queue,
    }))


def main() -> None:
    args = parse_args(
        __doc__.splitlines()[0],
        events=(int, 200_000, "events per variant and round"),
        rounds=(int, 5, "interleaved rounds"),
        burst_events=(int, 1_000_000, "events pushed through the pipeline for peak_rss_mb (0 skips it)"),
        burst_child=(str, None, "internal: run the burst in this process against this URL"),
    )
    if args.burst_child:
        burst_child(args.burst_child, args.burst_events)
        return

    from graphtune.backends.postgres import PostgresTraceStore
    from graphtune.backends.sql_schema import event_to_row
    import psycopg

    rates: dict[str, list[float]] = {"store": [], "copy": [], "copy_single": [], "jsonl": []}
    with postgres_server() as server:
        burst = {"peak_rss_mb": None, "peak_rss_note": "skipped (--burst-events 0)"}
        if args.burst_events:
            log(f"burst: {args.burst_events:,} events through EventPipeline in a subprocess ...")
            with fresh_database(server) as burst_url:
                burst = measure_burst_rss(burst_url, args.burst_events)
        log(f"building {args.events:,} events ...")
        events = build_events(args.events)
        rows = [event_to_row(e) for e in events]
        with fresh_database(server) as url, tempfile.TemporaryDirectory() as tmp:
            store = PostgresTraceStore(url)
            with psycopg.connect(url, autocommit=True) as conn:
                for r in range(-1, args.rounds):  # round -1 warms up the server and is not counted
                    order = ["store", "copy", "copy_single", "jsonl"]
                    if r % 2:
                        order.reverse()
                    for variant in order:
                        if variant == "store":
                            reset_store(url)
                            rates["store"].append(time_store(store, events))
                        elif variant == "copy":
                            reset_raw(url)
                            rates["copy"].append(time_copy(conn, rows, BATCH))
                        elif variant == "copy_single":
                            reset_raw(url)
                            rates["copy_single"].append(time_copy(conn, rows, len(rows)))
                        else:
                            rates["jsonl"].append(time_jsonl(os.path.join(tmp, f"round{r}"), events))
                    log(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:,.0f}/s" for k, v in rates.items()))
                    if r < 0:
                        rates = {k: [] for k in rates}
            store.close()

    result = {
        "postgres_events_per_s": round(median(rates["store"])),
        "raw_copy_rows_per_s": round(median(rates["copy"])),
        "ratio_vs_copy": round(paired_ratio(rates["store"], rates["copy"]), 3),
        "jsonl_events_per_s": round(median(rates["jsonl"])),
        **burst,
        "raw_copy_single_rows_per_s": round(median(rates["copy_single"])),
        "ratio_vs_single_copy": round(paired_ratio(rates["store"], rates["copy_single"]), 3),
        "events": args.events,
        "rounds": args.rounds,
        "batch": BATCH,
    }
    emit(result, args.json, "ingest (events/s; medians of interleaved rounds)")


if __name__ == "__main__":
    main()
