"""Retry with exponential backoff for graphtune's HTTP calls to trace backends (OTLP, Langfuse).

One policy object, one loop: the exporter, the Langfuse trace source and the score sender all
retry the same way. ``Retry-After`` (seconds or an HTTP date) is honoured on 429 and 503, capped,
so a backend that asks for patience gets it without stalling graphtune for minutes.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

import httpx


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    max_retry_after_s: float = 30.0
    retry_statuses: frozenset[int] = frozenset({408, 425, 429, 500, 502, 503, 504})

    def delay(self, attempt: int, response: httpx.Response | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1``: exponential with jitter, or Retry-After."""
        delay = min(self.max_backoff_s, self.backoff_s * 2**attempt) * random.uniform(0.5, 1.0)
        if response is not None and response.status_code in (429, 503):
            asked = retry_after_seconds(response.headers.get("retry-after"))
            if asked is not None:
                delay = max(delay, min(asked, self.max_retry_after_s))
        return delay


def retry_after_seconds(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


@dataclass
class Outcome:
    """What a retried call ended with: a response (any status), or the last transport error."""

    response: httpx.Response | None
    error: Exception | None
    attempts: int

    @property
    def ok(self) -> bool:
        return self.response is not None and 200 <= self.response.status_code < 300

    def describe(self) -> str:
        if self.response is not None:
            return f"HTTP {self.response.status_code}"
        return f"{type(self.error).__name__}: {self.error}" if self.error else "no response"


def call_with_retry(
    send: Callable[[], httpx.Response],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], object] = time.sleep,
    on_retry: Callable[[str], None] | None = None,
) -> Outcome:
    """Call ``send`` until it answers 2xx, a status outside ``policy.retry_statuses``, or retries run out.

    Timeouts and connection errors are retried like retryable statuses. Never raises for HTTP or
    transport failures: the caller decides what a failed :class:`Outcome` means.
    """
    attempt = 0
    while True:
        response: httpx.Response | None = None
        error: Exception | None = None
        try:
            response = send()
            if 200 <= response.status_code < 300 or response.status_code not in policy.retry_statuses:
                return Outcome(response, None, attempt + 1)
        except httpx.HTTPError as exc:  # timeouts, refused connections, broken streams
            error = exc
        if attempt >= policy.max_retries:
            return Outcome(response, error, attempt + 1)
        if on_retry is not None:
            on_retry(f"HTTP {response.status_code}" if response is not None else type(error).__name__)
        sleep(policy.delay(attempt, response))
        attempt += 1
