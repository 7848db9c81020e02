"""Turning what a person asked for into a ``TuningRequest`` checked against the workflow's spec.

There are three ways in, and they all produce the same checked result:

- ``parse_request(text, specs)``: the deterministic reader of a chat sentence. It is used when no
  LLM is configured, and as the fallback when the model's answer stays unusable. It knows the
  common phrasings ("too slow", "cut cost 30%", "without losing accuracy", "try 6 candidates",
  "don't touch prompts") and ignores the rest, and says in ``request.notes`` what it ignored.
- ``check_draft(draft, specs)``: checks a ``RequestDraft`` (the model's structured output) against
  the spec, and returns the reasons for a rejection precisely enough for the model to fix them
  on its retry. Given the person's text, every field the model left out that the deterministic
  reader finds there is filled in (``fill_draft``), and the notes name those fields.
- ``complete_request(data, spec)``: a structured request (a dict from the CLI or the SDK). Fields
  it leaves out come from the spec.

Everything left unsaid comes from the spec: its objective, its guardrails. A spec guardrail on
the goal's own metric is dropped, because a latency goal makes a latency guardrail moot. Every
reading is recorded in ``notes`` so the person can check how their words were understood.
Pure functions with no I/O: the intake node loads the specs and calls the model.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from graphtune.spec import HIGHER_IS_BETTER, METRICS, Guardrail, WorkflowSpec
from graphtune.tuning.request import Budget, Statistic, TuningGoal, TuningRequest

QUALITY_METRICS = ("exact", "contains", "token_f1", "judge")
DEFAULT_MARGIN = 0.02  # "without losing accuracy": at most two points below the baseline
DEFAULT_MAX_RATIO = 1.05  # "without getting slower / more expensive": noise allowance over the baseline
BUDGET_FIELDS = tuple(f for f in Budget.model_fields if f != "given")


class RequestError(ValueError):
    """A structured request that cannot be used; the message names the key and what was expected."""


class ParsedRequest(BaseModel):
    """A request that was read and checked. ``name`` is the key of the spec in the known specs."""

    name: str
    request: TuningRequest


class UnknownWorkflow(BaseModel):
    """The request names no known workflow (or none at all while several are known)."""

    mentioned: str | None = None
    known: dict[str, str] = Field(default_factory=dict, description="name -> description")

    def describe(self) -> str:
        head = (f"I don't know a workflow named {self.mentioned!r}." if self.mentioned
                else "Which workflow should I tune? The request names none.")
        if not self.known:
            return f"{head} No workflows are known: add a spec file."
        lines = [f"- {name}" + (f": {desc}" if desc else "") for name, desc in self.known.items()]
        example = next(iter(self.known))
        return "\n".join([head, "Known workflows:", *lines, f"For example: \"{example} is too slow; cut latency 20%\"."])


class DraftProblems(BaseModel):
    """Why a model's draft was rejected: one reason per problem, written for the model's retry."""

    reasons: list[str]


# -- the model's structured output ----------------------------------------------------------------


class GuardrailDraft(BaseModel):
    """A limit the person asked for beyond the spec's guardrails."""

    metric: str = Field(description="One of the workflow's metrics")
    statistic: Statistic = "mean"
    max_ratio: float | None = Field(None, description="candidate <= max_ratio x baseline (lower-is-better metrics)")
    max_value: float | None = Field(None, description="candidate <= this absolute value")
    margin: float | None = Field(None, description="non-inferiority: at most this much worse than the baseline, e.g. 0.02")


class RequestDraft(BaseModel):
    """A tuning request as read from the person's message. Leave a field null when the message does not say it."""

    workflow: str | None = Field(None, description="The workflow named; null when none is named")
    metric: str | None = Field(None, description="The metric to improve; null = the workflow's objective")
    direction: Literal["maximize", "minimize"] | None = None
    statistic: Statistic | None = Field(None, description="mean, p50 or p95; null = p95 for latency_ms, else mean")
    target_change: float | None = Field(None, description="Relative change wanted: -0.2 for 'cut 20%', 0.05 for '+5%'")
    guardrails: list[GuardrailDraft] = Field(default_factory=list, description="Extra limits the person asked for")
    candidates: int | None = None
    rounds: int | None = None
    examples: int | None = None
    tokens: int | None = None
    cost_usd: float | None = None
    wall_time_s: float | None = None
    scope: list[str] = Field(default_factory=list, description="Tunable paths or prefixes to search; empty = all")
    exclude: list[str] = Field(default_factory=list, description="Tunable paths or prefixes not to touch")
    notes: list[str] = Field(default_factory=list, description="Phrases you could not map, and how you read ambiguous ones")


# -- helpers shared by the three ways in ---------------------------------------------------------


def metrics_of(spec: WorkflowSpec) -> list[str]:
    return spec.evals.metric_names or list(METRICS)


def natural_direction(metric: str, spec: WorkflowSpec) -> Literal["maximize", "minimize"]:
    return spec.evals.direction_of(metric) or "minimize"


def directed(guard: Guardrail, spec: WorkflowSpec) -> Guardrail:
    """A guardrail on the spec's own metric takes its direction from the metric's declaration."""
    if guard.direction is None and guard.metric not in METRICS:
        guard.direction = spec.evals.direction_of(guard.metric)
    return guard


def default_statistic(metric: str) -> Statistic:
    """Latency is judged by its tail (p95), like the spec's latency guardrails; everything else by its mean."""
    return "p95" if metric == "latency_ms" else "mean"


def quality_metric(spec: WorkflowSpec) -> str | None:
    """What "accuracy" or "quality" means for this workflow: the objective if it measures answers, else the
    first quality metric (built in, or the spec's own that is maximized)."""
    def measures_answers(metric: str) -> bool:
        return metric in QUALITY_METRICS or (metric not in METRICS and spec.evals.direction_of(metric) == "maximize")

    if measures_answers(spec.objective.metric):
        return spec.objective.metric
    return next((m for m in metrics_of(spec) if measures_answers(m)), None)


def _norm_name(name: str) -> str:
    return re.sub(r"[\s_-]+", "_", name.strip().lower())


def resolve_workflow(name: str | None, names: Iterable[str]) -> str | None:
    """The known workflow ``name`` refers to, ignoring case and ``_``/``-``/space differences."""
    if not name:
        return None
    wanted = _norm_name(name)
    return next((n for n in names if _norm_name(n) == wanted), None)


def _workflow_pattern(name: str) -> re.Pattern:
    parts = [re.escape(p) for p in re.split(r"[\s_-]+", name.lower()) if p]
    return re.compile(r"(?<![\w.])" + r"[\s_-]*".join(parts) + r"(?![\w])")


def find_workflows(text: str, names: Iterable[str]) -> list[tuple[str, tuple[int, int]]]:
    """Known workflows mentioned in ``text`` with their spans, in order of appearance."""
    lowered = (text or "").lower()
    found = []
    for name in names:
        for match in _workflow_pattern(name).finditer(lowered):
            found.append((name, match.span()))
    return sorted(found, key=lambda item: item[1][0])


def match_tunables(pattern: str, tunables: Iterable[str]) -> list[str]:
    """Tunable paths a scope entry means: an exact path, a prefix (``rag``, ``rag.*``), a glob, or a
    last segment (``temperature``, ``top_k``); singular/plural and ``-``/``_`` differences are forgiven."""
    paths = list(tunables)
    token = pattern.strip().lower().replace("-", "_")
    if not token:
        return []
    if "*" in token.rstrip("*").rstrip("."):
        return [p for p in paths if fnmatch.fnmatchcase(p, token)]
    token = token.rstrip("*").rstrip(".")
    for variant in dict.fromkeys([token, token + "s", token.removesuffix("s")]):
        if not variant:
            continue
        hits = [p for p in paths if p == variant or p.startswith(variant + ".") or p.split(".")[-1] == variant]
        if hits:
            return hits
    return []


def expand_scope(patterns: Iterable[str], tunables: Iterable[str]) -> tuple[list[str], list[str]]:
    """(tunable paths matched by any pattern, in the spec's order; patterns that match nothing)."""
    paths = list(tunables)
    matched: set[str] = set()
    unmatched = []
    for pattern in patterns:
        hits = match_tunables(pattern, paths)
        matched.update(hits)
        if not hits:
            unmatched.append(pattern)
    return [p for p in paths if p in matched], unmatched


def merge_guardrails(spec: WorkflowSpec, extra: list[Guardrail], goal_metric: str) -> tuple[list[Guardrail], list[str]]:
    """The spec's guardrails plus the person's, minus any on the goal's metric. A person's guardrail
    replaces the spec's guardrail on the same metric."""
    notes = []
    kept: list[Guardrail] = []
    for g in spec.guardrails:
        if g.metric == goal_metric:
            notes.append(f"dropped the spec's guardrail '{g.describe()}': {goal_metric} is now the goal")
        elif any(e.metric == g.metric for e in extra):
            notes.append(f"the spec's guardrail '{g.describe()}' is replaced by yours")
        else:
            kept.append(g)
    for e in extra:
        if e.metric == goal_metric:
            notes.append(f"ignored the guardrail '{e.describe()}': {goal_metric} is the goal itself")
        elif not any(k.metric == e.metric and k.statistic == e.statistic for k in kept):
            kept.append(e)
    return kept, notes


def _check_goal(goal: TuningGoal, spec: WorkflowSpec) -> list[str]:
    reasons = []
    available = metrics_of(spec)
    if goal.metric not in available:
        reasons.append(f"metric {goal.metric!r} is not measured by {spec.workflow}; use one of {available}")
        return reasons
    natural = natural_direction(goal.metric, spec)
    if goal.direction != natural:
        reasons.append(f"direction {goal.direction!r} is wrong for {goal.metric}: it is {natural}d")
    if goal.target_change is not None:
        if natural == "minimize" and not -1 < goal.target_change < 0:
            reasons.append(f"target_change {goal.target_change} for a minimized metric must be between -1 and 0 (e.g. -0.2 for 'cut 20%')")
        if natural == "maximize" and goal.target_change <= 0:
            reasons.append(f"target_change {goal.target_change} for a maximized metric must be above 0 (e.g. 0.05 for '+5%')")
    return reasons


def _check_scope(scope: list[str], exclude: list[str], spec: WorkflowSpec) -> tuple[list[str], list[str]]:
    """(expanded scope, reasons). Scope minus exclusions, as full tunable paths; [] means all."""
    tunables = list(spec.tunables)
    reasons = []
    included, unmatched = expand_scope(scope, tunables)
    excluded, unmatched_ex = expand_scope(exclude, tunables)
    for pattern in unmatched + unmatched_ex:
        reasons.append(f"scope entry {pattern!r} matches no tunable of {spec.workflow}; tunables: {', '.join(tunables)}")
    if not exclude:
        return included, reasons
    result = [p for p in (included or tunables) if p not in excluded]
    if not result and not reasons:
        reasons.append("the scope leaves no tunable to search")
    return result, reasons


def _errors(exc: ValidationError, prefix: str = "") -> list[str]:
    out = []
    for e in exc.errors():
        loc = ".".join(str(p) for p in (prefix, *e["loc"]) if p != "")
        out.append(f"{loc or '(top level)'}: {e['msg'].removeprefix('Value error, ')}")
    return out


# -- the model's draft ------------------------------------------------------------------------------


def check_draft(draft: RequestDraft, specs: Mapping[str, WorkflowSpec], *, workflow: str | None = None,
                text: str = "") -> ParsedRequest | UnknownWorkflow | DraftProblems:
    """Check a model's draft against the spec; ``workflow`` (a key of ``specs``) fixes the workflow."""
    notes: list[str] = []
    name = workflow
    if name is None:
        name = resolve_workflow(draft.workflow, specs)
        if name is None and draft.workflow:
            return UnknownWorkflow(mentioned=draft.workflow, known=_known(specs))
        if name is None and len(specs) == 1:
            name = next(iter(specs))
            notes.append(f"no workflow named; using the only known one, {name}")
        if name is None:
            return UnknownWorkflow(known=_known(specs))
    spec = specs[name]
    if text.strip():
        draft, filled = fill_draft(draft, text, spec)
        if filled:
            said = ", ".join(f"{k}={v:g}" if isinstance(v, (int, float)) else f"{k}={v}" if isinstance(v, str)
                             else f"{k} ({len(v)})" for k, v in filled.items())
            notes.append(f"the model left these out; the deterministic reader filled them in from the text: {said}")

    metric = draft.metric or spec.objective.metric
    goal_fields = {"metric": metric, "direction": draft.direction or natural_direction(metric, spec),
                   "statistic": draft.statistic or default_statistic(metric),
                   "target_change": draft.target_change or None}
    goal = TuningGoal.model_validate(goal_fields)
    reasons = _check_goal(goal, spec)

    extra = []
    for i, g in enumerate(draft.guardrails):
        try:
            guard = Guardrail.model_validate(g.model_dump())
        except ValidationError as exc:
            reasons.extend(_errors(exc, f"guardrails[{i}]"))
            continue
        if guard.metric not in metrics_of(spec):
            reasons.append(f"guardrails[{i}].metric {guard.metric!r} is not measured by {spec.workflow}; use one of {metrics_of(spec)}")
        extra.append(directed(guard, spec))

    budget_fields = {f: getattr(draft, f) for f in BUDGET_FIELDS if getattr(draft, f) is not None}
    budget = None
    try:
        budget = Budget.model_validate(budget_fields)
    except ValidationError as exc:
        reasons.extend(_errors(exc, "budget"))

    scope, scope_reasons = _check_scope(draft.scope, draft.exclude, spec)
    reasons.extend(scope_reasons)
    if reasons:
        return DraftProblems(reasons=reasons)

    guardrails, merge_notes = merge_guardrails(spec, extra, goal.metric)
    request = TuningRequest(workflow=spec.workflow, goal=goal, guardrails=guardrails, budget=budget, scope=scope,
                            text=text, notes=[*notes, *draft.notes, *merge_notes])
    return ParsedRequest(name=name, request=request)


def _known(specs: Mapping[str, WorkflowSpec]) -> dict[str, str]:
    return {name: spec.description for name, spec in specs.items()}


# -- a structured request -----------------------------------------------------------------------------


def complete_request(data: Mapping[str, Any], spec: WorkflowSpec) -> TuningRequest:
    """Validate a structured request (at least ``workflow``) and fill what it leaves out from ``spec``.

    Raises ``RequestError`` naming each bad key, rather than guessing what a typo meant.
    """
    data = dict(data)
    problems = [f"{key}: unknown key; expected some of {list(TuningRequest.model_fields)}"
                for key in data if key not in TuningRequest.model_fields]
    notes = list(data.get("notes") or [])
    goal = data.get("goal")
    if goal is None:
        data["goal"] = TuningGoal.from_objective(spec.objective).model_dump()
        data["goal"]["statistic"] = default_statistic(spec.objective.metric)
        notes.append(f"goal from the spec's objective: {TuningGoal.model_validate(data['goal']).describe()}")
    else:
        goal = {"metric": goal} if isinstance(goal, str) else goal
        if isinstance(goal, dict) and isinstance(goal.get("metric"), str):
            goal = {"direction": natural_direction(goal["metric"], spec), "statistic": default_statistic(goal["metric"]), **goal}
        data["goal"] = goal
    if data.get("guardrails") is None:
        data["guardrails"] = [g.model_dump() for g in spec.guardrails]
        notes.append("guardrails from the spec")
    for key, model in (("goal", TuningGoal), ("budget", Budget)):
        if isinstance(data.get(key), dict):
            problems += [f"{key}.{k}: unknown key; expected some of {list(model.model_fields)}"
                         for k in data[key] if k not in model.model_fields]
    data.update(workflow=spec.workflow, notes=notes)
    if problems:
        raise RequestError("; ".join(problems))
    try:
        request = TuningRequest.model_validate(data)
    except ValidationError as exc:
        raise RequestError("; ".join(_errors(exc))) from None
    reasons = _check_goal(request.goal, spec)
    for i, g in enumerate(request.guardrails):
        if g.metric not in metrics_of(spec):
            reasons.append(f"guardrails[{i}].metric {g.metric!r} is not measured by {spec.workflow}; use one of {metrics_of(spec)}")
        directed(g, spec)
    scope, scope_reasons = _check_scope(request.scope, [], spec)
    if reasons or scope_reasons:
        raise RequestError("; ".join(reasons + scope_reasons))
    return request.model_copy(update={"scope": scope})


# -- the deterministic reader of a sentence ----------------------------------------------------------

_NUM = r"(?P<num>-?\d+(?:,\d{3})*(?:\.\d+)?)"
_QUOTE_LIMIT = 80  # notes quote the person's words; a pasted essay is shortened

# budget field -> the phrase that sets it ("try 6 candidates", "100k tokens", "$2", "within 10 minutes")
_BUDGET_RULES: list[tuple[str, re.Pattern]] = [
    ("candidates", re.compile(rf"{_NUM}\s*(?:more\s+|different\s+|new\s+)?(?:candidates?|configs?|configurations?|variants?)\b")),
    ("rounds", re.compile(rf"{_NUM}\s*(?:rounds?|iterations?)\b")),
    ("examples", re.compile(rf"{_NUM}\s*(?P<unit>k\b)?\s*(?:example\s+evaluations?|example\s+evals?|examples?|evaluations?|evals?)\b")),
    ("tokens", re.compile(rf"{_NUM}\s*(?P<unit>k|m)?\s*tokens\b")),
    ("cost_usd", re.compile(rf"(?P<dollar>\$)?\s*{_NUM}\s*(?(dollar)|(?:\$|usd\b|dollars?\b|bucks\b))")),
    ("wall_time_s", re.compile(
        rf"(?:within|in|under|for|at\s+most|max(?:imum)?|less\s+than|no\s+more\s+than|spend)\s+{_NUM}\s*"
        r"(?P<unit>hours?|hrs?|h|minutes?|mins?|m|seconds?|secs?|s)\b")),
]
_COUNT_UNITS = {"k": 1_000, "m": 1_000_000}
_TIME_UNITS = {"h": 3600, "hr": 3600, "hour": 3600, "m": 60, "min": 60, "minute": 60, "s": 1, "sec": 1, "second": 1}

# (pattern, metric key); "quality" is resolved against the spec
_GOAL_RULES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"\b(?:input|prompt)\s+tokens\b|\binput_tokens\b"), "input_tokens"),
    (re.compile(r"\b(?:output|completion)\s+tokens\b|\boutput_tokens\b"), "output_tokens"),
    (re.compile(r"\btoken[\s_]f1\b|\bf1\b"), "token_f1"),
    (re.compile(r"\bretrieval[\s_]hits?(?:\s+rate)?\b|\bretrieval\b"), "retrieval_hit"),
    (re.compile(r"\bexact[\s_]match(?:es)?\b"), "exact"),
    (re.compile(r"\bjudge(?:\s+score)?\b"), "judge"),
    (re.compile(r"\bcontains\s+(?:metric|score|rate)\b"), "contains"),
    (re.compile(r"\btoo\s+slow\b|\bslow(?:ly|er|ness)?\b|\bfaster\b|\bquicker\b|\bspeed(?:\s*up)?\b|\blatency(?:_ms)?\b"
                r"|\bresponse\s+times?\b|\bp(?:95|50)\b"), "latency_ms"),
    (re.compile(r"\btoo\s+expensive\b|\bexpensive\b|\bcheaper\b|\bcosts?\b|\bcost_usd\b|\bspend(?:ing)?\s+less\b|\bsave\s+money\b|\bpricey\b"), "cost_usd"),
    # "fails too many tasks" / "succeed more often" is about task success (the answers), not exceptions
    (re.compile(r"\bfail(?:s|ing|ed)?\s+(?:too\s+many|most|many|a\s+lot\s+of|half\s+(?:of\s+)?(?:the|its|our))?\s*(?:of\s+)?(?:the\s+|its\s+|our\s+)?"
                r"(?:tasks?|tickets?|questions?|requests?|examples?|cases?|orders?)\b|\bsucce(?:ed|eds|eding|ss(?:ful(?:ly)?)?)\b"), "quality"),
    (re.compile(r"\btoo\s+many\s+errors\b|\berrors?\b|\berror\s+rate\b|\bfail(?:ing|s|ures?|ed)?\b|\bcrash(?:es|ing)?\b|\bunreliable\b"), "error"),
    (re.compile(r"\bfewer\s+tokens\b|\btokens?\b|\btoken\s+usage\b|\btotal_tokens\b"), "total_tokens"),
    (re.compile(r"\b(?:improve|increase|boost|raise|better)\s+(?:the\s+)?(?:answer\s+)?(?:accuracy|quality|answers?)\b"
                r"|\bmore\s+(?:accurate|correct)\b|\bbetter\s+answers\b|\bwrong\s+answers\b|\baccuracy\b|\bquality\b|\bcorrectness\b"), "quality"),
]
_PERCENT = re.compile(r"(?:(?P<sign>[-+])\s*)?(?P<num>\d+(?:\.\d+)?)\s*(?:%|percent\b|per\s*cent\b|pct\b)|(?P<half>\bhalve\b|\bby\s+half\b|\bin\s+half\b)")
_STATISTIC_WORDS = [(re.compile(r"\bp95\b|\btail\b"), "p95"), (re.compile(r"\bp50\b|\bmedian\b"), "p50"),
                    (re.compile(r"\bmean\b|\baverage\b|\bavg\b"), "mean")]

# what a protected metric is called -> metric key
_METRIC_WORDS = [
    (re.compile(r"(?:answer\s+)?(?:accuracy|quality|answers?|correctness)"), "quality"),
    (re.compile(r"latency|speed|response\s+times?"), "latency_ms"),
    (re.compile(r"costs?|spend"), "cost_usd"),
    (re.compile(r"errors?|error\s+rate|reliability"), "error"),
    (re.compile(r"tokens?|token\s+usage"), "total_tokens"),
]
_METRIC_WORD = r"(?P<what>(?:answer\s+)?(?:accuracy|quality|answers?|correctness)|latency|speed|response\s+times?|costs?|spend|errors?|error\s+rate|reliability|tokens?|token\s+usage)\b"
# "keep p95 latency under 3 s", "latency below 300 ms": an absolute limit, in ms
_LATENCY_LIMIT = re.compile(
    r"\b(?:(?:keep|keeping|hold|holding)\s+)?(?:the\s+|our\s+)?(?:(?P<stat>p95|p50|median|mean|average)\s+)?(?:latency|response\s+times?)\s+"
    rf"(?:under|below|within|at\s+most|less\s+than|<=?)\s+{_NUM}\s*(?P<unit>ms|milliseconds?|s|secs?|seconds?)\b")
_STAT_NAMES = {"p95": "p95", "p50": "p50", "median": "p50", "mean": "mean", "average": "mean"}
_GUARD_RULES = [
    re.compile(r"\b(?:without|with\s+no|no)\s+(?:losing|hurting|sacrificing|reducing|lowering|dropping|harming|degrading|worsening|increasing|raising)\s+"
               rf"(?:the\s+|our\s+|any\s+)?{_METRIC_WORD}\s+(?:by\s+)?more\s+than\s+{_NUM}\s*(?P<unit>%|percent|points?|pts?)"),
    re.compile(r"\b(?:without|with\s+no|no)\s+(?:losing|hurting|sacrificing|reducing|lowering|dropping|harming|degrading|worsening|increasing|raising|more)\s+"
               rf"(?:more\s+than\s+{_NUM}\s*(?P<unit>%|percent|points?|pts?)\s+(?:of\s+|in\s+)?)?(?:the\s+|our\s+|any\s+)?{_METRIC_WORD}"),
    re.compile(rf"\b(?:keep|keeping|maintain|maintaining|preserve|preserving|protect|protecting)\s+(?:the\s+|our\s+)?{_METRIC_WORD}"),
    re.compile(rf"\bno\s+(?:drop|loss|regression|increase)\s+in\s+(?:the\s+)?{_METRIC_WORD}"),
    re.compile(rf"\b{_METRIC_WORD}\s+(?:must|should|can)\s*(?:not|n't)\s+(?:drop|fall|decrease|get\s+worse|go\s+up|increase)"),
    re.compile(r"\bwithout\s+(?:getting|being|becoming)\s+(?P<what>slower|more\s+expensive|worse|less\s+accurate)\b"),
]
_GUARD_ADJECTIVES = {"slower": "latency_ms", "more expensive": "cost_usd", "worse": "quality", "less accurate": "quality"}

_SCOPE_INCLUDE = [
    re.compile(r"\b(?:only|just|solely)\s+(?:tune|touch|change|search|adjust|modify|vary)\s+"),
    re.compile(r"\b(?:tune|touch|change|search|adjust|modify|vary)\s+only\s+"),
    re.compile(r"\b(?:limit|restrict)\s+(?:the\s+search\s+|tuning\s+|it\s+|changes\s+)?to\s+"),
]
_CLOSING = re.compile(r"\b(?:alone|as\s+is|unchanged|fixed|frozen)\b")
_LEAVE_ALONE = re.compile(rf"\b(?:leave|keep)\s+(?=.+?{_CLOSING.pattern})")  # "leave X alone": X ends at the closing word
_SCOPE_EXCLUDE = [
    re.compile(r"\b(?:don'?t|do\s+not|never|without)\s+(?:touch(?:ing)?|chang(?:e|ing)|tun(?:e|ing)|modify(?:ing)?|adjust(?:ing)?)\s+"),
    _LEAVE_ALONE,
    re.compile(r"\bexcept(?:\s+for)?\s+"),
]
_SCOPE_CONNECTORS = {"and", "or", ",", "&", "/", "+"}
_SCOPE_FILLER = {"the", "its", "their", "any", "settings", "setting", "parameters", "params", "knobs", "options", "config",
                 "configuration", "part", "parts", "stuff", "values", "alone", "as", "is", "unchanged", "fixed", "frozen"}
_FILLER = {
    "please", "can", "could", "you", "we", "i", "it", "its", "it's", "is", "are", "was", "be", "been", "the", "a", "an",
    "to", "make", "let's", "lets", "want", "need", "needs", "would", "like", "tune", "tuning", "optimise", "optimize",
    "workflow", "graph", "hi", "hello", "hey", "thanks", "thank", "so", "our", "my", "this", "that", "also", "now", "bit",
    "little", "more", "less", "very", "really", "get", "and", "but", "then", "ok", "okay", "for", "of", "on", "with", "me",
    "us", "by", "at", "most", "least", "try", "up", "too", "much", "way", "lot", "should", "just", "run", "search",
    "budget", "use", "in", "max", "maximum", "under", "within", "spend", "total", "only", "some", "all", "time", "overall",
    "getting", "cut", "reduce", "lower", "decrease", "increase", "boost", "raise", "improve", "minimize", "maximize",
    "minimise", "maximise", "go", "bring", "down", "drop", "keep", "than", "no", "not", "without", "while", "possible",
    "if", "as", "them", "they", "has", "have", "currently", "answer", "answers", "target", "goal", "aim", "about",
    "uses", "using", "many", "few", "fewer", "lots", "again", "there", "here", "what", "how", "why",
}


class _Reader:
    """One sentence being read: a lowercase copy where each recognised phrase is blanked out (same
    length, so spans stay aligned), so a phrase is never read twice, plus the notes so far."""

    def __init__(self, text: str):
        self.text = text
        # lowercase one character at a time: str.lower() may lengthen a string ("İ"), and spans must stay aligned
        lowered = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
        self.masked = lowered.replace("’", "'").replace("−", "-")
        self.consumed: list[tuple[int, int]] = []
        self.notes: list[str] = []

    def take(self, start: int, end: int) -> None:
        self.masked = self.masked[:start] + " " * (end - start) + self.masked[end:]
        self.consumed.append((start, end))

    def phrase(self, start: int, end: int) -> str:
        words = " ".join(self.text[start:end].split())
        return words if len(words) <= _QUOTE_LIMIT else words[: _QUOTE_LIMIT - 3] + "..."

    def leftovers(self) -> list[str]:
        """Clauses that were not understood: a clause with nothing recognised and a word that matters,
        or a partly read clause with at least two such words left over."""
        out = []
        bounds = [0] + [m.end() for m in re.finditer(r"[,;!?\n]|\.(?=\s|$)|\b(?:and|but|then)\b", self.masked)] + [len(self.masked)]
        for start, end in zip(bounds, bounds[1:]):
            words = [w.strip(".") for w in re.findall(r"[a-z0-9_'.$%-]+", self.masked[start:end])]
            words = [w for w in words if w and w not in _FILLER]
            read = any(s < end and e > start for s, e in self.consumed)
            if len(words) >= (2 if read else 1):
                clause = self.unread(start, end) if read else self.phrase(start, end).strip(" ,;!?.")
                out.append(re.sub(r"^(?:and|but|then)\s+", "", clause, flags=re.I))
        return out

    def unread(self, start: int, end: int) -> str:
        """The words of ``text[start:end]`` outside the recognised phrases, "…" where one was: a note
        never quotes back as not understood what was read (the goal's own words)."""
        pieces, at = [], start
        for s, e in sorted(self.consumed):
            if e > at and s < end:
                pieces.append(self.phrase(at, max(s, at)).strip(" ,;!?."))
                at = min(e, end)
        pieces.append(self.phrase(at, end).strip(" ,;!?."))
        return " … ".join(p for p in pieces if p)


def _number(raw: str) -> float:
    return float(raw.replace(",", ""))


def _read_budget(reader: _Reader) -> Budget:
    values: dict[str, Any] = {}
    for field, pattern in _BUDGET_RULES:
        for match in list(pattern.finditer(reader.masked)):
            if field == "wall_time_s" and re.search(r"latency|p95|p50|response", reader.masked[max(0, match.start() - 25):match.start()]):
                continue  # "latency under 2s" is about the workflow's speed, not the run's time
            phrase = reader.phrase(*match.span())
            reader.take(*match.span())
            value = _number(match["num"])
            unit = (match.groupdict().get("unit") or "").lower()
            if unit:
                units = _TIME_UNITS if field == "wall_time_s" else _COUNT_UNITS
                value *= units.get(unit, units.get(unit.removesuffix("s"), 1))
            if field in ("candidates", "rounds", "examples", "tokens"):
                if value != int(value):
                    reader.notes.append(f"ignored {phrase!r}: {field} must be a whole number")
                    continue
                value = int(value)
            if field in values:
                reader.notes.append(f"ignored {phrase!r}: the budget's {field} was already given")
                continue
            try:
                Budget.model_validate({**values, field: value})
            except ValidationError as exc:
                reader.notes.append(f"ignored {phrase!r}: " + "; ".join(e["msg"] for e in exc.errors()))
                continue
            values[field] = value
            reader.notes.append(f"budget {phrase!r} read as {field}={value:g}")
    return Budget.model_validate(values)


def _scope_tokens(reader: _Reader, start: int, tunables: list[str], stop_at: int | None = None) -> tuple[list[str], int, str | None]:
    """Read tunable names from ``start`` until a word that is none: (paths, end of the last one read, first unknown word)."""
    paths: list[str] = []
    end = start
    region = reader.masked[start:stop_at] if stop_at else reader.masked[start:]
    for token in re.finditer(r"[\w.*-]+|[,&/+]", region):
        word = token.group().rstrip(".") if not token.group().endswith(".*") else token.group()
        if word in _SCOPE_CONNECTORS or word in _SCOPE_FILLER:
            if word in _SCOPE_FILLER:
                end = start + token.end()
            continue
        hits = match_tunables(word, tunables)
        if not hits:
            return paths, end, (None if paths else word)
        paths += [p for p in hits if p not in paths]
        end = start + token.end()
    return paths, end, None


def _read_scope(reader: _Reader, spec: WorkflowSpec) -> list[str]:
    tunables = list(spec.tunables)
    include: list[str] = []
    exclude: list[str] = []
    for patterns, target, verb in ((_SCOPE_INCLUDE, include, "only"), (_SCOPE_EXCLUDE, exclude, "not")):
        for pattern in patterns:
            for match in list(pattern.finditer(reader.masked)):
                if reader.masked[match.start():match.end()] != match.group():
                    continue  # an earlier phrase took these words
                stop = None
                if pattern is _LEAVE_ALONE:
                    if not (closing := _CLOSING.search(reader.masked[match.end():])):
                        continue
                    stop = match.end() + closing.end()
                paths, end, unknown = _scope_tokens(reader, match.end(), tunables, stop)
                if unknown is not None and stop is not None:
                    continue  # "keep accuracy unchanged" is a guardrail, not a scope
                if unknown is not None:
                    reader.notes.append(f"scope: {unknown!r} matches no tunable of {spec.workflow}; ignored")
                    end = match.end() + reader.masked[match.end():].find(unknown) + len(unknown)
                elif not paths:
                    continue
                phrase = reader.phrase(match.start(), end)
                reader.take(match.start(), end)
                target += [p for p in paths if p not in target]
                if paths:
                    reader.notes.append(f"scope {phrase!r} read as {verb}: {', '.join(paths)}")
    if not include and not exclude:
        return []
    result = [p for p in (include or tunables) if p not in exclude]
    if not result:
        reader.notes.append("the scope would leave nothing to tune; searching all tunables")
    return result


def _metric_for(word: str, spec: WorkflowSpec) -> str | None:
    word = " ".join(word.split())
    key = _GUARD_ADJECTIVES.get(word) or next((k for pattern, k in _METRIC_WORDS if pattern.fullmatch(word)), None)
    return quality_metric(spec) if key == "quality" else key


def _read_guardrails(reader: _Reader, spec: WorkflowSpec) -> list[Guardrail]:
    guards: list[Guardrail] = []
    for match in list(_LATENCY_LIMIT.finditer(reader.masked)):
        phrase = reader.phrase(*match.span())
        reader.take(*match.span())
        if "latency_ms" not in metrics_of(spec):
            reader.notes.append(f"ignored {phrase!r}: {spec.workflow}'s evals do not measure latency_ms")
            continue
        limit_ms = _number(match["num"]) * (1 if match["unit"].startswith("m") else 1000)
        guard = Guardrail(metric="latency_ms", statistic=_STAT_NAMES.get(match["stat"] or "", "p95"), max_value=limit_ms)
        guards.append(guard)
        reader.notes.append(f"{phrase!r} read as: {guard.describe()}")
    for pattern in _GUARD_RULES:
        for match in list(pattern.finditer(reader.masked)):
            phrase = reader.phrase(*match.span())
            reader.take(*match.span())
            metric = _metric_for(match["what"], spec)
            if metric is None:
                reader.notes.append(f"ignored {phrase!r}: {spec.workflow} measures no answer quality")
                continue
            if metric not in metrics_of(spec):
                reader.notes.append(f"ignored {phrase!r}: {spec.workflow}'s evals do not measure {metric}")
                continue
            if metric in HIGHER_IS_BETTER:
                margin = DEFAULT_MARGIN
                if match.groupdict().get("num"):
                    margin = abs(_number(match["num"])) / 100
                guard = Guardrail(metric=metric, statistic="mean", margin=margin)
            elif metric == "error":
                guard = Guardrail(metric=metric, statistic="mean", margin=0.01)
            else:  # "without increasing latency more than 50%": at most 1.5x
                ratio = 1 + abs(_number(match["num"])) / 100 if match.groupdict().get("num") else DEFAULT_MAX_RATIO
                guard = Guardrail(metric=metric, statistic=default_statistic(metric), max_ratio=ratio)
            guards.append(guard)
            reader.notes.append(f"{phrase!r} read as: {guard.describe()}")
    return guards


def _read_goal(reader: _Reader, spec: WorkflowSpec) -> TuningGoal | None:
    """The earliest goal phrase wins (one goal per run); later ones for other metrics are noted."""
    hits = sorted(((m.start(), order, key, m) for order, (pattern, key) in enumerate(_GOAL_RULES)
                   for m in pattern.finditer(reader.masked)), key=lambda h: (h[0], h[1]))
    statistic_words = [(found, stat) for pattern, stat in _STATISTIC_WORDS if (found := pattern.search(reader.masked))]
    chosen = None
    taken: list[tuple[int, int]] = []
    first_note = len(reader.notes)
    for _, _, key, match in hits:
        if any(match.start() < e and match.end() > s for s, e in taken):
            continue  # "input tokens" was read already; its "tokens" is no second goal
        taken.append(match.span())
        metric = quality_metric(spec) if key == "quality" else key
        phrase = reader.phrase(*match.span())
        reader.take(*match.span())
        if metric is None or metric not in metrics_of(spec):
            what = "no answer-quality metric" if metric is None else f"no {metric}"
            reader.notes.append(f"ignored {phrase!r}: {spec.workflow}'s evals measure {what}")
        elif chosen is None:
            chosen = (metric, match, phrase)
        elif metric != chosen[0]:
            reader.notes.append(f"ignored {phrase!r} ({metric}): one goal per run, and the goal is {chosen[0]}; tune again for {metric}")
    if chosen is None:
        return None
    metric, match, phrase = chosen
    statistic = default_statistic(metric)
    near = [(found, stat) for found, stat in statistic_words  # "p95" belongs to the goal only beside its words
            if found.end() >= match.start() - 20 and found.start() <= match.end() + 20]
    if near:
        found, statistic = min(near, key=lambda w: w[0].start())
        if not any(found.start() >= s and found.end() <= e for s, e in taken):
            reader.take(*found.span())
    goal = TuningGoal(metric=metric, direction=natural_direction(metric, spec), statistic=statistic,
                      target_change=_read_target(reader, match.start(), natural_direction(metric, spec)))
    reader.notes.insert(first_note, f"{phrase!r} read as the goal: {goal.describe()}")
    return goal


def _read_target(reader: _Reader, near: int, direction: str) -> float | None:
    """The percentage closest to the goal's words, as a relative change in the goal's direction."""
    found = sorted(_PERCENT.finditer(reader.masked), key=lambda m: abs(m.start() - near))
    target = None
    for i, match in enumerate(found):
        phrase = reader.phrase(*match.span())
        reader.take(*match.span())
        if i > 0:
            reader.notes.append(f"ignored {phrase!r}: only one target per goal")
            continue
        size = 0.5 if match["half"] else _number(match["num"]) / 100
        sign = match["sign"] if not match["half"] else None
        if sign and (sign == "-") != (direction == "minimize"):
            reader.notes.append(f"ignored the target {phrase!r}: its sign contradicts the goal ({direction})")
        elif size == 0:
            reader.notes.append(f"ignored the target {phrase!r}: no change asked")
        elif direction == "minimize" and size >= 1:
            reader.notes.append(f"ignored the target {phrase!r}: a cut of 100% or more is impossible")
        else:
            target = -size if direction == "minimize" else size
    return target


def parse_request(text: str, specs: Mapping[str, WorkflowSpec], *, workflow: str | None = None) -> ParsedRequest | UnknownWorkflow:
    """Read a chat sentence into a checked request, never raising on odd input.

    ``specs`` maps the names a person may use to their specs; ``workflow`` (a key of ``specs``)
    fixes the workflow when the caller already knows it, e.g. the CLI was given a spec file.
    Several known workflows named: the first wins, noted. None named: the only known workflow,
    or ``UnknownWorkflow`` when there are several.
    """
    text = text or ""
    reader = _Reader(text)
    mentions = find_workflows(text, specs)
    for _, span in mentions:
        reader.take(*span)
    names = list(dict.fromkeys(name for name, _ in mentions))
    if workflow is not None:
        name = workflow
        if any(n != workflow for n in names):
            other = next(n for n in names if n != workflow)
            reader.notes.append(f"the message names {other}, but the spec given is {workflow}'s; tuning {workflow}")
    elif names:
        name = names[0]
        if len(names) > 1:
            reader.notes.append(f"several workflows named ({', '.join(names)}); tuning the first, {name}")
    else:
        mentioned = _unknown_mention(reader.masked, specs)
        if mentioned or len(specs) != 1:
            return UnknownWorkflow(mentioned=mentioned, known=_known(specs))
        name = next(iter(specs))
        reader.notes.append(f"no workflow named; using the only known one, {name}")
    spec = specs[name]

    if not text.strip():
        reader.notes.append("empty request: using the spec's defaults")
    reading = _read(reader, spec)
    goal = reading.goal
    if goal is None:
        goal = TuningGoal.from_objective(spec.objective)
        goal.statistic = default_statistic(goal.metric)
        reader.notes.append(f"no goal recognised; using the spec's objective: {goal.describe()}")
    for clause in reader.leftovers():
        reader.notes.append(f"not understood, ignored: {clause!r}")
    guardrails, merge_notes = merge_guardrails(spec, reading.guardrails, goal.metric)
    request = TuningRequest(workflow=spec.workflow, goal=goal, guardrails=guardrails, budget=reading.budget,
                            scope=reading.scope, text=text, notes=[*reader.notes, *merge_notes])
    return ParsedRequest(name=name, request=request)


class _Reading(BaseModel):
    """What the deterministic reader found in a sentence; ``goal`` is None when it recognised none."""

    budget: Budget
    scope: list[str]
    guardrails: list[Guardrail]
    goal: TuningGoal | None


def _read(reader: _Reader, spec: WorkflowSpec) -> _Reading:
    """Read budget, scope, guardrails and goal, in the order that keeps them apart; notes go to the reader."""
    first = len(reader.notes)
    budget = _read_budget(reader)  # numbers first, so "$2" or "6 candidates" never read as a target
    scope = _read_scope(reader, spec)
    extra = _read_guardrails(reader, spec)  # before the goal: "without losing accuracy" is no accuracy goal
    before_goal = len(reader.notes)
    goal = _read_goal(reader, spec)
    limit = next((g for g in extra if g.metric == "latency_ms" and g.max_value is not None), None)
    if goal is None and limit is not None:  # "latency under 2s" and nothing else: the latency is the goal
        extra.remove(limit)
        goal = TuningGoal(metric="latency_ms", direction="minimize", statistic=limit.statistic)
        reader.notes.append(f"the latency limit is the only aim named: read as the goal {goal.describe()}")
    reader.notes[first:] = reader.notes[before_goal:] + reader.notes[first:before_goal]  # the goal's notes lead
    return _Reading(budget=budget, scope=scope, guardrails=extra, goal=goal)


def fill_draft(draft: RequestDraft, text: str, spec: WorkflowSpec) -> tuple[RequestDraft, dict[str, Any]]:
    """The model's draft with every field it left out that the deterministic reader found in ``text``,
    and the fields filled (name -> value). What the model did say is kept as it said it."""
    reader = _Reader(text)
    for _, span in find_workflows(text, [spec.workflow]):
        reader.take(*span)
    reading = _read(reader, spec)
    fill: dict[str, Any] = {f: getattr(reading.budget, f) for f in reading.budget.given if getattr(draft, f) is None}
    goal = reading.goal
    if goal is not None and draft.metric in (None, goal.metric):
        if draft.metric is None:
            fill.update(metric=goal.metric, direction=draft.direction or goal.direction)
        if draft.target_change is None and goal.target_change is not None:
            fill["target_change"] = goal.target_change
        if draft.statistic is None and goal.statistic != default_statistic(goal.metric):
            fill["statistic"] = goal.statistic
    if not draft.guardrails and reading.guardrails:
        fill["guardrails"] = [GuardrailDraft.model_validate(g.model_dump(include=set(GuardrailDraft.model_fields)))
                              for g in reading.guardrails]
    if not draft.scope and not draft.exclude and reading.scope:
        fill["scope"] = reading.scope
    return draft.model_copy(update=fill), fill


_NOT_A_WORKFLOW = {"my", "our", "the", "this", "that", "a", "an", "your", "its", "whole", "entire", "same", "other", "which", "what"}


def _unknown_mention(masked: str, specs: Mapping[str, WorkflowSpec]) -> str | None:
    """A name that looks like a workflow but is not a known one: a snake_case word that is no metric
    or tunable, or the word next to "workflow"/"graph"/"pipeline"."""
    vocabulary = set(METRICS) | {"top_k"}
    for spec in specs.values():
        for path in spec.tunables:
            vocabulary.add(path)
            vocabulary.update(path.split("."))
    for word in re.findall(r"(?<![\w.])[a-z][a-z0-9]*(?:_[a-z0-9]+)+(?![\w.])", masked):
        if word not in vocabulary:
            return word
    for pattern in (r"\b(?:workflow|graph|pipeline)\s+(?:called\s+|named\s+)?[\"'`]?([a-z][\w.-]*)",
                    r"\b([a-z][\w.-]*)\s+(?:workflow|graph|pipeline)\b"):
        for word in re.findall(pattern, masked):
            if word not in _NOT_A_WORKFLOW and word not in _FILLER:
                return word
    return None
