"""A run of the FAQ service computed without the graph: the same ``logic`` calls in the graph's order."""

from __future__ import annotations

from .._sim import Replayed, Step
from . import logic


def replay(config: dict, example) -> Replayed:
    cfg = logic.Config.of(config)
    inputs = example.inputs
    req = logic.request(inputs["request_id"], inputs["question"])
    steps: list[Step] = []
    ms = 0.0
    if cfg.cache:
        ms += logic.CACHE_MS
        hit, _ = logic.cache_hit(cfg, req)
        steps.append(Step("cache_lookup", logic.CACHE_MS, attributes={"hit": hit}))
        if hit:
            text, sources = logic.cached_answer(cfg, req)
            return Replayed(output={"answer": text, "sources": sources}, latency_ms=ms, steps=steps)
    docs, search_ms, error = logic.search(cfg, req)
    ms += search_ms
    if error:
        error = f"TimeoutError: {error}"
        steps.append(Step("retrieve", search_ms, error=error))
        return Replayed(output={}, latency_ms=ms, steps=steps, error=error)
    steps.append(Step("retrieve", search_ms))
    if cfg.rerank:
        docs, rerank_ms = logic.rerank(cfg, req, docs)
        ms += rerank_ms
        steps.append(Step("rerank", rerank_ms))
    reply = logic.answer(cfg, req, docs)
    ms += reply.ms
    steps.append(Step("generate", reply.ms))
    return Replayed(output={"answer": reply.text, "sources": list(docs)}, latency_ms=ms, steps=steps,
                    input_tokens=reply.input_tokens, output_tokens=reply.output_tokens, model=cfg.model)
