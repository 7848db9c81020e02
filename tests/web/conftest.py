"""A local database with a tuning thread of the weak toy workflow parked at approval."""

from __future__ import annotations

import asyncio

import pytest

from graphtune.graphs.context import ControllerContext
from graphtune.graphs.local_controller import LocalController
from tests.graphs.conftest import weak_toy_spec  # noqa: F401  (fixture)

REQUEST = "improve toy accuracy; try 2 candidates, at most 1 round"


@pytest.fixture
def db(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/gt.db"
    monkeypatch.setenv("GRAPHTUNE_DATABASE_URL", url)
    for name in ("GRAPHTUNE_TRACES_URL", "GRAPHTUNE_MODEL"):
        monkeypatch.delenv(name, raising=False)
    return url


@pytest.fixture
def parked(db, weak_toy_spec):
    controller = LocalController(context=ControllerContext(database_url=db, traces_url=db, batch_size=2, seed=2))
    result = asyncio.run(controller.start(REQUEST, spec=str(weak_toy_spec.path)))
    assert result.pending, result.outcome
    return result.thread_id
