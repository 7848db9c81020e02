"""The web view on a local database (``graphtune ui``): a parked tuning thread's approval page shows
the report and its charts, a form answer promotes it in the name of the authenticated caller (never a
name from the form), and the promotion shows in the history page; the other pages read the stores."""

from __future__ import annotations

import re

import pytest
from starlette.testclient import TestClient

from graphtune.backends.config_store import open_config_store
from graphtune.graphs.access import AccessPolicy, TokenEntry
from graphtune.web.local import create_local_app

DANA = "dana-approver-token-0001"
OLLY = "olly-operator-token-0001"


def tokens() -> AccessPolicy:
    return AccessPolicy("tokens", [TokenEntry(identity="dana", roles=["approver"], token=DANA),
                                   TokenEntry(identity="olly", roles=["operator"], token=OLLY)], source="test")


def test_approval_page_shows_the_report_and_charts_and_the_answer_promotes(db, parked):
    client = TestClient(create_local_app(db, tokens()))
    as_dana = {"Authorization": f"Bearer {DANA}"}
    assert client.get("/graphtune/approvals").status_code == 401  # no token, no page

    listing = client.get("/graphtune/approvals", headers=as_dana)
    assert listing.status_code == 200 and parked in listing.text

    page = client.get(f"/graphtune/threads/{parked}", headers=as_dana)
    assert page.status_code == 200
    assert page.text.count("<svg") >= 3  # deltas per candidate, wins/losses, latency distributions
    assert "answer.quality" in page.text and 'value="approve"' in page.text
    assert not re.search(r'(src|href)="(https?:)?//', page.text)  # nothing fetched from elsewhere

    done = client.post(f"/graphtune/threads/{parked}", headers=as_dana,
                       data={"action": "approve", "comment": "looks right", "actor": "mallory"})
    assert done.status_code == 200 and "promoted" in done.text
    with open_config_store(db) as store:
        entry = store.history("toy")[0]
        assert (entry.action, entry.actor, entry.reason) == ("promote", "dana", "looks right")  # not the form's "mallory"
    history = client.get("/graphtune/history?workflow=toy", headers=as_dana)
    assert "promote" in history.text and "dana" in history.text and "looks right" in history.text
    assert "answer.quality" in history.text  # the diff of the promotion


@pytest.mark.parametrize("configured", ["release-bot", None])
def test_with_auth_off_a_form_answer_is_in_the_local_actors_name(db, parked, monkeypatch, configured):
    import getpass

    if configured:
        monkeypatch.setenv("GRAPHTUNE_ACTOR", configured)
    else:
        monkeypatch.delenv("GRAPHTUNE_ACTOR", raising=False)
    expected = configured or getpass.getuser()
    client = TestClient(create_local_app(db, AccessPolicy("off", source="test")))
    assert f"Recorded as <strong>{expected}</strong> (auth is off)" in client.get(f"/graphtune/threads/{parked}").text
    done = client.post(f"/graphtune/threads/{parked}", data={"action": "reject", "comment": "not now"})
    assert done.status_code == 200 and "rejected" in done.text
    with open_config_store(db) as store:
        assert store.history("toy")[0].actor == expected != "anonymous"


def test_an_operator_reads_but_may_not_answer(db, parked):
    client = TestClient(create_local_app(db, tokens()))
    as_olly = {"Authorization": f"Bearer {OLLY}"}
    page = client.get(f"/graphtune/threads/{parked}", headers=as_olly)
    assert page.status_code == 200 and 'value="approve"' not in page.text and "needs the approver role" in page.text
    refused = client.post(f"/graphtune/threads/{parked}", headers=as_olly, data={"action": "approve"})
    assert refused.status_code == 403
    with open_config_store(db) as store:
        assert store.history("toy")[0].action != "promote"


def test_a_bad_edit_is_refused_with_the_field_named_and_the_thread_stays_parked(db, parked):
    client = TestClient(create_local_app(db, AccessPolicy("off", source="test")))
    bad = client.post(f"/graphtune/threads/{parked}", data={"action": "edit", "changes": "answer.quality good"})
    assert "changes, line 1: expected path = value" in bad.text
    invalid = client.post(f"/graphtune/threads/{parked}", data={"action": "edit", "changes": "answer.quality = great"})
    assert "Not accepted" in invalid.text and "waiting for approval" in invalid.text.lower()
    assert "great" in invalid.text


def test_a_form_posted_from_another_site_is_refused(db, parked):
    client = TestClient(create_local_app(db, AccessPolicy("off", source="test")))
    forged = client.post(f"/graphtune/threads/{parked}", data={"action": "approve"}, headers={"Origin": "https://evil.example"})
    assert forged.status_code == 403


def test_store_pages_render_with_filters(db, parked):
    client = TestClient(create_local_app(db, AccessPolicy("off", source="test")))
    runs = client.get("/graphtune/traces?source=eval&limit=5")
    assert runs.status_code == 200 and "/graphtune/traces/" in runs.text
    trace_id = runs.text.split("/graphtune/traces/")[1].split('"')[0]
    trace = client.get(f"/graphtune/traces/{trace_id}")
    assert trace.status_code == 200 and "Per node" in trace.text
    assert client.get("/graphtune/traces?version=abc").status_code == 400
    assert "version: expected a number" in client.get("/graphtune/traces?version=abc").text
    assert client.get("/graphtune/hotspots?window=1h").status_code == 200
    assert "window: expected a duration" in client.get("/graphtune/hotspots?window=soon").text
