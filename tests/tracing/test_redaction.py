"""Privacy: content redaction (default patterns, custom hook, hash mode) and user ids stored only
as salted hashes. Stored bytes are searched directly, so nothing can slip past a reader."""

from __future__ import annotations

import glob
import os
from typing import TypedDict

import pytest
from langchain_core.callbacks import dispatch_custom_event
from langchain_core.messages import AIMessage, HumanMessage
from langgraph.graph import START, MessagesState, StateGraph

from graphtune import EventKind, TrajectoryEvent, TrajectoryRecorder
from graphtune.backends.jsonl import JsonlTraceStore
from graphtune.backends.sqlite import SqliteTraceStore
from graphtune.tracing.privacy import SALT_ENV, SALT_META_KEY, hash_user_id
from graphtune.tracing.redaction import Redactor, default_redact, hash_text

EMAIL = "jane.doe+support@example-mail.com"
PHONE = "+1 (415) 555-0134"
OPENAI_KEY = "sk-proj-Abc123Def456Ghi789Jkl012"
BEARER = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.sig_part-123"
AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
SECRETS = (EMAIL, PHONE, OPENAI_KEY, BEARER, AWS_KEY, "555-0134", "Abc123Def456")


# -- the default hook ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text, expected",
    [
        (f"write to {EMAIL} today", "write to [EMAIL] today"),
        ("a.b@c.io", "[EMAIL]"),
        (f"call {PHONE} now", "call [PHONE] now"),
        ("call 415-555-0134", "call [PHONE]"),
        ("+44 20 7946 0958", "[PHONE]"),
        ("mobile 0151 2345 6789.", "mobile [PHONE]."),
        (f"key={OPENAI_KEY}", "key=[API_KEY]"),
        ("sk-abcdefghijklmnopqrstu", "[API_KEY]"),
        ("pk-lf-1234567890abcdef1234", "[API_KEY]"),
        (f"Authorization: Bearer {BEARER}", "Authorization: Bearer [API_KEY]"),
        (f"aws {AWS_KEY} key", "aws [API_KEY] key"),
        ("token ghp_abcdefghijklmnopqrstuvwxyz0123", "token [API_KEY]"),
    ],
)
def test_default_redact_masks_contacts_and_keys(text, expected):
    assert default_redact(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "The quick brown fox jumps over the lazy dog.",
        "On 2026-11-21 we shipped 3 orders worth 42 dollars.",
        "The meeting is on 2026-11-21 10:30 in room 12.",
        "From 2026-11-21 to 2026-11-28 (one week).",
        "Termin am 21.11.2026 10:30 Uhr.",
        "Timestamp 2026-11-21T10:30:00Z, version 1.2.3, ip 192.168.0.1",
        "Order 12345, qty 7, total 1,234.50",
        "pay 1234 5678",
        "task-runner skills are ask-for-help based",
        "skeleton keys and risky bearer bonds",
        "Use the Bearer scheme.",
        "AKIA is a prefix",
        "",
    ],
)
def test_default_redact_leaves_ordinary_text_dates_and_short_numbers(text):
    assert default_redact(text) == text


def test_redactor_walks_nested_values_but_keeps_structural_keys():
    r = Redactor()
    value = {
        "type": "human", "id": "msg-415-555-0134-abc", "name": "lookup",
        "content": f"mail {EMAIL}", "nested": [{"text": PHONE}, 3, None],
        "gen_ai.tool.name": "send_email", "error.type": "ValueError",
    }
    out = r.apply(value)
    assert out["type"] == "human" and out["name"] == "lookup" and out["id"] == value["id"]
    assert out["content"] == "mail [EMAIL]"
    assert out["nested"] == [{"text": "[PHONE]"}, 3, None]
    assert out["gen_ai.tool.name"] == "send_email" and out["error.type"] == "ValueError"
    with pytest.raises(ValueError):
        Redactor(content_mode="nope")


def test_hash_mode_keeps_only_hash_and_length():
    r = Redactor(content_mode="hash")
    out = r.apply({"type": "ai", "content": "hello world", "parts": ["a", 1]})
    assert out["type"] == "ai"
    assert out["content"] == hash_text("hello world")
    assert out["content"]["length"] == 11 and len(out["content"]["sha256"]) == 64
    assert out["parts"] == [hash_text("a"), 1]


# -- through the recorder into the store ---------------------------------------------------------------


def stored_bytes(tmp_path) -> bytes:
    """Every byte the stores and spill files hold (SQLite main file and WAL, JSONL files)."""
    data = b""
    for path in glob.glob(str(tmp_path / "**" / "*"), recursive=True):
        if os.path.isfile(path):
            with open(path, "rb") as fh:
                data += fh.read()
    return data


class Form(TypedDict, total=False):
    contact: str
    note: str
    reply: str


def _chat_graph():
    def answer(state: MessagesState) -> dict:
        dispatch_custom_event("lookup", {"query": f"customer {EMAIL}", "phone": PHONE})
        return {"messages": [AIMessage(f"I emailed {EMAIL} and used {OPENAI_KEY}", id="ai-1")]}

    builder = StateGraph(MessagesState)
    builder.add_node("answer", answer)
    builder.add_edge(START, "answer")
    return builder.compile()


def _failing_graph():
    def fail(state: Form) -> dict:
        raise ValueError(f"could not reach {EMAIL} at {PHONE}")

    builder = StateGraph(Form)
    builder.add_node("fail", fail)
    builder.add_edge(START, "fail")
    return builder.compile()


def _form_graph():
    def fill(state: Form) -> dict:
        return {"reply": f"Dear customer, token Bearer {BEARER} and AWS {AWS_KEY} on 2026-11-21"}

    builder = StateGraph(Form)
    builder.add_node("fill", fill)
    builder.add_edge(START, "fill")
    return builder.compile()


def _record_everything(rec):
    question = HumanMessage(f"I am {EMAIL}, call me on {PHONE}. My key is {OPENAI_KEY}", id="h-1")
    _chat_graph().invoke({"messages": [question]}, config={"callbacks": [rec]})
    _form_graph().invoke({"contact": EMAIL, "note": f"phone {PHONE}, meeting 2026-11-21, 3 items"}, config={"callbacks": [rec]})
    with pytest.raises(ValueError):
        _failing_graph().invoke({"contact": "x"}, config={"callbacks": [rec]})
    rec.record(TrajectoryEvent(kind=EventKind.CUSTOM, time=1.0, trace_id="a" * 32, span_id="b" * 16,
                               name="app", attributes={"text": f"from app {EMAIL}"}))
    assert rec.flush(10)


@pytest.mark.parametrize("kind", ["sqlite", "jsonl"])
def test_default_redaction_reaches_messages_state_errors_and_custom_events(tmp_path, kind):
    store = (SqliteTraceStore(f"sqlite:///{tmp_path}/db/t.db") if kind == "sqlite"
             else JsonlTraceStore(f"jsonl:///{tmp_path}/traces"))
    rec = TrajectoryRecorder(store, sample_rate=1.0, spill_dir=str(tmp_path / "spill"), flush_interval=0.05)
    try:
        _record_everything(rec)
        raw = stored_bytes(tmp_path)
        for secret in SECRETS:
            assert secret.encode() not in raw, f"{secret!r} reached the store"
        events = store.read()
        run_start = next(e for e in events if e.kind is EventKind.RUN_START)
        human = run_start.attributes["input"]["messages"][0]
        assert human["content"] == "I am [EMAIL], call me on [PHONE]. My key is [API_KEY]"
        assert human["type"] == "human" and human["id"] == "h-1"
        ai = next(e for e in events if e.kind is EventKind.NODE_END and e.node == "answer")
        assert ai.attributes["output"]["messages"][0]["content"] == "I emailed [EMAIL] and used [API_KEY]"
        custom = next(e for e in events if e.name == "lookup")
        assert custom.attributes["data"] == {"query": "customer [EMAIL]", "phone": "[PHONE]"}
        form_in = next(e for e in events if e.kind is EventKind.NODE_START and e.node == "fill")
        assert form_in.attributes["input"] == {"contact": "[EMAIL]", "note": "phone [PHONE], meeting 2026-11-21, 3 items"}
        form_out = next(e for e in events if e.kind is EventKind.NODE_END and e.node == "fill")
        assert form_out.attributes["output"]["reply"] == "Dear customer, token Bearer [API_KEY] and AWS [API_KEY] on 2026-11-21"
        error = next(e for e in events if e.kind is EventKind.NODE_ERROR)
        assert error.attributes["error.type"] == "ValueError"
        assert error.attributes["error.message"] == "could not reach [EMAIL] at [PHONE]"
        app = next(e for e in events if e.name == "app")
        assert app.attributes["text"] == "from app [EMAIL]"
    finally:
        rec.close()
        store.close()


def test_custom_redact_hook_replaces_the_default(tmp_path):
    store = SqliteTraceStore(f"sqlite:///{tmp_path}/db/t.db")
    calls = []

    def hook(text: str) -> str:
        calls.append(text)
        return text.replace("Acme Corp", "[ORG]").replace("jane", "[NAME]")

    rec = TrajectoryRecorder(store, sample_rate=1.0, redact=hook, spill_dir=str(tmp_path / "spill"), flush_interval=0.05)
    try:
        _form_graph().invoke({"contact": "jane at Acme Corp", "note": EMAIL}, config={"callbacks": [rec]})
        assert rec.flush(10)
        start = store.read()[0]
        assert start.attributes["input"] == {"contact": "[NAME] at [ORG]", "note": EMAIL.replace("jane", "[NAME]")}
        assert calls
        assert b"Acme Corp" not in stored_bytes(tmp_path)
    finally:
        rec.close()
        store.close()


def test_redact_none_stores_content_as_is(tmp_path):
    store = SqliteTraceStore(f"sqlite:///{tmp_path}/db/t.db")
    rec = TrajectoryRecorder(store, sample_rate=1.0, redact=None, spill_dir=str(tmp_path / "spill"), flush_interval=0.05)
    try:
        _form_graph().invoke({"contact": EMAIL}, config={"callbacks": [rec]})
        assert rec.flush(10)
        assert store.read()[0].attributes["input"] == {"contact": EMAIL}
    finally:
        rec.close()
        store.close()


def test_hash_content_mode_stores_only_sha256_and_length(tmp_path):
    store = SqliteTraceStore(f"sqlite:///{tmp_path}/db/t.db")
    rec = TrajectoryRecorder(store, sample_rate=1.0, content_mode="hash", spill_dir=str(tmp_path / "spill"), flush_interval=0.05)
    try:
        _record_everything(rec)
        raw = stored_bytes(tmp_path)
        for text in (*SECRETS, "I emailed", "Dear customer", "meeting", "could not reach"):
            assert text.encode() not in raw, f"{text!r} reached the store"
        events = store.read()
        run_start = next(e for e in events if e.kind is EventKind.RUN_START)
        human = run_start.attributes["input"]["messages"][0]
        question = f"I am {EMAIL}, call me on {PHONE}. My key is {OPENAI_KEY}"
        assert human["content"] == hash_text(question)
        assert human["type"] == "human" and human["id"] == "h-1"  # structure stays readable
        fill_end = next(e for e in events if e.kind is EventKind.NODE_END and e.node == "fill")
        reply = fill_end.attributes["output"]["reply"]
        assert set(reply) == {"sha256", "length"}
        error = next(e for e in events if e.kind is EventKind.NODE_ERROR)
        assert error.attributes["error.type"] == "ValueError"
        assert set(error.attributes["error.message"]) == {"sha256", "length"}
    finally:
        rec.close()
        store.close()


# -- user ids --------------------------------------------------------------------------------------------

PLAIN_USER = "plain-user-id-7f3a9c"


def _user_run(rec, user_id=PLAIN_USER, key="user_id"):
    _form_graph().invoke({"contact": "x"}, config={"callbacks": [rec], "metadata": {key: user_id}})


def _recorder(store, tmp_path):
    return TrajectoryRecorder(store, sample_rate=1.0, spill_dir=str(tmp_path / "spill"), flush_interval=0.05)


@pytest.mark.parametrize("key", ["user_id", "graphtune_user_id", "langfuse_user_id"])
def test_user_id_is_stored_only_hashed(tmp_path, monkeypatch, key):
    monkeypatch.delenv(SALT_ENV, raising=False)
    store = SqliteTraceStore(f"sqlite:///{tmp_path}/db/t.db")
    rec = _recorder(store, tmp_path)
    try:
        _user_run(rec, key=key)
        rec.feedback("c" * 32, thumbs_up=True, user_id=PLAIN_USER)
        assert rec.flush(10)
        events = store.read()
        hashes = {e.user_hash for e in events}
        assert len(hashes) == 1
        (user_hash,) = hashes
        assert user_hash and user_hash != PLAIN_USER and len(user_hash) == 32
        salt = store.get_or_create_meta(SALT_META_KEY, "unused")
        assert user_hash == hash_user_id(PLAIN_USER, salt)
        assert PLAIN_USER.encode() not in stored_bytes(tmp_path)
        assert store.delete_user(user_hash) == len(events)
    finally:
        rec.close()
        store.close()


@pytest.mark.parametrize("kind", ["sqlite", "jsonl"])
def test_same_user_hashes_the_same_across_recorders_on_one_store(tmp_path, monkeypatch, kind):
    monkeypatch.delenv(SALT_ENV, raising=False)
    url = f"sqlite:///{tmp_path}/db/t.db" if kind == "sqlite" else f"jsonl:///{tmp_path}/traces"
    hashes = []
    for _ in range(2):  # two recorders, each with its own store connection, like two processes
        store = SqliteTraceStore(url) if kind == "sqlite" else JsonlTraceStore(url)
        rec = _recorder(store, tmp_path)
        try:
            _user_run(rec)
            _user_run(rec, user_id="someone-else")
            assert rec.flush(10)
            by_run = [e.user_hash for e in store.read() if e.kind is EventKind.RUN_START]
            hashes.append(by_run[-2:])
        finally:
            rec.close()
            store.close()
    assert hashes[0] == hashes[1]
    assert hashes[0][0] != hashes[0][1]
    assert PLAIN_USER.encode() not in stored_bytes(tmp_path)


def test_different_stores_salt_differently(tmp_path, monkeypatch):
    monkeypatch.delenv(SALT_ENV, raising=False)
    found = []
    for name in ("a", "b"):
        store = SqliteTraceStore(f"sqlite:///{tmp_path}/{name}/t.db")
        rec = _recorder(store, tmp_path / name)
        try:
            _user_run(rec)
            assert rec.flush(10)
            found.append(store.read()[0].user_hash)
        finally:
            rec.close()
            store.close()
    assert found[0] != found[1]


def test_hash_salt_env_overrides_the_stored_salt(tmp_path, monkeypatch):
    monkeypatch.setenv(SALT_ENV, "pepper-from-env")
    store = SqliteTraceStore(f"sqlite:///{tmp_path}/db/t.db")
    stored_salt = store.get_or_create_meta(SALT_META_KEY, "stored-salt")
    rec = _recorder(store, tmp_path)
    try:
        _user_run(rec)
        rec.record(TrajectoryEvent(kind=EventKind.CUSTOM, time=1.0, trace_id="a" * 32, span_id="b" * 16, name="app"),
                   user_id=PLAIN_USER)
        assert rec.flush(10)
        expected = hash_user_id(PLAIN_USER, "pepper-from-env")
        assert {e.user_hash for e in store.read()} == {expected}
        assert expected != hash_user_id(PLAIN_USER, stored_salt)
    finally:
        rec.close()
        store.close()


def test_unreachable_store_still_never_writes_plain_user_ids(tmp_path, monkeypatch):
    monkeypatch.delenv(SALT_ENV, raising=False)
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    rec = TrajectoryRecorder(f"sqlite:///{blocker}/t.db", sample_rate=1.0, spill_dir=str(tmp_path / "spill"), flush_interval=0.05)
    try:
        _user_run(rec)
        assert rec.flush(10)
        assert rec.stats()["spilled"] == 4
        assert PLAIN_USER.encode() not in stored_bytes(tmp_path)
    finally:
        rec.close()


def test_identifier_keys_inside_captured_state_are_redacted_too():
    """'name' or 'id' is exempt in the event's own structure, never inside the user's state."""
    redactor = Redactor(content_mode="hash")
    attributes = {
        "role": "human",
        "input": {"name": "Jane Doe", "messages": [{"type": "human", "id": "m-1", "content": "hi"}]},
    }
    out = redactor.apply(attributes)
    assert out["role"] == "human"
    assert out["input"]["name"] == hash_text("Jane Doe")
    message = out["input"]["messages"][0]
    assert (message["type"], message["id"]) == ("human", "m-1")
    assert message["content"] == hash_text("hi")


# -- the catalogue -----------------------------------------------------------------------------------

from tests.tracing.pii_samples import SAMPLES  # noqa: E402


@pytest.mark.parametrize("name", sorted(SAMPLES))
def test_every_catalogued_secret_and_identifier_is_masked_in_running_text(name):
    """Each pattern of the catalogue, inside a sentence: masked whole (no tail of a long key left)."""
    secret, masked = SAMPLES[name]
    text = f"Customer wrote: my {name} is {secret} and that is all."
    assert default_redact(text) == f"Customer wrote: my {name} is {masked} and that is all."


@pytest.mark.parametrize(
    "text, expected",
    [
        # checksums decide: a 16-digit number that fails Luhn is no card, an IBAN with bad check digits no IBAN
        ("ref 4111 1111 1111 1112 done", "ref [PHONE] done"),
        ("iban DE00 3704 0044 0532 0130 00", "iban DE00 [PHONE]"),
        ("pay to DE89 3704 0044 0532 0130 00 NOW", "pay to [IBAN] NOW"),
        ("Stripe key sk_live_51HqLyjWDarjtT1zdp7dcXYZabc123DEF456ghi789JKLmnoPQRstuVWXyz0123456789abcdefABCDEF.",
         "Stripe key [API_KEY]"),
        ("db postgresql://app:s3cretpw@db.example.com/x", "db postgresql://app:[API_KEY]@db.example.com/x"),
        ("thread-jane.doe@example.com-7f3a", "[EMAIL]-7f3a"),  # a local part may hold "-"
    ],
)
def test_catalogue_checks_and_edges(text, expected):
    assert default_redact(text) == expected


def test_the_catalogue_includes_detect_secrets_plugins():
    """The credential patterns come from detect-secrets' maintained plugins, not only a hand list."""
    from graphtune.tracing.patterns import catalogue, detect_secrets_rules

    names = {rule.name for rule in detect_secrets_rules()}
    assert {"AWSKeyDetector", "StripeDetector", "GitHubTokenDetector", "SlackDetector", "JwtTokenDetector",
            "AzureStorageKeyDetector", "PrivateKeyDetector"} <= names
    assert set(detect_secrets_rules()) <= set(catalogue())
