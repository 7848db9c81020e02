"""A person in a real browser: opens the approval page from the link graphtune prints, sees the
charts, approves, and finds the promotion in the history page.

On the real ``langgraph dev`` with bearer tokens (the page is served by the LangGraph server behind
its auth; the browser sends the approver's token), and on ``graphtune ui`` with a local database
(the link is the one ``graphtune tune --no-input`` prints).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from graphtune.backends.config_store import open_config_store
from graphtune.web.links import thread_url
from tests.graphs.conftest import weak_toy_spec  # noqa: F401  (fixture)
from tests.test_server import ROOT, free_port, serve
from tests.waiting import wait_until

DANA, OLLY = "dana-approver-token-e2e-01", "olly-operator-token-e2e-01"
REQUEST = "improve toy accuracy; try 2 candidates, at most 1 round"


def approve_in_browser(browser, link: str, shots: Path, headers: dict | None = None, name: str = "") -> None:
    page = browser.new_page(extra_http_headers=headers or {}, viewport={"width": 1200, "height": 900})
    page.goto(link)
    assert page.locator("h1").first.inner_text().startswith("toy: candidate")
    charts = page.locator("svg.chart")
    assert charts.count() >= 3 and charts.first.is_visible()  # deltas, wins/losses, latency
    page.screenshot(path=str(shots / f"approval{name}.png"), full_page=True)
    page.locator("form:has(input[value=approve]) textarea[name=comment]").fill("looks right in the browser")
    page.locator("form:has(input[value=approve]) button").click()
    page.wait_for_selector("#notice")
    assert "promoted" in page.locator("#notice").inner_text()
    page.locator("#outcome a").click()  # "see the history"
    row = page.locator("tr.entry-promote").first
    assert "looks right in the browser" in row.inner_text() and "answer.quality" in row.inner_text()
    page.screenshot(path=str(shots / f"history{name}.png"), full_page=True)
    page.close()


@pytest.fixture
def token_server(tmp_path):
    tokens = {"tokens": [{"identity": "dana", "roles": ["approver"], "token": DANA},
                         {"identity": "olly", "roles": ["operator"], "token": OLLY}]}
    db = f"sqlite:///{tmp_path}/graphtune.db"
    with serve(tmp_path / "server", db, GRAPHTUNE_AUTH="tokens", GRAPHTUNE_AUTH_TOKENS=yaml.safe_dump(tokens)) as url:
        yield url, db


def test_an_approver_approves_on_the_langgraph_server_page(browser, shots, token_server, weak_toy_spec, monkeypatch):
    from langgraph_sdk import get_sync_client  # Playwright's sync API runs an event loop in this thread

    url, db = token_server
    monkeypatch.setenv("GRAPHTUNE_WEB_URL", url)
    olly = get_sync_client(url=url, api_key=None, headers={"Authorization": f"Bearer {OLLY}"})
    thread = olly.threads.create()["thread_id"]
    olly.runs.wait(thread, "controller", input={"messages": [{"role": "user", "content": REQUEST}]},
                   context={"specs": {"toy": str(weak_toy_spec.path)}, "batch_size": 2, "seed": 2})
    anonymous = browser.new_page()
    assert anonymous.goto(thread_url(thread)).status == 401  # the server's auth guards the pages
    anonymous.close()

    as_olly = browser.new_page(extra_http_headers={"Authorization": f"Bearer {OLLY}"}, viewport={"width": 1200, "height": 900})
    as_olly.goto(thread_url(thread))
    assert "needs the approver role" in as_olly.locator("#answer").inner_text()  # an operator reads, does not answer
    as_olly.close()

    dana = {"Authorization": f"Bearer {DANA}"}
    tour = browser.new_page(extra_http_headers=dana, viewport={"width": 1200, "height": 900})
    tour.goto(f"{url}/graphtune/approvals")
    assert thread in tour.locator("main").inner_text()
    tour.screenshot(path=str(shots / "approvals.png"), full_page=True)
    approve_in_browser(browser, thread_url(thread), shots, dana)
    with open_config_store(db) as store:
        entry = store.history("toy")[0]
        assert (entry.action, entry.actor) == ("promote", "dana")

    tour.goto(f"{url}/graphtune/traces?source=eval")
    tour.screenshot(path=str(shots / "traces.png"), full_page=True)
    tour.locator("main table a").first.click()
    tour.wait_for_selector("h2:has-text('Tree')")  # the click navigates: wait for the trace page
    tour.screenshot(path=str(shots / "trace.png"), full_page=True)
    tour.goto(f"{url}/graphtune/hotspots?window=1d")
    tour.screenshot(path=str(shots / "hotspots.png"), full_page=True)
    tour.close()


def test_the_link_graphtune_tune_prints_opens_the_page_of_graphtune_ui(browser, shots, tmp_path, weak_toy_spec):
    db = f"sqlite:///{tmp_path}/graphtune.db"
    port = free_port()
    env = {**os.environ, "GRAPHTUNE_DATABASE_URL": db, "PYTHONPATH": str(ROOT), "GRAPHTUNE_AUTH": "off",
           "GRAPHTUNE_WEB_URL": f"http://127.0.0.1:{port}"}
    for name in ("GRAPHTUNE_MODEL", "GRAPHTUNE_TRACES_URL", "GRAPHTUNE_AUTH_TOKENS_FILE", "GRAPHTUNE_AUTH_TOKENS"):
        env.pop(name, None)
    tuned = subprocess.run([sys.executable, "-m", "graphtune.cli", "tune", "--spec", str(weak_toy_spec.path), "--no-input",
                            "--batch-size", "2", "--seed", "3", REQUEST], cwd=ROOT, env=env, capture_output=True, text=True,
                           timeout=240, check=True)
    link = json.loads(tuned.stdout)["approval_page"]
    with open(tmp_path / "ui.log", "w") as log:
        ui = subprocess.Popen([sys.executable, "-m", "graphtune.cli", "ui", "--port", str(port)], cwd=ROOT, env=env,
                              stdout=log, stderr=subprocess.STDOUT)
        try:
            import urllib.request

            def up() -> bool:
                assert ui.poll() is None, (tmp_path / "ui.log").read_text()
                try:
                    return urllib.request.urlopen(f"http://127.0.0.1:{port}/graphtune/approvals", timeout=2).status == 200
                except OSError:
                    return False

            wait_until(up, timeout=90, what="graphtune ui answering")
            approve_in_browser(browser, link, tmp_path, name="-local")
        finally:
            ui.terminate()
            ui.wait(timeout=20)
    with open_config_store(db) as store:
        assert store.history("toy")[0].action == "promote"
