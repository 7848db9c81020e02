"""Per-node statistics of a window, computed by SQLite and a single pass in Python: the hot-spot pages' query.

Same definition and the same numbers as ``aggregate.stats_from_events`` (quantiles exact, not from
histograms), without building an event object per row: one query returns just (workflow, node, failed,
duration) of the window's node and run ends, in time order, and tokens and negative feedback are summed
by GROUP BY. Reading the window's events into Python took ~9 s for a day of 1M-event traffic
(benchmarks/web_pages.py); this takes ~0.15 s. Ranking durations inside SQLite instead (GROUP BY for
the counts plus ``row_number()`` over each node's durations) measured 0.5 s: SQLite sorts slower than
Python does.
"""

from __future__ import annotations

import sqlite3

from graphtune.backends.aggregate import StatsBuilder
from graphtune.tracing.events import NEGATIVE_FEEDBACK_BELOW, RUN_NODE, NodeStats

_ENDS = f"""SELECT coalesce(workflow, ''), CASE WHEN kind = 'run_end' THEN '{RUN_NODE}' ELSE name END,
       kind = 'node_error' OR (kind = 'run_end' AND status = 'error'), duration_ms
FROM graphtune_events WHERE {{cond}} AND kind IN ('node_end', 'node_error', 'run_end') ORDER BY time"""

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
        for wf, node, failed, duration_ms in conn.execute(_ENDS.format(cond=cond), params):
            builder[(wf, node)].add(duration_ms, bool(failed))
        for wf, node, tin, tout in conn.execute(_TOKENS.format(cond=cond), params):
            builder.add_tokens((wf, node or RUN_NODE), tin, tout)
            if node:
                builder.add_tokens((wf, RUN_NODE), tin, tout)
        rows = conn.execute(_NEGATIVE_FEEDBACK.format(cond=cond), [*params, NEGATIVE_FEEDBACK_BELOW]).fetchall()
        builder.add_negative_feedback(rows)
    finally:
        conn.execute("COMMIT")
    return builder.build()
