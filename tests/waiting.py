"""Waiting for a condition in tests, never for a fixed time: poll until it holds or a generous deadline passes.

The deadline only bounds a test that would otherwise hang; on a busy machine the condition simply
takes longer to become true. Polls start at 10 ms and back off to 0.5 s.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def _intervals():
    interval = 0.01
    while True:
        yield interval
        interval = min(interval * 2, 0.5)


def wait_until(condition: Callable[[], T], *, timeout: float = 60.0, what: str = "the condition") -> T:
    """The first truthy value of ``condition()``; AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    for interval in _intervals():
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:g} s"
        time.sleep(interval)


async def eventually(condition: Callable[[], Awaitable[T]], *, timeout: float = 60.0, what: str = "the condition") -> T:
    """``wait_until`` for an async condition."""
    deadline = time.monotonic() + timeout
    for interval in _intervals():
        value = await condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} did not happen within {timeout:g} s"
        await asyncio.sleep(interval)
