"""noisy_extract without the graph: the same ``logic`` calls in the graph's order, cached per upload
and per config values that matter (the suite replays millions of runs)."""

from __future__ import annotations

from functools import lru_cache

from .._sim import Replayed, Step
from . import logic


@lru_cache(maxsize=200_000)
def _run(upload_id: str, f: logic.Facts, model: str, style: str, dpi: int, retries: int):
    """(answer, latency, steps as tuples, input tokens, output tokens, error) of one run."""
    o = logic.read_pages(upload_id, f, dpi)
    if o.timed_out:
        error = f"OcrTimeout: {logic.ocr_timeout(dpi)}"
        return None, o.ms, (("ocr", o.ms, error, ()),), 0, 0, error
    steps, ms, tokens_in, tokens_out = [("ocr", o.ms, None, ())], o.ms, 0, 0
    for k, a in enumerate(logic.attempts(upload_id, f, model, style, dpi)[: retries + 1]):
        steps += [("extract", a.ms, None, (("attempt", k + 1),)), ("validate", logic.VALIDATE_MS, None, (("valid", a.valid),))]
        ms += a.ms  # summed in the graph's order, so the float is the graph's own
        ms += logic.VALIDATE_MS
        tokens_in += a.input_tokens
        tokens_out += a.output_tokens
        if a.valid:
            break
    return a.text, ms, tuple(steps), tokens_in, tokens_out, None


def replay(config: dict, example) -> Replayed:
    x, inputs = config["extractor"], example.inputs
    model = x["model"]
    answer, ms, steps, tokens_in, tokens_out, error = _run(
        inputs["upload_id"], logic.facts(inputs["document"]), model, x["prompt_style"], int(config["ocr"]["dpi"]),
        int(x["validate_retries"]))
    return Replayed(output={} if error else {"answer": answer}, latency_ms=ms,
                    steps=[Step(node, step_ms, err, dict(attrs)) for node, step_ms, err, attrs in steps],
                    input_tokens=tokens_in, output_tokens=tokens_out, model=model, error=error)
