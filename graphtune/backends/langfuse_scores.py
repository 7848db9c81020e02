"""Eval results as Langfuse scores, attached to the traces of the eval runs that produced them.

The eval runner records each example's run under a trace id it chooses (the run id); with
Langfuse keys set, those traces are exported to Langfuse, and each metric of each example becomes
a numeric score on its trace (``POST /api/public/scores``, a list of scores per request: the current
public API defines the body as ``CreateScoresRequest = List[CreateScoreRequest]`` with 202 or 207
answers, and the Langfuse SDK's own score consumer posts such batches). Score
ids are derived from trace id and metric, so sending a report twice updates rather than
duplicates. Results served from the eval cache are skipped: their scores went out with the run
that produced them.

Sending happens on a background thread (:func:`submit_eval_scores`): an unreachable Langfuse
never slows an eval. 429 and 5xx answers are retried with backoff; a 207 answer counts the
rejected scores. Missing keys: nothing is sent, one log line.
"""

from __future__ import annotations

import logging
import uuid
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import httpx
from pydantic import BaseModel

from graphtune.backends.http_retry import RetryPolicy, call_with_retry
from graphtune.backends.langfuse_settings import LangfuseSettings, langfuse_settings_from_env

if TYPE_CHECKING:
    from graphtune.evals.runner import EvalReport

log = logging.getLogger("graphtune.langfuse")

SCORES_PATH = "/api/public/scores"
BATCH = 100
_NAMESPACE = uuid.UUID("0c6f4f5e-9b1d-4e59-8f0a-3d2b7e1c5a94")


class ScoreExportResult(BaseModel):
    sent: int = 0
    rejected: int = 0
    failed: int = 0
    skipped: int = 0
    errors: list[str] = []


def eval_scores(report: EvalReport, environment: str | None = None) -> tuple[list[dict[str, Any]], int]:
    """The Langfuse score bodies for a report, and how many results were skipped (cached or untraced)."""
    scores: list[dict[str, Any]] = []
    skipped = 0
    metadata = {
        "graphtune_workflow": report.workflow, "dataset": report.dataset, "dataset_hash": report.dataset_hash,
        "config_hash": report.config_hash, "config_version": report.config_version,
        "evaluator_version": report.evaluator_version,
    }
    for result in report.results:
        if result.cached or not result.trace_id:
            skipped += 1
            continue
        for metric, value in result.scores.items():
            if value is None:
                continue
            body: dict[str, Any] = {
                "id": uuid.uuid5(_NAMESPACE, f"{result.trace_id}:{metric}").hex,
                "traceId": result.trace_id,
                "name": metric,
                "value": float(value),
                "dataType": "NUMERIC",
                "metadata": {**metadata, "example_id": result.example_id},
            }
            if result.error:
                body["comment"] = result.error[:500]
            if environment:
                body["environment"] = environment
            scores.append(body)
    return scores, skipped


def send_eval_scores(report: EvalReport, settings: LangfuseSettings, *, environment: str | None = None,
                     policy: RetryPolicy | None = None, timeout_s: float = 10.0) -> ScoreExportResult:
    """Send a report's scores now; never raises for HTTP failures (they are counted and logged)."""
    scores, skipped = eval_scores(report, environment)
    result = ScoreExportResult(skipped=skipped)
    policy = policy or RetryPolicy()
    headers = {"Authorization": settings.authorization(), "Content-Type": "application/json"}
    with httpx.Client(base_url=settings.base_url, timeout=timeout_s, headers=headers) as client:
        for start in range(0, len(scores), BATCH):
            chunk = scores[start : start + BATCH]
            outcome = call_with_retry(lambda: client.post(SCORES_PATH, json=chunk), policy)
            if not outcome.ok:
                result.failed += len(chunk)
                result.errors.append(f"{outcome.describe()} after {outcome.attempts} attempts")
                continue
            body = _json(outcome.response)
            if outcome.response.status_code == 207 and isinstance(body, dict):
                rejected = int(body.get("rejected") or 0)
                result.rejected += rejected
                result.sent += len(chunk) - rejected
                result.errors += [str(e.get("message", e)) for e in body.get("errors") or [] if isinstance(e, dict)][:5]
            else:
                result.sent += len(chunk)
    if result.failed or result.rejected:
        log.warning("graphtune: Langfuse scores for %s on %s: %d sent, %d rejected, %d failed (%s)", report.workflow,
                    report.dataset, result.sent, result.rejected, result.failed, "; ".join(result.errors[:3]))
    return result


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


_executor: ThreadPoolExecutor | None = None


def submit_eval_scores(report: EvalReport) -> Future | None:
    """Send the report's scores in the background when Langfuse keys are set; None otherwise."""
    import os

    from graphtune.backends.langfuse_settings import tracing_disabled

    if tracing_disabled():
        return None
    settings = langfuse_settings_from_env()
    if settings is None:
        return None
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="graphtune-scores")
    environment = os.environ.get("GRAPHTUNE_ENV") or os.environ.get("LANGFUSE_TRACING_ENVIRONMENT")
    return _executor.submit(_send_logged, report, settings, environment)


def _send_logged(report: EvalReport, settings: LangfuseSettings, environment: str | None) -> ScoreExportResult:
    try:
        return send_eval_scores(report, settings, environment=environment)
    except Exception as exc:  # a background send must never surface as an eval failure
        log.warning("graphtune: sending eval scores to Langfuse failed: %s", exc)
        return ScoreExportResult(failed=-1, errors=[str(exc)])
