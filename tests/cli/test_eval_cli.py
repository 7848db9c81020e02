import json

import pytest
from typer.testing import CliRunner

from graphtune.cli import app
from tests.evals.conftest import toy_spec  # noqa: F401  (fixture)


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHTUNE_DATABASE_URL", f"sqlite:///{tmp_path}/gt.db")
    monkeypatch.delenv("GRAPHTUNE_MODEL", raising=False)
    return tmp_path


def invoke(*args):
    return CliRunner().invoke(app, list(args))


def test_eval_json_stores_the_config_and_reuses_the_cache(toy_spec, env):  # noqa: F811
    spec = str(toy_spec.path)
    first = invoke("eval", "--spec", spec, "--json", "--no-record")
    assert first.exit_code == 0, first.output
    report = json.loads(first.output)
    assert report["config_version"] == 1 and report["cached"] == 0
    assert report["summary"]["contains"]["mean"] == pytest.approx(39 / 40)

    changed = json.loads(invoke("eval", "--spec", spec, "--json", "--no-record", "--set", "answer.quality=bad").output)
    assert changed["config_version"] == 2 and changed["summary"]["contains"]["mean"] == 0.0

    again = json.loads(invoke("eval", "--spec", spec, "--json", "--no-record", "--config-version", "1").output)
    assert again["cached"] == 40 and again["config_version"] == 1


def test_eval_table_output(toy_spec, env):  # noqa: F811
    result = invoke("eval", "--spec", str(toy_spec.path), "--no-record", "--limit", "10")
    assert result.exit_code == 0, result.output
    assert "contains" in result.output and "10/10 examples" in result.output and "1 errors" in result.output
    assert "no LLM configured" in result.output


@pytest.mark.parametrize("args, message", [
    (["--set", "answer.qualty=bad"], "answer.qualty is not a tunable; did you mean answer.quality?"),
    (["--set", "answer.delay_s=5"], "expected a value in [0.0, 1.0]"),
    (["--set", "answer.quality"], "expected PATH=VALUE"),
    (["--config-version", "9"], "9"),
])
def test_eval_bad_arguments_give_one_clear_line(toy_spec, env, args, message):  # noqa: F811
    result = invoke("eval", "--spec", str(toy_spec.path), "--no-record", *args)
    assert result.exit_code != 0
    assert message in result.output


def test_eval_bad_spec_and_dataset(env):
    (env / "bad.yaml").write_text("workflow: [\n")
    result = invoke("eval", "--spec", str(env / "bad.yaml"))
    assert result.exit_code == 2 and "malformed YAML" in result.output
    result = invoke("eval", "--spec", str(env / "missing.yaml"))
    assert result.exit_code == 2 and "no such spec file" in result.output


def test_a_graph_factory_that_raises_names_the_factory_and_version(toy_spec, env):  # noqa: F811
    result = invoke("eval", "--spec", str(toy_spec.path), "--no-record", "--set", "answer.quality=explode")
    assert result.exit_code == 2
    assert "graph factory tests.evals.toy_workflow:build_graph raised ValueError: no such answer quality (config v2)" in result.output


def test_eval_traces_follow_db(toy_spec, tmp_path, monkeypatch):  # noqa: F811
    """``eval --db URL`` used to write its traces to ./.graphtune/graphtune.db in the working directory;
    now they go where --db says, and nothing appears in the working directory."""
    from graphtune.backends.traces import EventQuery, open_trace_store
    from graphtune.tracing.events import EventKind

    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for name in ("GRAPHTUNE_DATABASE_URL", "GRAPHTUNE_TRACES_URL", "GRAPHTUNE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    db = f"sqlite:///{tmp_path}/chosen.db"
    done = invoke("eval", "--spec", str(toy_spec.path), "--json", "--limit", "5", "--db", db)
    assert done.exit_code == 0, done.output
    assert list(work.iterdir()) == []
    with open_trace_store(db) as store:
        runs = store.read(EventQuery(kinds=(EventKind.RUN_END,), sources=("eval",)))
    assert len(runs) == 5 and {r.workflow for r in runs} == {"toy"}


def test_eval_table_names_an_evaluator_that_fails_on_some_rows(toy_spec, env):  # noqa: F811
    import yaml

    (toy_spec.path.parent / "cli_word_count.py").write_text(
        "def words(output, example):\n"
        "    if example.id == 'r02':\n"
        "        raise ValueError('odd row')\n"
        "    return len(output['answer'].split())\n")
    raw = yaml.safe_load(toy_spec.path.read_text())
    raw["evals"]["metrics"] = ["contains", {"name": "words", "evaluator": "cli_word_count.py:words", "direction": "minimize"}]
    toy_spec.path.write_text(yaml.safe_dump(raw))
    result = invoke("eval", "--spec", str(toy_spec.path), "--no-record", "--limit", "4")
    assert result.exit_code == 0, result.output
    assert "words has no usable score on 1 of 4 rows; the first, row 'r02': evaluator cli_word_count.py:words raised" in " ".join(result.output.split())


def test_eval_model_answers_graphtune_s_workflow_and_says_nothing_of_offline(env, monkeypatch):
    from graphtune.testing.openai_server import OpenAITestServer

    with OpenAITestServer(model="gpt-4.1-mini") as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", "test")
        result = invoke("eval", "--spec", "support_qa", "--no-record", "--limit", "3", "--model", "gpt-4.1-mini",
                        "--rate-limit", "500")
        served = len(server.requests)
    assert result.exit_code == 0, result.output
    assert served == 3 and "3/3 examples" in result.output and "0 errors" in result.output
    assert "no LLM configured" not in result.output


def test_eval_model_without_its_integration_is_one_clear_line(env, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "langchain_ollama", None)  # as if not installed
    monkeypatch.setitem(sys.modules, "langchain_community.chat_models", None)
    result = invoke("eval", "--spec", "support_qa", "--no-record", "--limit", "2", "--model", "ollama:llama3.1")
    assert result.exit_code == 2 and "needs the langchain-ollama package" in result.output
    assert "graphtune[ollama]" in result.output


def test_eval_rate_limit_must_be_above_zero(toy_spec, env):  # noqa: F811
    result = invoke("eval", "--spec", str(toy_spec.path), "--no-record", "--rate-limit", "0")
    assert result.exit_code == 2 and "--rate-limit: expected model requests per second above 0" in result.output
