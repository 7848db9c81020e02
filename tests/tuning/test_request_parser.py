"""The deterministic request parser, the model-draft checker and the structured-request completer.

Most of this file is one table: a sentence, and what it must be read as. Each row checks only what
it names; the notes it lists must appear (as substrings), so a reading is always explained.
"""

from __future__ import annotations

import pytest

from graphtune.spec import load_spec, parse_spec
from graphtune.tuning.request import Budget
from graphtune.tuning.request_parser import (
    DraftProblems,
    GuardrailDraft,
    ParsedRequest,
    RequestDraft,
    RequestError,
    UnknownWorkflow,
    check_draft,
    complete_request,
    expand_scope,
    find_workflows,
    match_tunables,
    parse_request,
    quality_metric,
    resolve_workflow,
)

SUPPORT = load_spec("support_qa")
TRIAGE = parse_spec({
    "workflow": "ticket_triage",
    "description": "Routes support tickets to a queue.",
    "graph": "tests.nowhere:build_graph",
    "config": {"llm": {"temperature": 0.0}, "route": {"threshold": 0.5, "fallback": "general"}},
    "tunables": {
        "llm.temperature": {"type": "float", "low": 0, "high": 1},
        "route.threshold": {"type": "float", "low": 0, "high": 1},
        "route.fallback": {"type": "choice", "values": ["general", "billing"]},
    },
    "evals": {"datasets": [{"name": "t", "path": "t.jsonl"}], "metrics": ["latency_ms", "token_f1", "exact", "error"]},
    "objective": {"metric": "latency_ms"},
    "guardrails": [{"metric": "error", "max_value": 0.1}],
})
ONE = {"support_qa": SUPPORT}
TWO = {"support_qa": SUPPORT, "ticket_triage": TRIAGE}
ALL_SUPPORT = list(SUPPORT.tunables)
LATENCY_GUARD = "p95 latency_ms <= 1.2x baseline"
COST_GUARD = "mean cost_usd <= 1.1x baseline"
ERROR_GUARD = "mean error <= 0.05"
KEEP_ACCURACY = "mean contains at most 0.02 below baseline"

# text, expected fields: metric, statistic, target, budget (subset), scope, guards (present), absent (guards), notes
CASES = [
    # the brief's example, and latency phrasings
    ("support_qa is too slow; cut latency 20% without losing accuracy",
     dict(metric="latency_ms", statistic="p95", target=-0.2, guards=[KEEP_ACCURACY, ERROR_GUARD, COST_GUARD], absent=[LATENCY_GUARD],
          notes=["'without losing accuracy' read as: mean contains at most 0.02 below baseline",
                 "dropped the spec's guardrail 'p95 latency_ms <= 1.2x baseline'"])),
    ("Support QA: reduce latency by 20 percent", dict(metric="latency_ms", target=-0.2)),
    ("support-qa should be faster", dict(metric="latency_ms", statistic="p95", target=None)),
    ("make support_qa 30% faster", dict(metric="latency_ms", target=-0.3)),
    ("SUPPORT_QA IS TOO SLOW", dict(metric="latency_ms")),
    ("support_qa median latency down by 10%", dict(metric="latency_ms", statistic="p50", target=-0.1)),
    ("support_qa: average latency is too high", dict(metric="latency_ms", statistic="mean")),
    ("support_qa: halve the latency", dict(metric="latency_ms", target=-0.5)),
    ("support_qa: latency -20%", dict(metric="latency_ms", target=-0.2)),
    ("support_qa latency under 2s", dict(metric="latency_ms", budget={"wall_time_s": 900.0})),
    # cost, errors, tokens
    ("support_qa is too expensive", dict(metric="cost_usd", statistic="mean", direction="minimize", absent=[COST_GUARD],
                                         guards=[LATENCY_GUARD, ERROR_GUARD])),
    ("support_qa: cut cost 30%", dict(metric="cost_usd", target=-0.3)),
    ("make support_qa cheaper", dict(metric="cost_usd")),
    ("support_qa has too many errors", dict(metric="error", statistic="mean", absent=[ERROR_GUARD])),
    ("support_qa keeps failing", dict(metric="error")),
    ("support_qa uses too many tokens", dict(metric="total_tokens", direction="minimize")),
    ("support_qa: fewer tokens please", dict(metric="total_tokens")),
    # quality: the spec's objective (contains) when it measures answers
    ("improve support_qa accuracy", dict(metric="contains", direction="maximize", target=None)),
    ("support_qa answers should be more accurate", dict(metric="contains")),
    ("support_qa: improve answer quality by 5%", dict(metric="contains", target=0.05)),
    ("support_qa gives wrong answers", dict(metric="contains")),
    ("support_qa: maximize token f1", dict(metric="token_f1", direction="maximize")),
    ("support_qa: improve the retrieval hit rate", dict(metric="retrieval_hit")),
    # guardrails the person adds
    ("support_qa: cheaper, but keep accuracy", dict(metric="cost_usd", guards=[KEEP_ACCURACY])),
    ("support_qa cheaper without losing more than 1% accuracy",
     dict(metric="cost_usd", guards=["mean contains at most 0.01 below baseline"])),
    ("support_qa: improve accuracy without getting slower",
     dict(metric="contains", guards=["p95 latency_ms <= 1.05x baseline"], absent=[LATENCY_GUARD],
          notes=["replaced by yours"])),
    ("support_qa: improve accuracy without increasing latency more than 50%",
     dict(metric="contains", guards=["p95 latency_ms <= 1.5x baseline"], absent=[LATENCY_GUARD])),
    ("support_qa: improve accuracy without increasing more than 30% latency",
     dict(metric="contains", guards=["p95 latency_ms <= 1.3x baseline"], absent=[LATENCY_GUARD])),
    ("support_qa: faster without increasing cost", dict(metric="latency_ms", guards=["mean cost_usd <= 1.05x baseline"], absent=[COST_GUARD])),
    ("support_qa: improve accuracy without losing accuracy",
     dict(metric="contains", absent=[KEEP_ACCURACY], notes=["contains is the goal itself"])),
    # budget
    ("support_qa too slow; try 6 candidates, at most 2 rounds, within 10 minutes, spend at most $2, "
     "at most 5000 example evaluations, 100k tokens",
     dict(metric="latency_ms", budget={"candidates": 6, "rounds": 2, "wall_time_s": 600.0, "cost_usd": 2.0,
                                      "examples": 5000, "tokens": 100_000})),
    ("support_qa cheaper in 90s, under 1.5 dollars", dict(metric="cost_usd", budget={"wall_time_s": 90.0, "cost_usd": 1.5})),
    ("support_qa for 1.5 hours with 2,000 examples and 1.5m tokens",
     dict(budget={"wall_time_s": 5400.0, "examples": 2000, "tokens": 1_500_000})),
    ("support_qa: 3 variants, 5 iterations, at most 4k evals", dict(budget={"candidates": 3, "rounds": 5, "examples": 4000})),
    # scope
    ("support_qa: only tune rag", dict(scope=["rag.top_k", "rag.rerank", "rag.rewrite"])),
    ("support_qa is too slow; only touch rag.top_k and tool.*",
     dict(metric="latency_ms", scope=["rag.top_k", "tool.timeout_s", "tool.retries"])),
    ("support_qa: don't touch prompts", dict(scope=[p for p in ALL_SUPPORT if not p.startswith("prompts.")],
                                             notes=["read as not: prompts.answer, prompts.summary"])),
    ("support_qa: don’t touch prompts", dict(scope=[p for p in ALL_SUPPORT if not p.startswith("prompts.")])),
    ("support_qa: leave the router alone", dict(scope=[p for p in ALL_SUPPORT if not p.startswith("router.")])),
    ("support_qa: only tune temperature and top-k", dict(scope=["llm.temperature", "rag.top_k"])),
    ("support_qa: only tune rag, but don't touch rag.rewrite", dict(scope=["rag.top_k", "rag.rerank"])),
    ("support_qa: only tune the retrieval settings", dict(scope=[], notes=["'retrieval' matches no tunable"])),
    ("support_qa: don't touch prompts, llm, rag, nodes, router or tool", dict(scope=[], notes=["nothing to tune"])),
    # bad or odd input: never an exception, always a note
    ("", dict(metric="contains", guards=[LATENCY_GUARD, ERROR_GUARD, COST_GUARD], notes=["empty request", "only known one"])),
    ("support_qa", dict(metric="contains", target=None, notes=["no goal recognised; using the spec's objective"])),
    ("support_qa: cut latency by 150%", dict(metric="latency_ms", target=None, notes=["impossible"])),
    ("support_qa: improve accuracy by 150%", dict(metric="contains", target=1.5)),
    ("support_qa: cut latency 0%", dict(metric="latency_ms", target=None, notes=["no change asked"])),
    ("support_qa: improve accuracy by -5%", dict(metric="contains", target=None, notes=["contradicts the goal"])),
    ("support_qa: cut latency 20% and cost 10%", dict(metric="latency_ms", target=-0.2, notes=["one goal per run", "only one target"])),
    ("support_qa: try -3 candidates", dict(budget={"candidates": Budget().candidates}, notes=["ignored '-3 candidates'"])),
    ("support_qa: try 500 candidates", dict(budget={"candidates": Budget().candidates}, notes=["less than or equal to 200"])),
    ("support_qa: try 2.5 candidates", dict(budget={"candidates": Budget().candidates}, notes=["whole number"])),
    ("support_qa: 2 rounds, no wait, 4 rounds", dict(budget={"rounds": 2}, notes=["already given"])),
    ("support_qa: fewer input tokens", dict(metric="contains", notes=["measure no input_tokens"])),
    ("support_qa: maximize the judge score", dict(metric="contains", notes=["measure no judge"])),
    ("support_qa please be nicer to customers", dict(metric="contains", notes=["not understood, ignored"])),
    ("my workflow is too slow", dict(metric="latency_ms", notes=["no workflow named; using the only known one, support_qa"])),
    ("cut latency 20%", dict(metric="latency_ms", target=-0.2)),
]


def check(result, *, metric=None, statistic=None, direction=None, target="unset", budget=None, scope=None,
          guards=(), absent=(), notes=()):
    assert isinstance(result, ParsedRequest), result
    request = result.request
    if metric is not None:
        assert request.goal.metric == metric
    if statistic is not None:
        assert request.goal.statistic == statistic
    if direction is not None:
        assert request.goal.direction == direction
    if target != "unset":
        assert request.goal.target_change == (pytest.approx(target) if target is not None else None)
    for field, value in (budget or {}).items():
        assert getattr(request.budget, field) == value, field
    if scope is not None:
        assert request.scope == scope
    described = [g.describe() for g in request.guardrails]
    for guard in guards:
        assert guard in described
    for guard in absent:
        assert guard not in described
    for note in notes:
        assert any(note in n for n in request.notes), (note, request.notes)


@pytest.mark.parametrize(("text", "expected"), CASES, ids=[c[0][:60] or "<empty>" for c in CASES])
def test_sentence_is_read_as_expected(text, expected):
    result = parse_request(text, ONE)
    check(result, **expected)
    assert result.request.text == text
    assert result.request.workflow == "support_qa"


@pytest.mark.parametrize("text", ["", "   ", "?!", "%%%", "-1 -2 -3", "$$$ 1e9 tokens", "only", "don't touch", "🙂 " * 50,
                                  "support_qa " * 100, "x" * 10_000])
def test_garbage_never_raises(text):
    result = parse_request(text, ONE)
    assert isinstance(result, ParsedRequest)
    assert all(len(note) < 400 for note in result.request.notes)  # long input is quoted shortened


def test_characters_that_lowercase_longer_keep_phrases_aligned():
    result = parse_request("İstanbul team: support_qa is too slow; cut latency 20%", ONE)
    check(result, metric="latency_ms", target=-0.2, notes=["'too slow' read as the goal"])


# -- several workflows ----------------------------------------------------------------------------------


def test_quality_metric_falls_back_to_the_first_quality_metric_when_the_objective_is_not_one():
    assert quality_metric(SUPPORT) == "contains"
    assert quality_metric(TRIAGE) == "token_f1"
    check(parse_request("ticket_triage: improve accuracy", TWO), metric="token_f1", direction="maximize")
    check(parse_request("ticket-triage: cut latency 10% without losing quality", TWO),
          metric="latency_ms", guards=["mean token_f1 at most 0.02 below baseline", "mean error <= 0.1"])


def test_workflow_named_in_any_spelling_anywhere():
    for text in ["Ticket Triage is failing", "the TICKET-TRIAGE graph fails", "errors in ticket_triage"]:
        result = parse_request(text, TWO)
        assert result.name == "ticket_triage" and result.request.goal.metric == "error", text


def test_two_workflows_named_picks_the_first_and_says_so():
    result = parse_request("support_qa and ticket_triage are both too slow", TWO)
    check(result, metric="latency_ms", notes=["several workflows named (support_qa, ticket_triage); tuning the first, support_qa"])
    assert result.name == "support_qa"


def test_no_workflow_named_with_several_known_lists_them():
    result = parse_request("too slow; cut latency 20%", TWO)
    assert isinstance(result, UnknownWorkflow) and result.mentioned is None
    assert set(result.known) == {"support_qa", "ticket_triage"}
    message = result.describe()
    assert "support_qa" in message and "ticket_triage" in message and "Routes support tickets" in message


@pytest.mark.parametrize(("text", "mentioned"), [
    ("billing_bot is too slow", "billing_bot"),
    ("tune the billing workflow", "billing"),
    ("the workflow called invoices is failing", "invoices"),
])
def test_unknown_workflow_is_named_back(text, mentioned):
    result = parse_request(text, ONE)
    assert isinstance(result, UnknownWorkflow)
    assert result.mentioned == mentioned
    assert "support_qa" in result.describe() and mentioned in result.describe()


def test_metric_and_tunable_names_are_not_taken_for_workflows():
    check(parse_request("cut latency_ms; only touch rag.top_k", ONE), metric="latency_ms", scope=["rag.top_k"])


def test_a_fixed_workflow_needs_only_the_goal_and_notes_a_different_name():
    check(parse_request("cut latency 10%", TWO, workflow="ticket_triage"), metric="latency_ms", target=-0.1)
    result = parse_request("support_qa is failing", TWO, workflow="ticket_triage")
    assert result.name == "ticket_triage"
    check(result, metric="error", notes=["the message names support_qa, but the spec given is ticket_triage's"])


def test_find_and_resolve_workflows():
    assert [n for n, _ in find_workflows("Support-QA vs support_qa_v2 vs ticket triage", TWO)] == ["support_qa", "ticket_triage"]
    assert resolve_workflow("Support QA", TWO) == "support_qa"
    assert resolve_workflow("ticket-triage", TWO) == "ticket_triage"
    assert resolve_workflow("billing", TWO) is None
    assert resolve_workflow(None, TWO) is None


@pytest.mark.parametrize(("pattern", "paths"), [
    ("rag", ["rag.top_k", "rag.rerank", "rag.rewrite"]),
    ("rag.*", ["rag.top_k", "rag.rerank", "rag.rewrite"]),
    ("rag.top_k", ["rag.top_k"]),
    ("top_k", ["rag.top_k"]),
    ("prompt", ["prompts.answer", "prompts.summary"]),
    ("nodes.*.enabled", ["nodes.qa_agent.enabled", "nodes.qa_with_tool_agent.enabled", "nodes.summary.enabled"]),
    ("nodes.qa_agent", ["nodes.qa_agent.enabled"]),
    ("ra", []),
    ("", []),
])
def test_match_tunables(pattern, paths):
    assert match_tunables(pattern, SUPPORT.tunables) == paths


def test_expand_scope_keeps_spec_order_and_reports_unmatched():
    assert expand_scope(["tool", "rag.top_k", "nope"], SUPPORT.tunables) == (["rag.top_k", "tool.timeout_s", "tool.retries"], ["nope"])


# -- the model's draft ---------------------------------------------------------------------------------


def test_valid_draft_becomes_a_request_with_spec_guardrails_merged():
    draft = RequestDraft(workflow="Support QA", metric="latency_ms", target_change=-0.2, candidates=6, wall_time_s=600,
                         guardrails=[GuardrailDraft(metric="contains", margin=0.02)], exclude=["prompts"], notes=["read 'snappy' as latency"])
    result = check_draft(draft, TWO, text="support qa must be snappy")
    check(result, metric="latency_ms", statistic="p95", direction="minimize", target=-0.2,
          budget={"candidates": 6, "wall_time_s": 600}, guards=[KEEP_ACCURACY, COST_GUARD], absent=[LATENCY_GUARD],
          scope=[p for p in ALL_SUPPORT if not p.startswith("prompts.")], notes=["read 'snappy' as latency", "dropped the spec's guardrail"])
    assert result.name == "support_qa" and result.request.text == "support qa must be snappy"


def test_empty_draft_is_the_spec_default():
    check(check_draft(RequestDraft(workflow="support_qa"), ONE), metric="contains", direction="maximize", scope=[],
          guards=[LATENCY_GUARD, ERROR_GUARD, COST_GUARD])


@pytest.mark.parametrize(("draft", "reason"), [
    (RequestDraft(workflow="support_qa", metric="bleu"), "metric 'bleu' is not measured by support_qa"),
    (RequestDraft(workflow="support_qa", metric="judge"), "metric 'judge' is not measured"),
    (RequestDraft(workflow="support_qa", metric="latency_ms", direction="maximize"), "direction 'maximize' is wrong for latency_ms"),
    (RequestDraft(workflow="support_qa", metric="latency_ms", target_change=0.2), "must be between -1 and 0"),
    (RequestDraft(workflow="support_qa", metric="latency_ms", target_change=-1.5), "must be between -1 and 0"),
    (RequestDraft(workflow="support_qa", target_change=-0.1), "must be above 0"),
    (RequestDraft(workflow="support_qa", guardrails=[GuardrailDraft(metric="contains", margin=0.02, max_ratio=1.1)]),
     "guardrails[0]: give exactly one of max_ratio, max_value, margin"),
    (RequestDraft(workflow="support_qa", guardrails=[GuardrailDraft(metric="judge", margin=0.1)]), "guardrails[0].metric 'judge'"),
    (RequestDraft(workflow="support_qa", candidates=0), "budget.candidates"),
    (RequestDraft(workflow="support_qa", wall_time_s=-5), "budget.wall_time_s"),
    (RequestDraft(workflow="support_qa", scope=["retrieval"]), "scope entry 'retrieval' matches no tunable"),
    (RequestDraft(workflow="support_qa", exclude=["llm", "rag", "nodes", "router", "tool", "prompts"]), "leaves no tunable"),
])
def test_invalid_draft_gets_reasons_for_the_retry(draft, reason):
    result = check_draft(draft, ONE)
    assert isinstance(result, DraftProblems)
    assert any(reason in r for r in result.reasons), result.reasons


def test_draft_workflow_resolution():
    assert check_draft(RequestDraft(workflow="billing_bot"), TWO) == UnknownWorkflow(mentioned="billing_bot", known={
        "support_qa": SUPPORT.description, "ticket_triage": TRIAGE.description})
    assert isinstance(check_draft(RequestDraft(), TWO), UnknownWorkflow)
    check(check_draft(RequestDraft(), ONE), notes=["using the only known one"])
    assert check_draft(RequestDraft(workflow="support_qa"), TWO, workflow="ticket_triage").name == "ticket_triage"


# -- structured requests ----------------------------------------------------------------------------------


def test_partial_structured_request_is_filled_from_the_spec():
    request = complete_request({"workflow": "support_qa"}, SUPPORT)
    assert request.goal.metric == "contains" and request.goal.direction == "maximize"
    assert [g.describe() for g in request.guardrails] == [LATENCY_GUARD, ERROR_GUARD, COST_GUARD]
    assert any("goal from the spec's objective" in n for n in request.notes)


def test_structured_goal_shorthands_and_scope_expansion():
    request = complete_request({"workflow": "support_qa", "goal": "latency_ms", "guardrails": [], "scope": ["rag"],
                                "budget": {"candidates": 4}}, SUPPORT)
    assert (request.goal.metric, request.goal.direction, request.goal.statistic) == ("latency_ms", "minimize", "p95")
    assert request.guardrails == [] and request.budget.candidates == 4
    assert request.scope == ["rag.top_k", "rag.rerank", "rag.rewrite"]
    partial = complete_request({"workflow": "x", "goal": {"metric": "cost_usd", "target_change": -0.3}}, SUPPORT)
    assert partial.workflow == "support_qa" and partial.goal.direction == "minimize" and partial.goal.target_change == -0.3


def test_full_request_round_trips():
    original = parse_request("support_qa is too slow; cut latency 20% without losing accuracy", ONE).request
    again = complete_request(original.model_dump(mode="json"), SUPPORT)
    assert again.goal == original.goal and again.guardrails == original.guardrails and again.budget == original.budget


@pytest.mark.parametrize(("data", "message"), [
    ({"workflow": "support_qa", "budgt": {}}, "budgt: unknown key"),
    ({"workflow": "support_qa", "budget": {"candidate": 3}}, "budget.candidate: unknown key"),
    ({"workflow": "support_qa", "goal": {"metric": "latency_ms", "dir": "min"}}, "goal.dir: unknown key"),
    ({"workflow": "support_qa", "budget": {"candidates": 0}}, "budget.candidates: Input should be greater than or equal to 1"),
    ({"workflow": "support_qa", "goal": {"metric": "bleu"}}, "metric 'bleu' is not measured by support_qa"),
    ({"workflow": "support_qa", "goal": {"metric": "latency_ms", "target_change": 0.3}}, "must be between -1 and 0"),
    ({"workflow": "support_qa", "guardrails": [{"metric": "contains"}]}, "give exactly one of max_ratio, max_value, margin"),
    ({"workflow": "support_qa", "guardrails": [{"metric": "judge", "margin": 0.1}]}, "guardrails[0].metric 'judge'"),
    ({"workflow": "support_qa", "scope": ["retrieval"]}, "scope entry 'retrieval' matches no tunable"),
    ({"workflow": "support_qa", "goal": 5}, "goal"),
])
def test_invalid_structured_request_names_the_key(data, message):
    with pytest.raises(RequestError, match=None) as info:
        complete_request(data, SUPPORT)
    assert message in str(info.value)


def test_words_read_as_the_goal_are_never_quoted_back_as_not_understood():
    request = parse_request("support_qa gives wrong answers too often", ONE).request
    assert request.goal.metric == "contains"
    assert not any("wrong answers" in n and "not understood" in n for n in request.notes), request.notes
    assert "not understood, ignored: 'gives … too often'" in request.notes  # what was left over, and only that


@pytest.mark.parametrize(("text", "limit", "statistic"), [
    ("support_qa gives wrong answers too often; keep p95 latency under 3s", 3000, "p95"),
    ("improve accuracy; latency below 300 ms", 300, "p95"),
    ("improve accuracy, keep the median latency at most 1.5 seconds", 1500, "p50"),
])
def test_an_absolute_latency_limit_is_a_guardrail_and_its_statistic_stays_with_it(text, limit, statistic):
    request = parse_request(text, ONE).request
    assert (request.goal.metric, request.goal.statistic) == ("contains", "mean")  # "p95" is no part of the goal
    latency = [g for g in request.guardrails if g.metric == "latency_ms"]
    assert [(g.statistic, g.max_value, g.max_ratio) for g in latency] == [(statistic, limit, None)]
    assert any("read as: " in note and "latency_ms" in note for note in request.notes)
