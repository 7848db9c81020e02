"""The OTLP sender process: started, fed and stopped by the workflow's process; when it cannot start
or dies, export carries on from a thread of the workflow's process and nothing hangs."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap

from graphtune.backends import otlp_process
from graphtune.backends.otlp_exporter import OtlpExporter, OtlpSettings, open_exporter, otlp_settings_from_env
from graphtune.backends.otlp_process import SubprocessExporter
from graphtune.tracing.recorder import TrajectoryRecorder
from tests.tracing.otlp_receiver import OtlpReceiver
from tests.tracing.test_otlp_export import build_graph, run

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def settings(receiver: OtlpReceiver, **overrides) -> OtlpSettings:
    values = dict(endpoint=f"{receiver.url}/v1/traces", flush_interval_s=0.05, backoff_s=0.01, max_retries=1,
                  timeout_s=60.0, headers={"Authorization": "Bearer s3cret-token"})
    return OtlpSettings(**{**values, **overrides})


def recorder_for(tmp_path, exporter) -> TrajectoryRecorder:
    return TrajectoryRecorder(f"jsonl:///{tmp_path}/traces", spill_dir=str(tmp_path / "spill"), exporter=exporter)


def test_the_default_sender_is_a_process_and_secrets_stay_off_its_command_line(tmp_path):
    receiver = OtlpReceiver()
    try:
        exporter = open_exporter(settings(receiver))
        assert isinstance(exporter, SubprocessExporter) and exporter._proc.poll() is None
        assert not any("s3cret" in arg for arg in exporter._proc.args)
        recorder = recorder_for(tmp_path, exporter)
        run(build_graph(), recorder)
        recorder.flush()
        assert exporter.flush(60)
        assert receiver.requests[0].headers["authorization"] == "Bearer s3cret-token"
        assert exporter.stats()["sent_spans"] == 5
        recorder.close()
        exporter.close(timeout=60)
        assert exporter._proc.returncode == 0  # end of input: the child flushed and exited by itself
    finally:
        receiver.close()


def test_the_sender_can_be_chosen_from_the_environment(caplog):
    env = {"GRAPHTUNE_OTLP_ENDPOINT": "http://collector:4318"}
    assert otlp_settings_from_env(env).sender == "process"
    assert otlp_settings_from_env({**env, "GRAPHTUNE_OTLP_SENDER": "thread"}).sender == "thread"
    with caplog.at_level(logging.WARNING, logger="graphtune.export"):
        assert otlp_settings_from_env({**env, "GRAPHTUNE_OTLP_SENDER": "fork"}).sender == "process"
    assert "GRAPHTUNE_OTLP_SENDER='fork'" in caplog.text
    assert isinstance(open_exporter(OtlpSettings(endpoint="http://127.0.0.1:9/v1/traces", sender="thread")), OtlpExporter)


def test_a_sender_process_that_dies_is_replaced_by_a_thread(tmp_path, caplog):
    receiver = OtlpReceiver()
    try:
        exporter = open_exporter(settings(receiver))
        recorder = recorder_for(tmp_path, exporter)
        run(build_graph(), recorder, thread="before")
        recorder.flush()
        assert exporter.flush(60)
        with caplog.at_level(logging.WARNING, logger="graphtune.export"):
            exporter._proc.kill()
            exporter._proc.wait()
            for i in range(3):
                run(build_graph(), recorder, thread=f"after-{i}")
            recorder.flush()
            assert exporter.flush(60)  # never hangs on the dead child
            # whatever was in flight when it died may be lost; what comes next is delivered
            run(build_graph(), recorder, thread="later")
            recorder.flush()
            assert exporter.flush(60)
        assert "sending from this process from now on" in caplog.text
        sessions = {s.attributes["session.id"] for s in receiver.spans}
        assert {"before", "later"} <= sessions
        assert exporter.stats()["sent_spans"] >= 10
        recorder.close()
        exporter.close()
    finally:
        receiver.close()


def test_a_sender_process_that_cannot_start_falls_back_to_a_thread(tmp_path, monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise OSError("spawning is not allowed here")

    monkeypatch.setattr(otlp_process.subprocess, "Popen", refuse)
    receiver = OtlpReceiver()
    try:
        with caplog.at_level(logging.WARNING, logger="graphtune.export"):
            exporter = open_exporter(settings(receiver))
        assert "could not start the sender process (OSError: spawning is not allowed here)" in caplog.text
        recorder = recorder_for(tmp_path, exporter)
        run(build_graph(), recorder)
        recorder.flush()
        assert exporter.flush(60)
        assert len(receiver.spans) == 5 and exporter.stats()["sent_spans"] == 5
        recorder.close()
        exporter.close()
    finally:
        receiver.close()


def test_spans_are_delivered_when_the_workflow_process_exits_without_closing_anything(tmp_path):
    receiver = OtlpReceiver()
    script = textwrap.dedent(f"""
        from graphtune.tracing.recorder import TrajectoryRecorder
        from tests.tracing.test_otlp_export import build_graph, run

        recorder = TrajectoryRecorder("jsonl:///{tmp_path}/traces", spill_dir="{tmp_path}/spill")
        assert type(recorder.pipeline.exporter).__name__ == "SubprocessExporter"
        for i in range(4):
            run(build_graph(), recorder, thread=f"t{{i}}")
    """)
    env = {**os.environ, "GRAPHTUNE_OTLP_ENDPOINT": receiver.url, "PYTHONPATH": REPO}
    env.pop("GRAPHTUNE_OTLP_EXPORT", None)
    try:
        done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0, done.stderr
        assert len(receiver.spans) == 20
        assert {s.attributes["session.id"] for s in receiver.spans} == {"t0", "t1", "t2", "t3"}
    finally:
        receiver.close()


def test_bad_frames_are_counted_not_fatal(tmp_path):
    """The child skips rows it cannot read (a version mismatch would look like this) and goes on."""
    receiver = OtlpReceiver()
    try:
        exporter = SubprocessExporter(settings(receiver))
        exporter._write(b"E", b'[[["not", "an", "event"], {}], 7]')
        exporter._write(b"E", b"not json")
        recorder = recorder_for(tmp_path, exporter)
        run(build_graph(), recorder)
        recorder.flush()
        assert exporter.flush(60)
        stats = exporter.stats()
        assert stats["sent_spans"] == 5 and stats["invalid_events"] == 3
        recorder.close()
        exporter.close()
    finally:
        receiver.close()
