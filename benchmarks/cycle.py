"""cycle: one full tuning cycle on support_qa, from the chat request to the approval interrupt, with the real ChatOpenAI.

Every model call goes over HTTP to a local OpenAI-compatible test server that waits ``--latency``
seconds per call: the controller's own calls (intake reads the request, propose asks for a
ProposalSet; both structured output) and the workflow's calls (answer, summary, rewrite) for the
baseline and every candidate, early-stopped ones included. The controller runs as the CLI runs it
(``LocalController.start``: SQLite checkpointer, recording on, a fresh database per cycle) with one
concurrency limit shared by all parallel evaluations.

ideal_seconds = model calls actually made x latency / concurrency: what the cycle would take if
nothing but the model cost time and the shared limit were always full. ratio = seconds / ideal.
The figure is the median of ``--runs`` cycles after one small warm-up cycle, in one event loop.

The server runs in its own process by default (``--server process``), so its request threads do
not compete with the controller for this process's GIL; ``--server thread`` runs it in-process.

Where the time goes: ``phase_seconds`` (intake, observe, propose, evaluate, decide_report, and
approval = the interrupt, reading the parked state back and flushing the recorder),
``example_latency_ms_p50`` per config (one model call takes ``--latency``; the rest is this
process), and ``cpu_seconds_by_thread`` (event loop, recorder writer, executor threads). The
controller's process is close to CPU-bound at 16 x 200 ms, so the ratio moves with machine load.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, log, median  # noqa: E402

WORKFLOW = "support_qa"

# What the "model" proposes, best guess first; the propose prompt asks for n, the reply holds the first n.
# The default four show every path a candidate can take in one round: a winner within the request's
# guardrails (top_k 3: more context, more input tokens, which the request allows), a two-call config
# that breaks the latency guardrail (rewrite), a small gain (rerank) and a clear loser stopped early
# (max_tokens 24 cuts answers short). All lie inside support_qa's search space.
PROPOSALS = [
    ({"rag.top_k": 3}, "Two-article questions miss one article at top_k 2; three give the answer both."),
    ({"rag.rewrite": True}, "Rewrite paraphrased questions into help-center vocabulary before retrieval."),
    ({"rag.rerank": True}, "Rerank the retrieved articles so the best match comes first in the context."),
    ({"llm.max_tokens": 24}, "Shorter answers cut output tokens and cost."),
    ({"router.summary_keywords": ["summarize", "overview", "summary", "recap"]}, "Route more summary requests to the summary node."),
    ({"router.threshold": 0.7}, "Accept stem matches of the summary keywords."),
    ({"rag.top_k": 1}, "One article is enough for most direct questions and halves the prompt."),
    ({"llm.temperature": 0.0}, "Deterministic answers stick to the article text."),
    ({"nodes.summary.enabled": False}, "Answer summary requests with the answer node as well."),
    ({"llm.max_tokens": 256}, "Answers never need 512 tokens."),
]
# The request, as a person would type it; the cost allowance lets the winner (more context) through.
REQUEST = "improve {workflow} accuracy; cost may rise up to 50%; try {candidates} candidates, at most 1 round"


# -- the model behind the test server ------------------------------------------------------------------
def make_responder():
    """Answers like a model: structured output for the controller, extractive answers for the workflow."""
    from langchain_core.messages import HumanMessage, SystemMessage

    from graphtune.graphs.support_qa.knowledge import count_tokens, expand_query, synonyms
    from graphtune.graphs.support_qa.offline_model import ExtractiveChatModel
    from graphtune.testing.openai_server import Reply

    synonyms()  # load once, before requests arrive on many threads

    def texts(request: dict) -> tuple[str, str]:
        system = [m.get("content") or "" for m in request["messages"] if m.get("role") in ("system", "developer")]
        users = [m.get("content") or "" for m in request["messages"] if m.get("role") == "user"]
        text = lambda c: c if isinstance(c, str) else " ".join(p.get("text", "") for p in c if isinstance(p, dict))  # noqa: E731
        return "\n".join(map(text, system)), text(users[-1]) if users else ""

    def structured(name: str, system: str, user: str) -> dict:
        if name == "RequestDraft":
            wanted = re.search(r"(\d+)\s+candidates?", user)
            rounds = re.search(r"(\d+)\s+rounds?", user)
            cost = re.search(r"cost may rise (?:up to |by )?(\d+)\s*%", user)
            guardrails = [{"metric": "cost_usd", "statistic": "mean", "max_ratio": 1 + int(cost.group(1)) / 100}] if cost else []
            return {"workflow": WORKFLOW, "metric": "contains", "direction": "maximize", "guardrails": guardrails,
                    "candidates": int(wanted.group(1)) if wanted else None,
                    "rounds": int(rounds.group(1)) if rounds else None,
                    "notes": ["'accuracy' read as the objective, contains"]}
        if name == "ProposalSet":
            prompt = f"{system}\n{user}"
            n = int(m.group(1)) if (m := re.search(r"Propose (\d+) new candidate", prompt)) else 4
            return {"candidates": [{"mutations": [{"path": p, "value": v} for p, v in changes.items()], "rationale": why}
                                   for changes, why in PROPOSALS[:n]]}
        raise ValueError(f"no scripted answer for structured output {name!r}")

    def responder(request: dict) -> Reply:
        system, user = texts(request)
        response_format = request.get("response_format") or {}
        if response_format.get("type") == "json_schema":
            answer = structured(response_format["json_schema"]["name"], system, user)
            return Reply(json=answer, prompt_tokens=count_tokens(system + user), completion_tokens=count_tokens(json.dumps(answer)))
        if system.startswith("Rewrite"):
            extra = expand_query(user)[len(user):].strip() or user
            return Reply(content=extra, prompt_tokens=count_tokens(system + user), completion_tokens=count_tokens(extra))
        mode = "summary" if system.startswith("Summar") else "answer"
        max_tokens = request.get("max_completion_tokens") or request.get("max_tokens") or 512
        # The offline answerer's extraction (best-matching context sentences, cut at max_tokens), without its sleep.
        message, _ = ExtractiveChatModel(mode=mode, max_tokens=max_tokens)._respond([SystemMessage(system), HumanMessage(user)])
        usage = message.usage_metadata
        return Reply(content=str(message.content), prompt_tokens=usage["input_tokens"], completion_tokens=usage["output_tokens"])

    return responder


def call_kind(request: dict) -> str:
    response_format = request.get("response_format") or {}
    if response_format.get("type") == "json_schema":
        return {"RequestDraft": "intake", "ProposalSet": "propose"}.get(response_format["json_schema"]["name"], "structured")
    system = next((m.get("content") for m in request["messages"] if m.get("role") in ("system", "developer")), "") or ""
    return "rewrite" if system.startswith("Rewrite") else "summary" if system.startswith("Summar") else "answer"


def _peak_resettable(server_cls):
    """The test server with per-cycle counters (it only counts since start; this reads its private lock and peak)."""

    class Server(server_cls):
        def stats(self) -> dict:
            with self._lock:
                requests = list(self.requests)
                peak = self._max_in_flight
            return {"calls": len(requests), "max_concurrency": peak, "kinds": dict(Counter(map(call_kind, requests)))}

        def reset(self) -> None:
            with self._lock:
                self.requests.clear()
                self._max_in_flight = self._in_flight

    return Server


def serve(latency: float) -> None:
    """``--serve``: the test server in this process; commands on stdin (stats, reset, quit), answers on stdout."""
    from graphtune.testing.openai_server import OpenAITestServer

    server = _peak_resettable(OpenAITestServer)(make_responder(), latency_s=latency, model="test-model").start()
    print(json.dumps({"base_url": server.base_url}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "stats":
            print(json.dumps(server.stats()), flush=True)
        elif command == "reset":
            server.reset()
            print("{}", flush=True)
        elif command == "quit":
            break
    server.stop()


class ProcessServer:
    def __init__(self, latency: float):
        self._proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", "--latency", str(latency)],
                                      stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self._base_url: str | None = None

    @property
    def base_url(self) -> str:
        """Waits for the server process to listen (it starts while this process imports the controller)."""
        if self._base_url is None:
            self._base_url = self._read()["base_url"]
        return self._base_url

    def _read(self) -> dict:
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the test server process exited ({self._proc.poll()})")
        return json.loads(line)

    def _ask(self, command: str) -> dict:
        self._proc.stdin.write(command + "\n")
        self._proc.stdin.flush()
        return self._read()

    def stats(self) -> dict:
        return self._ask("stats")

    def reset(self) -> None:
        self._ask("reset")

    def close(self) -> None:
        try:
            self._proc.stdin.write("quit\n")
            self._proc.stdin.close()
            self._proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self._proc.kill()


class ThreadServer:
    def __init__(self, latency: float):
        from graphtune.testing.openai_server import OpenAITestServer

        self._server = _peak_resettable(OpenAITestServer)(make_responder(), latency_s=latency, model="test-model").start()
        self.base_url = self._server.base_url

    def stats(self) -> dict:
        return self._server.stats()

    def reset(self) -> None:
        self._server.reset()

    def close(self) -> None:
        self._server.stop()


# -- one cycle ---------------------------------------------------------------------------------------------
@dataclass
class Cycle:
    seconds: float
    cpu_seconds: float
    cpu_by_thread: dict
    calls: int
    kinds: dict
    max_concurrency: int
    phases: dict
    candidates: list[dict] = field(default_factory=list)
    ended_at: str = "approval"
    pending: str | None = None


async def run_cycle(server, tmp: str, index: int, *, candidates: int, examples: int, concurrency: int,
                    batch_size: int, profile: str | None = None) -> Cycle:
    from graphtune.graphs.context import ControllerContext
    from graphtune.graphs.local_controller import LocalController
    from graphtune.tracing.recorder import recorder_for

    url = f"sqlite:///{tmp}/cycle-{index}.db"  # fresh: no cached eval results, no earlier configs
    os.environ["GRAPHTUNE_DATABASE_URL"] = url
    context = ControllerContext(database_url=url, batch_size=batch_size, eval_limit=examples, concurrency=concurrency)
    marks: list[tuple[str, float]] = []
    controller = LocalController(context=context, on_message=lambda node, _m: marks.append((node, time.perf_counter())))
    text = REQUEST.format(workflow=WORKFLOW, candidates=candidates)
    server.reset()
    profiler = None
    if profile:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    threads_before = _thread_cpu()
    started, cpu_started = time.perf_counter(), time.process_time()
    result = await controller.start(text)
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    by_thread = _cpu_by_thread(threads_before, _thread_cpu(), cpu_seconds)
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(profile)
    stats = server.stats()
    recorder_for(url).close()  # flushed already by LocalController; stops this cycle's writer thread

    values = result.values
    if result.pending is None:  # a cycle that finds nothing worth approving ends without the interrupt
        outcome = values.get("outcome") or {}
        log(f"  cycle {index} ended without approval: {outcome.get('status')}: {outcome.get('message')}")
        for comparison in (values.get("decision") or {}).get("comparisons", []):
            broken = [f"{g['guardrail']}: {g['detail']}" for g in comparison["guardrails"] if g.get("passed") is False]
            log(f"    {comparison['candidate_id']}: goal delta {comparison['rows'][0].get('delta')}, "
                f"feasible {comparison['feasible']}{', broke ' + '; '.join(broken) if broken else ''}")
    evals = values.get("evals") or {}
    per_candidate = []
    for record in [values["baseline"], *values.get("candidates", [])]:
        report = evals.get(record["config_hash"]) or {}
        if (report.get("stop_reason") or "").startswith("evaluation failed"):
            raise RuntimeError(f"cycle {index}: {record['id']}: {report['stop_reason']}")
        per_candidate.append({"id": record["id"], "examples": len(report.get("results", [])),
                              "stopped_early": bool(report.get("stopped_early")), "wall_s": round(report.get("wall_s", 0.0), 2),
                              "latency_ms_p50": round(((report.get("summary") or {}).get("latency_ms") or {}).get("p50") or 0.0),
                              "stop_reason": report.get("stop_reason") or ""})
    return Cycle(seconds=seconds, cpu_seconds=cpu_seconds, cpu_by_thread=by_thread, calls=stats["calls"], kinds=stats["kinds"],
                 max_concurrency=stats["max_concurrency"], phases=_phases(marks, started, started + seconds),
                 candidates=per_candidate,
                 ended_at="approval" if result.pending else (values.get("outcome") or {}).get("status", "unknown"),
                 pending=(result.pending or {}).get("candidate_id"))


def _thread_cpu() -> dict[int, float]:
    """CPU seconds of each live thread of this process (Linux /proc; empty elsewhere)."""
    ticks = os.sysconf("SC_CLK_TCK")
    found = {}
    try:
        tids = os.listdir("/proc/self/task")
    except OSError:
        return found
    for tid in tids:
        try:
            with open(f"/proc/self/task/{tid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        found[int(tid)] = (int(fields[11]) + int(fields[12])) / ticks  # utime + stime
    return found


def _cpu_by_thread(before: dict[int, float], after: dict[int, float], process_cpu: float) -> dict[str, float]:
    """This cycle's CPU by kind of thread; ``exited`` is what threads that ended in between used."""
    import threading

    if not after:
        return {}
    names = {t.native_id: t.name for t in threading.enumerate()}
    main = threading.main_thread().native_id
    groups: Counter = Counter()
    for tid, seconds in after.items():
        name = names.get(tid, "")
        kind = ("event_loop" if tid == main else "recorder_writer" if name.startswith("graphtune-writer")
                else "executor" if name.startswith("asyncio_") else "other_threads")
        groups[kind] += seconds - before.get(tid, 0.0)
    groups["exited"] = max(0.0, process_cpu - sum(groups.values()))
    return {kind: round(seconds, 2) for kind, seconds in groups.most_common()}


def _phases(marks: list[tuple[str, float]], started: float, ended: float) -> dict:
    """Seconds per controller phase, from the moments each node's update arrived; ``approval`` is the
    rest: the approval interrupt, reading the parked state back, flushing the recorder."""
    at: dict[str, float] = {}
    for node, moment in marks:
        at[node] = moment  # the last update of that node (evaluate: the last candidate to finish)
    phases, previous = {}, started
    for name, node in (("intake", "intake"), ("observe", "observe"), ("propose", "propose"), ("evaluate", "evaluate"),
                       ("decide_report", "report")):
        if node in at:
            phases[name] = round(at[node] - previous, 3)
            previous = at[node]
    phases["approval"] = round(ended - previous, 3)
    return phases


def parse(argv: list[str] | None = None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    parser.add_argument("--candidates", type=int, default=4, help="candidates proposed in the one round")
    parser.add_argument("--examples", type=int, default=200, help="examples per candidate (eval_limit)")
    parser.add_argument("--latency", type=float, default=0.2, help="seconds the test server waits per model call")
    parser.add_argument("--concurrency", type=int, default=16, help="the one limit shared by all parallel evaluations")
    parser.add_argument("--runs", type=int, default=3, help="measured cycles; the figure is their median")
    parser.add_argument("--warmup", type=int, default=1, help="small cycles first (imports, index, HTTP pool)")
    parser.add_argument("--server", choices=("process", "thread"), default="process",
                        help="run the test server in its own process (default) or in a thread of this one")
    parser.add_argument("--profile", default=None, help="write a cProfile of the first measured cycle here")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.candidates > len(PROPOSALS):
        parser.error(f"--candidates at most {len(PROPOSALS)}")
    return args


def run(args) -> dict:
    """Warm-up and measured cycles; the figures as a dict. Sets the model and database environment variables."""
    workdir = tempfile.TemporaryDirectory(prefix="graphtune-bench-cycle-", ignore_cleanup_errors=True)
    tmp = workdir.name
    server = ProcessServer(args.latency) if args.server == "process" else ThreadServer(args.latency)
    try:
        import graphtune.graphs.local_controller  # noqa: F401 - import while the server process starts
        import langchain_openai  # noqa: F401

        # Before anything builds a model: ChatOpenAI reads these, and keeps one async HTTP client per process.
        os.environ.update(GRAPHTUNE_MODEL="test-model", OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="bench",
                          GRAPHTUNE_DATABASE_URL=f"sqlite:///{tmp}/warmup.db")
        os.environ.pop("GRAPHTUNE_TRACES_URL", None)
        common = {"candidates": args.candidates, "concurrency": args.concurrency, "batch_size": max(4, args.candidates)}

        async def measure() -> list[Cycle]:
            for i in range(args.warmup):
                log(f"warm-up cycle ({args.candidates} candidates x {min(args.examples, 20)} examples) ...")
                await run_cycle(server, tmp, -1 - i, examples=min(args.examples, 20), **common)
            cycles = []
            for i in range(args.runs):
                log(f"cycle {i + 1}/{args.runs}: {args.candidates} candidates x {args.examples} examples ...")
                cycle = await run_cycle(server, tmp, i, examples=args.examples, profile=args.profile if i == 0 else None, **common)
                log(f"  {cycle.seconds:.2f} s, {cycle.calls} model calls, "
                    f"ratio {cycle.seconds / (cycle.calls * args.latency / args.concurrency):.2f}")
                cycles.append(cycle)
            return cycles

        cycles = asyncio.run(measure())
    finally:
        server.close()
        workdir.cleanup()

    ideals = [c.calls * args.latency / args.concurrency for c in cycles]
    ratios = [c.seconds / ideal for c, ideal in zip(cycles, ideals)]
    typical = cycles[sorted(range(len(cycles)), key=lambda i: ratios[i])[len(cycles) // 2]]  # the median-ratio run
    return {
        "seconds": round(median([c.seconds for c in cycles]), 3),
        "ideal_seconds": round(median(ideals), 3),
        "ratio": round(median(ratios), 3),
        "cpu_seconds": round(median([c.cpu_seconds for c in cycles]), 3),
        "cpu_seconds_by_thread": typical.cpu_by_thread,
        "model_calls": typical.calls,
        "model_calls_by_step": typical.kinds,
        "concurrency": args.concurrency,
        "max_concurrency_seen": max(c.max_concurrency for c in cycles),
        "candidates": args.candidates,
        "examples": args.examples,
        "stopped_early": sum(c["stopped_early"] for c in typical.candidates),
        "examples_run": {c["id"]: c["examples"] for c in typical.candidates},
        "eval_wall_s": {c["id"]: c["wall_s"] for c in typical.candidates},
        "example_latency_ms_p50": {c["id"]: c["latency_ms_p50"] for c in typical.candidates},
        "phase_seconds": typical.phases,
        "stop_reasons": {c["id"]: c["stop_reason"][:160] for c in typical.candidates if c["stop_reason"]},
        "llm_latency_s": args.latency,
        "server": args.server,
        "runs": len(cycles),
        "run_seconds": [round(c.seconds, 3) for c in cycles],
        "run_ratios": [round(r, 3) for r in ratios],
        "ended_at": typical.ended_at,
        "pending_candidate": typical.pending,
    }


def main() -> None:
    args = parse()
    if args.serve:
        serve(args.latency)
        return
    emit(run(args), args.json, "cycle")


if __name__ == "__main__":
    main()
