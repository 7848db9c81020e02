"""Fast checks of the cycle benchmark: its scripted model answers validly, and a tiny cycle runs end to end.

The real figure (4 candidates x 200 examples, 200 ms per call) comes from ``make bench``; here the
harness runs 2 candidates x 10 examples at 10 ms per call, with the test server in its own process
as in the benchmark.
"""

from __future__ import annotations

import json
import os
import sys

BENCHMARKS = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
sys.path.insert(0, BENCHMARKS)

import cycle  # noqa: E402

from graphtune.spec import load_spec  # noqa: E402
from graphtune.tuning.config_paths import config_hash  # noqa: E402
from graphtune.tuning.llm_proposer import ProposalSet, screen  # noqa: E402
from graphtune.tuning.request_parser import ParsedRequest, RequestDraft, check_draft  # noqa: E402


def _structured(name: str, system: str, user: str) -> dict:
    request = {"messages": [{"role": "system", "content": system}, {"role": "user", "content": user}],
               "response_format": {"type": "json_schema", "json_schema": {"name": name, "schema": {}}}}
    reply = cycle.make_responder()(request)
    assert cycle.call_kind(request) in ("intake", "propose")
    return reply.json


def test_scripted_request_draft_is_a_valid_one_round_request():
    spec = load_spec("support_qa")
    text = cycle.REQUEST.format(workflow="support_qa", candidates=4)
    draft = RequestDraft.model_validate(_structured("RequestDraft", "You read tuning requests.", text))
    parsed = check_draft(draft, {"support_qa": spec}, text=text)
    assert isinstance(parsed, ParsedRequest)
    assert parsed.request.budget.candidates == 4 and parsed.request.budget.rounds == 1
    assert any(g.metric == "cost_usd" and g.max_ratio == 1.5 for g in parsed.request.guardrails)


def test_scripted_proposals_are_valid_support_qa_candidates():
    spec = load_spec("support_qa")
    assert len(ProposalSet.model_validate(_structured("ProposalSet", "Propose 4 new candidate configuration(s).", "")).candidates) == 4
    n = len(cycle.PROPOSALS)  # every one of them, so --candidates up to n stays valid as the spec changes
    proposals = ProposalSet.model_validate(_structured("ProposalSet", f"Propose {n} new candidate configuration(s).", ""))
    screened = screen(proposals.candidates, proposer="llm", limit=n, space=spec.space, base_config=spec.config,
                      known={config_hash(spec.config): "the baseline"}, model_available=True)
    assert not screened.rejected and len(screened.accepted) == n


def test_plain_calls_get_an_extractive_answer_with_usage():
    request = {"messages": [
        {"role": "system", "content": "Answer using these articles:\n<context>\n[kb-1] Shipping\n"
                                      "Standard shipping takes 3 to 5 business days. Express is faster.\n</context>"},
        {"role": "user", "content": "How long does standard shipping take?"}], "max_completion_tokens": 512}
    reply = cycle.make_responder()(request)
    assert "3 to 5 business days" in reply.content and reply.prompt_tokens > 0 and reply.completion_tokens > 0
    assert cycle.call_kind(request) == "answer"


def test_tiny_cycle_runs_and_reports_the_figures(monkeypatch, tmp_path):
    # run() sets the model and database variables: register them here so they are restored afterwards.
    for name in ("GRAPHTUNE_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY", "GRAPHTUNE_DATABASE_URL"):
        monkeypatch.setenv(name, "unset-by-test")
    monkeypatch.delenv("GRAPHTUNE_TRACES_URL", raising=False)
    args = cycle.parse(["--candidates", "2", "--examples", "10", "--latency", "0.01", "--runs", "1", "--warmup", "0"])
    result = cycle.run(args)
    json.dumps(result)  # one JSON object with --json
    for key in ("seconds", "ideal_seconds", "ratio", "model_calls", "concurrency", "max_concurrency_seen",
                "candidates", "examples", "stopped_early", "phase_seconds"):
        assert key in result, key
    steps = result["model_calls_by_step"]
    assert steps["intake"] == 1 and steps["propose"] == 1
    assert result["model_calls"] == sum(steps.values()) >= 2 + 3 * 10  # baseline + 2 candidates, 10 examples each
    assert result["ideal_seconds"] == round(result["model_calls"] * 0.01 / 16, 3)
    assert result["ratio"] > 0 and result["candidates"] == 2 and result["examples"] == 10 and result["concurrency"] == 16
    assert result["max_concurrency_seen"] >= 1  # may pass 16 by one or two: the server counts a reply until its thread ends
    assert result["examples_run"]["baseline"] == 10
    assert result["ended_at"] in ("approval", "no_change")
