"""Per-node statistics of a window, computed inside SQLite: the hot-spot pages' query.

Same definition as ``aggregate.stats_from_events`` and the same numbers (quantiles exact, not from
histograms), but only a few rows per node leave the database: counts and sums come from GROUP BY,
and p50/p95 from the two ranks around each quantile, found with ``row_number()`` over each node's
durations in order. Reading the window's events into Python instead took ~9 s for a day of 1M-event
traffic (benchmarks/web_pages.py).
"""

from __future__ import annotations

import sqlite3
from collections import defaultdict

from graphtune.backends.aggregate import QUANTILES, StatsBuilder, quantile_ranks
from graphtune.tracing.events import NEGATIVE_FEEDBACK_BELOW, RUN_NODE, NodeStats

_NODE = f"CASE WHEN kind = 'run_end' THEN '{RUN_NODE}' ELSE name END"
_TIMED_KINDS = "kind IN ('node_end', 'node_error', 'run_end')"


def _ranks_wanted() -> str:
    """SQL true for the rows ``quantile_ranks`` picks: floor((n-1)q) and the next one, per quantile."""
    picks = []
    for q in QUANTILES:
        lo = f"CAST((n - 1) * {q!r} AS INTEGER)"  # (n-1)q >= 0, so truncation is floor, as in quantile_ranks
        picks += [lo, f"{lo} + 1"]
    return f"rank IN ({', '.join(picks)})"


_TOTALS = f"""SELECT coalesce(workflow, ''), {_NODE}, count(*),
       sum(kind = 'node_error' OR (kind = 'run_end' AND status = 'error')), count(duration_ms), total(duration_ms)
FROM graphtune_events WHERE {{cond}} AND {_TIMED_KINDS} GROUP BY 1, 2"""

_QUANTILE_ROWS = f"""WITH timed AS (
    SELECT coalesce(workflow, '') AS wf, {_NODE} AS node, duration_ms,
           row_number() OVER per_node - 1 AS rank, count(*) OVER (PARTITION BY coalesce(workflow, ''), {_NODE}) AS n
    FROM graphtune_events WHERE {{cond}} AND {_TIMED_KINDS} AND duration_ms IS NOT NULL
    WINDOW per_node AS (PARTITION BY coalesce(workflow, ''), {_NODE} ORDER BY duration_ms))
SELECT wf, node, rank, duration_ms FROM timed WHERE {_ranks_wanted()}"""

_TOKENS = """SELECT coalesce(workflow, ''), node, coalesce(sum(input_tokens), 0), coalesce(sum(output_tokens), 0)
FROM graphtune_events WHERE {cond} AND kind = 'llm_usage' GROUP BY 1, 2"""

# Each negative feedback in the window counts once for every node its trace ran (at any time, in any
# source) and for the run: feedback usually arrives after the run.
_NEGATIVE_FEEDBACK = f"""WITH neg AS (
    SELECT trace_id, count(*) AS n FROM graphtune_events WHERE {{cond}} AND kind = 'feedback' AND score < ? GROUP BY trace_id),
ran AS (SELECT DISTINCT e.trace_id, coalesce(e.workflow, '') AS wf, e.name AS node
        FROM graphtune_events AS e JOIN neg USING (trace_id) WHERE e.kind IN ('node_end', 'node_error')),
targets AS (SELECT trace_id, wf, node FROM ran UNION SELECT trace_id, wf, '{RUN_NODE}' FROM ran)
SELECT wf, node, sum(n) FROM targets JOIN neg USING (trace_id) GROUP BY wf, node"""


def node_stats(conn: sqlite3.Connection, where: list[str], params: list) -> list[NodeStats]:
    """``stats_from_events`` over the events matching ``where`` (time window, workflow, sources), in one read transaction."""
    cond = " AND ".join(where) or "1"
    builder = StatsBuilder()
    conn.execute("BEGIN")  # one snapshot for all reads: a batch committed meanwhile counts fully or not at all
    try:
        for wf, node, count, errors, timed, duration_sum in conn.execute(_TOTALS.format(cond=cond), params):
            acc = builder[(wf, node)]
            acc.count, acc.errors, acc.timed_in_store, acc.duration_sum = count, errors, timed, duration_sum
        picked: dict[tuple[str, str], dict[int, float]] = defaultdict(dict)
        for wf, node, rank, duration in conn.execute(_QUANTILE_ROWS.format(cond=cond), params):
            picked[(wf, node)][rank] = duration
        for wf, node, tin, tout in conn.execute(_TOKENS.format(cond=cond), params):
            builder.add_tokens((wf, node or RUN_NODE), tin, tout)
            if node:
                builder.add_tokens((wf, RUN_NODE), tin, tout)
        rows = conn.execute(_NEGATIVE_FEEDBACK.format(cond=cond), [*params, NEGATIVE_FEEDBACK_BELOW]).fetchall()
        builder.add_negative_feedback(rows)
    finally:
        conn.execute("COMMIT")
    for key, acc in builder.nodes.items():
        if acc.timed_in_store:
            acc.store_quantiles = tuple(_interpolate(picked[key], acc.timed_in_store, q) for q in QUANTILES)
    return builder.build()


def _interpolate(values_at: dict[int, float], n: int, q: float) -> float:
    lo, hi, weight = quantile_ranks(n, q)
    return values_at[lo] + (values_at[hi] - values_at[lo]) * weight
