"""recording_overhead: what graphtune's recorder adds per LangGraph node, beside a do-nothing
callback handler and Langfuse's own LangChain CallbackHandler exporting to a local HTTP sink.
The ``graphtune_otlp`` variant is the recorder with its OTLP/Langfuse exporter on, sending
spans to the same sink from its helper process (the default); ``graphtune_otlp_thread`` sends
from a thread of the measured process (``GRAPHTUNE_OTLP_SENDER=thread``). Their timed regions
also wait for the exporter's flush.

A 20-node graph of no-op nodes runs under each variant, interleaved (none, noop, graphtune,
langfuse, none, ...) in one process. Each timed region ends with a flush() of the handler's
pipeline, so background writing counts. Added cost per node = (median variant - median none) / 20.
Both the async path (``ainvoke``: how the LangGraph server runs graphs) and the sync path are
measured; the ratios in the headline keys are for the async path.

The exporter's cost is a few percent of the recorder's, well inside this machine's wall-clock
noise (two identical recorders differ by up to 10% here). So it is also measured directly: the
CPU time of the exporter's threads in the workflow's process (they share its GIL, so that CPU is
what the workflow loses), per node, from per-thread clocks. ``ratio_otlp_vs_recorder`` is
(recorder + that) / recorder; the wall-clock paired ratio is ``ratio_otlp_vs_recorder_wall``.
The helper process's own CPU (on another core) is ``otlp_sender_process_cpu_us_per_node``.
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


def make_variants(tmp: str, sink_url: str):
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
        "langfuse": ([lf_handler], langfuse.flush),
    }, recorder, exporting


def thread_cpu_s(*threads) -> float:
    """CPU seconds the given threads have used so far (Linux per-thread clocks)."""
    total = 0.0
    for thread in threads:
        if thread is not None and thread.is_alive():
            total += time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return total


def process_cpu_s(pid: int) -> float:
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def export_clocks(recorder):
    """A function giving (CPU of the exporter's threads in this process, CPU of its sender process)."""
    exporter = recorder.pipeline.exporter
    threads = [getattr(exporter, name, None) for name in ("_thread", "_pump", "_reader")]
    proc = getattr(exporter, "_proc", None)
    return lambda: (thread_cpu_s(*threads), process_cpu_s(proc.pid) if proc is not None else 0.0)


def time_sync(graph, callbacks, flush, runs: int) -> float:
    config = {"callbacks": callbacks} if callbacks else None
    start = time.perf_counter()
    for _ in range(runs):
        graph.invoke({"x": 0}, config=config)
    flush()
    return (time.perf_counter() - start) / runs


async def time_async(graph, callbacks, flush, runs: int) -> float:
    config = {"callbacks": callbacks} if callbacks else None
    start = time.perf_counter()
    for _ in range(runs):
        await graph.ainvoke({"x": 0}, config=config)
    flush()
    return (time.perf_counter() - start) / runs


def per_node_us(samples: dict[str, list[float]], variant: str, base: str = "none") -> float:
    return (statistics.median(samples[variant]) - statistics.median(samples[base])) / NODES * 1e6


def paired_ratio(samples, a: str, b: str, base: str = "none") -> float:
    """Median over rounds of (a - base) / (b - base), each round's variants measured back to back."""
    ratios = [
        (sa - sn) / (sb - sn)
        for sa, sb, sn in zip(samples[a], samples[b], samples[base])
        if sb - sn > 0
    ]
    return statistics.median(ratios)


class ExportCpu:
    """Accumulates the exporters' CPU over their variants' timed regions."""

    def __init__(self, clocks: dict):
        self.clocks = clocks
        self.totals = {(mode, name): [0.0, 0.0, 0] for mode in ("sync", "async") for name in clocks}

    def timed(self, mode: str, name: str, measure_once):
        clock = self.clocks.get(name)
        if clock is None:
            return measure_once()
        before = clock()
        result = measure_once()
        after = clock()
        total = self.totals[(mode, name)]
        total[0] += after[0] - before[0]
        total[1] += after[1] - before[1]
        total[2] += 1
        return result

    def us_per_node(self, mode: str, name: str, runs: int, which: int = 0) -> float:
        total = self.totals[(mode, name)]
        return total[which] / (total[2] * runs * NODES) * 1e6


def measure(rounds: int, runs: int) -> dict:
    tmp = tempfile.mkdtemp(prefix="graphtune-bench-")
    sink = start_http_sink()
    try:
        variants, recorder, exporting = make_variants(tmp, sink.url)
        graph = build_graph()
        sync_names = ["none", "noop", "graphtune", "graphtune_otlp", "graphtune_otlp_thread", "langfuse"]
        async_names = ["none", "async_noop", "noop", "graphtune", "graphtune_otlp", "graphtune_otlp_thread", "langfuse"]
        for name in sync_names:  # warm up imports, caches and the langfuse exporter
            time_sync(graph, *variants[name], runs=5)
        sync = {n: [] for n in sync_names}
        asyn = {n: [] for n in async_names}
        cpu = ExportCpu({name: export_clocks(variants[name][0][0]) for name in ("graphtune_otlp", "graphtune_otlp_thread")})
        for _ in range(rounds):
            for name in sync_names:
                sync[name].append(cpu.timed("sync", name, lambda: time_sync(graph, *variants[name], runs=runs)))
        for _ in range(rounds):
            for name in async_names:
                asyn[name].append(cpu.timed("async", name, lambda: asyncio.run(time_async(graph, *variants[name], runs=runs))))
        stats = recorder.stats()
        otlp_stats = exporting["process"].stats()
        recorder.close()
        for exporting_recorder in exporting.values():
            exporting_recorder.close()
            exporting_recorder.pipeline.exporter.close()
    finally:
        sink.stop()
    return {
        "nodes": NODES,
        "rounds": rounds,
        "runs_per_round": runs,
        "us_per_step_langgraph_async": statistics.median(asyn["none"]) / NODES * 1e6,
        "us_per_node_graphtune": per_node_us(asyn, "graphtune"),
        "us_per_node_noop_callback": per_node_us(asyn, "async_noop"),
        "us_per_node_langfuse": per_node_us(asyn, "langfuse"),
        "ratio_vs_noop": paired_ratio(asyn, "graphtune", "async_noop"),
        "ratio_vs_langfuse": paired_ratio(asyn, "graphtune", "langfuse"),
        "async_us_per_node_sync_noop_handler": per_node_us(asyn, "noop"),
        "us_per_step_langgraph_sync": statistics.median(sync["none"]) / NODES * 1e6,
        "sync_us_per_node_graphtune": per_node_us(sync, "graphtune"),
        "sync_us_per_node_noop_callback": per_node_us(sync, "noop"),
        "sync_us_per_node_langfuse": per_node_us(sync, "langfuse"),
        "sync_ratio_vs_noop": paired_ratio(sync, "graphtune", "noop"),
        "sync_ratio_vs_langfuse": paired_ratio(sync, "graphtune", "langfuse"),
        **export_figures("", "async", asyn, cpu, runs),
        **export_figures("sync_", "sync", sync, cpu, runs),
        "graphtune_events_written": stats["written"],
        "graphtune_events_dropped": stats["dropped"],
        "otlp_spans_sent": otlp_stats["export_sent_spans"],
        "otlp_spans_dropped": otlp_stats["export_dropped_spans"] + otlp_stats["export_queue_dropped_events"],
    }


def export_figures(prefix: str, mode: str, samples: dict, cpu: ExportCpu, runs: int) -> dict:
    """Per-node export cost for the sender process (default) and the in-process thread sender."""
    recorder_us = per_node_us(samples, "graphtune")
    figures = {}
    for name, label in (("graphtune_otlp", "otlp"), ("graphtune_otlp_thread", "otlp_thread")):
        in_process = cpu.us_per_node(mode, name, runs)
        figures.update({
            f"{prefix}{label}_export_cpu_us_per_node": in_process,
            f"{prefix}ratio_{label}_vs_recorder": (recorder_us + in_process) / recorder_us,
            f"{prefix}us_per_node_{label}_wall": per_node_us(samples, name),
            f"{prefix}ratio_{label}_vs_recorder_wall": paired_ratio(samples, name, "graphtune"),
        })
        if label == "otlp":
            figures[f"{prefix}otlp_sender_process_cpu_us_per_node"] = cpu.us_per_node(mode, name, runs, which=1)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    result = measure(args.rounds, args.runs)
    if args.json:
        print(json.dumps(result))
    else:
        for key, value in result.items():
            print(f"{key:40s} {value:.3f}" if isinstance(value, float) else f"{key:40s} {value}")


if __name__ == "__main__":
    main()
