"""recording_overhead: what graphtune's recorder adds per LangGraph node, beside a do-nothing
callback handler and Langfuse's own LangChain CallbackHandler exporting to a local HTTP sink.
The ``graphtune_otlp`` variant is the recorder with its OTLP/Langfuse exporter on, sending
spans to the same sink from its sender process (the default); ``graphtune_otlp_thread`` sends
from a thread of the measured process (``GRAPHTUNE_OTLP_SENDER=thread``). ``graphtune_otlp_hanging``
exports (from its sender process) to an endpoint that reads every request and never answers, with
a request timeout longer than the benchmark: ``*otlp_hanging_us_per_node*`` is what a hanging
endpoint adds to a workflow run and its store write (its regions flush the recorder only; the
export never finishes).

A 20-node graph of no-op nodes runs under each variant. Each figure compares two variants in
alternating pairs of short timed regions (A B, B A, A B, ...; each region ends with a flush() of
the handler's pipeline, so background work counts) and takes the median of the per-pair
differences. The cost is the CPU time of the whole measured process (every thread: the graph,
graphtune's writer and exporter threads, Langfuse's threads), per node. Why not wall time: on
these machines the CPU's speed flips between two states (up to 1.8x apart) for seconds at a time,
and a flush() waits for threads to wake and for HTTP replies, idle time that no workflow waits
for. Adjacent pairs see the same speed; CPU time leaves the idle waits out. Wall-clock figures of
the same pairs are reported as ``*_wall``.

Both the async path (``ainvoke``: how the LangGraph server runs graphs) and the sync path are
measured; keys without the ``sync_`` prefix are for the async path.

The exporter's share is a few µs per node, below what paired differences resolve on the async
path (±6 µs between repeats). So ``*_export_us_per_node`` is read from the exporter's own threads'
CPU clocks (they share the workflow's GIL, so their CPU is what the workflow loses), and the
paired difference is reported beside it as ``*_export_us_per_node_paired`` (on the sync path the
two agree within 1 µs). The sender process's own CPU (another process, on another core) is
``otlp_sender_process_cpu_us_per_node``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import json
import sys
import tempfile
import time
from typing import TypedDict

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _sink import start_http_sink  # noqa: E402

NODES = 20


class State(TypedDict):
    x: int


def build_graph():
    from langgraph.graph import END, START, StateGraph

    graph = StateGraph(State)
    previous = START
    for i in range(NODES):
        graph.add_node(f"n{i}", lambda s: {"x": s["x"] + 1})
        graph.add_edge(previous, f"n{i}")
        previous = f"n{i}"
    graph.add_edge(previous, END)
    return graph.compile()


def make_variants(tmp: str, sink_url: str, hanging_url: str):
    from langchain_core.callbacks import AsyncCallbackHandler, BaseCallbackHandler
    from langfuse import Langfuse
    from langfuse.langchain import CallbackHandler

    from graphtune.backends.otlp_exporter import OtlpSettings, open_exporter
    from graphtune.tracing.recorder import TrajectoryRecorder

    class NoopHandler(BaseCallbackHandler):
        """Does nothing; LangChain still builds run trees and calls it."""

    class AsyncNoopHandler(AsyncCallbackHandler):
        """The do-nothing handler for async code (a sync one would be sent to a thread executor)."""

    recorder = TrajectoryRecorder(f"jsonl:///{tmp}/traces", spill_dir=f"{tmp}/spill", exporter=None)
    settings = OtlpSettings(
        endpoint=f"{sink_url}/api/public/otel/v1/traces", langfuse=True,
        headers={"Authorization": "Basic cGstbGYtYmVuY2g6c2stbGYtYmVuY2g=", "x-langfuse-ingestion-version": "4"},
    )
    exporting = {  # the default (a sender process) and GRAPHTUNE_OTLP_SENDER=thread
        sender: TrajectoryRecorder(f"jsonl:///{tmp}/traces-otlp-{sender}", spill_dir=f"{tmp}/spill",
                                   exporter=open_exporter(settings.model_copy(update={"sender": sender})))
        for sender in ("process", "thread")
    }
    exporting["hanging"] = TrajectoryRecorder(
        f"jsonl:///{tmp}/traces-otlp-hanging", spill_dir=f"{tmp}/spill",
        exporter=open_exporter(settings.model_copy(update={"endpoint": f"{hanging_url}/api/public/otel/v1/traces",
                                                           "timeout_s": 3600.0})))

    def flusher(recorder):
        def flush():
            recorder.flush()
            recorder.pipeline.exporter.flush()
        return flush
    langfuse = Langfuse(public_key="pk-lf-bench", secret_key="sk-lf-bench", base_url=sink_url, flush_interval=5)
    lf_handler = CallbackHandler()
    return {
        "none": ([], lambda: None),
        "noop": ([NoopHandler()], lambda: None),
        "async_noop": ([AsyncNoopHandler()], lambda: None),
        "graphtune": ([recorder], recorder.flush),
        "graphtune_otlp": ([exporting["process"]], flusher(exporting["process"])),
        "graphtune_otlp_thread": ([exporting["thread"]], flusher(exporting["thread"])),
        "graphtune_otlp_hanging": ([exporting["hanging"]], exporting["hanging"].flush),
        "langfuse": ([lf_handler], langfuse.flush),
    }, recorder, exporting


def process_cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def thread_cpu_s(threads) -> float:
    """CPU seconds the given threads have used so far (Linux per-thread clocks)."""
    return sum(time.clock_gettime(time.pthread_getcpuclockid(t.ident)) for t in threads if t is not None and t.is_alive())


def export_clock(variant):
    """CPU seconds used so far by the variant's exporter: (its threads in this process, its sender process)."""
    callbacks = variant[0]
    exporter = getattr(getattr(callbacks[0], "pipeline", None), "exporter", None) if callbacks else None
    threads = [getattr(exporter, name, None) for name in ("_thread", "_pump", "_reader")]
    proc = getattr(exporter, "_proc", None)
    return lambda: (thread_cpu_s(threads), process_cpu_s(proc.pid) if proc is not None else 0.0)


def run_sync(graph, callbacks, flush, runs: int) -> None:
    config = {"callbacks": callbacks} if callbacks else None
    for _ in range(runs):
        graph.invoke({"x": 0}, config=config)
    flush()


async def run_async(graph, callbacks, flush, runs: int) -> None:
    config = {"callbacks": callbacks} if callbacks else None
    for _ in range(runs):
        await graph.ainvoke({"x": 0}, config=config)
    flush()


def timed(mode: str, graph, variant, runs: int) -> tuple[float, ...]:
    """Per run, for one region of ``runs`` runs: process CPU s, wall s, the exporter's threads' CPU s
    and its sender process's CPU s."""
    export = export_clock(variant)
    cpu, wall, (threads, sender) = time.process_time(), time.perf_counter(), export()
    if mode == "sync":
        run_sync(graph, *variant, runs=runs)
    else:
        asyncio.run(run_async(graph, *variant, runs=runs))
    cpu, wall, (threads_end, sender_end) = time.process_time() - cpu, time.perf_counter() - wall, export()
    return cpu / runs, wall / runs, (threads_end - threads) / runs, (sender_end - sender) / runs


def compare(mode: str, graph, variants, a: str, b: str, pairs: int, runs: int) -> dict[str, float]:
    """Median per-node difference b - a (µs) over alternating pairs, in CPU and in wall time; and
    b's exporter CPU per node (its threads here, its sender process)."""
    cpu, wall, threads, sender = [], [], [], []
    for i in range(pairs):
        order = (a, b) if i % 2 == 0 else (b, a)
        got = {name: timed(mode, graph, variants[name], runs) for name in order}
        cpu.append(got[b][0] - got[a][0])
        wall.append(got[b][1] - got[a][1])
        threads.append(got[b][2])
        sender.append(got[b][3])
    per_node = 1e6 / NODES
    return {"cpu": statistics.median(cpu) * per_node, "wall": statistics.median(wall) * per_node,
            "threads": statistics.mean(threads) * per_node, "sender": statistics.mean(sender) * per_node}


def measure_mode(mode: str, graph, variants, pairs: int, runs: int) -> dict:
    prefix = "sync_" if mode == "sync" else ""
    noop = "noop" if mode == "sync" else "async_noop"
    recorder = compare(mode, graph, variants, "none", "graphtune", pairs, runs)
    handler = compare(mode, graph, variants, "none", noop, pairs, runs)
    langfuse = compare(mode, graph, variants, "none", "langfuse", max(6, pairs // 4), runs)
    figures = {
        f"{prefix}us_per_node_graphtune": recorder["cpu"],
        f"{prefix}us_per_node_noop_callback": handler["cpu"],
        f"{prefix}us_per_node_langfuse": langfuse["cpu"],
        f"{prefix}ratio_vs_noop": recorder["cpu"] / handler["cpu"],
        f"{prefix}ratio_vs_langfuse": recorder["cpu"] / langfuse["cpu"],
        f"{prefix}us_per_node_graphtune_wall": recorder["wall"],
        f"{prefix}us_per_node_noop_callback_wall": handler["wall"],
        f"{prefix}us_per_node_langfuse_wall": langfuse["wall"],
    }
    for name, label in (("graphtune_otlp", "otlp"), ("graphtune_otlp_thread", "otlp_thread")):
        export = compare(mode, graph, variants, "graphtune", name, pairs, runs)
        figures.update({
            f"{prefix}{label}_export_us_per_node": export["threads"],
            f"{prefix}us_per_node_{label}": recorder["cpu"] + export["threads"],
            f"{prefix}ratio_{label}_vs_recorder": (recorder["cpu"] + export["threads"]) / recorder["cpu"],
            f"{prefix}{label}_export_us_per_node_paired": export["cpu"],
            f"{prefix}{label}_export_us_per_node_wall": export["wall"],
        })
        if label == "otlp":
            figures[f"{prefix}otlp_sender_process_cpu_us_per_node"] = export["sender"]
    hanging = compare(mode, graph, variants, "graphtune", "graphtune_otlp_hanging", pairs, runs)
    figures.update({f"{prefix}otlp_hanging_us_per_node": hanging["cpu"],
                    f"{prefix}otlp_hanging_us_per_node_wall": hanging["wall"]})
    return figures


def measure(pairs: int, runs: int) -> dict:
    tmp = tempfile.mkdtemp(prefix="graphtune-bench-")
    sink, hanging_sink = start_http_sink(), start_http_sink(hang=True)
    try:
        variants, recorder, exporting = make_variants(tmp, sink.url, hanging_sink.url)
        graph = build_graph()
        for name in variants:  # warm up imports, caches, the langfuse exporter and the sender processes
            timed("sync", graph, variants[name], runs=5)
            timed("async", graph, variants[name], runs=5)
        sync = measure_mode("sync", graph, variants, pairs, runs)
        asyn = measure_mode("async", graph, variants, pairs, runs)
        none_sync = statistics.median(timed("sync", graph, variants["none"], runs)[1] for _ in range(5))
        none_async = statistics.median(timed("async", graph, variants["none"], runs)[1] for _ in range(5))
        stats = recorder.stats()
        otlp_stats = exporting["process"].stats()
        recorder.close()
        for name, exporting_recorder in exporting.items():
            exporting_recorder.close()
            exporting_recorder.pipeline.exporter.close(timeout=1.0 if name == "hanging" else 10.0)
    finally:
        sink.stop()
        hanging_sink.stop()
    return {
        "nodes": NODES,
        "pairs": pairs,
        "runs_per_region": runs,
        "us_per_step_langgraph_async": none_async / NODES * 1e6,
        "us_per_step_langgraph_sync": none_sync / NODES * 1e6,
        **asyn,
        **sync,
        "graphtune_events_written": stats["written"],
        "graphtune_events_dropped": stats["dropped"],
        "otlp_spans_sent": otlp_stats["export_sent_spans"],
        "otlp_spans_dropped": otlp_stats["export_dropped_spans"] + otlp_stats["export_queue_dropped_events"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--pairs", type=int, default=40)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    result = measure(args.pairs, args.runs)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:40s} {value:.3f}" if isinstance(value, float) else f"{key:40s} {value}")


if __name__ == "__main__":
    main()
