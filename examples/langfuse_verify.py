"""Send one sanity trace to Langfuse through graphtune's exporter, then read it back.

    export LANGFUSE_BASE_URL=http://localhost:3000 LANGFUSE_PUBLIC_KEY=pk-lf-... LANGFUSE_SECRET_KEY=sk-lf-...
    python examples/langfuse_verify.py [--no-read-back] [--timeout 60]

The trace is a two-node LangGraph run recorded by graphtune's recorder and exported over OTLP,
tagged the way every graphtune run is (``env:``, ``service:``, ``workflow:graphtune_verify``,
``variant:verify``, ``source:demo``), with a hashed user and the thread id as session. The script
then polls ``langfuse+...://`` (the v2 observations API) until the run's observations arrive.
Exit status 0 means Langfuse accepted and stored the trace; the output names what failed otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from typing import TypedDict

from langgraph.graph import END, START, StateGraph

from graphtune.backends.otlp_exporter import exporter_from_env, otlp_settings_from_env
from graphtune.backends.traces import EventQuery, open_trace_store
from graphtune.tracing.events import EventKind
from graphtune.tracing.recorder import TrajectoryRecorder, run_tags

WORKFLOW = "graphtune_verify"


class State(TypedDict, total=False):
    question: str
    answer: str


def build_graph():
    graph = StateGraph(State)
    graph.add_node("retrieve", lambda state: {"answer": f"notes about {state['question']}"})
    graph.add_node("generate", lambda state: {"answer": state["answer"].upper()})
    graph.add_edge(START, "retrieve")
    graph.add_edge("retrieve", "generate")
    graph.add_edge("generate", END)
    return graph.compile()


def source_url() -> str:
    base = os.environ.get("LANGFUSE_BASE_URL") or os.environ.get("LANGFUSE_HOST") or "https://cloud.langfuse.com"
    scheme, _, rest = base.partition("://")
    return f"langfuse+http://{rest}" if scheme == "http" else f"langfuse://{rest}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-read-back", action="store_true", help="only send; do not poll the observations API")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the trace to be readable")
    args = parser.parse_args()

    settings = otlp_settings_from_env()
    if settings is None or not settings.langfuse:
        print("Langfuse export is off: set LANGFUSE_PUBLIC_KEY, LANGFUSE_SECRET_KEY and LANGFUSE_BASE_URL", file=sys.stderr)
        return 2
    print(f"exporting to {settings.endpoint}")
    exporter = exporter_from_env()
    tmp = tempfile.mkdtemp(prefix="graphtune-verify-")
    recorder = TrajectoryRecorder(f"jsonl:///{tmp}/traces", spill_dir=f"{tmp}/spill", exporter=exporter)
    run_id = uuid.uuid4()
    thread = f"verify-{run_id.hex[:8]}"
    build_graph().invoke({"question": "graphtune"}, config={
        "callbacks": [recorder], "run_id": run_id, "configurable": {"thread_id": thread},
        "metadata": run_tags(WORKFLOW, config_version=1, variant="verify", source="demo", user_id="verify-user"),
    })
    recorder.flush()
    exporter.flush(60)
    stats = exporter.stats()
    print(f"trace {run_id.hex}: {stats['sent_spans']} spans sent, {stats['dropped_spans']} dropped, {stats['retries']} retries")
    if stats["sent_spans"] < 3:
        print("Langfuse did not accept the spans: check the keys, the URL and the server logs", file=sys.stderr)
        return 1
    if args.no_read_back:
        return 0

    deadline = time.monotonic() + args.timeout
    while True:
        with open_trace_store(source_url()) as store:  # a fresh source per poll: reads are cached per instance
            events = store.read(EventQuery(trace_id=run_id.hex))
        nodes = sorted(e.name for e in events if e.kind is EventKind.NODE_END)
        runs = [e for e in events if e.kind is EventKind.RUN_END]
        if runs and nodes == ["generate", "retrieve"]:
            run = runs[0]
            print(f"read back: workflow={run.workflow} variant={run.variant} source={run.source} "
                  f"session={run.thread_id} nodes={nodes} run {run.duration_ms:.1f} ms")
            return 0
        if time.monotonic() > deadline:
            print(f"the trace was sent but is not readable after {args.timeout:.0f} s "
                  f"(found {len(events)} events); check the worker's logs", file=sys.stderr)
            return 1
        time.sleep(2)

if __name__ == "__main__":
    sys.exit(main())
