"""The toy run without the graph."""

from __future__ import annotations

from workflows._sim import Replayed, Step

from . import logic


def replay(config: dict, example) -> Replayed:
    example_id = example.inputs["id"]
    ms, ok = logic.lookup_attempts(example_id, config["tool"]["timeout_ms"], config["tool"]["retries"])
    if not ok:
        error = f"TimeoutError: lookup did not answer within {config['tool']['timeout_ms']} ms"
        return Replayed(output={}, latency_ms=ms, steps=[Step("lookup", ms, error)], error=error)
    text, tokens, answer_ms = logic.answer(example_id, config["answer"]["style"], config["answer"]["max_tokens"])
    return Replayed(output={"answer": text}, latency_ms=ms + answer_ms,
                    steps=[Step("lookup", ms), Step("answer", answer_ms)],
                    input_tokens=50, output_tokens=tokens, model="toy-model")
