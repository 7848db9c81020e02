"""Integration: graphtune's OTLP export into a real receiver, Arize Phoenix's server, started by the test.

Phoenix (from PyPI, a dev dependency) accepts OTLP/HTTP protobuf on ``/v1/traces`` and serves
what it stored on ``GET /v1/projects/default/spans``, so the test checks span names, parent-child
links and attributes as an independent OpenTelemetry backend decoded and stored them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx
import pytest

from graphtune.backends.otlp_exporter import OtlpSettings, open_exporter
from graphtune.backends.traces import EventQuery, open_trace_store
from graphtune.tracing.events import EventKind
from graphtune.tracing.recorder import TrajectoryRecorder
from tests.tracing.test_otlp_export import build_graph, run

START_TIMEOUT_S = 120.0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def phoenix(tmp_path_factory):
    port, grpc_port = _free_port(), _free_port()
    workdir = tmp_path_factory.mktemp("phoenix")
    env = {**os.environ, "PHOENIX_WORKING_DIR": str(workdir), "PHOENIX_PORT": str(port), "PHOENIX_HOST": "127.0.0.1",
           "PHOENIX_GRPC_PORT": str(grpc_port), "PHOENIX_TELEMETRY_ENABLED": "false"}
    log = open(workdir / "phoenix.log", "wb")
    process = subprocess.Popen([sys.executable, "-m", "phoenix.server.main", "serve"], env=env, stdout=log,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    try:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"Phoenix exited with {process.returncode}: {(workdir / 'phoenix.log').read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"Phoenix did not answer /healthz within {START_TIMEOUT_S:.0f} s")
            time.sleep(0.25)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def _flatten(value, prefix=""):
    """Phoenix returns attributes nested by dots ({"gen_ai": {"usage": {...}}}); flatten them back."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            out.update(_flatten(item, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: value}


def _spans(url: str, trace_id: str, expected: int, timeout: float = 60.0) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        response = httpx.get(f"{url}/v1/projects/default/spans", params={"limit": 1000}, timeout=10.0)
        if response.status_code == 200:
            spans = [s for s in response.json()["data"] if s["context"]["trace_id"] == trace_id]
            if len(spans) >= expected:
                return spans
        if time.monotonic() > deadline:
            raise AssertionError(f"Phoenix holds {response.status_code} {response.text[:300]} after {timeout:.0f} s")
        time.sleep(0.5)


def test_phoenix_stores_graphtunes_spans_with_their_names_links_and_attributes(phoenix, tmp_path):
    exporter = open_exporter(OtlpSettings(endpoint=f"{phoenix}/v1/traces", flush_interval_s=0.05, service="helpdesk"))
    recorder = TrajectoryRecorder(f"jsonl:///{tmp_path}/traces", spill_dir=str(tmp_path / "spill"), exporter=exporter)
    run(build_graph(), recorder, thread="phoenix-thread")
    run(build_graph(fail=True), recorder, thread="phoenix-failing")
    recorder.flush()
    assert exporter.flush(30)
    assert recorder.stats()["export_sent_spans"] == 9 and recorder.stats()["export_dropped_spans"] == 0

    with open_trace_store(f"jsonl:///{tmp_path}/traces") as store:
        events = store.read(EventQuery(kinds=(EventKind.RUN_END,)))
    ok_trace = next(e.trace_id for e in events if e.thread_id == "phoenix-thread")
    failed_trace = next(e.trace_id for e in events if e.thread_id == "phoenix-failing")

    spans = {s["name"]: s for s in _spans(phoenix, ok_trace, 5)}
    assert set(spans) == {"invoke_workflow support_qa", "invoke_agent retrieve", "invoke_agent generate",
                          "chat fake-model", "execute_tool lookup"}
    root = spans["invoke_workflow support_qa"]
    assert root["parent_id"] is None
    for node in ("invoke_agent retrieve", "invoke_agent generate"):
        assert spans[node]["parent_id"] == root["context"]["span_id"]
    assert spans["chat fake-model"]["parent_id"] == spans["invoke_agent generate"]["context"]["span_id"]
    assert spans["execute_tool lookup"]["parent_id"] == spans["invoke_agent retrieve"]["context"]["span_id"]

    chat = _flatten(spans["chat fake-model"]["attributes"])
    assert chat["gen_ai.operation.name"] == "chat"
    assert chat["gen_ai.usage.input_tokens"] == 11 and chat["gen_ai.usage.output_tokens"] == 7
    root_attrs = _flatten(root["attributes"])
    assert root_attrs["gen_ai.workflow.name"] == "support_qa" and root_attrs["session.id"] == "phoenix-thread"
    assert root_attrs["graphtune.config_version"] == 4
    assert len(root_attrs["user.id"]) == 32 and "alice" not in str(root_attrs)
    assert _flatten(spans["execute_tool lookup"]["attributes"])["gen_ai.tool.name"] == "lookup"

    failed = {s["name"]: s for s in _spans(phoenix, failed_trace, 4)}
    generate = failed["invoke_agent generate"]
    assert generate["status_code"] == "ERROR" and generate["status_message"] == "generation failed"
    assert _flatten(generate["attributes"])["error.type"] == "ValueError"
    exporter.close()
    recorder.close()
