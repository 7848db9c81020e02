"""The propose node: LLM proposals validated and retried, Optuna filling the batch, budget, duplicates and scope."""

from __future__ import annotations

import asyncio

import pytest
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.runtime import Runtime

from graphtune.graphs.context import ControllerContext
from graphtune.llm import OFFLINE_NOTICE
from graphtune.nodes.propose import propose
from graphtune.testing.openai_server import OpenAITestServer, Reply
from graphtune.testing.openai_server import scripted as http_scripted
from graphtune.tuning.config_paths import config_hash, get_path
from graphtune.tuning.mutations import Mutation, apply_mutations, check_candidate, Candidate
from graphtune.tuning.request import TuningRequest
from tests.fakes import ScriptedChatModel, ai, scripted
from tests.tuning.test_llm_proposer import BASE_HASH, CONFIG, SPEC, baseline_record, observation, record, report


@pytest.fixture(autouse=True)
def no_model_env(monkeypatch):
    """The controller's model comes from the context in these tests; the workflow has no LLM unless a test says so."""
    for name in ("GRAPHTUNE_MODEL", "OPENAI_BASE_URL"):
        monkeypatch.delenv(name, raising=False)


def make_state(*, candidates=(), evals=None, round=0, scope=(), budget=None, obs=True) -> dict:
    request = TuningRequest.default_for(SPEC).model_dump(mode="json")
    request["scope"] = list(scope)
    if budget is not None:
        request["budget"]["candidates"] = budget
    reports = {BASE_HASH: report(CONFIG, 0.5)}
    reports.update(evals or {})
    state = {"messages": [], "request": request, "spec": "support_qa", "baseline": {**baseline_record(), "version": 1},
             "candidates": list(candidates), "round": round,
             "evals": {h: r.model_dump(mode="json") for h, r in reports.items()}}
    if obs:
        state["observation"] = observation()
    return state


def run(state: dict, ctx: ControllerContext) -> dict:
    return asyncio.run(propose(state, Runtime(context=ctx)))


def ctx_with(model, **kw) -> ControllerContext:
    return ControllerContext(model=None, chat_model_factory=lambda: model, **kw)


def proposal_set(*candidates: dict, tokens=(120, 30)) -> AIMessage:
    return ai(tool_calls=[{"name": "ProposalSet", "args": {"candidates": list(candidates)}, "id": "1"}], tokens=tokens)


def cand(rationale="hot spot: retrieve", **changes) -> dict:
    return {"mutations": [{"path": p.replace("__", "."), "value": v} for p, v in changes.items()], "rationale": rationale}


def assert_valid_and_new(out: dict, state: dict, scope=(), model_available=False):
    """Every new candidate is inside the (scoped) space, built from the baseline, and never seen before."""
    space = SPEC.space.restricted(list(scope))
    seen = {BASE_HASH} | {c["config_hash"] for c in state["candidates"]} | set(state["evals"])
    for c in out["candidates"]:
        mutations = [Mutation(**m) for m in c["mutations"]]
        assert check_candidate(space, CONFIG, Candidate(mutations=mutations), model_available=model_available) == []
        assert c["config"] == apply_mutations(CONFIG, mutations)
        assert c["config_hash"] == config_hash(c["config"])
        assert c["config_hash"] not in seen
        seen.add(c["config_hash"])


def last_human(messages) -> str:
    return [m for m in messages if isinstance(m, HumanMessage)][-1].content


# -- the LLM proposer ---------------------------------------------------------------------------
def test_a_valid_llm_batch_becomes_the_round_s_candidates():
    model = scripted(proposal_set(cand("retrieve is slow: fewer docs", rag__top_k=1),
                                  cand("retrieve errors: retry the tool", tool__retries=2, tool__timeout_s=1)))
    state = make_state()
    out = run(state, ctx_with(model, batch_size=2))
    assert out["round"] == 1
    assert [(c["id"], c["proposer"], c["round"]) for c in out["candidates"]] == [("c1", "llm", 1), ("c2", "llm", 1)]
    assert out["candidates"][1]["mutations"] == [{"path": "tool.retries", "value": 2}, {"path": "tool.timeout_s", "value": 1.0}]
    assert out["candidates"][0]["rationale"] == "retrieve is slow: fewer docs"
    assert_valid_and_new(out, state)
    assert out["rejected_proposals"] == []
    assert out["controller_usage"] == [{"step": "propose", "input_tokens": 120, "output_tokens": 30}]
    [message] = out["messages"]
    assert "Round 1: 2 candidates proposed (2 from the LLM)" in message.content
    assert "- c1 (llm) rag.top_k=1: retrieve is slow: fewer docs" in message.content
    # one call; the prompt carried the hot spots, the space and the baseline's values
    [call] = model.calls
    prompt = last_human(call)
    assert "1. retrieve: p95 2.4 s > threshold 1.5 s" in prompt and "- rag.top_k: integer in [1, 10]" in prompt
    assert "baseline (current config): mean contains 0.500" in prompt and "Propose 2 new candidate" in prompt


def test_an_invalid_candidate_goes_back_with_its_reasons_and_is_replaced():
    model = scripted(
        proposal_set(cand(rag__top_k=4), cand("much more context", rag__top_k=50), tokens=(100, 20)),
        proposal_set(cand("a bit more context", rag__top_k=6), tokens=(150, 10)),
    )
    state = make_state()
    out = run(state, ctx_with(model, batch_size=2))
    assert [c["config"]["rag"]["top_k"] for c in out["candidates"]] == [4, 6]
    assert {c["proposer"] for c in out["candidates"]} == {"llm"}
    retry = last_human(model.calls[1])
    assert "- rag.top_k=50: rag.top_k: expected a value in [1, 10], got 50" in retry
    assert "Propose 1 replacement candidate(s) for the rejected ones only" in retry
    assert "- rag.top_k=4" in retry  # the accepted one is listed so it is not repeated
    # the model's own answer is in the conversation as plain text (no dangling tool call)
    assert isinstance(model.calls[1][1], AIMessage) and not model.calls[1][1].tool_calls
    assert out["rejected_proposals"] == [{"round": 1, "proposer": "llm", "reasons": [
        "rag.top_k: expected a value in [1, 10], got 50"], "candidate": cand("much more context", rag__top_k=50)}]
    assert out["controller_usage"] == [{"step": "propose", "input_tokens": 250, "output_tokens": 30}]
    assert "1 LLM proposal rejected:" in out["messages"][0].content


def test_when_retries_run_out_the_rejections_are_reported_and_optuna_fills_the_batch():
    model = scripted(proposal_set(cand(rag__top_k=50)), proposal_set(cand(rag__topk=3)))
    state = make_state()
    out = run(state, ctx_with(model, batch_size=3, max_proposal_retries=1))
    assert len(model.calls) == 2
    assert [c["proposer"] for c in out["candidates"]] == ["optuna"] * 3
    assert [c["id"] for c in out["candidates"]] == ["c1", "c2", "c3"]
    assert_valid_and_new(out, state)
    assert [r["reasons"][0][:22] for r in out["rejected_proposals"]] == ["rag.top_k: expected a ", "rag.topk is not a tuna"]
    text = out["messages"][0].content
    assert "(3 from Optuna search)" in text and "2 LLM proposals rejected:" in text and "did you mean rag.top_k" in text


def test_malformed_output_is_retried_then_reported():
    model = scripted(ai("I think you should raise top_k."), proposal_set(cand(rag__top_k=4)))
    out = run(make_state(), ctx_with(model, batch_size=1))
    assert [c["proposer"] for c in out["candidates"]] == ["llm"]
    assert out["rejected_proposals"][0]["candidate"] == {}
    assert out["rejected_proposals"][0]["reasons"] == ["malformed output: the reply held no ProposalSet"]
    assert "malformed output" in last_human(model.calls[1])
    assert model.calls[1][1].content == "I think you should raise top_k."  # its reply stays in the conversation

    bad = ai(tool_calls=[{"name": "ProposalSet", "args": {"candidates": "raise top_k"}, "id": "1"}])
    model = scripted(bad, bad)
    out = run(make_state(), ctx_with(model, batch_size=2, max_proposal_retries=1))
    assert len(model.calls) == 2
    assert [c["proposer"] for c in out["candidates"]] == ["optuna", "optuna"]
    assert [r["reasons"][0].split(":")[:2] for r in out["rejected_proposals"]] == [["malformed output", " ValidationError"]] * 2
    assert "malformed output: ValidationError" in out["messages"][0].content


class FailingModel(ScriptedChatModel):
    """Raises like the openai client does after its own retries, then follows the script."""

    failures: int = 1

    def _generate(self, messages, stop=None, run_manager=None, **kwargs):
        if self.failures:
            self.failures -= 1
            self.calls.append(list(messages))
            raise RuntimeError("Error code: 500 - upstream overloaded")
        return super()._generate(messages, stop, run_manager, **kwargs)


def test_a_failing_model_call_counts_as_a_malformed_attempt():
    model = FailingModel(responses=[proposal_set(cand(rag__rerank=True))], calls=[], failures=1)
    out = run(make_state(), ctx_with(model, batch_size=1))
    assert out["rejected_proposals"][0]["reasons"] == ["malformed output: RuntimeError: Error code: 500 - upstream overloaded"]
    assert [c["proposer"] for c in out["candidates"]] == ["llm"]
    model = FailingModel(responses=[], calls=[], failures=5)
    out = run(make_state(), ctx_with(model, batch_size=2, max_proposal_retries=2))
    assert len(model.calls) == 3 and len(out["rejected_proposals"]) == 3
    assert [c["proposer"] for c in out["candidates"]] == ["optuna", "optuna"]


# -- Optuna, offline, budget, duplicates, scope -------------------------------------------------------
def test_offline_optuna_is_the_whole_proposer_and_says_so():
    state = make_state(obs=False)
    out = run(state, ControllerContext(model=None, batch_size=4))
    assert [c["proposer"] for c in out["candidates"]] == ["optuna"] * 4
    assert all(c["rationale"].startswith("local start:") for c in out["candidates"])
    assert all(len(c["mutations"]) <= 3 for c in out["candidates"])  # one or two moves (plus a constraint repair)
    assert_valid_and_new(out, state)
    assert out["controller_usage"] == [] and out["rejected_proposals"] == []
    text = out["messages"][0].content
    assert text.startswith(f"{OFFLINE_NOTICE}; the Optuna search proposer proposes every candidate.")
    # the workflow has no LLM either: model-only tunables stay as they are
    assert not {m["path"] for c in out["candidates"] for m in c["mutations"]} & {"llm.temperature", "prompts.answer"}


def test_the_candidate_budget_shrinks_the_batch_and_ids_continue():
    earlier = [record(f"c{i}", 1, proposer="optuna", rag__top_k=i + 2) for i in range(1, 5)]
    evals = {r["config_hash"]: report(r["config"], 0.5 + i / 100) for i, r in enumerate(earlier)}
    state = make_state(candidates=[baseline_record(), *earlier], evals=evals, round=1, budget=5)
    model = scripted(proposal_set(cand(rag__rerank=True), cand(rag__rewrite=True)))
    out = run(state, ctx_with(model, batch_size=4))
    assert [(c["id"], c["round"]) for c in out["candidates"]] == [("c5", 2)]
    assert "Propose 1 new candidate" in last_human(model.calls[0])
    assert "candidate budget: 4 of 5 used, so 1 this round" in out["messages"][0].content

    used = make_state(candidates=[*earlier, record("c5", 2, rag__rerank=True)], evals=evals, round=2, budget=5)
    out = run(used, ctx_with(scripted()))
    assert out["candidates"] == [] and out["round"] == 3
    assert "the candidate budget is used (5 of 5)" in out["messages"][0].content


def test_configs_already_proposed_or_evaluated_are_never_proposed_again():
    c1 = record("c1", 1, rag__top_k=4)
    c2 = record("c2", 1, proposer="optuna", rag__rerank=True)  # proposed, not evaluated yet
    state = make_state(candidates=[c1, c2], evals={c1["config_hash"]: report(c1["config"], 0.7)}, round=1)
    model = scripted(proposal_set(cand(rag__top_k=4), cand(rag__rerank=True), cand(rag__top_k=2)),
                     proposal_set(cand(rag__top_k=5), cand(rag__top_k=5)), proposal_set(cand(rag__top_k=4)))
    out = run(state, ctx_with(model, batch_size=4, max_proposal_retries=2))
    reasons = [r["reasons"][0] for r in out["rejected_proposals"]]
    assert reasons[:3] == ["same config as c1: propose something not tried yet",
                           "same config as c2: propose something not tried yet",
                           "the candidate changes nothing: every value equals the current config"]
    assert reasons[3].startswith("same config as another candidate of this batch (rag.top_k=5)")
    assert [c["id"] for c in out["candidates"]][:1] == ["c3"] and out["candidates"][0]["config"]["rag"]["top_k"] == 5
    assert len(out["candidates"]) == 4
    assert_valid_and_new(out, state)


def test_optuna_never_repeats_earlier_candidates_across_many_rounds():
    state = make_state(obs=False, budget=20)
    ctx = ControllerContext(model=None, batch_size=3)
    for _ in range(4):
        out = run(state, ctx)
        assert_valid_and_new(out, state)
        state["candidates"] += out["candidates"]
        state["round"] = out["round"]
        # only every other candidate is evaluated: the search must also avoid the ones it cannot know about
        for c in out["candidates"][::2]:
            state["evals"][c["config_hash"]] = report(c["config"], 0.5 + get_path(c["config"], "rag.top_k") / 100).model_dump(mode="json")
    assert [c["id"] for c in state["candidates"]] == [f"c{i}" for i in range(1, 13)]


def test_scope_is_respected_by_both_proposers():
    model = scripted(proposal_set(cand(tool__retries=2), cand(rag__top_k=3)), proposal_set(cand(llm__max_tokens=64)))
    state = make_state(scope=["rag"])
    out = run(state, ctx_with(model, batch_size=4, max_proposal_retries=1))
    assert_valid_and_new(out, state, scope=["rag"])
    assert {m["path"].split(".")[0] for c in out["candidates"] for m in c["mutations"]} == {"rag"}
    assert [c["proposer"] for c in out["candidates"]] == ["llm", "optuna", "optuna", "optuna"]
    assert [r["reasons"][0].split(";")[0] for r in out["rejected_proposals"]] == [
        "tool.retries is outside this run's scope", "llm.max_tokens is outside this run's scope"]
    assert "- tool.retries" not in last_human(model.calls[0])  # the prompt shows only the scoped space


def test_model_only_tunables_follow_the_workflow_s_model(monkeypatch):
    model = scripted(proposal_set(cand(llm__temperature=0.5)), proposal_set(cand(rag__top_k=3)))
    out = run(make_state(), ctx_with(model, batch_size=1))
    assert "only matters with an LLM configured; none is" in out["rejected_proposals"][0]["reasons"][0]
    monkeypatch.setenv("GRAPHTUNE_MODEL", "workflow-model")
    model = scripted(proposal_set(cand(llm__temperature=0.5)))
    out = run(make_state(), ctx_with(model, batch_size=1))
    assert out["candidates"][0]["config"]["llm"]["temperature"] == 0.5


def test_an_empty_scope_match_proposes_nothing_and_says_why():
    out = run(make_state(scope=["nope"]), ctx_with(scripted()))
    assert out["candidates"] == [] and "no tunable to change in scope (nope)" in out["messages"][0].content


def test_the_search_history_uses_the_request_goal_and_guardrails(monkeypatch):
    """Optuna is warm-started with the goal's statistic and guardrail feasibility, not the spec objective."""
    import graphtune.nodes.propose as node

    seen = {}

    class Spy(node.SearchProposer):
        def propose(self, base_config, history, n, focus=None, moves_from=None):
            seen["direction"], seen["history"] = self.direction, history
            return super().propose(base_config, history, n, focus, moves_from)

    monkeypatch.setattr(node, "SearchProposer", Spy)
    fast = record("c1", 1, rag__top_k=1)
    slow = record("c2", 1, rag__top_k=9)
    stopped = record("c3", 1, rag__top_k=8)
    state = make_state(candidates=[fast, slow, stopped], round=1, evals={
        fast["config_hash"]: report(fast["config"], 0.4, 300), slow["config_hash"]: report(slow["config"], 0.6, 900),
        stopped["config_hash"]: report(stopped["config"], 0.6, 400, stopped="clearly worse")})
    state["request"]["goal"] = {"metric": "latency_ms", "direction": "minimize", "statistic": "p95"}
    run(state, ControllerContext(model=None, batch_size=1))
    assert seen["direction"] == "minimize"
    by_top_k = {o.config["rag"]["top_k"]: o for o in seen["history"]}
    assert set(by_top_k) == {2, 1, 9, 8}
    assert by_top_k[1].score == pytest.approx(report(fast["config"], 0.4, 300).value("latency_ms", "p95"))
    assert by_top_k[1].feasible and by_top_k[2].feasible
    assert not by_top_k[9].feasible  # p95 latency 1.8x the baseline's
    assert not by_top_k[8].feasible  # stopped early


# -- the real ChatOpenAI over HTTP ----------------------------------------------------------------
def test_real_chat_openai_retries_an_invalid_proposal_over_http(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    invalid = {"candidates": [{"mutations": [{"path": "rag.top_k", "value": 50}], "rationale": "more context"}]}
    valid = {"candidates": [{"mutations": [{"path": "rag.top_k", "value": 5}], "rationale": "more context, in range"}]}
    with OpenAITestServer(http_scripted(Reply(json=invalid, prompt_tokens=900, completion_tokens=40),
                                        Reply(json=valid, prompt_tokens=1000, completion_tokens=30))) as server:
        ctx = ControllerContext(model="test-model", base_url=server.base_url, batch_size=1)
        out = run(make_state(), ctx)  # one asyncio.run: the model is built inside it
        requests = server.requests
    assert len(requests) == 2
    assert requests[0]["response_format"]["json_schema"]["name"] == "ProposalSet"
    second = requests[1]["messages"]
    assert "rag.top_k: expected a value in [1, 10], got 50" in second[-1]["content"]
    assert second[-2]["role"] == "assistant" and '"value":50' in second[-2]["content"]
    [candidate] = out["candidates"]
    assert (candidate["id"], candidate["proposer"], candidate["config"]["rag"]["top_k"]) == ("c1", "llm", 5)
    assert out["rejected_proposals"][0]["reasons"] == ["rag.top_k: expected a value in [1, 10], got 50"]
    assert out["controller_usage"] == [{"step": "propose", "input_tokens": 1900, "output_tokens": 70}]


def test_real_chat_openai_reply_that_is_not_json_is_retried_over_http(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    valid = {"candidates": [{"mutations": [{"path": "rag.rerank", "value": True}], "rationale": "rank better"}]}
    with OpenAITestServer(http_scripted(Reply(content="Sure! Raise top_k."), Reply(json=valid))) as server:
        out = run(make_state(), ControllerContext(model="test-model", base_url=server.base_url, batch_size=1))
        requests = server.requests
    assert len(requests) == 2
    assert out["rejected_proposals"][0]["reasons"][0].startswith("malformed output: ")
    assert "malformed output" in requests[1]["messages"][-1]["content"]
    assert [c["config"]["rag"]["rerank"] for c in out["candidates"]] == [True]


def test_the_local_start_moves_the_tunables_that_name_hot_spots_first():
    """Offline and trace-informed: a hot production node makes its own tunables the first ones moved."""
    state = make_state()
    spot = state["observation"]["hot_spots"][0]
    state["observation"]["hot_spots"] = [dict(spot, node="summary", severity=9.0)]
    out = run(state, ControllerContext(model=None, batch_size=4, seed=1))
    moved = [m["path"] for c in out["candidates"] for m in c["mutations"]]
    assert sum(path.startswith("nodes.summary") for path in moved) >= 2, moved
