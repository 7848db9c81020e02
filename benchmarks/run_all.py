"""``make bench``: run every benchmark with --json, print one table, keep the raw JSON.

Each benchmark is its own process so one's memory and threads never colour another's figures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BENCHMARKS = ["recording_overhead", "ingest", "hotspots", "eval_concurrency", "rate_limits", "ab_stats", "tuning_efficiency", "tuning_suite", "cycle", "web_pages"]


def main() -> int:
    results: dict[str, dict] = {}
    failed = []
    for name in BENCHMARKS:
        started = time.time()
        print(f"running {name} ...", file=sys.stderr, flush=True)
        proc = subprocess.run([sys.executable, os.path.join(HERE, f"{name}.py"), "--json"], capture_output=True, text=True)
        if proc.returncode != 0:
            failed.append(name)
            print(proc.stderr[-3000:], file=sys.stderr)
            continue
        results[name] = json.loads(proc.stdout.strip().splitlines()[-1])
        results[name]["_wall_seconds"] = round(time.time() - started, 1)
    os.makedirs(".graphtune", exist_ok=True)
    with open(os.path.join(".graphtune", "bench.json"), "w") as fh:
        json.dump(results, fh, indent=2)
    width = max(len(f"{b}.{k}") for b, r in results.items() for k in r) if results else 20
    for bench, figures in results.items():
        for key, value in figures.items():
            shown = f"{value:.3f}" if isinstance(value, float) else str(value)
            print(f"{bench + '.' + key:<{width}}  {shown}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
