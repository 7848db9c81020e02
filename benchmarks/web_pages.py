"""web_pages: load time of each web-view page on a SQLite database holding 1M trace events.

The database (cached under .graphtune/bench/, filled once) holds a week of production runs of one
workflow (20 nodes, ~8 events per run, 2% node errors, three config versions, some eval runs) and one
real tuning thread of the ticket_triage benchmark workflow, parked at approval by the real
controller. Every page is requested in this process through the Starlette app ``graphtune ui``
serves (rendering and charts included, no network), several times, interleaved page by page; the
figure is the median per page. The target: every page under 1 s on 2 cores.
"""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, log, median, parse_args  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
CACHE = os.path.join(".graphtune", "bench", "web_pages.db")
WORKFLOW = "support_qa"
NODES = tuple(f"node_{i:02d}" for i in range(20))
DAYS = 7
SPEC = os.path.join(HERE, "workflows", "ticket_triage", "graphtune.yaml")


def fill(url: str, n: int, seed: int = 5) -> None:
    """About ``n`` events over the last ``DAYS`` days, written in batches through the store."""
    from graphtune.backends.traces import open_trace_store
    from graphtune.tracing.events import EventKind, TrajectoryEvent

    rnd = random.Random(seed)
    now = time.time()
    runs = n // 8
    batch: list = []
    with open_trace_store(url) as store:
        for r in range(runs):
            t = now - DAYS * 86400 * (1 - r / runs)
            trace = f"{rnd.getrandbits(128):032x}"
            source = "eval" if r % 20 == 0 else "production"
            version = 1 + (r * 3) // runs
            start, failed_run = t, False
            common = dict(trace_id=trace, workflow=WORKFLOW, source=source, config_version=version)
            batch.append(TrajectoryEvent(kind=EventKind.RUN_START, time=t, span_id=f"{rnd.getrandbits(64):016x}",
                                         name=WORKFLOW, **common))
            for node in rnd.sample(NODES, k=6):
                duration = rnd.lognormvariate(0, 0.6) * 5.0 * (1.2 ** NODES.index(node))
                t += duration / 1000
                failed = rnd.random() < 0.02
                failed_run |= failed
                batch.append(TrajectoryEvent(kind=EventKind.NODE_ERROR if failed else EventKind.NODE_END, time=t,
                                             span_id=f"{rnd.getrandbits(64):016x}", name=node, node=node,
                                             duration_ms=duration, status="error" if failed else "ok", **common))
            batch.append(TrajectoryEvent(kind=EventKind.RUN_END, time=t, span_id=f"{rnd.getrandbits(64):016x}",
                                         name=WORKFLOW, duration_ms=(t - start) * 1000,
                                         status="error" if failed_run else "ok", **common))
            if len(batch) >= 5000:
                store.write(batch)
                batch = []
        if batch:
            store.write(batch)


def events_in(path: str) -> int:
    with sqlite3.connect(path) as conn:
        try:
            return conn.execute("SELECT count(*) FROM graphtune_events").fetchone()[0]
        except sqlite3.OperationalError:
            return 0


def park_thread(url: str) -> str | None:
    """A real tuning thread parked at approval (the approval page's subject), made once per cache."""
    from graphtune.graphs.context import ControllerContext
    from graphtune.graphs.local_controller import LocalController

    controller = LocalController(context=ControllerContext(database_url=url, traces_url=url, batch_size=2, seed=0,
                                                           eval_limit=40))
    waiting = asyncio.run(controller.pending())
    if waiting:
        return waiting[0].thread_id
    result = asyncio.run(controller.start("improve ticket_triage accuracy; at most 2 rounds", spec=SPEC))
    return result.thread_id if result.pending else None


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], events=(int, 1_000_000, "events in the database"),
                      repeats=(int, 5, "loads per page"))
    os.makedirs(os.path.dirname(CACHE), exist_ok=True)
    url = f"sqlite:///{os.path.abspath(CACHE)}"
    os.environ["GRAPHTUNE_DATABASE_URL"] = url
    os.environ.pop("GRAPHTUNE_TRACES_URL", None)
    os.environ.pop("GRAPHTUNE_MODEL", None)
    if events_in(CACHE) < args.events:
        if os.path.exists(CACHE):
            os.remove(CACHE)
        log(f"filling {CACHE} with {args.events:,} events (once; cached)")
        fill(url, args.events)
    thread = park_thread(url)
    events = events_in(CACHE)

    from starlette.testclient import TestClient

    from graphtune.graphs.access import AccessPolicy
    from graphtune.web.local import create_local_app

    client = TestClient(create_local_app(url, AccessPolicy("off", source="benchmark")))
    first_trace = client.get("/graphtune/traces?limit=1").text.split("/graphtune/traces/")[1].split('"')[0]
    pages = {
        "approvals": "/graphtune/approvals",
        "approval_page": f"/graphtune/threads/{thread}" if thread else None,
        "hotspots_1h": f"/graphtune/hotspots?workflow={WORKFLOW}&window=1h",
        "hotspots_24h": f"/graphtune/hotspots?workflow={WORKFLOW}&window=24h",
        "traces": "/graphtune/traces",
        "history_all": "/graphtune/history",
        "traces_filtered": "/graphtune/traces?workflow=support_qa&version=2&source=production&errors=1&since_hours=100",
        "trace": f"/graphtune/traces/{first_trace}",
    }
    pages = {k: v for k, v in pages.items() if v}
    timings: dict[str, list[float]] = {name: [] for name in pages}
    for _ in range(args.repeats):
        for name, path in pages.items():
            started = time.perf_counter()
            response = client.get(path)
            timings[name].append((time.perf_counter() - started) * 1000)
            assert response.status_code == 200, (path, response.status_code, response.text[:500])
    pages_ms = {name: round(median(values), 1) for name, values in timings.items()}
    result = {"events": events, "pages_ms": pages_ms, "max_ms": max(pages_ms.values()),
              "under_1s": all(v < 1000 for v in pages_ms.values()), "cpus": os.cpu_count(),
              "approval_thread": bool(thread)}
    emit(result, args.json, "web_pages: page load times (ms, median) on a database of 1M events")


if __name__ == "__main__":
    main()
