"""The simulated external order-status service the tool agent calls: slow, and sometimes failing.

Latency and failures are deterministic per (order id, attempt), so eval runs are repeatable, and
they are real: a call sleeps for its latency, and a timeout shorter than that raises.
"""

from __future__ import annotations

import asyncio
import hashlib

from graphtune.graphs.support_qa.knowledge import orders

FAILURE_RATE = 0.12
MIN_LATENCY_S, MAX_LATENCY_S = 0.08, 0.6


class OrderServiceError(RuntimeError):
    """The service answered with an error (HTTP 503 in the real world)."""


class OrderServiceTimeout(TimeoutError):
    """The service did not answer within the configured timeout."""


def _roll(order_id: str, attempt: int, salt: str) -> float:
    digest = hashlib.sha256(f"{order_id}:{attempt}:{salt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def call_latency(order_id: str, attempt: int) -> float:
    return MIN_LATENCY_S + (MAX_LATENCY_S - MIN_LATENCY_S) * _roll(order_id, attempt, "latency") ** 2


async def lookup_once(order_id: str, attempt: int, timeout_s: float) -> str:
    """One call: waits its latency (or the timeout), then answers, fails or times out."""
    latency = call_latency(order_id, attempt)
    if latency > timeout_s:
        await asyncio.sleep(timeout_s)
        raise OrderServiceTimeout(f"order service did not answer within {timeout_s:.2f} s (order {order_id}, attempt {attempt + 1})")
    await asyncio.sleep(latency)
    if _roll(order_id, attempt, "failure") < FAILURE_RATE:
        raise OrderServiceError(f"order service returned 503 for order {order_id} (attempt {attempt + 1})")
    return describe_order(order_id)


async def lookup(order_id: str, *, timeout_s: float, retries: int) -> str:
    """Call with retries; the last error propagates, and the run records it."""
    for attempt in range(retries):
        try:
            return await lookup_once(order_id, attempt, timeout_s)
        except (OrderServiceError, OrderServiceTimeout):
            continue
    return await lookup_once(order_id, retries, timeout_s)


def describe_order(order_id: str) -> str:
    order = orders().get(order_id)
    if order is None:
        return f"We found no order with the id {order_id}."
    parts = [f"Order {order_id}: {order['status_text']}"]
    if order.get("carrier"):
        parts.append(f"carrier {order['carrier']}")
    if order.get("delivery_date"):
        parts.append(f"delivery date {order['delivery_date']}")
    return "; ".join(parts) + "."
