"""wide_rag's run computed without the graph: the same ``logic`` calls in the graph's node order."""

from __future__ import annotations

from .._sim import Replayed, Step
from . import logic


def replay(config: dict, example) -> Replayed:
    k = logic.knobs(config)
    w = logic.world(example.inputs)
    c = logic.chunk(w, k)
    r = logic.retrieve(w, k, c)
    steps = [Step("chunk", c.ms), Step("retrieve", r.ms)]
    ms = c.ms + r.ms
    if k.rerank:
        ctx = logic.rerank(w, k, r)
        steps.append(Step("rerank", ctx.ms))
        ms += ctx.ms
    else:
        ctx = logic.no_rerank(r)
    try:
        reply = logic.answer(w, k, ctx)
    except ValueError as exc:  # the model refused the request: nothing generated, nothing billed
        error = f"{type(exc).__name__}: {exc}"
        steps.append(Step("generate", 0.0, error))
        return Replayed(output={}, latency_ms=ms, steps=steps, model=logic.MODEL, error=error)
    steps.append(Step("generate", reply.ms))
    return Replayed(output={"answer": reply.text}, latency_ms=ms + reply.ms, steps=steps,
                    input_tokens=reply.input_tokens, output_tokens=reply.output_tokens, model=logic.MODEL)
