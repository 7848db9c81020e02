"""The documentation site builds offline with ``mkdocs build --strict`` (what ``make docs`` runs): every
page in the nav exists and is in it, every link and anchor between pages resolves, README.md is the home page."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_the_docs_site_builds_strict(tmp_path):
    pytest.importorskip("mkdocs", reason="mkdocs is a [dev] dependency")
    pytest.importorskip("material", reason="mkdocs-material is a [dev] dependency")
    built = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--config-file", str(ROOT / "mkdocs.yml"),
         "--site-dir", str(tmp_path / "site")],
        cwd=ROOT, capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"}, timeout=240)
    assert built.returncode == 0, built.stderr[-3000:]
    home = (tmp_path / "site" / "index.html").read_text(encoding="utf-8")
    assert "Tune your own graph in three commands" in home
    assert 'href="install/"' in home  # the README's docs/install.md, made site-relative
