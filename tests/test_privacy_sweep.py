"""Privacy end to end, tested the way a leak would be found: every catalogued secret and identifier
is planted in a workflow's input, in a tool's result, in thread ids, user ids and feedback; traffic
runs through the recorder, the serving wrapper, a private checkpointer, OTLP export, a spill file and
``evals from-traces``; then every table of the PostgreSQL database (LangGraph's checkpoint tables
included), every file and every exported span is searched byte by byte. Zero hits."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import uuid
from pathlib import Path
from typing import TypedDict

import psycopg
import pytest
import yaml
from langchain_core.tools import tool
from langgraph.graph import END, START, StateGraph
from typer.testing import CliRunner

from graphtune.backends.checkpoints import open_checkpointer
from graphtune.backends.config_store import open_config_store
from graphtune.backends.otlp_exporter import OtlpSettings, open_exporter
from graphtune.backends.traces import EventQuery, open_trace_store
from graphtune.cli import app
from graphtune.serving import ServedWorkflow
from graphtune.spec import load_spec
from graphtune.tracing.events import EventKind
from graphtune.tracing.recorder import TrajectoryRecorder, run_tags
from tests.tracing.otlp_receiver import OtlpReceiver
from tests.tracing.pii_samples import SAMPLES, fragments

USER = "jane.doe@example.com"
PLANTED = " | ".join(secret for secret, _ in SAMPLES.values())
NEEDLES = sorted({f for secret, _ in SAMPLES.values() for f in fragments(secret)} | {USER, "jane.doe"})


class State(TypedDict, total=False):
    question: str
    lookup: str
    answer: str


@tool
def crm_lookup(customer: str) -> str:
    """The CRM record of a customer: a tool result full of personal data."""
    return f"record of {customer}: {PLANTED}"


def build_graph(config: dict | None = None, checkpointer=None):
    def look_up(state: State) -> dict:
        return {"lookup": crm_lookup.invoke({"customer": state["question"]})}

    def answer(state: State) -> dict:
        return {"answer": f"Dear customer, I read {state['lookup']}"}

    graph = StateGraph(State)
    graph.add_node("look_up", look_up)
    graph.add_node("answer", answer)
    graph.add_edge(START, "look_up")
    graph.add_edge("look_up", "answer")
    graph.add_edge("answer", END)
    return graph.compile(checkpointer=checkpointer, name="leaky")


def _thread(name: str) -> str:
    return f"thread-{USER}-{name}-{uuid.uuid4().hex[:6]}"


def _sweep(blobs: dict[str, bytes]) -> list[tuple[str, str]]:
    """(where, what) for every needle found in any blob."""
    return [(where, needle) for where, data in blobs.items() for needle in NEEDLES if needle.encode() in data]


def _database_bytes(url: str) -> dict[str, bytes]:
    """Every row of every table in every schema, values as stored (bytea raw, JSON and text UTF-8)."""
    out: dict[str, bytes] = {}
    with psycopg.connect(url) as conn:
        tables = conn.execute("SELECT table_schema, table_name FROM information_schema.tables "
                              "WHERE table_type = 'BASE TABLE' AND table_schema NOT IN ('pg_catalog', 'information_schema')").fetchall()
        for schema, table in tables:
            parts = []
            for row in conn.execute(f'SELECT * FROM "{schema}"."{table}"').fetchall():
                for value in row:
                    if isinstance(value, (bytes, memoryview)):
                        parts.append(bytes(value))
                    else:
                        parts.append(json.dumps(value, default=str, ensure_ascii=False).encode())
            out[f"table {schema}.{table}"] = b"\n".join(parts)
    return out


def _file_bytes(root: Path) -> dict[str, bytes]:
    return {f"file {p}": p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture
def spec(tmp_path):
    data = {"workflow": "leaky", "graph": "tests.test_privacy_sweep:build_graph", "config": {"x": 1},
            "tunables": {"x": {"type": "int", "low": 1, "high": 3}},
            "evals": {"datasets": [{"name": "d", "path": "d.jsonl"}], "metrics": ["contains"]},
            "objective": {"metric": "contains"}}
    (tmp_path / "leaky.yaml").write_text(yaml.safe_dump(data))
    return load_spec(tmp_path / "leaky.yaml")


def test_no_planted_secret_or_identifier_survives_anywhere(tmp_path, pg_url, spec, monkeypatch):
    files = tmp_path / "files"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRAPHTUNE_DATABASE_URL", pg_url)
    monkeypatch.delenv("GRAPHTUNE_TRACES_URL", raising=False)
    monkeypatch.setenv("LANGGRAPH_AES_KEY", "0123456789abcdef0123456789abcdef")
    receiver = OtlpReceiver()
    exporter = open_exporter(OtlpSettings(endpoint=f"{receiver.url}/v1/traces", flush_interval_s=0.05, sender="thread"))
    recorder = TrajectoryRecorder(pg_url, sample_rate=1.0, spill_dir=str(files / "spill"), flush_interval=0.02,
                                  exporter=exporter)
    question = f"I am {USER}, please help: {PLANTED}"
    try:
        # 1. the serving wrapper: routed production runs, a user id, feedback whose comment leaks too
        with open_config_store(pg_url) as configs:
            configs.ensure_active("leaky", spec.config, actor="test")
        served = ServedWorkflow(spec, pg_url, recorder=recorder)
        runs = [served.invoke({"question": question}, unit_key=USER,
                              config={"configurable": {"thread_id": _thread("served")}}) for _ in range(2)]
        for run in runs:
            assert served.feedback(run.trace_id, thumbs_up=False, comment=f"wrong! mail {USER} {PLANTED}") == "recorded"
        served.close()

        # 2. the same workflow checkpointed by graphtune's checkpointer (as the LangGraph server runs it)
        checkpointed_thread = _thread("checkpointed")

        async def checkpointed() -> dict:
            async with open_checkpointer(pg_url) as saver:
                graph = build_graph(checkpointer=saver)
                config = {"callbacks": [recorder], "configurable": {"thread_id": checkpointed_thread},
                          "metadata": {**run_tags("leaky", source="production", user_id=USER), "note": PLANTED}}
                await graph.ainvoke({"question": question}, config)
                return (await graph.aget_state({"configurable": {"thread_id": checkpointed_thread}})).values

        state = asyncio.run(checkpointed())
        assert USER in state["question"] and PLANTED in state["lookup"]  # stored, readable with the key

        # 3. a spill file: a recorder whose store cannot be opened spills its (redacted) batches
        blocker = tmp_path / "not-a-dir"
        blocker.write_text("a file where a directory should be")
        spilling = TrajectoryRecorder(f"sqlite:///{blocker}/t.db", sample_rate=1.0, spill_dir=str(files / "spill2"),
                                      flush_interval=0.02, exporter=None)
        build_graph().invoke({"question": question}, {"callbacks": [spilling], "configurable": {"thread_id": _thread("spilled")},
                                                     "metadata": run_tags("leaky", user_id=USER)})
        assert spilling.flush(10) and spilling.stats()["spilled"] > 0
        spilling.close()

        assert recorder.flush(30) and exporter.flush(30)
    finally:
        recorder.close()
        exporter.close()
        receiver.close()

    # 4. evals from-traces: the rows written for labelling
    rows_file = files / "rows.jsonl"
    done = CliRunner().invoke(app, ["evals", "from-traces", "--workflow", "leaky", "--feedback", "any",
                                    "--db", pg_url, "--output", str(rows_file)])
    assert done.exit_code == 0, done.output
    assert rows_file.read_text().count("\n") == 2

    with open_trace_store(pg_url) as store:
        events = store.read(EventQuery(workflow="leaky"))
    assert {e.kind for e in events} >= {EventKind.RUN_START, EventKind.TOOL_CALL, EventKind.FEEDBACK}
    threads = {e.thread_id for e in events if e.thread_id}
    assert len(threads) == 3 and all(t.startswith("hashed-") for t in threads)  # one per thread, still distinct
    spans = receiver.spans
    assert any(s.attributes.get("session.id", "").startswith("hashed-") for s in spans)

    blobs = {**_database_bytes(pg_url), **_file_bytes(files), "stdout of evals from-traces": done.output.encode(),
             "exported spans": json.dumps([dataclasses.asdict(s) for s in spans], default=str, ensure_ascii=False).encode()}
    assert any(name.startswith("table public.checkpoint") for name in blobs)  # the checkpoint tables were swept
    hits = _sweep(blobs)
    assert hits == [], "\n".join(f"{w}: {n!r}" for w, n in hits)


def test_forget_user_deletes_their_events_and_checkpointed_threads(tmp_path, monkeypatch):
    """``graphtune forget-user`` erases a user's events and every thread they ran from the checkpoints;
    another user's thread stays."""
    db = f"sqlite:///{tmp_path}/graphtune.db"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRAPHTUNE_DATABASE_URL", db)
    monkeypatch.delenv("GRAPHTUNE_TRACES_URL", raising=False)
    monkeypatch.setenv("LANGGRAPH_AES_KEY", "0123456789abcdef")
    recorder = TrajectoryRecorder(db, sample_rate=1.0, spill_dir=str(tmp_path / "spill"), flush_interval=0.02, exporter=None)
    threads = {"jane": _thread("a"), "bob": "thread-bob-1"}

    async def serve(user: str, thread: str) -> None:
        async with open_checkpointer(db) as saver:
            graph = build_graph(checkpointer=saver)
            await graph.ainvoke({"question": "hello"}, {"callbacks": [recorder], "configurable": {"thread_id": thread},
                                                        "metadata": run_tags("leaky", user_id=user)})

    async def stored(thread: str) -> dict:
        async with open_checkpointer(db) as saver:
            return (await build_graph(checkpointer=saver).aget_state({"configurable": {"thread_id": thread}})).values

    asyncio.run(serve(USER, threads["jane"]))
    asyncio.run(serve("bob", threads["bob"]))
    assert recorder.flush(10)
    recorder.close()
    assert asyncio.run(stored(threads["jane"]))["answer"] and asyncio.run(stored(threads["bob"]))["answer"]

    done = CliRunner().invoke(app, ["forget-user", USER, "--db", db])
    assert done.exit_code == 0, done.output
    assert "1 checkpointed threads" in " ".join(done.output.split())
    assert asyncio.run(stored(threads["jane"])) == {} and asyncio.run(stored(threads["bob"]))["answer"]
    with open_trace_store(db) as store:
        left = store.read(EventQuery(workflow="leaky"))
    assert left and {e.thread_id for e in left} == {"thread-bob-1"}
