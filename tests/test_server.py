"""The controller served by the real ``langgraph dev``, driven through ``langgraph_sdk``: a chat
message starts a tuning run, the approval interrupt comes back over the API, a resume promotes."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

from graphtune.backends.config_store import open_config_store
from tests.graphs.conftest import weak_toy_spec  # noqa: F401  (fixture)
from tests.waiting import wait_until

ROOT = Path(__file__).resolve().parents[1]


class ServerDidNotStart(AssertionError):
    """langgraph dev exited or never answered; the message is the end of its log."""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def serve(workdir: Path, db: str, **extra_env: str):
    """``langgraph dev`` on a free port with graphtune's database at ``db`` (checkpoints included).
    Auth is off unless ``extra_env`` configures it."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "GRAPHTUNE_DATABASE_URL": db, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "PYTHONPATH": str(ROOT),
           "GRAPHTUNE_AUTH": "off", **extra_env}
    for name in ("GRAPHTUNE_MODEL", "GRAPHTUNE_TRACES_URL", "GRAPHTUNE_AUTH_TOKENS_FILE", "GRAPHTUNE_AUTH_TOKENS"):
        if name not in extra_env:
            env.pop(name, None)
    log_path = workdir / "server.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(Path(sys.executable).parent / "langgraph"), "dev", "--no-browser", "--no-reload",
                                 "--port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 90
            while True:
                try:
                    urllib.request.urlopen(f"{url}/ok", timeout=1)
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise ServerDidNotStart(log_path.read_text()[-3000:])
                    time.sleep(0.3)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.fixture
def server(tmp_path):
    db = f"sqlite:///{tmp_path}/graphtune.db"
    with serve(tmp_path, db) as url:
        yield url, db


def test_a_chat_message_tunes_parks_at_approval_and_a_resume_promotes(server, weak_toy_spec):
    from langgraph_sdk import get_client

    url, db = server
    context = {"specs": {"toy": str(weak_toy_spec.path)}, "batch_size": 2, "seed": 2}

    async def drive():
        client = get_client(url=url, api_key=None)
        thread = await client.threads.create()
        parked = await client.runs.wait(
            thread["thread_id"], "controller", context=context,
            input={"messages": [{"role": "user", "content": "improve toy accuracy; try 2 candidates, at most 1 round"}]})
        state = await client.threads.get_state(thread["thread_id"])
        bad = await client.runs.wait(thread["thread_id"], "controller", context=context,
                                     command={"resume": {"action": "ship-it"}})
        done = await client.runs.wait(thread["thread_id"], "controller", context=context,
                                      command={"resume": {"action": "approve", "actor": "dana", "comment": "via the API"}})
        other = await client.threads.create()
        unknown = await client.runs.wait(other["thread_id"], "controller", context=context,
                                         input={"messages": [{"role": "user", "content": "make billing_bot faster"}]})
        return parked, state, bad, done, unknown

    parked, state, bad, done, unknown = asyncio.run(drive())
    assert unknown["outcome"]["status"] == "unknown_workflow"
    assert "support_qa" in unknown["messages"][-1]["content"] and "toy" in unknown["messages"][-1]["content"]
    payload = parked["__interrupt__"][0]["value"]
    assert payload["kind"] == "approval" and payload["workflow"] == "toy"
    assert {"path": "answer.quality", "value": "good"} in payload["report"]["candidate"]["mutations"]
    assert state["next"] == ["approve"]
    ai_steps = {m.get("name") for m in parked["messages"] if m["type"] == "ai"}
    assert {"intake", "observe", "propose", "evaluate", "decide", "report"} <= ai_steps  # progress in the chat
    assert "invalid approval" in bad["__interrupt__"][0]["value"]["error"]  # still parked, told why
    assert done["outcome"]["status"] == "promoted"
    with open_config_store(db) as store:
        assert store.active("toy").config["answer"]["quality"] == "good"
        assert (store.history("toy")[0].actor, store.history("toy")[0].reason) == ("dana", "via the API")


def test_the_approval_links_its_page_and_a_form_answer_with_auth_off_is_in_the_local_actors_name(tmp_path, weak_toy_spec):
    import httpx
    from langgraph_sdk import get_client

    db = f"sqlite:///{tmp_path}/graphtune.db"
    context = {"specs": {"toy": str(weak_toy_spec.path)}, "batch_size": 2, "seed": 2}
    with serve(tmp_path, db, GRAPHTUNE_ACTOR="release-bot", GRAPHTUNE_WEB_URL="https://tune.example.com") as url:
        async def park():
            client = get_client(url=url, api_key=None)
            thread = await client.threads.create()
            parked = await client.runs.wait(thread["thread_id"], "controller", context=context, input={
                "messages": [{"role": "user", "content": "improve toy accuracy; try 2 candidates, at most 1 round"}]})
            return thread["thread_id"], parked

        thread_id, parked = asyncio.run(park())
        page = f"https://tune.example.com/graphtune/threads/{thread_id}"
        payload = parked["__interrupt__"][0]["value"]
        assert payload["approval_page"] == page
        assert f"[{page}]({page})" in payload["action_requests"][0]["description"]  # on Agent Chat UI's card
        assert page in parked["messages"][-1]["content"]  # and in the chat message before it
        shown = httpx.get(f"{url}/graphtune/threads/{thread_id}", timeout=60)
        assert "Recorded as <strong>release-bot</strong> (auth is off)" in shown.text  # what the page says it will record
        answered = httpx.post(f"{url}/graphtune/threads/{thread_id}", data={"action": "approve", "comment": "from the page"},
                              headers={"Origin": url}, timeout=120, follow_redirects=True)
        assert answered.status_code == 200 and "promoted" in answered.text
    with open_config_store(db) as store:
        entry = store.history("toy")[0]
        assert (entry.action, entry.actor, entry.reason) == ("promote", "release-bot", "from the page")  # never "anonymous"


def test_an_approval_parked_on_the_server_survives_a_restart(tmp_path, pg_url, weak_toy_spec):
    """Checkpoints in PostgreSQL (langgraph.json's checkpointer): stop the server while the thread
    waits at approval, start a new one, resume there."""
    from langgraph_sdk import get_client

    context = {"specs": {"toy": str(weak_toy_spec.path)}, "batch_size": 2, "seed": 2}
    with serve(tmp_path / "first", pg_url) as url:
        async def start():
            client = get_client(url=url, api_key=None)
            thread = await client.threads.create()
            await client.runs.wait(thread["thread_id"], "controller", context=context, input={
                "messages": [{"role": "user", "content": "improve toy accuracy; try 2 candidates, at most 1 round"}]})
            return thread["thread_id"]
        thread_id = asyncio.run(start())
    import psycopg

    with psycopg.connect(pg_url) as conn:  # the checkpoints are graphtune's, in PostgreSQL
        assert conn.execute("SELECT count(*) FROM checkpoints WHERE thread_id = %s", (thread_id,)).fetchone()[0] > 0

    with serve(tmp_path / "second", pg_url) as url:
        async def finish():
            client = get_client(url=url, api_key=None)
            state = await client.threads.get_state(thread_id)
            done = await client.runs.wait(thread_id, "controller", context=context,
                                          command={"resume": {"action": "approve", "actor": "dana"}})
            return state, done
        state, done = asyncio.run(finish())
    assert state["next"] == ["approve"]
    assert done["outcome"]["status"] == "promoted"
    with open_config_store(pg_url) as store:
        assert store.active("toy").config["answer"]["quality"] == "good"


def test_support_qa_runs_the_active_version_or_the_one_named_in_context(server):
    """One compiled graph per config version; runs are recorded as production traffic of that version."""
    from langgraph_sdk import get_client

    from graphtune.backends.traces import EventQuery, open_trace_store
    from graphtune.spec import load_spec
    from graphtune.tracing.events import EventKind

    url, db = server
    spec = load_spec("support_qa")
    with open_config_store(db) as store:  # v1 (the spec's config) active, v2 stored beside it
        store.ensure_active("support_qa", spec.config, actor="test")
        v2 = store.put("support_qa", {**spec.config, "llm": {**spec.config["llm"], "max_tokens": 16}},
                       actor="test", source="test")
    question = {"messages": [{"role": "user", "content": "How do I reset my password?"}]}

    async def ask():
        client = get_client(url=url, api_key=None)
        active = await client.runs.wait(None, "support_qa", input=question)
        named = await client.runs.wait(None, "support_qa", input=question, context={"config_version": v2.version})
        try:
            await client.runs.wait(None, "support_qa", input=question, context={"config_version": 99})
        except Exception as error:  # the SDK raises the run's error
            return active, named, str(error)
        return active, named, "no error"

    active, named, unknown = asyncio.run(ask())
    assert active["answer"] and named["answer"]
    assert len(named["answer"].split()) < len(active["answer"].split())  # max_tokens 16 took effect
    assert "no config version 99" in unknown and "known versions: 1, 2" in unknown
    def run_ends():  # the server's recorder writes in the background
        with open_trace_store(db) as traces:
            ends = traces.read(EventQuery(workflow="support_qa", kinds=[EventKind.RUN_END]))
        return ends if len(ends) >= 2 else None

    ends = wait_until(run_ends, what="both runs recorded by the server")
    assert sorted(e.config_version for e in ends) == [1, v2.version]
    assert {e.source for e in ends} == {"production"}


TOKENS = {"dana": "dana-approver-token-0001", "olly": "olly-operator-token-0001"}


def token_file(tmp_path: Path) -> Path:
    """dana approves (and operates); olly only operates. olly's token is stored as its sha256."""
    import yaml

    from graphtune.graphs.access import token_digest

    path = tmp_path / "tokens.yaml"
    path.write_text(yaml.safe_dump({"tokens": [
        {"identity": "dana", "roles": ["approver", "operator"], "token": TOKENS["dana"]},
        {"identity": "olly", "roles": ["operator"], "token_sha256": token_digest(TOKENS["olly"])},
    ]}))
    return path


def as_user(url: str, who: str | None, token: str | None = None):
    from langgraph_sdk import get_client

    token = token or (TOKENS[who] if who else None)
    return get_client(url=url, api_key=None, headers={"Authorization": f"Bearer {token}"} if token else None)


def http_status(error: BaseException) -> int | None:
    return getattr(getattr(error, "response", None), "status_code", None)


def http_body(error: BaseException) -> str:
    response = getattr(error, "response", None)
    try:
        return response.text if response is not None else str(error)
    except Exception:  # noqa: BLE001 - a streamed body that was not read
        return str(error)


def test_only_an_approver_answers_an_approval_and_is_recorded_as_the_approver(tmp_path, pg_url, weak_toy_spec):
    """Bearer tokens from a file; Postgres checkpoints. An operator starts the run; the operator's resume
    is a 403 and changes nothing; the approver's resume promotes, recorded under the token's identity."""
    context = {"specs": {"toy": str(weak_toy_spec.path)}, "batch_size": 2, "seed": 2}
    request = {"messages": [{"role": "user", "content": "improve toy accuracy; try 2 candidates, at most 1 round"}]}
    env = {"GRAPHTUNE_AUTH": "tokens", "GRAPHTUNE_AUTH_TOKENS_FILE": str(token_file(tmp_path))}
    with serve(tmp_path / "server", pg_url, **env) as url:
        async def drive():
            statuses = {}
            for name, client in (("missing", as_user(url, None)), ("invalid", as_user(url, None, "not-a-token-at-all"))):
                try:
                    await client.threads.create()
                except Exception as error:  # noqa: BLE001
                    statuses[name] = (http_status(error), str(error))
            olly, dana = as_user(url, "olly"), as_user(url, "dana")
            thread = (await olly.threads.create())["thread_id"]
            parked = await olly.runs.wait(thread, "controller", context=context, input=request)
            before = await olly.threads.get_state(thread)
            try:
                await olly.runs.wait(thread, "controller", context=context, command={"resume": {"action": "approve"}})
            except Exception as error:  # noqa: BLE001
                statuses["operator_resume"] = (http_status(error), http_body(error))
            try:  # nor may they write the approval into the state past the interrupt
                await olly.threads.update_state(thread, {"approval": {"action": "approve", "actor": "olly"}}, as_node="approve")
            except Exception as error:  # noqa: BLE001
                statuses["operator_update"] = (http_status(error), str(error))
            after = await olly.threads.get_state(thread)
            done = await dana.runs.wait(thread, "controller", context=context,
                                        command={"resume": {"action": "approve", "actor": "mallory", "comment": "ok"}})
            return statuses, parked, before, after, done

        statuses, parked, before, after, done = asyncio.run(drive())
    assert statuses["missing"][0] == 401 and statuses["invalid"][0] == 401
    assert parked["__interrupt__"][0]["value"]["kind"] == "approval"
    assert statuses["operator_resume"][0] == 403 and "needs the approver role" in statuses["operator_resume"][1]
    assert statuses["operator_update"][0] == 403
    assert before["next"] == after["next"] == ["approve"]
    assert before["checkpoint"]["checkpoint_id"] == after["checkpoint"]["checkpoint_id"]  # nothing ran
    assert done["outcome"]["status"] == "promoted"
    with open_config_store(pg_url) as store:
        latest = store.history("toy")[0]
        assert (latest.action, latest.actor, latest.reason) == ("promote", "dana", "ok")  # not "mallory"
        assert store.tuning_claim("toy") is None  # released at the end


def test_a_missing_token_file_stops_the_server_instead_of_turning_auth_off(tmp_path):
    with pytest.raises(ServerDidNotStart, match="tokens.yaml: cannot read the token file"):
        with serve(tmp_path, f"sqlite:///{tmp_path}/graphtune.db", GRAPHTUNE_AUTH="tokens",
                   GRAPHTUNE_AUTH_TOKENS_FILE=str(tmp_path / "tokens.yaml")):
            pass
