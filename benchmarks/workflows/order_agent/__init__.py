"""order_agent: a tool-using agent loop answering e-commerce order questions.

The graph is ``agent`` -> ``tools`` -> ``agent`` ... until the agent answers, or, after
``agent.max_iterations`` tool rounds, falls back (``fail`` raises the last tool error, ``apologize``
answers wrongly without an error, ``escalate`` asks a costly specialist model that is right 60% of the
time). A task needs 1-4 of ``order_lookup``, ``inventory``, ``shipping_eta`` and ``refund_policy``
(the last two need the order's record first), and 45% of order tasks must re-read the order before
answering. Every agent turn re-reads the whole transcript, so rounds, failed attempts (each leaves an
error note) and escalation cost tokens. Objective: ``exact`` task success; guardrails: errors <= 5%,
mean total tokens <= 2900 per task, p95 latency <= 10 s.

Landscape (2592 grid configs): the shipped config scores 0.12 on dev (0.09 on test) and breaks the
error guardrail: ``order_lookup`` times out at 150 ms against a ~400 ms median, and ``fail`` raises,
on ~88% of tasks. The best feasible config scores 0.895 on dev (0.92 on test): max_iterations 4,
parallel tool calls, fallback ``escalate``, order_lookup timeout 2000 ms, shipping_eta 1600 ms, one
retry or more, cache on. About 1% of the grid reaches 95% of the best, the nearest four coordinated
moves from the shipped config, because:

- a slow order stays slow (per-order latency dominates the per-attempt noise): retries do not help,
  only timeouts near the tail of each service (order_lookup >= 1000 ms, shipping_eta >= 800 ms) do;
- 10% of orders sit on a shard that answers 503: ``fail`` never meets the error guardrail,
  ``apologize`` loses those tasks (0.845), ``escalate`` wins back most of them;
- one tool call per turn re-reads the transcript once per tool: the same success needs ~3500 tokens
  sequentially, over the budget; only parallel calls fit (sequential configs within it reach 0.81);
- 8 rounds burn tokens on the down-shard tasks (over budget); 2 leave no round to re-read the order;
- retries need backoff against busy errors, and many retries with long backoff break the p95 limit.
"""

REQUEST = "order_agent fails too many tasks; make it succeed more often without going over our token budget."

from .replay import replay  # noqa: E402,F401
