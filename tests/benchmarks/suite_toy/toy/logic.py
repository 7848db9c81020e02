"""The toy's simulated service and answerer, shared by its graph and its replay."""

from __future__ import annotations

from workflows import _sim


def lookup_attempts(example_id: str, timeout_ms: int, retries: int) -> tuple[float, bool]:
    """Simulated ms spent and whether an attempt answered within the timeout."""
    spent = 0.0
    for attempt in range(retries + 1):
        latency = _sim.lognormal_ms(300.0, 0.4, example_id, attempt)
        if latency <= timeout_ms:
            return spent + latency, True
        spent += timeout_ms
    return spent, False


def answer(example_id: str, style: str, max_tokens: int) -> tuple[str, int, float]:
    """The answer, its output tokens and its simulated ms."""
    needed = 40 + int(160 * _sim.unit(example_id, "needed"))
    easy = _sim.chance(0.3, example_id, "easy")
    right = (style == "detailed" and max_tokens >= needed) or (style == "short" and easy)
    tokens = min(max_tokens, needed)
    return ("right" if right else "wrong"), tokens, 5.0 * tokens
