"""The order agent's pure decisions, shared by the graph and the replay so the two cannot drift.

A task needs 1-4 tool results (its plan comes from the question). Each agent turn either asks for
tool calls (every ready call at once when ``agent.parallel_tool_calls``, else one per turn), answers
once every result is in, or, after ``agent.max_iterations`` tool rounds, falls back. Every turn
re-reads the growing transcript, so rounds, failed attempts and escalation all cost tokens.

Every draw is per example and config-free (``draws``, cached): a service's latency, whether an
attempt hangs or is turned away as busy; the config only sets the thresholds it is compared with.
Per-example latency dominates the per-attempt noise, so a slow order stays slow on retry: only a
longer timeout fixes it. Busy errors clear with time, so retries help only with enough backoff.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

from .. import _sim

MODEL = "sim-agent-1"
TOOLS = ("order_lookup", "inventory", "shipping_eta", "refund_policy")
DEPENDS = {"shipping_eta": "order_lookup", "refund_policy": "order_lookup"}  # they need the order's record
MEDIAN_MS = {"order_lookup": 400.0, "inventory": 150.0, "shipping_eta": 300.0, "refund_policy": 80.0}
SIGMA_EXAMPLE = {"order_lookup": 0.45, "inventory": 0.4, "shipping_eta": 0.55, "refund_policy": 0.3}
SIGMA_ATTEMPT = 0.12
P_HANG = 0.03  # an attempt that never answers: it costs the whole timeout
P_BUSY = {"order_lookup": 0.2, "inventory": 0.12, "shipping_eta": 0.2, "refund_policy": 0.08}
BUSY_RETRY, BUSY_DECAY_MS, BUSY_MS = 0.85, 400.0, 40.0  # a retry is still busy with 0.85 * exp(-waited / 400 ms)
P_OUTAGE = 0.10  # the task's order record is on a shard that is down: order_lookup always answers 503
P_VERIFY = 0.45  # the task needs the order re-read before answering (an unconfirmed answer is wrong)
MAX_CALLS, MAX_ATTEMPTS = 14, 6

SYSTEM_TOKENS, CALL_TOKENS, TURN_TOKENS = 380, 22, 8
RESULT_TOKENS = {"order_lookup": 220, "inventory": 120, "shipping_eta": 160, "refund_policy": 260}
ERROR_NOTE_TOKENS, ANSWER_TOKENS, APOLOGY_TOKENS, CACHED_TOKENS = 30, 40, 25, 15
MISREAD, MISREAD_TOKENS = 0.05, 20000.0  # the agent misreads with 0.05 + transcript / 20000
ESCALATE_TOKENS, ESCALATE_OUT, ESCALATE_MS, P_ESCALATE_RIGHT = 900, 160, 1500.0, 0.6
APOLOGY = "Sorry, I could not finish looking into this right now."

INTENTS = {  # question keyword -> the tools the task needs, in the order the agent asks for them
    "replacement": ("order_lookup", "inventory", "shipping_eta", "refund_policy"),
    "swap": ("order_lookup", "inventory", "shipping_eta"),
    "return": ("order_lookup", "refund_policy"),
    "arrive": ("order_lookup", "shipping_eta"),
    "stock": ("inventory",),
    "status": ("order_lookup",),
}


class Cfg(NamedTuple):
    max_iterations: int
    parallel: bool
    fallback: str
    timeout: dict
    retries: int
    backoff: float
    cache: bool


def parse(config: dict) -> Cfg:
    agent, tools = config["agent"], config["tools"]
    return Cfg(int(agent["max_iterations"]), bool(agent["parallel_tool_calls"]), agent["fallback"],
               {t: float(tools[t]["timeout_ms"]) for t in TOOLS}, int(tools["retries"]),
               float(tools["backoff_ms"]), bool(config["cache"]["enabled"]))


# -- per-example constants ---------------------------------------------------------------------------


def intent_of(question: str) -> str:
    text = question.lower()
    return next(k for k in INTENTS if k in text)


def tool_result(tool: str, order_id: str, sku: str) -> str:
    """What a service answers (the truth; the same on every call)."""
    if tool == "order_lookup":
        return f"order {order_id} is {_sim.pick(['processing', 'shipped', 'delivered', 'on hold'], order_id, 'status')}"
    if tool == "inventory":
        n = int(_sim.unit(sku, "stock") * 12)
        return f"{sku}: {n} in stock" if n else f"{sku}: out of stock"
    if tool == "shipping_eta":
        return f"arrives in {1 + int(_sim.unit(order_id, 'eta') * 9)} days"
    return "refund eligible" if _sim.chance(0.7, order_id, "refund") else "refund not eligible"


def answer_of(results: list[str]) -> str:
    return "; ".join(results) + "."


def truth(inputs: dict) -> str:
    """The right answer: every needed tool's result."""
    plan = INTENTS[intent_of(inputs["question"])]
    return answer_of([tool_result(t, inputs["order_id"], inputs["sku"]) for t in plan])


class Facts(NamedTuple):
    task_id: str
    plan: tuple
    verify: bool
    outage: bool
    question_tokens: int
    right: str
    misread: str  # the answer when the agent misreads its transcript: the last fact dropped
    specialist: str  # escalation's answer when the specialist gets it wrong
    draws: dict  # tool -> [call][attempt] -> (latency ms, hang draw, busy draw)
    agent_noise: tuple  # per model turn: the latency factor
    u_misread: float
    u_escalate: float


@lru_cache(maxsize=4096)
def facts(task_id: str, question: str, order_id: str, sku: str) -> Facts:
    plan = INTENTS[intent_of(question)]
    results = [tool_result(t, order_id, sku) for t in plan]
    draws = {}
    for tool in plan:
        slow = MEDIAN_MS[tool] * math.exp(SIGMA_EXAMPLE[tool] * _sim.normal(task_id, tool, "slow"))
        draws[tool] = [[(slow * math.exp(SIGMA_ATTEMPT * _sim.normal(task_id, tool, c, a, "lat")),
                         _sim.unit(task_id, tool, c, a, "hang"), _sim.unit(task_id, tool, c, a, "busy"))
                        for a in range(MAX_ATTEMPTS)] for c in range(MAX_CALLS)]
    subject = order_id if "order_lookup" in plan else sku
    return Facts(
        task_id=task_id, plan=plan,
        verify="order_lookup" in plan and _sim.chance(P_VERIFY, task_id, "verify"),
        outage="order_lookup" in plan and _sim.chance(P_OUTAGE, task_id, "outage"),
        question_tokens=round(1.3 * len(question.split())), right=answer_of(results),
        misread=answer_of(results[:-1]) if len(results) > 1 else f"I could not read the details of {subject}.",
        specialist=f"A specialist will follow up on {subject} by email.",
        draws=draws, agent_noise=tuple(math.exp(0.25 * _sim.normal(task_id, "agent", i)) for i in range(MAX_CALLS + 2)),
        u_misread=_sim.unit(task_id, "misread"), u_escalate=_sim.unit(task_id, "escalate"))


def facts_of(inputs: dict) -> Facts:
    return facts(inputs["task_id"], inputs["question"], inputs["order_id"], inputs["sku"])


# -- the run ----------------------------------------------------------------------------------------


@dataclass(slots=True)
class Run:
    """The agent's working state (the graph keeps it in its state; the replay in a local)."""

    results: dict = field(default_factory=dict)  # tool -> True once its result is in
    calls: dict = field(default_factory=dict)  # tool -> service calls made (cache hits excluded)
    transcript: int = 0  # tokens of tool calls, results and error notes so far
    rounds: int = 0  # tool rounds asked for
    verified: bool = False
    last_error: tuple | None = None  # (exception type name, message) of the latest failed call
    pending: tuple = ()


class Reply(NamedTuple):
    input_tokens: int
    output_tokens: int
    ms: float


class Turn(NamedTuple):
    """An agent turn: ``action`` is call, answer, escalate or fail."""

    action: str
    reply: Reply | None = None
    answer: str | None = None
    error: Exception | None = None


ERRORS = {"TimeoutError": TimeoutError, "ConnectionError": ConnectionError}


def _reply(fx: Facts, run: Run, output_tokens: int, turn: int) -> Reply:
    """A model turn re-reads the system prompt, the question and the whole transcript."""
    tokens_in = SYSTEM_TOKENS + fx.question_tokens + run.transcript
    ms = (250.0 + 0.25 * tokens_in + 12.0 * output_tokens) * fx.agent_noise[turn]
    return Reply(tokens_in, output_tokens, ms)


def agent_turn(cfg: Cfg, fx: Facts, run: Run, turn: int) -> Turn:
    """The agent's next move; ``turn`` counts the agent's earlier turns (keys its latency draw)."""
    missing = [t for t in fx.plan if t not in run.results]
    if not missing and (not fx.verify or run.verified or run.rounds >= cfg.max_iterations):
        wrong = (fx.verify and not run.verified) or fx.u_misread < MISREAD + run.transcript / MISREAD_TOKENS
        return Turn("answer", _reply(fx, run, ANSWER_TOKENS, turn), fx.misread if wrong else fx.right)
    if run.rounds >= cfg.max_iterations:
        if cfg.fallback == "escalate":
            return Turn("escalate")
        if cfg.fallback == "apologize":
            return Turn("answer", _reply(fx, run, APOLOGY_TOKENS, turn), APOLOGY)
        if run.last_error is None:
            return Turn("fail", error=RuntimeError(f"agent stopped after {run.rounds} tool rounds without an answer"))
        kind, message = run.last_error
        return Turn("fail", error=ERRORS[kind](message))
    ready = [t for t in missing if t not in DEPENDS or DEPENDS[t] in run.results] or ["order_lookup"]
    calls = tuple(ready) if cfg.parallel else (ready[0],)
    out = TURN_TOKENS + CALL_TOKENS * len(calls)
    reply = _reply(fx, run, out, turn)
    run.transcript += out
    run.rounds += 1
    run.pending = calls
    return Turn("call", reply)


def call_tool(cfg: Cfg, fx: Facts, run: Run, tool: str) -> float:
    """One tool call with its retries; records the result or the error; returns its simulated ms."""
    if cfg.cache and tool in run.results:
        run.transcript += CACHED_TOKENS
        if tool == "order_lookup":
            run.verified = True
        return 1.0
    c = run.calls.get(tool, 0)
    run.calls[tool] = c + 1
    attempts = fx.draws[tool][c]
    timeout, ms = cfg.timeout[tool], 0.0
    down = fx.outage and tool == "order_lookup"
    for a in range(cfg.retries + 1):
        if a:
            waited = cfg.backoff * 2 ** (a - 1)
            ms += waited
        latency, u_hang, u_busy = attempts[a]
        if down:
            ms += BUSY_MS
        elif u_hang < P_HANG or latency > timeout:
            ms += timeout
            timed_out = True
        elif u_busy < (P_BUSY[tool] if a == 0 else BUSY_RETRY * math.exp(-waited / BUSY_DECAY_MS)):
            ms += BUSY_MS
            timed_out = False
        else:
            ms += latency
            if tool in run.results:
                run.verified = True
            run.results[tool] = True
            run.transcript += RESULT_TOKENS[tool]
            return ms
        run.transcript += ERROR_NOTE_TOKENS
    run.last_error = (("ConnectionError", "order_lookup answered 503: order shard unavailable") if down
                      else ("TimeoutError", f"{tool} did not answer within {timeout / 1000:.2f} s") if timed_out
                      else ("ConnectionError", f"{tool} answered 503: service busy"))
    return ms


def tools_turn(cfg: Cfg, fx: Facts, run: Run) -> tuple[float, list[float]]:
    """Run the pending calls: in parallel they cost their maximum, else their sum. Returns (node ms, per-call ms)."""
    each = [call_tool(cfg, fx, run, t) for t in run.pending]
    run.pending = ()
    return (max(each) if cfg.parallel else sum(each)), each


def escalate_turn(fx: Facts, run: Run, turn: int) -> tuple[Reply, str]:
    """A specialist model reads everything: expensive, and right only some of the time."""
    tokens_in = ESCALATE_TOKENS + fx.question_tokens + run.transcript
    ms = ESCALATE_MS * fx.agent_noise[turn]
    return Reply(tokens_in, ESCALATE_OUT, ms), (fx.right if fx.u_escalate < P_ESCALATE_RIGHT else fx.specialist)
