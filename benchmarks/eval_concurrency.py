"""eval_concurrency: the eval runner on support_qa with the real ChatOpenAI, concurrency 1 vs 16, and a cached re-run.

The answer step is ``langchain_openai.ChatOpenAI`` talking over HTTP to a local OpenAI-compatible
test server that waits 200 ms per call (one call per example). Each example is recorded by the
recorder (JSONL) and scored, as in a real eval. Figures: wall seconds per run,
speedup_16 = concurrency 1 / concurrency 16, cache_speedup = first run at 16 / cached re-run at 16.
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, log, parse_args  # noqa: E402


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], examples=(int, 200, "examples per run"), latency=(float, 0.2, "seconds per LLM call"))
    from graphtune.testing.openai_server import OpenAITestServer, Reply

    def responder(request: dict) -> Reply:
        question = request["messages"][-1]["content"]
        return Reply(content=f"From the help center: {question}", prompt_tokens=600, completion_tokens=40)

    tmp = tempfile.mkdtemp(prefix="graphtune-bench-eval-")
    with OpenAITestServer(responder, latency_s=args.latency, model="gpt-4.1-mini") as server:
        os.environ.update(GRAPHTUNE_MODEL="gpt-4.1-mini", OPENAI_BASE_URL=server.base_url, OPENAI_API_KEY="bench")
        from graphtune.backends.eval_cache import SqliteEvalCache
        from graphtune.evals.runner import EvalRunner
        from graphtune.spec import load_spec
        from graphtune.tracing.recorder import TrajectoryRecorder

        spec = load_spec("support_qa")
        recorder = TrajectoryRecorder(f"jsonl:///{tmp}/traces", spill_dir=f"{tmp}/spill")
        cache = SqliteEvalCache(f"sqlite:///{tmp}/cache.db")

        async def timed(concurrency: int, use_cache: bool) -> tuple[float, object]:
            runner = EvalRunner(spec, recorder=recorder, cache=cache if use_cache else None, concurrency=concurrency)
            started = time.perf_counter()
            report = await runner.run(spec.config, limit=args.examples)
            return time.perf_counter() - started, report

        async def measure():
            # One event loop for every run, as in a long-lived process: ChatOpenAI's HTTP client
            # keeps its connections on the loop it was first used on.
            log("warm-up ...")
            await timed(16, False)
            log(f"concurrency 1, {args.examples} examples ...")
            one = await timed(1, False)
            calls_before = len(server.requests)
            log("concurrency 16, first run ...")
            sixteen = await timed(16, True)
            calls = len(server.requests) - calls_before
            log("concurrency 16, cached re-run ...")
            cached = await timed(16, True)
            return one, sixteen, cached, calls

        (seconds_1, report_1), (seconds_16, report_16), (seconds_cached, report_cached), calls_16 = asyncio.run(measure())
        recorder.close()
        cache.close()
    emit({
        "examples": args.examples,
        "llm_latency_s": args.latency,
        "seconds_concurrency_1": round(seconds_1, 3),
        "seconds_concurrency_16": round(seconds_16, 3),
        "seconds_cached_16": round(seconds_cached, 4),
        "speedup_16": round(seconds_1 / seconds_16, 2),
        "cache_speedup": round(seconds_16 / seconds_cached, 1),
        "llm_calls_per_example": round(calls_16 / args.examples, 2),
        "ideal_speedup_16": 16,
        "max_concurrent_llm_calls": server.max_concurrency(),
        "errors": sum(r.error is not None for r in report_1.results + report_16.results),
        "first_error": next((r.error for r in report_1.results + report_16.results if r.error), None),
        "cached_results": report_cached.cached,
    }, args.json, "eval_concurrency")


if __name__ == "__main__":
    main()
