"""The intake node: chat message or structured request in, a checked TuningRequest (or a clear stop) out.

Three readers are exercised: the deterministic parser (offline), a scripted chat model (structured
output parsed from a tool call named ``RequestDraft``), and the real ``ChatOpenAI`` over HTTP
against the local OpenAI-compatible test server. Each test runs its coroutine with one
``asyncio.run`` and builds the model inside it (ChatOpenAI caches its async client per loop).
"""

from __future__ import annotations

import asyncio
import time

import pytest
import yaml
from blockbuster import blockbuster_ctx
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import END, START, StateGraph
from langgraph.runtime import Runtime
from langgraph.types import Overwrite

from graphtune.graphs.context import ControllerContext
from graphtune.graphs.state import ControllerState
from graphtune.llm import OFFLINE_NOTICE
from graphtune.nodes.intake import intake
from graphtune.testing.openai_server import OpenAITestServer, Reply
from graphtune.testing.openai_server import scripted as server_script
from graphtune.tuning.request import Budget, TuningGoal, TuningRequest
from tests.fakes import ai, scripted

EXAMPLE = "support_qa is too slow; cut latency 20% without losing accuracy"


def offline(**kw) -> ControllerContext:
    return ControllerContext(model=None, base_url=None, **kw)


def with_model(model, **kw) -> ControllerContext:
    return ControllerContext(model=None, chat_model_factory=lambda: model, **kw)


def run(state: dict, ctx: ControllerContext) -> dict:
    """intake's update, with the values it writes past a reducer (``Overwrite``) unwrapped."""
    update = asyncio.run(intake({"messages": [], **state}, Runtime(context=ctx)))
    return {k: v.value if isinstance(v, Overwrite) else v for k, v in update.items()}


def say(text) -> dict:
    return {"messages": [HumanMessage(text)]}


def draft_call(**args) -> AIMessage:
    return ai(tool_calls=[{"name": "RequestDraft", "args": args, "id": "1"}], tokens=(100, 20))


def feedback_of(system_prompt: str) -> str:
    """What the prompt tells the model about its previous answer (the lines after that heading)."""
    return system_prompt.split("## Problems with your previous answer", 1)[1].split("\n", 1)[1].strip()


def request_of(update: dict) -> TuningRequest:
    return TuningRequest.model_validate(update["request"])


def reply_of(update: dict) -> str:
    [message] = update["messages"]
    assert isinstance(message, AIMessage)
    return message.content


@pytest.fixture
def triage_spec(tmp_path):
    """A second workflow, known through ``ControllerContext.specs``."""
    path = tmp_path / "triage.yaml"
    path.write_text(yaml.safe_dump({
        "workflow": "ticket_triage",
        "description": "Routes support tickets to a queue.",
        "graph": "tests.nowhere:build_graph",
        "config": {"route": {"threshold": 0.5}},
        "tunables": {"route.threshold": {"type": "float", "low": 0, "high": 1}},
        "evals": {"datasets": [{"name": "t", "path": "t.jsonl"}], "metrics": ["latency_ms", "exact", "error"]},
        "objective": {"metric": "exact"},
    }))
    return path


# -- offline: the deterministic parser -----------------------------------------------------------------


def test_offline_example_sentence():
    before = time.time()
    update = run(say(EXAMPLE), offline())
    request = request_of(update)
    assert request.workflow == "support_qa"
    assert request.goal == TuningGoal(metric="latency_ms", direction="minimize", statistic="p95", target_change=-0.2)
    guards = [g.describe() for g in request.guardrails]
    assert "mean contains at most 0.02 below baseline" in guards
    assert not any(g.metric == "latency_ms" for g in request.guardrails)  # the goal replaces the latency guardrail
    assert OFFLINE_NOTICE in request.notes[0]
    assert any("'without losing accuracy' read as: mean contains at most 0.02 below baseline" in n for n in request.notes)
    assert request.text == EXAMPLE
    assert update["spec"] == "support_qa" and update["round"] == 0
    assert before <= update["started_at"] <= time.time()
    assert not update.get("controller_usage") and update.get("outcome") is None
    reply = reply_of(update)
    for part in ["support_qa", "minimize p95 latency_ms (target -20% vs baseline)", "contains at most 0.02 below baseline",
                 "30 candidates", "15 rounds", "all tunables", OFFLINE_NOTICE]:
        assert part in reply


def test_reads_the_last_human_message_and_content_blocks():
    blocks = HumanMessage(content=[{"type": "text", "text": "support_qa is too expensive"},
                                   {"type": "image_url", "image_url": {"url": "data:image/png;base64,AA=="}}])
    update = run({"messages": [HumanMessage("support_qa is too slow"), AIMessage("ok"), blocks]}, offline())
    assert request_of(update).goal.metric == "cost_usd"


def test_offline_unknown_workflow_lists_the_known_ones():
    update = run(say("billing_bot is too slow"), offline())
    assert update["request"] is None
    assert update["outcome"]["status"] == "unknown_workflow"
    assert "billing_bot" in update["outcome"]["message"] and "support_qa" in update["outcome"]["message"]
    assert "support_qa" in reply_of(update)


def test_context_specs_add_workflows(triage_spec):
    ctx = offline(specs={"ticket_triage": str(triage_spec)})
    unnamed = run(say("too slow"), ctx)
    assert unnamed["outcome"]["status"] == "unknown_workflow"
    assert "support_qa" in reply_of(unnamed) and "ticket_triage" in reply_of(unnamed)
    named = run(say("ticket triage is failing; only tune route"), ctx)
    request = request_of(named)
    assert (request.workflow, request.goal.metric, request.scope) == ("ticket_triage", "error", ["route.threshold"])
    assert named["spec"] == str(triage_spec)  # later steps load the spec from here


def test_spec_set_by_the_cli_fixes_the_workflow(triage_spec):
    bundled = run({**say("cut cost 30%"), "spec": "support_qa"}, offline())
    assert bundled["spec"] == "support_qa" and request_of(bundled).goal.target_change == pytest.approx(-0.3)
    by_path = run({**say("make it more accurate"), "spec": str(triage_spec)}, offline())
    assert by_path["spec"] == str(triage_spec)
    assert (request_of(by_path).workflow, request_of(by_path).goal.metric) == ("ticket_triage", "exact")


def test_a_spec_that_cannot_be_loaded_fails_the_run_clearly(tmp_path):
    update = run({**say("too slow"), "spec": str(tmp_path / "missing.yaml")}, offline())
    assert update["request"] is None and update["outcome"]["status"] == "failed"
    assert "missing.yaml" in reply_of(update) and "no such spec file" in reply_of(update)
    directory = run({**say("too slow"), "spec": str(tmp_path)}, offline())
    assert directory["outcome"]["status"] == "failed" and str(tmp_path) in reply_of(directory)


def test_a_known_spec_that_fails_to_load_is_reported(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("workflow: [")
    ctx = offline(specs={"billing": str(broken)})
    for state in (say("billing is too slow"), {"request": {"workflow": "billing"}}):
        update = run(state, ctx)
        assert update["request"] is None and update["outcome"]["status"] == "failed"
        assert "workflow billing cannot be loaded" in reply_of(update) and "broken.yaml" in reply_of(update)
    unnamed = run(say("billing_bot is too slow"), ctx)
    assert unnamed["outcome"]["status"] == "unknown_workflow" and "failed to load" in reply_of(unnamed)


# -- structured requests --------------------------------------------------------------------------------


def test_structured_request_is_validated_and_kept():
    given = TuningRequest(workflow="support_qa", goal=TuningGoal(metric="cost_usd", direction="minimize", target_change=-0.3),
                          guardrails=[], budget=Budget(candidates=4, rounds=1), scope=["rag"])
    update = run({"request": given.model_dump(mode="json"), **say("ignored when a request is given")}, offline())
    request = request_of(update)
    assert request.goal == given.goal and request.budget == given.budget and request.guardrails == []
    assert request.scope == ["rag.top_k", "rag.rerank", "rag.rewrite"]
    assert request.notes[0] == "structured request, checked against the spec"
    assert update["spec"] == "support_qa" and update["round"] == 0
    assert "minimize mean cost_usd" in reply_of(update)


def test_partial_structured_request_gets_the_spec_defaults():
    request = request_of(run({"request": {"workflow": "Support-QA"}}, offline()))
    assert request.workflow == "support_qa" and request.goal.metric == "contains"
    assert {g.metric for g in request.guardrails} == {"latency_ms", "error", "cost_usd"}


@pytest.mark.parametrize(("given", "status", "says"), [
    ({"workflow": "support_qa", "budget": {"candidates": 0}}, "failed", "budget.candidates"),
    ({"workflow": "support_qa", "goal": {"metric": "bleu"}}, "failed", "metric 'bleu' is not measured"),
    ({"workflow": "support_qa", "budgt": {}}, "failed", "budgt: unknown key"),
    ({"workflow": "nope"}, "unknown_workflow", "support_qa"),
    ({"goal": "latency_ms"}, "unknown_workflow", "Which workflow"),
    ("support_qa", "failed", "must be a mapping"),
])
def test_invalid_structured_request_is_a_clear_message_not_an_exception(given, status, says):
    update = run({"request": given}, offline())
    assert update["request"] is None
    assert update["outcome"]["status"] == status
    assert says in update["outcome"]["message"] and says in reply_of(update)


def test_structured_request_for_another_workflow_than_the_cli_spec_fails(triage_spec):
    update = run({"request": {"workflow": "support_qa"}, "spec": str(triage_spec)}, offline())
    assert update["outcome"]["status"] == "failed" and "ticket_triage" in reply_of(update)


# -- a scripted chat model --------------------------------------------------------------------------------


def test_model_draft_becomes_the_request_with_usage():
    model = scripted(draft_call(workflow="support_qa", metric="latency_ms", target_change=-0.2, candidates=6,
                                guardrails=[{"metric": "contains", "margin": 0.02}], exclude=["prompts"]))
    update = run(say(EXAMPLE), with_model(model))
    request = request_of(update)
    assert request.goal.metric == "latency_ms" and request.goal.statistic == "p95" and request.budget.candidates == 6
    assert "prompts.answer" not in request.scope and "rag.top_k" in request.scope
    assert request.notes[0] == "read by the model, checked against the spec"
    assert update["controller_usage"] == [{"step": "intake", "input_tokens": 100, "output_tokens": 20}]
    [call] = model.calls
    system, human = call
    assert human.content == EXAMPLE
    for fact in ["### support_qa", "Help-center assistant", "metrics: contains, token_f1", "objective: maximize contains",
                 "p95 latency_ms <= 1.2x baseline", "rag.top_k (int)", "wall_time_s", "candidates"]:
        assert fact in system.content, fact


@pytest.mark.parametrize("first", [
    draft_call(candidates="many"),  # malformed: not an int
    draft_call(workflow="support_qa", metric="bleu"),  # well-formed, but not a metric of the spec
    ai("I would cut latency.", tokens=(100, 20)),  # no structured answer at all
])
def test_unusable_answer_is_retried_with_the_reasons(first):
    model = scripted(first, draft_call(workflow="support_qa", metric="cost_usd"))
    update = run(say("support_qa too expensive"), with_model(model))
    assert request_of(update).goal.metric == "cost_usd"
    assert len(model.calls) == 2 and len(update["controller_usage"]) == 2
    assert feedback_of(model.calls[0][0].content) == ""
    feedback = feedback_of(model.calls[1][0].content)
    assert feedback.startswith("- ") and any(word in feedback for word in ("candidates", "metric 'bleu'", "no structured answer"))


def test_unusable_twice_falls_back_to_the_parser_and_says_so():
    model = scripted(draft_call(candidates="many"), draft_call(workflow="support_qa", metric="bleu"))
    update = run(say(EXAMPLE), with_model(model))
    request = request_of(update)
    assert request.goal.metric == "latency_ms" and request.goal.target_change == pytest.approx(-0.2)
    assert "unusable twice" in request.notes[0] and "deterministic parser" in request.notes[0]
    assert "metric 'bleu'" in request.notes[0]
    assert "unusable twice" in reply_of(update) and len(update["controller_usage"]) == 2


def test_a_failing_model_call_falls_back_without_raising():
    model = scripted()  # raises on every call
    update = run(say(EXAMPLE), with_model(model))
    assert request_of(update).goal.metric == "latency_ms"
    assert "the model call failed" in request_of(update).notes[0]
    assert not update.get("controller_usage")


def test_fields_the_model_left_out_come_from_the_deterministic_reader_and_the_notes_say_so():
    model = scripted(draft_call(workflow="support_qa", metric="latency_ms"))  # no budget, though the message gives one
    update = run(say("support_qa is too slow: try 3 candidates, at most 1 round"), with_model(model))
    request = request_of(update)
    assert (request.budget.candidates, request.budget.rounds) == (3, 1)
    assert request.goal.metric == "latency_ms"
    filled = next(n for n in request.notes if "deterministic reader filled them in" in n)
    assert "candidates=3" in filled and "rounds=1" in filled and "metric" not in filled
    assert filled in reply_of(update)


def test_what_the_model_did_say_wins_over_the_deterministic_reader():
    model = scripted(draft_call(workflow="support_qa", metric="latency_ms", candidates=5))
    request = request_of(run(say("support_qa is too slow: try 3 candidates, at most 1 round"), with_model(model)))
    assert (request.budget.candidates, request.budget.rounds) == (5, 1)


def test_a_model_whose_integration_is_not_installed_fails_the_run_naming_the_package(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "langchain_anthropic", None)  # as if not installed
    update = run(say(EXAMPLE), ControllerContext(model="anthropic:claude-sonnet-4-5"))
    assert update["request"] is None and update["outcome"]["status"] == "failed"
    assert "langchain-anthropic" in reply_of(update) and "graphtune[anthropic]" in reply_of(update)


def test_model_naming_an_unknown_workflow_stops_with_the_known_ones():
    update = run(say("billing_bot is slow"), with_model(scripted(draft_call(workflow="billing_bot", metric="latency_ms"))))
    assert update["request"] is None and update["outcome"]["status"] == "unknown_workflow"
    assert "billing_bot" in reply_of(update) and "support_qa" in reply_of(update)
    assert update["controller_usage"] == [{"step": "intake", "input_tokens": 100, "output_tokens": 20}]


def test_empty_message_with_a_model_uses_the_defaults_without_a_call():
    update = run({"messages": []}, with_model(scripted()))
    assert request_of(update).goal.metric == "contains" and not update.get("controller_usage")


def test_model_answer_for_a_fixed_spec_keeps_that_spec(triage_spec):
    model = scripted(draft_call(workflow="support_qa", metric="exact", target_change=0.05))
    update = run({**say("more accurate please"), "spec": str(triage_spec)}, with_model(model))
    assert request_of(update).workflow == "ticket_triage" and update["spec"] == str(triage_spec)
    assert "### ticket_triage" in model.calls[0][0].content and "### support_qa" not in model.calls[0][0].content


# -- the real ChatOpenAI over HTTP ---------------------------------------------------------------------


def test_real_chat_openai_structured_output_over_http(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    answer = {"workflow": "support_qa", "metric": "latency_ms", "direction": "minimize", "target_change": -0.2,
              "guardrails": [{"metric": "contains", "statistic": "mean", "margin": 0.02}], "wall_time_s": 600}
    with OpenAITestServer(server_script(Reply(json=answer, prompt_tokens=321, completion_tokens=45))) as server:
        update = run(say(EXAMPLE), ControllerContext(model="test-model", base_url=server.base_url))
        [sent] = server.requests
    request = request_of(update)
    assert request.goal.target_change == pytest.approx(-0.2) and request.budget.wall_time_s == 600
    assert update["controller_usage"] == [{"step": "intake", "input_tokens": 321, "output_tokens": 45}]
    assert sent["model"] == "test-model"
    assert sent["response_format"]["type"] == "json_schema"
    assert sent["response_format"]["json_schema"]["name"] == "RequestDraft"
    assert "target_change" in sent["response_format"]["json_schema"]["schema"]["properties"]
    assert [m["role"] for m in sent["messages"]] == ["system", "user"] and sent["messages"][1]["content"] == EXAMPLE


def test_real_chat_openai_malformed_json_is_retried(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    replies = server_script(Reply(content="certainly! here is the draft"), Reply(json={"workflow": "support_qa", "metric": "cost_usd"}))
    with OpenAITestServer(replies) as server:
        update = run(say("support_qa is too expensive"), ControllerContext(model="test-model", base_url=server.base_url))
        first, retry = server.requests
    assert request_of(update).goal.metric == "cost_usd"
    assert feedback_of(first["messages"][0]["content"]) == ""
    assert "the model call failed" in feedback_of(retry["messages"][0]["content"])


# -- in a graph, and on the server's terms ------------------------------------------------------------------


def test_runs_as_a_graph_node_with_context():
    builder = StateGraph(ControllerState, context_schema=ControllerContext)
    builder.add_node("intake", intake)
    builder.add_edge(START, "intake")
    builder.add_edge("intake", END)
    graph = builder.compile()
    final = asyncio.run(graph.ainvoke(say(EXAMPLE), context=offline()))
    assert final["request"]["goal"]["metric"] == "latency_ms" and final["spec"] == "support_qa"
    assert [m.type for m in final["messages"]] == ["human", "ai"]


def test_never_blocks_the_event_loop(monkeypatch, triage_spec):
    """The LangGraph server rejects blocking calls in async nodes; blockbuster is its detector."""
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    from graphtune.prompts import load_prompt

    load_prompt.cache_clear()  # make the prompt file read happen inside the node

    async def all_inputs(base_url: str) -> list[dict]:
        with blockbuster_ctx():
            return [
                await intake(say(EXAMPLE), Runtime(context=offline(specs={"ticket_triage": str(triage_spec)}))),
                await intake({"messages": [], "request": {"workflow": "support_qa"}}, Runtime(context=offline())),
                await intake(say(EXAMPLE), Runtime(context=with_model(scripted(draft_call(workflow="support_qa"))))),
                await intake(say(EXAMPLE), Runtime(context=ControllerContext(model="test-model", base_url=base_url))),
            ]

    with OpenAITestServer(server_script(Reply(json={"workflow": "support_qa"}))) as server:
        updates = asyncio.run(all_inputs(server.base_url))
    assert all(u["request"] is not None for u in updates)


def test_a_new_request_on_a_used_thread_starts_from_a_clean_slate():
    """Chat clients send the next request on the same thread: the last run's results must not leak in."""
    update = run({**say("support_qa is too slow; cut latency 20% without losing accuracy"),
                  "baseline": {"id": "baseline"}, "candidates": [{"id": "c1"}], "evals": {"h": {}},
                  "outcome": {"status": "promoted"}, "tuning_claim": "old-thread"}, offline())
    assert request_of(update).workflow == "support_qa"
    assert update["candidates"] == [] and update["evals"] == {} and update["rejected_proposals"] == []
    assert all(update[k] is None for k in ("baseline", "decision", "report", "approval", "outcome", "tuning_claim"))
