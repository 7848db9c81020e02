"""``langfuse://``: Langfuse as a read-only trace source for observe and hot spots.

``GRAPHTUNE_TRACES_URL=langfuse://`` makes the controller's observe step read a workflow's recent
observations from Langfuse's public API (``GET /api/public/v2/observations``: cursor pagination
through ``meta.cursor``, ``fromStartTime``/``toStartTime`` windows, ``traceId`` for one trace) and
map them to trajectory events, so a team on Langfuse can tune without graphtune's recorder.
Langfuse documents this endpoint as its real-time read path (together with OTLP ingestion).

URLs: ``langfuse://`` (``LANGFUSE_BASE_URL``/``LANGFUSE_HOST``, default Langfuse Cloud),
``langfuse://host[:port]`` (https), ``langfuse+http://host:port`` (plain http, for a local
server). Keys always come from ``LANGFUSE_PUBLIC_KEY`` / ``LANGFUSE_SECRET_KEY``. Query options:
``max_observations`` (default 100000 per read), ``page_limit`` (default 1000, Langfuse's maximum),
``lookback`` seconds fetched before a window so runs that started just before it keep their root.

429 and 5xx answers and timeouts are retried with backoff; a malformed page is skipped and
counted (``stats()["malformed_pages"]``), and so is a malformed observation inside a good page.
Writes, pruning and deletion raise :class:`ReadOnlyTraceStoreError`: retention of Langfuse data
is Langfuse's business.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from urllib.parse import parse_qs, urlsplit

import httpx

from graphtune.backends.http_retry import RetryPolicy, call_with_retry
from graphtune.backends.langfuse_observations import Observation, events_from_observations, parse_observation
from graphtune.backends.langfuse_settings import LangfuseSettings, langfuse_settings_from_env
from graphtune.backends.traces import EventQuery, ReadOnlyTraceStoreError, TraceStore, UnknownBackendError
from graphtune.tracing.events import NodeStats, TraceSummary, TrajectoryEvent

log = logging.getLogger("graphtune.langfuse")

OBSERVATIONS_PATH = "/api/public/v2/observations"
WINDOW_FIELDS = "core,basic,metadata,model,usage,trace_context"
TRACE_FIELDS = WINDOW_FIELDS + ",io"
DEFAULT_WINDOW_S = 7 * 86400.0  # a read with neither a trace id nor a start time covers the last week
READ_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


class LangfuseApiError(RuntimeError):
    """Langfuse answered with an error graphtune cannot retry past (bad keys, a bad request, or retries ran out)."""


def settings_from_url(url: str) -> tuple[LangfuseSettings, dict[str, str]]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    base_url = None
    if parts.netloc:
        base_url = f"{'http' if scheme == 'langfuse+http' else 'https'}://{parts.netloc}{parts.path.rstrip('/')}"
    settings = langfuse_settings_from_env(base_url=base_url)
    if settings is None:
        raise UnknownBackendError(
            f"{url!r} needs LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY in the environment "
            "(and LANGFUSE_BASE_URL or LANGFUSE_HOST unless the URL names the host)"
        )
    return settings, options


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


class LangfuseObservationsApi:
    """Pages through ``GET /api/public/v2/observations`` with retries; counts what it had to skip."""

    def __init__(self, settings: LangfuseSettings, *, page_limit: int = 1000, timeout_s: float = 30.0,
                 policy: RetryPolicy | None = None, sleep=time.sleep):
        self.settings = settings
        self.page_limit = max(1, min(int(page_limit), 1000))
        self.policy = policy or RetryPolicy(max_retries=5, backoff_s=0.5, max_backoff_s=10.0, retry_statuses=READ_RETRY_STATUSES)
        self._sleep = sleep
        self._client = httpx.Client(base_url=settings.base_url, timeout=timeout_s,
                                    headers={"Authorization": settings.authorization(), "Accept": "application/json"})
        self.counts = {"pages": 0, "observations": 0, "malformed_pages": 0, "malformed_observations": 0, "retries": 0}

    def close(self) -> None:
        self._client.close()

    def observations(self, *, since: float | None = None, until: float | None = None, trace_id: str | None = None,
                     fields: str = WINDOW_FIELDS, max_items: int | None = None) -> Iterator[Observation]:
        params: dict[str, str | int] = {"limit": self.page_limit, "fields": fields}
        if since is not None:
            params["fromStartTime"] = _iso(since)
        if until is not None:
            params["toStartTime"] = _iso(until)
        if trace_id is not None:
            params["traceId"] = trace_id
        cursor: str | None = None
        yielded = 0
        while True:
            page = self._page({**params, "cursor": cursor} if cursor else params)
            data = page.get("data") if isinstance(page, dict) else None
            meta = page.get("meta") if isinstance(page, dict) else None
            next_cursor = meta.get("cursor") if isinstance(meta, dict) else None
            if not isinstance(data, list):
                self.counts["malformed_pages"] += 1
                log.warning("graphtune: skipped a malformed page from %s%s (no 'data' list)", self.settings.base_url, OBSERVATIONS_PATH)
                data = []
            else:
                self.counts["pages"] += 1
            for item in data:
                observation = parse_observation(item)
                if observation is None:
                    self.counts["malformed_observations"] += 1
                    continue
                self.counts["observations"] += 1
                yield observation
                yielded += 1
                if max_items is not None and yielded >= max_items:
                    log.warning("graphtune: stopped reading Langfuse after %d observations (max_observations); "
                                "narrow the window for complete statistics", yielded)
                    return
            if not isinstance(next_cursor, str) or not next_cursor or next_cursor == cursor:
                return  # a page without a cursor is the last one, whatever its length
            cursor = next_cursor

    def _page(self, params: dict) -> object:
        def on_retry(_reason: str) -> None:
            self.counts["retries"] += 1

        outcome = call_with_retry(lambda: self._client.get(OBSERVATIONS_PATH, params=params), self.policy,
                                  sleep=self._sleep, on_retry=on_retry)
        response = outcome.response
        if response is None:
            raise LangfuseApiError(f"Langfuse at {self.settings.base_url} did not answer {OBSERVATIONS_PATH} "
                                   f"after {outcome.attempts} attempts ({outcome.describe()})")
        if response.status_code in (401, 403):
            raise LangfuseApiError(f"Langfuse at {self.settings.base_url} refused the keys (HTTP {response.status_code}): "
                                   "check LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY")
        if not outcome.ok:
            raise LangfuseApiError(f"Langfuse at {self.settings.base_url} answered HTTP {response.status_code} "
                                   f"to {OBSERVATIONS_PATH} after {outcome.attempts} attempts: {response.text[:300]}")
        try:
            return response.json()
        except ValueError:
            return None  # counted as a malformed page by the caller


class LangfuseTraceSource(TraceStore):
    """A read-only :class:`TraceStore` over Langfuse. Reads are cached per instance (one observe step)."""

    def __init__(self, url: str = "langfuse://", *, api: LangfuseObservationsApi | None = None):
        self.url = url
        settings, options = settings_from_url(url)
        try:
            self.max_observations = int(options.get("max_observations", 100_000))
            self.lookback_s = float(options.get("lookback", 600))
            page_limit = int(options.get("page_limit", 1000))
        except ValueError as exc:
            raise UnknownBackendError(f"{url!r}: max_observations, page_limit and lookback must be numbers ({exc})") from None
        self.api = api or LangfuseObservationsApi(settings, page_limit=page_limit)
        self.unfinished = 0
        self._cache: dict[tuple, list[TrajectoryEvent]] = {}

    # -- reading ---------------------------------------------------------------------------
    def _events(self, since: float | None, until: float | None, trace_id: str | None) -> list[TrajectoryEvent]:
        if since is None and trace_id is None:
            since = (until or time.time()) - DEFAULT_WINDOW_S
        fetch_since = since - self.lookback_s if since is not None else None
        key = (fetch_since, until, trace_id)
        cached = self._cache.get(key)
        if cached is None:
            fields = TRACE_FIELDS if trace_id is not None else WINDOW_FIELDS
            observations = list(self.api.observations(since=fetch_since, until=until, trace_id=trace_id,
                                                      fields=fields, max_items=self.max_observations))
            cached, unfinished = events_from_observations(observations)
            self.unfinished += unfinished
            cached.sort(key=lambda e: e.time)
            self._cache[key] = cached
        return cached

    def read(self, query: EventQuery = EventQuery()) -> list[TrajectoryEvent]:
        events = [e for e in self._events(query.since, query.until, query.trace_id) if query.matches(e)]
        return events[: query.limit] if query.limit else events

    def traces(self, *, workflow=None, sources=None, since=None, limit=20) -> list[TraceSummary]:
        from graphtune.backends.summaries import summarize_traces

        return summarize_traces(self.read(EventQuery(workflow=workflow, sources=sources, since=since)), limit)

    def aggregate(self, *, workflow=None, since=None, until=None, sources=("production",)) -> list[NodeStats]:
        from graphtune.backends.aggregate import stats_of_loaded_events

        query = EventQuery(workflow=workflow, sources=sources, since=since, until=until)
        return stats_of_loaded_events(list(self._events(since, until, None)), query)

    def stats(self) -> dict[str, int]:
        return {**self.api.counts, "unfinished_observations": self.unfinished}

    # -- not for a read-only source ---------------------------------------------------------------
    def _read_only(self, what: str):
        raise ReadOnlyTraceStoreError(
            f"{self.url} is a read-only trace source: graphtune cannot {what} Langfuse data. Record to a "
            "database (GRAPHTUNE_DATABASE_URL) and export to Langfuse with the LANGFUSE_* keys instead."
        )

    def write(self, events: Sequence[TrajectoryEvent]) -> None:
        self._read_only("write")

    def prune(self, before: float) -> int:
        self._read_only("prune")

    def delete_user(self, user_hash: str) -> int:
        self._read_only("delete users from")

    def get_or_create_meta(self, key: str, default: str) -> str:
        self._read_only("keep metadata in")

    def close(self) -> None:
        self.api.close()
