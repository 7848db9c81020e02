from __future__ import annotations

import threading

import pytest

import graphtune
from graphtune import active
from graphtune.active import NoActiveConfigError, active_config, active_version
from graphtune.backends.config_store import open_config_store

V1 = {"llm": {"temperature": 0.2}}
V2 = {"llm": {"temperature": 0.7}}


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = FakeClock()
    monkeypatch.setattr(active, "_clock", fake)
    return fake


@pytest.fixture
def url(tmp_path):
    url = f"sqlite:///{tmp_path}/graphtune.db"
    with open_config_store(url) as store:
        store.ensure_active("wf", V1, actor="spec")
        store.put("wf", V2, actor="ctl", source="eval")
    return url


def promote_v2(url):
    with open_config_store(url) as store:
        store.promote("wf", 2, expected_active=1, actor="alice", reason="better")


def test_a_promotion_is_seen_only_after_the_ttl(url, clock):
    assert active_config("wf", url=url, ttl=5) == V1
    promote_v2(url)
    clock.now += 4.9
    assert active_config("wf", url=url, ttl=5) == V1
    assert active_version("wf", url=url, ttl=5).version == 1
    clock.now += 0.2
    assert active_config("wf", url=url, ttl=5) == V2
    assert active_version("wf", url=url, ttl=5).version == 2


def test_ttl_zero_sees_a_promotion_at_once(url, clock):
    assert active_config("wf", url=url, ttl=0) == V1
    promote_v2(url)
    assert active_config("wf", url=url, ttl=0) == V2


def test_the_caller_may_change_what_it_gets(url, clock):
    active_config("wf", url=url)["llm"]["temperature"] = 9.0
    active_version("wf", url=url).config["llm"]["temperature"] = 8.0
    assert active_config("wf", url=url) == V1


def test_no_active_version_gives_the_default_or_a_clear_error(url, clock):
    assert active_version("other", url=url) is None
    assert active_config("other", url=url, default={"x": 1}) == {"x": 1}
    with pytest.raises(NoActiveConfigError) as info:
        active_config("other", url=url)
    message = str(info.value)
    assert "'other'" in message and url in message and "graphtune config" in message and "\n" not in message


def test_the_url_comes_from_the_environment(url, clock, monkeypatch):
    monkeypatch.setenv("GRAPHTUNE_DATABASE_URL", url)
    assert graphtune.active_config("wf") == V1


def test_threads_share_the_cache(url, clock):
    results = []
    threads = [threading.Thread(target=lambda: results.append(active_config("wf", url=url))) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [V1] * 16
