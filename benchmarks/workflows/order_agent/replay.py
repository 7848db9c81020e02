"""The order agent's run computed without the graph: the same ``logic`` calls, in the graph's order."""

from __future__ import annotations

from .._sim import Replayed, Step
from . import logic


def replay(config: dict, example) -> Replayed:
    cfg = logic.parse(config)
    fx = logic.facts_of(example.inputs)
    run = logic.Run()
    steps: list[Step] = []
    total = 0.0
    tokens_in = tokens_out = turn = 0
    while True:
        move = logic.agent_turn(cfg, fx, run, turn)
        if move.action == "fail":
            error = f"{type(move.error).__name__}: {move.error}"
            steps.append(Step("agent", 0.0, error=error))
            return Replayed({"answer": None}, total, steps, tokens_in, tokens_out, logic.MODEL if turn else None, error)
        ms = 0.0
        if move.reply is not None:
            turn += 1
            tokens_in += move.reply.input_tokens
            tokens_out += move.reply.output_tokens
            ms = move.reply.ms
        total += ms
        steps.append(Step("agent", ms))
        if move.action == "call":
            ms = logic.tools_turn(cfg, fx, run)[0]
            total += ms
            steps.append(Step("tools", ms))
            continue
        if move.action == "escalate":
            reply, answer = logic.escalate_turn(fx, run, turn)
            tokens_in += reply.input_tokens
            tokens_out += reply.output_tokens
            total += reply.ms
            steps.append(Step("escalate", reply.ms))
        else:
            answer = move.answer
        return Replayed({"answer": answer}, total, steps, tokens_in, tokens_out, logic.MODEL, None)
