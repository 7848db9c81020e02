"""``graphtune demo``: record simulated production traffic, then observe it.

Runs offline in seconds: the example help-desk workflow serves simulated users, every run is
recorded, users leave feedback, and the demo shows the per-node statistics (the hot spot stands
out) and the trace tree of a failed request.
"""

from __future__ import annotations

import random
import time
import uuid

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from graphtune.backends.traces import EventQuery, open_trace_store, traces_url_from_env
from graphtune.graphs.traffic_demo import QUESTIONS, build_traffic_demo
from graphtune.tracing.events import EventKind
from graphtune.tracing.recorder import TrajectoryRecorder, run_tags, trace
from graphtune.tracing.viewer import build_tree, fmt_ms

WORKFLOW = "helpdesk"


def run_demo(requests: int = 60, backend: str | None = None, console: Console | None = None) -> dict:
    console = console or Console()
    url = backend or traces_url_from_env()
    recorder = TrajectoryRecorder(url)
    graph = build_traffic_demo(recorder=recorder)
    rng = random.Random(11)
    started = time.time()

    console.rule("[bold]1. production traffic, recorded")
    traced = trace(graph, workflow=WORKFLOW, recorder=recorder, config_version=1, source="production")
    failed_trace = None
    failures = 0
    for i in range(requests):
        run_id = uuid.uuid4()  # the trace id is the run id: the app knows it for feedback
        user = f"user-{rng.randrange(20)}"
        question = rng.choice(QUESTIONS)
        try:
            result = traced.invoke(
                {"messages": [("user", question)]},
                config={"run_id": run_id, "configurable": {"thread_id": f"demo-{i}"}, "metadata": run_tags(user_id=user)},
            )
            unhappy = "could not" in str(result["messages"][-1].content)
        except TimeoutError:
            failures += 1
            unhappy = True
        if unhappy:
            failed_trace = failed_trace or run_id.hex
        if unhappy or rng.random() < 0.25:  # some users leave feedback; failures draw thumbs down
            recorder.feedback(run_id.hex, thumbs_up=not unhappy, workflow=WORKFLOW, user_id=user)
    recorder.flush()
    stats = recorder.stats()
    console.print(f"{requests} requests served ({failures} failed), {stats['written']} events written to [cyan]{url}[/cyan] "
                  f"({stats['dropped']} dropped, {stats['spilled']} spilled)")

    console.rule("[bold]2. hot spots (production events only)")
    store = open_trace_store(url)
    node_stats = [s for s in store.aggregate(workflow=WORKFLOW, since=started - 1) if s.node != "__run__"]
    table = Table()
    for column in ("node", "count", "error rate", "p50", "p95", "👎 traces"):
        table.add_column(column, justify="left" if column == "node" else "right")
    slowest = max(node_stats, key=lambda s: s.p95_ms or 0)
    for s in sorted(node_stats, key=lambda s: -(s.p95_ms or 0)):
        style = "bold red" if s is slowest else ""
        table.add_row(s.node, str(s.count), f"{s.error_rate:.0%}", fmt_ms(s.p50_ms), fmt_ms(s.p95_ms), str(s.negative_feedback), style=style)
    console.print(table)
    console.print(f"hot spot: [bold red]{slowest.node}[/bold red] (p95 {fmt_ms(slowest.p95_ms)}, "
                  f"{slowest.negative_feedback} disliked traces)")

    if failed_trace:
        console.rule("[bold]3. one disliked request, as recorded")
        events = store.read(EventQuery(trace_id=failed_trace))
        console.print(build_tree(events))
        tool_errors = sum(1 for e in events if e.kind is EventKind.MESSAGE and e.status == "error")
        console.print(f"{len(events)} events; {tool_errors} failed tool result(s)", style="dim")
    store.close()
    recorder.close()
    console.print(Panel.fit(
        "graphtune traces list\n"
        f"graphtune traces stats --workflow {WORKFLOW}\n"
        f"graphtune traces show {failed_trace or '<trace id>'}",
        title="explore further", border_style="dim",
    ))
    return {"requests": requests, "hot_spot": slowest.node, "failed_trace": failed_trace, **stats}
