"""After a promotion, keep watching: a guardrail the new version breaks on live traffic rolls it back.

``graphtune experiment check`` calls :func:`check_recent_promotions`. For every workflow whose active
version was promoted within ``within_s``, the runs of the new version since the promotion are
compared with the runs of the version it replaced over the same length of time before it, with the
always-valid non-inferiority tests of live experiments (error rate at most 2 points up, mean latency
at most 1.2x, positive feedback at most 2 points down). A guardrail that is surely broken rolls the
workflow back to the replaced version (compare-and-set) and says so in the change log.

Before and after are not a randomized split, so a traffic shift at the promotion can move the
figures; the margins and the always-valid intervals keep that from firing on noise, and the change
log names the evidence so a person can promote again.
"""

from __future__ import annotations

import json
import time
from typing import Literal

from pydantic import BaseModel

from graphtune.backends.config_store import ConfigStore, ConflictError
from graphtune.backends.traces import TraceStore
from graphtune.tuning.experiment import GUARDRAILS, check_guardrails
from graphtune.tuning.sequential import GuardrailResult

DEFAULT_WITHIN_S = 24 * 3600.0
ACTOR = "graphtune"


class PromotionCheck(BaseModel):
    workflow: str
    version: int
    from_version: int
    status: Literal["holds", "watching", "rolled_back", "conflict"]
    guardrails: list[GuardrailResult]
    message: str


def check_recent_promotions(configs: ConfigStore, traces: TraceStore, *, within_s: float = DEFAULT_WITHIN_S,
                            now: float | None = None) -> list[PromotionCheck]:
    now = time.time() if now is None else now
    checks = []
    for workflow in configs.workflows():
        active = configs.active(workflow)
        entry = next((e for e in configs.history(workflow, limit=20) if e.action in ("promote", "rollback")), None)
        if (active is None or entry is None or entry.action != "promote" or entry.version != active.version
                or entry.from_version is None or now - entry.at > within_s):
            continue
        checks.append(_check(configs, traces, workflow, entry.version, entry.from_version, entry.at, now))
    return checks


def _check(configs: ConfigStore, traces: TraceStore, workflow: str, version: int, previous: int,
           promoted_at: float, now: float) -> PromotionCheck:
    from graphtune.live import read_live_evidence

    elapsed = max(now - promoted_at, 1e-3)
    evidence = read_live_evidence(traces, workflow, baseline_version=previous, candidate_version=version,
                                  since=promoted_at - elapsed, until=now, assigned_only=False)
    guards = check_guardrails(evidence, GUARDRAILS)
    broken = [g for g in guards if g.decision == "inferior"]
    common = dict(workflow=workflow, version=version, from_version=previous, guardrails=guards)
    if not broken:
        held = all(g.passed for g in guards)
        return PromotionCheck(**common, status="holds" if held else "watching",
                              message=f"{workflow} v{version}: guardrails {'hold' if held else 'not yet shown'} "
                                      f"({evidence.candidate.runs} runs since promotion, {evidence.baseline.runs} before)")
    reason = "automatic rollback: " + "; ".join(f"{g.metric} broken after promotion ({g.detail})" for g in broken)
    try:
        configs.rollback(workflow, previous, actor=ACTOR, reason=reason[:500],
                         evidence=json.dumps({"live": evidence.describe(), "guardrails": [g.model_dump() for g in guards]}))
    except ConflictError as error:
        return PromotionCheck(**common, status="conflict", message=f"{workflow}: not rolled back: {error}")
    return PromotionCheck(**common, status="rolled_back", message=f"{workflow}: rolled back to v{previous}: {reason}")
