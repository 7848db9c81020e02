"""rate_limits: an eval against a provider that throttles, paced by graphtune's shared limiter or left to retries.

support_qa answers with the real ChatOpenAI over HTTP to the local OpenAI-compatible test server,
which allows ``--rate`` requests/s (a token bucket of ``--burst``) and answers 429 with the
``Retry-After`` of its next free slot beyond that. Variants, run interleaved in one process:

- paced: the run's shared rate limiter at the provider's rate (``rate_limit.requests_per_s``),
- retries_only: no limiter; the OpenAI SDK's retries, honouring Retry-After, absorb the 429s,
- paced_after_outage: paced, behind a ``--outage`` seconds 503 outage (Retry-After 0.5 s) at the start.

The throttle's floor is the least time the provider allows: (calls - burst) / rate, plus the
outage and one call's latency. ratio = wall / floor; the claim is paced_ratio <= 1.2 with no failed example.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, log, parse_args  # noqa: E402

VARIANTS = ("paced", "retries_only", "paced_after_outage")


def main() -> None:
    args = parse_args(__doc__.splitlines()[0], examples=(int, 120, "examples per run"), rate=(float, 20.0, "provider's requests/s"),
                      burst=(int, 2, "provider's bucket"), latency=(float, 0.05, "seconds per LLM call"),
                      outage=(float, 2.0, "seconds of 503s before the paced_after_outage run"),
                      repeats=(int, 3, "runs per variant"), concurrency=(int, 16, "examples in flight"))
    for name in ("GRAPHTUNE_MODEL", "OPENAI_BASE_URL"):
        os.environ.pop(name, None)
    os.environ["OPENAI_API_KEY"] = "bench"
    from graphtune.evals.runner import EvalRunner
    from graphtune.llm import ModelSettings, using
    from graphtune.spec import load_spec
    from graphtune.testing.openai_server import OpenAITestServer

    spec = load_spec("support_qa")
    runs: dict[str, list[dict]] = {v: [] for v in VARIANTS}
    with OpenAITestServer(latency_s=args.latency, model="gpt-4.1-mini") as server:

        async def one(variant: str) -> dict:
            server.limit_rate(args.rate, burst=args.burst)  # a full bucket, as after a quiet minute
            outage = args.outage if variant == "paced_after_outage" else 0.0
            if outage:
                server.throttle(503, seconds=outage, retry_after_s=0.5)
            paced = args.rate if variant != "retries_only" else None
            settings = ModelSettings(model="gpt-4.1-mini", base_url=server.base_url, requests_per_s=paced, max_retries=8)
            served, refused = len(server.requests), sum(server.throttled.values())
            started = time.perf_counter()
            with using(settings):
                report = await EvalRunner(spec, concurrency=args.concurrency).run(spec.config, limit=args.examples)
            wall = time.perf_counter() - started
            calls = len(server.requests) - served
            floor = outage + max(calls - args.burst, 0) / args.rate + args.latency
            return {"wall_s": wall, "floor_s": floor, "ratio": wall / floor, "calls": calls,
                    "throttled": sum(server.throttled.values()) - refused,
                    "failed_examples": sum(r.error is not None for r in report.results),
                    "first_error": next((r.error for r in report.results if r.error), None)}

        async def measure() -> None:
            log("warm-up ...")  # imports, the knowledge base index, the first graph build
            with using(ModelSettings(model="gpt-4.1-mini", base_url=server.base_url)):
                await EvalRunner(spec, concurrency=args.concurrency).run(spec.config, limit=4)
            # one event loop for every run: ChatOpenAI's HTTP client stays on the loop it first ran on
            for repeat in range(args.repeats):
                for variant in VARIANTS:
                    log(f"{variant} #{repeat + 1} ...")
                    runs[variant].append(await one(variant))

        asyncio.run(measure())

    figures: dict[str, object] = {"examples": args.examples, "provider_rate_per_s": args.rate, "provider_burst": args.burst,
                                  "llm_latency_s": args.latency, "outage_s": args.outage, "repeats": args.repeats}
    for variant, results in runs.items():
        figures[variant] = {
            "wall_s": round(statistics.median(r["wall_s"] for r in results), 3),
            "floor_s": round(statistics.median(r["floor_s"] for r in results), 3),
            "ratio_to_floor": round(statistics.median(r["ratio"] for r in results), 3),
            "throttled_per_run": statistics.median(r["throttled"] for r in results),
            "failed_examples": sum(r["failed_examples"] for r in results),
            "first_error": next((r["first_error"] for r in results if r["first_error"]), None),
        }
    figures["paced_ratio_to_floor"] = figures["paced"]["ratio_to_floor"]
    figures["paced_after_outage_ratio_to_floor"] = figures["paced_after_outage"]["ratio_to_floor"]
    figures["retries_only_ratio_to_floor"] = figures["retries_only"]["ratio_to_floor"]
    figures["paced_failed_examples"] = figures["paced"]["failed_examples"] + figures["paced_after_outage"]["failed_examples"]
    figures["claim_holds"] = (figures["paced_ratio_to_floor"] <= 1.2 and figures["paced_after_outage_ratio_to_floor"] <= 1.2
                              and figures["paced_failed_examples"] == 0)
    emit(figures, args.json, "rate_limits")


if __name__ == "__main__":
    main()
