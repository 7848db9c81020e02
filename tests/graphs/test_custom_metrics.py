"""A short tuning run whose objective and guardrail are the spec's own metrics: ``exact`` of the output's
``assigned_team`` against the row's ``team``, and tool calls per task counted by an evaluator in a file
beside the spec. The run must keep the candidate that breaks the tool-call guardrail from approval."""

import asyncio
import json

import yaml

from graphtune.graphs.context import ControllerContext
from graphtune.graphs.local_controller import LocalController
from graphtune.spec import load_spec
from tests.evals.conftest import write_dataset
from tests.graphs.test_controller import db  # noqa: F401  (fixture)

TICKETS = [("refund", "billing"), ("login", "accounts"), ("crash", "engineering")]
TOOL_CALLS = "def tool_calls(output, example):\n    return len(output['tool_calls'])\n"


def write_triage_spec(folder, evaluator_source=TOOL_CALLS, module="triage_tool_calls"):
    write_dataset(folder / "tickets.jsonl", [{"id": f"t{i:02d}", "inputs": {"ticket": ticket}, "expected": {"team": team}}
                                             for i, (ticket, team) in enumerate(TICKETS * 10)])
    (folder / f"{module}.py").write_text(evaluator_source)
    spec = {
        "workflow": "triage",
        "graph": "tests.graphs.triage_toy:build_graph",
        "config": {"agent": {"strategy": "guess"}},
        "tunables": {"agent.strategy": {"type": "choice", "values": ["guess", "verify", "exhaustive"]}},
        "evals": {"datasets": [{"name": "tickets", "path": "tickets.jsonl"}],
                  "metrics": [{"name": "team_exact", "kind": "exact", "output": "assigned_team", "expected": "team"},
                              {"name": "tool_calls", "evaluator": f"{module}.py:tool_calls", "direction": "minimize"},
                              "latency_ms", "error"],
                  "concurrency": 4, "timeout_s": 5},
        "objective": {"metric": "team_exact"},
        "guardrails": [{"metric": "tool_calls", "statistic": "mean", "max_value": 3}],
    }
    (folder / "graphtune.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    return load_spec(folder / "graphtune.yaml")


def tune(db, spec, text="improve triage accuracy; try 2 candidates, at most 1 round"):
    controller = LocalController(context=ControllerContext(database_url=db, traces_url=db, batch_size=2, seed=2))
    return asyncio.run(controller.start(text, spec=str(spec.path)))


def test_a_custom_guardrail_keeps_the_costly_candidate_from_approval(db, tmp_path):  # noqa: F811
    spec = write_triage_spec(tmp_path)
    parked = tune(db, spec)
    assert parked.pending, parked.values.get("outcome")
    report = parked.pending["report"]
    assert {"path": "agent.strategy", "value": "verify"} in report["candidate"]["mutations"]
    decision = parked.values["decision"]
    by_strategy = {}
    for record in parked.values["candidates"]:
        strategy = {m["path"]: m["value"] for m in record.get("mutations") or []}.get("agent.strategy")
        by_strategy[strategy] = next((c for c in decision["comparisons"] if c["candidate_id"] == record["id"]), None)
    assert set(by_strategy) == {"verify", "exhaustive"}, by_strategy.keys()
    costly = by_strategy["exhaustive"]
    assert not costly["feasible"]
    check = costly["guardrails"][0]
    assert check["guardrail"] == "mean tool_calls <= 3" and check["candidate"] == 6.0 and check["passed"] is False
    chosen = by_strategy["verify"]
    goal = chosen["rows"][0]
    assert (goal["metric"], goal["baseline"], goal["candidate"], goal["n"]) == ("team_exact", 0.0, 1.0, 30)
    assert goal["better"] is True  # paired over the same 30 tickets, with an interval
    row = next(r for r in chosen["rows"] if r["metric"] == "tool_calls")
    assert (row["baseline"], row["candidate"], row["higher_is_better"]) == (0.0, 2.0, False)


def test_an_evaluator_failing_on_every_row_stops_the_run_before_any_candidate(db, tmp_path):  # noqa: F811
    broken = "def tool_calls(output, example):\n    return len(output['tools_called'])\n"
    spec = write_triage_spec(tmp_path, broken, module="triage_broken_calls")
    done = tune(db, spec)
    assert done.pending is None
    decision = done.values["decision"]
    assert decision["ended_by"] == "unscored"
    assert not [c for c in done.values["candidates"] if c["id"] != "baseline"]
    reason = decision["reason"]
    assert "guardrail mean tool_calls <= 3 could not be measured" in reason
    assert ("tool_calls has no usable score on any row; the first, row 't00': "
            "evaluator triage_broken_calls.py:tool_calls raised KeyError: 'tools_called'") in reason
    json.dumps(done.values["decision"])  # the reason travels in the checkpoint and the CLI's JSON
