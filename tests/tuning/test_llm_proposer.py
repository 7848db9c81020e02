"""The LLM proposer's pure half: screening proposals into candidates and rejections, and the prompt it is shown."""

from __future__ import annotations

import pytest

from graphtune.evals.runner import EvalReport, ExampleResult
from graphtune.evals.stats import summarize
from graphtune.prompts import render_prompt
from graphtune.spec import load_spec
from graphtune.tracing.events import NodeStats
from graphtune.tuning.config_paths import config_hash
from graphtune.tuning.hotspots import HotSpot, Observation, TrajectorySample
from graphtune.tuning.llm_proposer import (
    MAX_HISTORY,
    ProposalSet,
    ProposedCandidate,
    Rejected,
    TriedConfig,
    describe_domain,
    prompt_inputs,
    retry_inputs,
    screen,
    tried_config,
)
from graphtune.tuning.mutations import Mutation, apply_mutations
from graphtune.tuning.request import TuningRequest

SPEC = load_spec("support_qa")
CONFIG = SPEC.config
BASE_HASH = config_hash(CONFIG)
REQUEST = TuningRequest.default_for(SPEC)


# -- fixtures shared with tests/nodes/test_propose.py ---------------------------------------------
def report(config: dict, contains: float, latency_ms: float = 500.0, *, n: int = 20, error: float = 0.0,
           stopped: str | None = None) -> EvalReport:
    """A synthetic eval report: ``contains`` is the share of examples answered, latencies spread around latency_ms."""
    hits = round(contains * n)
    results = [ExampleResult(example_id=f"e{i}", scores={
        "contains": 1.0 if i < hits else 0.0, "latency_ms": latency_ms * (0.8 + 0.4 * i / n),
        "error": error, "cost_usd": 0.001, "total_tokens": 100.0}) for i in range(n)]
    summary = {m: summarize([r.scores[m] for r in results]) for m in results[0].scores}
    return EvalReport(workflow="support_qa", dataset="support_qa", dataset_hash="d", config_hash=config_hash(config),
                      results=results, summary=summary, examples_total=n,
                      stopped_early=stopped is not None, stop_reason=stopped or "")


def baseline_record() -> dict:
    return {"id": "baseline", "round": 0, "proposer": "baseline", "mutations": [], "rationale": "",
            "config": CONFIG, "config_hash": BASE_HASH}


def record(id: str, round: int, proposer: str = "llm", rationale: str = "", **changes) -> dict:
    mutations = [Mutation(path=p.replace("__", "."), value=v) for p, v in changes.items()]
    config = apply_mutations(CONFIG, mutations)
    return {"id": id, "round": round, "proposer": proposer, "mutations": [m.model_dump() for m in mutations],
            "rationale": rationale, "config": config, "config_hash": config_hash(config)}


def observation(steps: int = 4, samples: int = 1, hot_spots: int = 1) -> dict:
    stats = NodeStats(workflow="support_qa", node="retrieve", count=40, errors=6, error_rate=0.15, p50_ms=300.0,
                      p95_ms=2400.0, mean_ms=700.0, input_tokens=0, output_tokens=0, negative_feedback=0)
    spots = [HotSpot(node=f"retrieve{i or ''}", reasons=["p95 2.4 s > threshold 1.5 s", "error rate 15% > 5%"],
                     severity=3.1 - i * 0.01, stats=stats, share_of_run_time=0.62) for i in range(hot_spots)]
    trace = [TrajectorySample(trace_id=f"{k:032x}", why="slowest run (2.4 s)", duration_ms=2400.0, status="ok",
                              steps=[{"node": "retrieve", "duration_ms": 2100.0 + i, "status": "ok",
                                      "output": "order lookup timed out " * 30} for i in range(steps)])
             for k in range(samples)]
    return Observation(workflow="support_qa", window_s=86400, since=0, until=86400, runs=40, hot_spots=spots,
                       node_stats=[stats], samples=trace, notes=["no production traffic in the earlier 24h"]).model_dump(mode="json")


def proposal(rationale: str = "because", **changes) -> ProposedCandidate:
    return ProposedCandidate(mutations=[Mutation(path=p.replace("__", "."), value=v) for p, v in changes.items()],
                             rationale=rationale)


def run_screen(*proposals, known=None, limit=10, model_available=False, scope=()):
    space = SPEC.space.restricted(list(scope))
    return screen(list(proposals), space=space, base_config=CONFIG, known=known if known is not None else {BASE_HASH: "the baseline"},
                  proposer="llm", limit=limit, model_available=model_available,
                  out_of_scope=set(SPEC.space.tunables) - set(space.tunables))


# -- screening ------------------------------------------------------------------------------------
def test_a_valid_proposal_becomes_a_candidate_of_the_baseline_config():
    result = run_screen(proposal("timeouts in retrieve", tool__timeout_s=1, rag__top_k=4, rag__rerank=False))
    assert result.rejected == []
    [accepted] = result.accepted
    # the no-op change is dropped and the float tunable is stored as a float, so equal configs hash equally
    assert [(m.path, m.value) for m in accepted.candidate.mutations] == [("tool.timeout_s", 1.0), ("rag.top_k", 4)]
    assert isinstance(accepted.candidate.mutations[0].value, float)
    assert accepted.config["tool"]["timeout_s"] == 1.0 and accepted.config["rag"]["top_k"] == 4
    assert accepted.config_hash == config_hash(accepted.config)
    assert accepted.candidate.proposer == "llm" and accepted.candidate.rationale == "timeouts in retrieve"


@pytest.mark.parametrize("changes, words", [
    ({"rag__top_k": 50}, "rag.top_k: expected a value in [1, 10], got 50"),
    ({"rag__topk": 3}, "did you mean rag.top_k"),
    ({"router__threshold": 0.62}, "multiple of 0.05"),
    ({"rag__top_k": 2}, "changes nothing"),
    ({"nodes__qa_agent__enabled": False}, "constraint violated: exactly one of"),
    ({"prompts__answer": "Answer briefly."}, "only matters with an LLM"),  # requires_model, workflow offline
    ({}, "no changes proposed"),
])
def test_invalid_proposals_are_rejected_with_reasons(changes, words):
    result = run_screen(proposal(**changes))
    assert result.accepted == []
    [rejected] = result.rejected
    assert any(words in reason for reason in rejected.reasons), rejected.reasons
    assert rejected.candidate["mutations"] == [{"path": p.replace("__", "."), "value": v} for p, v in changes.items()]


def test_model_only_tunables_pass_when_the_workflow_has_a_model():
    result = run_screen(proposal(llm__temperature=0.5, prompts__answer="Be brief. {context}"), model_available=True)
    assert len(result.accepted) == 1


def test_duplicates_of_known_configs_and_within_the_batch_are_rejected():
    tried = record("c1", 1, rag__top_k=4)
    known = {BASE_HASH: "the baseline", tried["config_hash"]: "c1"}
    result = run_screen(proposal(rag__top_k=4), proposal(rag__rerank=True), proposal(rag__rerank=True, rag__top_k=2),
                        known=known)
    assert len(result.accepted) == 1
    assert [r.reasons[0][:18] for r in result.rejected] == ["same config as c1:", "same config as ano"]
    assert result.accepted[0].config_hash in known  # the batch's own configs join the known ones


def test_out_of_scope_paths_are_rejected_even_when_the_spec_has_them():
    result = run_screen(proposal(rag__top_k=4, tool__retries=2), scope=["rag"])
    [rejected] = result.rejected
    assert rejected.reasons == ["tool.retries is outside this run's scope; change only rag.top_k, rag.rerank, rag.rewrite"]


def test_proposals_past_the_limit_are_ignored():
    result = run_screen(proposal(rag__top_k=3), proposal(rag__top_k=4), proposal(rag__top_k=99), limit=2)
    assert len(result.accepted) == 2 and result.rejected == []


def test_proposal_set_is_lenient_so_one_bad_candidate_is_not_a_parse_failure():
    parsed = ProposalSet.model_validate({"candidates": [{"mutations": []}, {"mutations": [{"path": "rag.top_k", "value": 3}]}]})
    assert len(parsed.candidates) == 2 and parsed.candidates[0].rationale == ""


def test_retry_prompt_lists_each_rejection_and_its_reasons():
    result = run_screen(proposal(rag__top_k=50), proposal(rag__rerank=True))
    text = render_prompt("propose_retry", **retry_inputs(result.rejected, result.accepted, 1))
    assert "- rag.top_k=50: rag.top_k: expected a value in [1, 10], got 50" in text
    assert "- rag.rerank=true" in text  # accepted ones are listed so they are not repeated
    assert "Propose 1 replacement" in text
    malformed = Rejected({}, ["malformed output: ValidationError: bad"])
    assert "- your reply: malformed output: ValidationError: bad" in render_prompt(
        "propose_retry", **retry_inputs([malformed], [], 2))


# -- what was measured --------------------------------------------------------------------------
def test_tried_config_joins_goal_value_guardrails_and_early_stop():
    base = report(CONFIG, 0.5, 500)
    slow = record("c1", 1, rag__top_k=8)
    tried = tried_config(slow, report(slow["config"], 0.7, 900), base, REQUEST.goal, REQUEST.guardrails)
    assert tried.evaluated and tried.value == pytest.approx(0.7)
    assert tried.feasible is False and tried.broken[0].startswith("p95 latency_ms <= 1.2x baseline")
    assert tried.metrics["p95 latency_ms"] > 1000
    stopped = tried_config(slow, report(slow["config"], 0.2, stopped="clearly worse than the baseline"), base,
                           REQUEST.goal, REQUEST.guardrails)
    assert stopped.stop_reason == "clearly worse than the baseline" and not stopped.good
    pending = tried_config(slow, None, base, REQUEST.goal, REQUEST.guardrails)
    assert not pending.evaluated and pending.value is None


# -- the prompt ------------------------------------------------------------------------------------
def inputs(history: list[dict], obs: dict | None, n: int = 3, model_available: bool = False, scope=()):
    evals = {r["config_hash"]: rep for r, rep in history}
    base_report = report(CONFIG, 0.5, 500)
    base = tried_config(baseline_record(), base_report, base_report, REQUEST.goal, REQUEST.guardrails)
    tried = [tried_config(r, evals.get(r["config_hash"]), base_report, REQUEST.goal, REQUEST.guardrails) for r, _ in history]
    return prompt_inputs(workflow=SPEC.workflow, description=SPEC.description, goal=REQUEST.goal,
                         guardrails=REQUEST.guardrails, space=SPEC.space.restricted(list(scope)), config=CONFIG,
                         observation=Observation.model_validate(obs) if obs else None,
                         baseline=base, history=tried, n=n, model_available=model_available)


def test_prompt_shows_goal_space_hot_spots_samples_and_history():
    good = record("c1", 1, rationale="retrieve misses: more context", rag__top_k=5)
    slow = record("c2", 1, proposer="optuna", rag__rerank=True)
    pending = record("c3", 2, tool__retries=1)
    history = [(good, report(good["config"], 0.7, 520)), (slow, report(slow["config"], 0.6, 900)), (pending, None)]
    text = render_prompt("propose", **inputs(history, observation()))
    assert "Goal: maximize mean contains." in text
    assert "- p95 latency_ms <= 1.2x baseline" in text
    # the space: domains in words, current values, constraints, model-only knobs set aside offline
    assert "- rag.top_k: integer in [1, 10]; current 2" in text
    assert "- router.threshold: number in [0.5, 1], step 0.05 from 0.5; current 0.8" in text
    assert "- llm.max_tokens: integer in [16, 1024], log scale" in text
    assert "- rag.rerank: true or false; current false" in text
    assert 'router.summary_keywords: one of ["summarize", "overview"] |' in text
    assert "not tunable now, the workflow has no LLM: llm.temperature, prompts.answer, prompts.summary" in text
    assert "exactly one of nodes.qa_agent.enabled, nodes.qa_with_tool_agent.enabled must be true" in text
    assert '"top_k": 2' in text  # the current config as JSON
    # hot spots and a trimmed sample trajectory
    assert "1. retrieve: p95 2.4 s > threshold 1.5 s; error rate 15% > 5%" in text
    assert "slowest run (2.4 s)" in text and "order lookup timed out" in text
    # history: the baseline's values, each candidate's changes, rationale, measured value and guardrails
    assert "baseline (current config): mean contains 0.500; p95 latency_ms" in text
    assert "- c1 [round 1, llm] rag.top_k=5 | why: retrieve misses: more context -> mean contains 0.700 (+40.0% vs baseline)" in text
    assert "guardrails kept" in text
    assert "- c2 [round 1, optuna] rag.rerank=true -> mean contains 0.600" in text
    assert "BROKE p95 latency_ms <= 1.2x baseline" in text
    assert "- c3 [round 2, llm] tool.retries=1 -> not evaluated yet" in text
    assert "Propose 3 new candidate configuration(s)" in text


def test_text_domains_name_their_placeholders_when_the_workflow_has_a_model():
    assert describe_domain(SPEC.tunables["prompts.answer"]) == (
        "text, at most 4000 characters, must keep the placeholders {context}; only matters with an LLM")
    text = render_prompt("propose", **inputs([], None, model_available=True))
    assert "- llm.temperature: number in [0, 1], step 0.1 from 0; only matters with an LLM; current 0.2" in text
    assert "(no production observation for this run)" in text and "(no candidates tried yet)" in text


def test_prompt_space_follows_the_scope():
    text = inputs([], None, scope=["rag"])["space"]
    assert text.splitlines() == ["- rag.top_k: integer in [1, 10]; current 2", "- rag.rerank: true or false; current false",
                                 "- rag.rewrite: true or false; current false"]


def test_prompt_stays_bounded_with_a_long_history_and_big_samples():
    history = []
    for i in range(300):
        rec = record(f"c{i + 1}", 1 + i // 4, rationale="a long rationale " * 40,
                     tool__timeout_s=round(0.1 + (i % 38) * 0.05, 2), tool__retries=i % 4, rag__top_k=1 + i % 10)
        history.append((rec, report(rec["config"], 0.9 if i == 7 else 0.4 + (i % 5) / 100, 500)))
    obs = observation(steps=200, samples=10, hot_spots=40)
    values = inputs(history, obs)
    text = render_prompt("propose", **values)
    assert len(text) < 25_000
    lines = values["history"].splitlines()
    assert len(lines) <= MAX_HISTORY + 2
    assert "276 earlier candidates not shown" in lines[1]
    assert any(line.startswith("- c8 ") for line in lines)  # the best one stays in view
    assert any(line.startswith("- c300 ") for line in lines)  # and so do the most recent
    assert max(len(line) for line in lines) <= 410
    assert values["samples"].count("trace ") == 3 and "188 more steps" in values["samples"]
    assert "32 less severe hot spots not shown" in values["hot_spots"]


def test_tried_config_accepts_candidate_record_dicts_with_extra_keys():
    tried = tried_config({**baseline_record(), "version": 3}, None, None, REQUEST.goal, [])
    assert isinstance(tried, TriedConfig) and tried.id == "baseline" and tried.feasible is None
