"""The wire contract Agent Chat UI relies on, checked with LangChain's JavaScript SDK
(``@langchain/langgraph-sdk`` from npm, run by node) against the real ``langgraph dev``: the key in
``X-Api-Key``, the approval card, an edit whose mutations arrive as a JSON string, "Mark as Resolved"
freeing the workflow. The script is tests/js/chat_ui_contract.mjs; its packages are pinned by
tests/js/package-lock.json and installed with ``npm ci`` into pytest's cache, once per lock file."""

from __future__ import annotations

import hashlib
import os
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from graphtune.backends.config_store import open_config_store
from tests.graphs.conftest import weak_toy_spec  # noqa: F401  (fixture)
from tests.test_server import TOKENS, serve, token_file

JS = Path(__file__).resolve().parent / "js"
LOCK_FILES = ("package.json", "package-lock.json")


@pytest.fixture(scope="session")
def js_sdk(request) -> Path:
    """A folder with the script's packages installed (tests/js/node_modules when someone installed them there)."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed to run LangChain's JavaScript SDK (Debian: apt-get install nodejs npm)")
    if (JS / "node_modules" / "@langchain" / "langgraph-sdk").is_dir():
        return JS
    lock = hashlib.sha256(b"".join((JS / name).read_bytes() for name in LOCK_FILES)).hexdigest()[:16]
    folder = Path(request.config.cache.mkdir(f"js-sdk-{lock}"))
    if not (folder / "node_modules" / "@langchain" / "langgraph-sdk").is_dir():
        for name in LOCK_FILES:
            shutil.copy(JS / name, folder / name)
        done = subprocess.run(["npm", "ci", "--ignore-scripts", "--no-audit", "--no-fund"], cwd=folder,
                              capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"npm ci in {folder} failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return folder


def test_agent_chat_ui_wire_contract_with_the_javascript_sdk(tmp_path, js_sdk, weak_toy_spec):
    db = f"sqlite:///{tmp_path}/graphtune.db"
    script = js_sdk / "chat_ui_contract.mjs"
    if js_sdk != JS:
        shutil.copy(JS / script.name, script)  # beside its node_modules, so its imports resolve
    env = {"GRAPHTUNE_AUTH": "tokens", "GRAPHTUNE_AUTH_TOKENS_FILE": str(token_file(tmp_path))}
    with serve(tmp_path / "server", db, **env) as url:
        done = subprocess.run(["node", str(script)], capture_output=True, text=True, timeout=600, env={
            "PATH": os.environ["PATH"], "GT_URL": url, "GT_API_KEY": TOKENS["dana"],
            "GT_REQUEST": "improve toy accuracy; try 2 candidates, at most 1 round",
            "GT_CONTEXT": json.dumps({"specs": {"toy": str(weak_toy_spec.path)}, "batch_size": 2, "seed": 2})})
    assert done.returncode == 0, f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}"
    threads = json.loads(done.stdout.strip().splitlines()[-1])
    with open_config_store(db) as store:
        promoted, rejected = (next(e for e in store.history("toy") if e.action == a) for a in ("promote", "reject"))
        assert store.active("toy").config["answer"] == {"quality": "good", "delay_s": 0.002}  # the edited candidate
        assert (promoted.action, promoted.actor) == ("promote", "dana")  # the key's identity
        assert (rejected.action, rejected.actor) == ("reject", "dana") and "Mark as Resolved" in rejected.reason
        assert threads["resolved"] in rejected.evidence and store.tuning_claim("toy") is None
