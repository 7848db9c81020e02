"""What the approval page shows: the report of the thread's candidate, its charts, the live looks.

Built from a thread's state and interrupt payload; no I/O, so the page, ``graphtune report --html``
and the tests render the same thing.
"""

from __future__ import annotations

from typing import Any

import yaml

from graphtune.web import charts

LATENCY = "latency_ms"


class FormError(ValueError):
    """A form field the page cannot use; the message names the field and what was expected."""


def report_of(values: dict[str, Any], waiting: dict[str, Any] | None) -> dict[str, Any] | None:
    """The report the approver sees: the interrupt's, else the last one the thread wrote."""
    if waiting and waiting.get("kind") == "approval":
        return waiting.get("report")
    return values.get("report")


def candidate_rows(decision: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Each evaluated candidate's change in the goal metric, for the deltas chart and its table."""
    rows = []
    for comparison in (decision or {}).get("comparisons") or []:
        goal = (comparison.get("rows") or [{}])[0]
        rows.append({"label": comparison["candidate_id"], "metric": f"{goal.get('statistic', '')} {goal.get('metric', '')}".strip(),
                     "delta": goal.get("delta"), "low": goal.get("ci_low"), "high": goal.get("ci_high"),
                     "better": goal.get("better"), "n": goal.get("n", 0),
                     "best": comparison["candidate_id"] == (decision or {}).get("best_candidate_id")})
    return rows


def latencies(values: dict[str, Any], config_hash: str | None) -> list[float]:
    report = (values.get("evals") or {}).get(config_hash or "") or {}
    return [r["scores"][LATENCY] for r in report.get("results") or []
            if isinstance((r.get("scores") or {}).get(LATENCY), (int, float))]


def looks_of(past_values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per look of the thread's live experiment (oldest first), from its checkpoints' states:
    the state keeps only the last look, each checkpoint one of them."""
    seen: dict[tuple, dict[str, Any]] = {}
    for values in past_values:
        experiment = values.get("experiment") or {}
        look = experiment.get("last_look")
        if not look or not experiment.get("looks"):
            continue
        key = (experiment.get("candidate_id"), experiment.get("stage"), experiment["looks"])
        primary = look.get("primary") or {}
        seen.setdefault(key, {
            "look": experiment["looks"], "stage": experiment.get("stage"), "share": experiment.get("share"),
            "candidate_id": experiment.get("candidate_id"), "metric": primary.get("metric", ""),
            "estimate": primary.get("estimate"), "lower": primary.get("lower"), "upper": primary.get("upper"),
            "n_candidate": primary.get("n_candidate", 0), "n_baseline": primary.get("n_baseline", 0),
            "decision": primary.get("decision", ""), "verdict": (look.get("verdict") or {}).get("action", ""),
            "summary": look.get("summary", "")})
    return sorted(seen.values(), key=lambda row: (str(row["stage"] != "experiment"), row["look"]))


def approval_page(values: dict[str, Any], waiting: dict[str, Any] | None,
                  past_values: list[dict[str, Any]] = ()) -> dict[str, Any]:
    """The template's context: the report, its charts as inline SVG, the experiment's looks."""
    report = report_of(values, waiting)
    looks = looks_of(list(past_values))
    page: dict[str, Any] = {"report": report, "outcome": values.get("outcome"), "waiting": waiting,
                            "error": (waiting or {}).get("error"), "looks": looks, "charts": {}}
    if not report:
        return page
    rows = candidate_rows(values.get("decision"))
    page["candidates"] = rows
    if rows:
        page["charts"]["deltas"] = charts.metric_deltas(rows)
    goal = (report.get("table") or [{}])[0]
    paired = goal.get("n", 0)
    unchanged = max(paired - report.get("improved", 0) - report.get("regressed", 0), 0)
    if paired:
        page["charts"]["examples"] = charts.example_outcomes(report.get("improved", 0), report.get("regressed", 0),
                                                             unchanged, goal.get("metric", "the goal"))
    page["unchanged"] = unchanged
    base = latencies(values, (values.get("baseline") or {}).get("config_hash"))
    cand = latencies(values, (report.get("candidate") or {}).get("config_hash"))
    if base and cand:
        page["charts"]["latency"] = charts.latency_distribution(base, cand)
    if looks:
        page["charts"]["looks"] = charts.interval_over_looks(looks, looks[-1]["metric"])
    return page


def answer_from_form(form: dict[str, str]) -> dict[str, Any]:
    """The resume value an HTML form asks for; the approver's name is never taken from the form."""
    action = (form.get("action") or "").strip().lower()
    if action not in ("approve", "reject", "edit", "experiment", "stop"):
        raise FormError(f"action: expected approve, reject, edit, experiment or stop; got {action!r}")
    answer: dict[str, Any] = {"action": action, "comment": (form.get("comment") or "").strip()}
    if action == "edit":
        answer["mutations"] = parse_changes(form.get("changes") or "")
    return answer


def parse_changes(text: str) -> list[dict[str, Any]]:
    """``path = value`` per line (values are YAML) as mutations of the baseline."""
    mutations = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        path, sep, value = line.partition("=")
        if not sep or not path.strip():
            raise FormError(f"changes, line {number}: expected path = value (e.g. retrieval.top_k = 8), got {line.strip()!r}")
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise FormError(f"changes, line {number}: the value is not valid YAML ({error.problem or error})") from None
        mutations.append({"path": path.strip(), "value": parsed})
    if not mutations:
        raise FormError("changes: an edit needs at least one line path = value")
    return mutations
