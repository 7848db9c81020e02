"""``graphtune report THREAD --html``: the approval page as one self-contained file; and the approval
link the CLI prints beside the approve command."""

from __future__ import annotations

import re

from typer.testing import CliRunner

from graphtune.cli import app
from tests.web.conftest import db, parked, weak_toy_spec  # noqa: F401  (fixtures)


def test_report_html_is_the_approval_page_with_charts_inline_and_no_forms(db, parked, tmp_path):
    out = tmp_path / "report.html"
    done = CliRunner().invoke(app, ["report", parked, "--html", str(out), "--db", db])
    assert done.exit_code == 0, done.output
    page = out.read_text()
    assert page.count("<svg") >= 3 and "toy: candidate" in page and "answer.quality" in page
    assert "<form" not in page and not re.search(r'(src|href)="(https?:)?//', page)


def test_report_of_an_unknown_thread_names_it(db, tmp_path):
    done = CliRunner().invoke(app, ["report", "tune-nope", "--html", str(tmp_path / "r.html"), "--db", db])
    assert done.exit_code == 2 and "tune-nope" in done.output


def test_the_approval_link_follows_graphtune_web_url(monkeypatch):
    from graphtune.web.links import thread_url

    monkeypatch.delenv("GRAPHTUNE_WEB_URL", raising=False)
    assert thread_url("tune-1") == "http://127.0.0.1:8765/graphtune/threads/tune-1"
    monkeypatch.setenv("GRAPHTUNE_WEB_URL", "https://tuning.example.com/")
    assert thread_url("tune 1") == "https://tuning.example.com/graphtune/threads/tune%201"
