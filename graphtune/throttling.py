"""Rate limits and retries shared by every model call of a process (controller, judge, eval examples).

Requests are paced by one LangChain ``InMemoryRateLimiter`` per requests/s figure, so the intake,
the proposer, the judge and every eval example of a run draw on the same bucket. Throttles that
still happen (429) and server errors (5xx) are retried by the provider SDK under the chat model
(OpenAI's and Anthropic's clients back off exponentially with jitter and honour ``Retry-After``);
graphtune only sets how many times (``max_retries``). When the retries run out, ``model_failure``
turns the SDK's exception into one line that says what happened and what to change.

LangChain's ``rate_limiter`` paces a model call once, before its first attempt; the SDK's retries
then go out unpaced, and after an outage every waiting call retries at the same instant and is
throttled again. For OpenAI-compatible models the limiter therefore sits in the HTTP client
(``paced_http_clients``), where every attempt, retries included, takes its turn.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from langchain_core.rate_limiters import InMemoryRateLimiter

DEFAULT_MAX_RETRIES = 6  # the SDK's backoff 0.5, 1, 2, 4, 8, 8 s: about 20 s of throttling ridden out
_POLL_S = 0.1  # how often a waiting call checks the bucket, at most

_limiters: dict[float, InMemoryRateLimiter] = {}
_lock = threading.Lock()


def shared_limiter(requests_per_s: float | None) -> InMemoryRateLimiter | None:
    """The process's limiter for this rate (one bucket for every model built with it); None: unlimited."""
    from langchain_core.rate_limiters import InMemoryRateLimiter

    if requests_per_s is None:
        return None
    with _lock:
        if requests_per_s not in _limiters:
            # Poll a few times per token, and keep up to two: the limiter adds what a late poll finds
            # only up to the bucket's size, and with a bucket of one the overshoot is lost on every
            # token (20 requests/s became 14.7 on a busy event loop, benchmarks/rate_limits.py).
            _limiters[requests_per_s] = InMemoryRateLimiter(
                requests_per_second=requests_per_s, check_every_n_seconds=min(_POLL_S, 0.25 / requests_per_s),
                max_bucket_size=2)
        return _limiters[requests_per_s]


def paced_http_clients(limiter: InMemoryRateLimiter) -> dict:
    """``http_client`` / ``http_async_client`` for ``ChatOpenAI`` that wait for ``limiter`` before every
    HTTP request the OpenAI SDK sends, its retries included (openai's own client defaults otherwise)."""
    import openai

    def pace(request) -> None:
        limiter.acquire()

    async def apace(request) -> None:
        await limiter.aacquire()

    return {"http_client": openai.DefaultHttpxClient(event_hooks={"request": [pace]}),
            "http_async_client": openai.DefaultAsyncHttpxClient(event_hooks={"request": [apace]})}


def model_failure(error: BaseException) -> str | None:
    """One line for a model call that failed at the endpoint after its retries, else None.

    Reads the HTTP status the provider SDKs put on their errors (``status_code``), so it needs none
    of them imported."""
    status = getattr(error, "status_code", None)
    if not isinstance(status, int):
        return None
    if status == 429:
        return (f"rate limited: the model endpoint still answered HTTP 429 after its retries ({_short(error)}); "
                "lower rate_limit.requests_per_s (--rate-limit) or raise rate_limit.max_retries in the spec")
    if status >= 500:
        return (f"the model endpoint failed: HTTP {status} after its retries ({_short(error)}); "
                "raise rate_limit.max_retries in the spec to ride out longer outages")
    return None


def _short(error: BaseException, limit: int = 200) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
