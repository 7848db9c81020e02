import json
from typing import TypedDict

from langgraph.graph import END, START, StateGraph
from typer.testing import CliRunner

from graphtune.cli import app
from graphtune.evals.datasets import load_dataset
from graphtune.evals.from_traces import rows_from_traces
from graphtune.tracing.recorder import run_tags


class State(TypedDict, total=False):
    question: str
    answer: str


def test_disliked_production_runs_become_unlabelled_rows(recorder, store, tmp_path):
    import uuid

    graph = StateGraph(State)
    graph.add_node("answer", lambda s: {"answer": f"answer to {s['question']}"})
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    graph = graph.compile()
    traces = []
    for i, source in enumerate(["production", "production", "production", "eval"]):
        run_id = uuid.uuid4()
        graph.invoke({"question": f"q{i}"}, {"callbacks": [recorder], "run_id": run_id, "metadata": run_tags("shop", source=source)})
        traces.append(run_id.hex)
    recorder.feedback(traces[0], thumbs_up=False, comment="wrong answer", workflow="shop", source="production")
    recorder.feedback(traces[1], thumbs_up=True, workflow="shop", source="production")
    recorder.feedback(traces[2], thumbs_up=True, workflow="shop", source="production")
    recorder.feedback(traces[2], thumbs_up=False, workflow="shop", source="production")  # changed their mind
    recorder.feedback(traces[3], thumbs_up=False, workflow="shop", source="eval")
    recorder.flush()

    rows = rows_from_traces(store, workflow="shop", feedback="negative")
    assert sorted(r["observed"]["trace_id"] for r in rows) == sorted([traces[0], traces[2]])
    row = next(r for r in rows if r["observed"]["trace_id"] == traces[0])
    assert row["inputs"] == {"question": "q0"}
    assert row["observed"]["output"] == "answer to q0" and row["observed"]["comment"] == "wrong answer"
    assert "expected" not in row
    assert len(rows_from_traces(store, workflow="shop", feedback="positive")) == 1

    out = tmp_path / "label-me.jsonl"
    result = CliRunner().invoke(app, ["evals", "from-traces", "-w", "shop", "--db", store.url, "-o", str(out)])
    assert result.exit_code == 0, result.output
    dataset = load_dataset(out)
    assert len(dataset.examples) == 2 and not any(e.labelled for e in dataset.examples)
    result = CliRunner().invoke(app, ["evals", "from-traces", "--feedback", "meh", "--db", store.url])
    assert result.exit_code == 2 and "expected negative, positive or any" in result.output
    assert json.loads(out.read_text().splitlines()[0])["tags"][0] == "from-traces"
