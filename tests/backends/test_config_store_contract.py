"""One contract for every config store: SQLite and a real PostgreSQL both pass it."""

from __future__ import annotations

import sqlite3
import threading
import time

import psycopg
import pytest

from graphtune.backends.config_store import ConfigStoreError, ConflictError, UnknownVersionError, open_config_store
from graphtune.backends.traces import path_from_url
from graphtune.tuning.config_paths import config_hash

BASE = {"llm": {"model": "m", "temperature": 0.2}, "rag": {"top_k": 4}}


@pytest.fixture(params=["sqlite", "postgres"])
def url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/graphtune.db"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(url):
    s = open_config_store(url)
    yield s
    s.close()


def variant(k: int) -> dict:
    return {"llm": {"model": "m", "temperature": 0.2}, "rag": {"top_k": k}}


def put(store, config, wf="wf"):
    return store.put(wf, config, actor="tester", source="eval")


def run_together(fns):
    """Run the callables on threads released at once; returns (results, errors)."""
    barrier = threading.Barrier(len(fns))
    results, errors = [None] * len(fns), [None] * len(fns)

    def worker(i):
        barrier.wait()
        try:
            results[i] = fns[i]()
        except Exception as exc:  # noqa: BLE001 - collected for the test to inspect
            errors[i] = exc

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(fns))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results, errors


# -- versions ------------------------------------------------------------------------------
def test_versions_start_at_one_and_increase_per_workflow(store):
    before = time.time()
    v1 = store.put("wf", BASE, actor="alice", source="spec", note="from the spec")
    v2 = put(store, variant(8))
    other = put(store, variant(8), wf="other")
    assert (v1.version, v2.version, other.version) == (1, 2, 1)
    assert v1.hash == config_hash(BASE) and v1.config == BASE
    assert (v1.created_by, v1.source, v1.note) == ("alice", "spec", "from the spec")
    assert before <= v1.created_at <= time.time()
    assert [v.version for v in store.versions("wf")] == [1, 2]
    assert store.workflows() == ["other", "wf"]
    assert store.versions("nothing") == []


def test_put_is_idempotent_by_hash_whatever_the_key_order(store):
    first = put(store, BASE)
    reordered = {"rag": {"top_k": 4}, "llm": {"temperature": 0.2, "model": "m"}}
    again = store.put("wf", reordered, actor="bob", source="controller", note="other note")
    assert again == first
    assert [v.version for v in store.versions("wf")] == [1]
    assert [e.action for e in store.history("wf")] == ["register"]
    assert store.find("wf", config_hash(reordered)) == first
    assert store.find("wf", config_hash(variant(9))) is None
    assert store.find("other", first.hash) is None


def test_stored_configs_are_immutable(store):
    stored = put(store, BASE)
    stored.config["rag"]["top_k"] = 99
    store.get("wf", 1).config["llm"]["temperature"] = 1.0
    assert store.get("wf", 1).config == BASE
    assert store.get("wf", 1).hash == config_hash(BASE)


def test_get_of_unknown_version_lists_the_known_ones(store):
    put(store, BASE)
    put(store, variant(8))
    with pytest.raises(UnknownVersionError) as info:
        store.get("wf", 7)
    assert "'wf'" in str(info.value) and "7" in str(info.value) and "1, 2" in str(info.value)
    assert info.value.known == [1, 2]
    with pytest.raises(UnknownVersionError, match="no stored versions"):
        store.get("nothing", 1)


def test_concurrent_puts_get_distinct_versions_and_one_version_per_config(url):
    stores = [open_config_store(url) for _ in range(4)]
    try:
        results, errors = run_together([lambda s=s, k=k: put(s, variant(k)) for k, s in enumerate(stores)])
        assert errors == [None] * 4
        assert sorted(v.version for v in results) == [1, 2, 3, 4]
        results, errors = run_together([lambda s=s: put(s, variant(100)) for s in stores])
        assert errors == [None] * 4
        assert {v.version for v in results} == {5}
        assert len(stores[0].versions("wf")) == 5
        assert [e.action for e in stores[0].history("wf")].count("register") == 5
    finally:
        for s in stores:
            s.close()


# -- active version and promotion --------------------------------------------------------------
def test_ensure_active_stores_and_promotes_the_spec_config_once(store):
    assert store.active("wf") is None
    first = store.ensure_active("wf", BASE, actor="spec-loader")
    assert first.version == 1 and store.active("wf") == first
    (entry, register) = store.history("wf")
    assert (entry.action, entry.version, entry.from_version) == ("promote", 1, None)
    assert entry.reason == "initial config from the spec" and entry.actor == "spec-loader"
    assert register.action == "register" and store.get("wf", 1).source == "spec"
    assert store.ensure_active("wf", variant(8), actor="spec-loader") == first
    assert len(store.versions("wf")) == 1 and len(store.history("wf")) == 2


def test_ensure_active_from_several_processes_at_once(url):
    stores = [open_config_store(url) for _ in range(4)]
    try:
        results, errors = run_together([lambda s=s: s.ensure_active("wf", BASE, actor="p") for s in stores])
        assert errors == [None] * 4
        assert {v.version for v in results} == {1}
        assert [e.action for e in stores[0].history("wf")] == ["promote", "register"]
    finally:
        for s in stores:
            s.close()


def test_promote_is_compare_and_set(store):
    put(store, BASE)
    put(store, variant(8))
    promoted = store.promote("wf", 1, expected_active=None, actor="alice", reason="first")
    assert promoted.version == 1 and store.active("wf").version == 1
    with pytest.raises(ConflictError) as info:
        store.promote("wf", 2, expected_active=None, actor="bob", reason="stale view")
    assert "expected active version none" in str(info.value) and "found 1" in str(info.value)
    assert (info.value.expected, info.value.found) == (None, 1)
    assert store.active("wf").version == 1
    assert store.promote("wf", 2, expected_active=1, actor="bob", reason="better").version == 2
    with pytest.raises(UnknownVersionError):
        store.promote("wf", 9, expected_active=2, actor="bob", reason="typo")
    assert store.active("wf").version == 2


@pytest.mark.parametrize("separate_stores", [False, True], ids=["threads", "stores"])
def test_concurrent_promotions_with_the_same_view_exactly_one_wins(url, separate_stores):
    stores = [open_config_store(url) for _ in range(2 if separate_stores else 1)]
    try:
        for k in range(1, 7):
            put(stores[0], variant(k))
        stores[0].promote("wf", 1, expected_active=None, actor="setup", reason="start")
        for round_, (a, b) in enumerate([(2, 3), (4, 5), (6, 2)]):
            expected = stores[0].active("wf").version
            left, right = stores[0], stores[-1]
            results, errors = run_together([
                lambda: left.promote("wf", a, expected_active=expected, actor="left", reason=f"round {round_}"),
                lambda: right.promote("wf", b, expected_active=expected, actor="right", reason=f"round {round_}"),
            ])
            winners = [r for r in results if r is not None]
            assert len(winners) == 1, (results, errors)
            assert sum(isinstance(e, ConflictError) for e in errors) == 1
            assert stores[0].active("wf").version == winners[0].version
            assert stores[0].history("wf", limit=1)[0].from_version == expected
    finally:
        for s in stores:
            s.close()


# -- traffic split -----------------------------------------------------------------------------
def test_set_split_validates_and_is_compare_and_set_on_revision(store):
    put(store, BASE)
    put(store, variant(8))
    assert store.split("wf") is None
    with pytest.raises(UnknownVersionError, match="no config version 3"):
        store.set_split("wf", {1: 0.5, 3: 0.5}, expected_revision=None, actor="a", reason="r")
    for bad in ({1: 0.5, 2: 0.4}, {1: 1.5, 2: -0.5}, {1: 1.0, 2: 0.0}, {}, {1: float("nan")}):
        with pytest.raises(ValueError):
            store.set_split("wf", bad, expected_revision=None, actor="a", reason="r")
    assert store.split("wf") is None and store.history("wf")[0].action == "register"

    first = store.set_split("wf", {1: 0.9, 2: 0.1}, expected_revision=None, actor="ctl", reason="ramp 10%", evidence="eval-7")
    assert store.split("wf") == first and first.weights == {1: 0.9, 2: 0.1}
    with pytest.raises(ConflictError, match="expected split revision no split"):
        store.set_split("wf", {1: 0.5, 2: 0.5}, expected_revision=None, actor="other", reason="r")
    second = store.set_split("wf", {1: 0.5, 2: 0.5}, expected_revision=first.revision, actor="ctl", reason="ramp 50%")
    assert second.revision > first.revision and store.split("wf").weights == {1: 0.5, 2: 0.5}
    with pytest.raises(ConflictError):
        store.clear_split("wf", expected_revision=first.revision, actor="ctl", reason="stale")
    store.clear_split("wf", expected_revision=second.revision, actor="ctl", reason="experiment over")
    assert store.split("wf") is None
    store.clear_split("wf", expected_revision=None, actor="ctl", reason="nothing to clear")
    third = store.set_split("wf", {1: 0.8, 2: 0.2}, expected_revision=None, actor="ctl", reason="again")
    assert third.revision > second.revision + 1  # the clear counted as a change too

    split_entry = store.history("wf")[0]
    assert (split_entry.action, split_entry.actor, split_entry.reason) == ("split", "ctl", "again")
    assert split_entry.details["weights"] == {"1": 0.8, "2": 0.2}
    assert [e.action for e in store.history("wf", limit=4)] == ["split", "clear_split", "split", "split"]
    assert store.history("wf")[2].evidence == "" and store.history("wf")[3].evidence == "eval-7"


def test_promote_clears_the_split(store):
    put(store, BASE)
    put(store, variant(8))
    store.promote("wf", 1, expected_active=None, actor="a", reason="start")
    split = store.set_split("wf", {1: 0.9, 2: 0.1}, expected_revision=None, actor="ctl", reason="experiment")
    store.promote("wf", 2, expected_active=1, actor="alice", reason="won the experiment", evidence="exp-3")
    assert store.split("wf") is None
    entry = store.history("wf", limit=1)[0]
    assert entry.details["cleared_split"] == {"1": 0.9, "2": 0.1}
    with pytest.raises(ConflictError):  # a ramp step from before the promotion is stale now
        store.set_split("wf", {1: 0.5, 2: 0.5}, expected_revision=split.revision, actor="ctl", reason="late")


# -- rollback and the change log -------------------------------------------------------------------
def test_rollback_to_an_earlier_version_is_logged(store):
    put(store, BASE)
    put(store, variant(8))
    with pytest.raises(ConfigStoreError, match="no active config version"):
        store.rollback("wf", 1, actor="alice", reason="r")
    store.promote("wf", 1, expected_active=None, actor="a", reason="start")
    store.promote("wf", 2, expected_active=1, actor="ctl", reason="tuned")
    before = time.time()
    back = store.rollback("wf", 1, actor="alice", reason="answers got worse", evidence="https://tickets/42")
    assert back.version == 1 and store.active("wf").version == 1
    entry = store.history("wf", limit=1)[0]
    assert (entry.action, entry.version, entry.from_version) == ("rollback", 1, 2)
    assert (entry.actor, entry.reason, entry.evidence) == ("alice", "answers got worse", "https://tickets/42")
    assert before <= entry.at <= time.time()
    with pytest.raises(ConfigStoreError, match="already active"):
        store.rollback("wf", 1, actor="alice", reason="again")
    with pytest.raises(UnknownVersionError):
        store.rollback("wf", 5, actor="alice", reason="typo")


def test_history_is_newest_first_with_every_action(store):
    put(store, BASE)
    put(store, variant(8))
    store.promote("wf", 1, expected_active=None, actor="a", reason="start")
    store.set_split("wf", {1: 0.5, 2: 0.5}, expected_revision=None, actor="ctl", reason="try")
    split = store.split("wf")
    store.clear_split("wf", expected_revision=split.revision, actor="ctl", reason="stop")
    store.promote("wf", 2, expected_active=1, actor="alice", reason="better")
    store.rollback("wf", 1, actor="bob", reason="worse")
    entries = store.history("wf")
    assert [e.action for e in entries] == ["rollback", "promote", "clear_split", "split", "promote", "register", "register"]
    assert [e.id for e in entries] == sorted((e.id for e in entries), reverse=True)
    assert [e.at for e in entries] == sorted((e.at for e in entries), reverse=True)
    assert all(e.workflow == "wf" for e in entries)
    assert len(store.history("wf", limit=3)) == 3
    assert store.history("other") == []
    assert not any(hasattr(store, name) for name in ("delete_history", "update_history", "delete"))


def test_reopening_keeps_everything(url):
    with open_config_store(url) as store:
        put(store, BASE)
        put(store, variant(8))
        store.promote("wf", 2, expected_active=None, actor="a", reason="start")
        store.set_split("wf", {1: 0.25, 2: 0.75}, expected_revision=None, actor="ctl", reason="try")
        saved = (store.versions("wf"), store.active("wf"), store.split("wf"), store.history("wf"))
    with open_config_store(url) as store:
        assert (store.versions("wf"), store.active("wf"), store.split("wf"), store.history("wf")) == saved
        assert put(store, variant(9)).version == 3


def test_schema_version_is_recorded(store, url):
    sql = "SELECT version FROM graphtune_schema WHERE component = 'configs'"
    if url.startswith("sqlite"):
        conn = sqlite3.connect(path_from_url(url, "sqlite"))
        try:
            assert conn.execute(sql).fetchone() == (2,)
        finally:
            conn.close()
    else:
        with psycopg.connect(url) as conn:
            assert conn.execute(sql).fetchone() == (2,)


def test_a_version_1_database_is_migrated_in_place(url):
    """A database created before tuning claims existed gains the claim columns when a store opens it."""
    if url.startswith("sqlite"):
        from graphtune.backends.config_sqlite import _MIGRATIONS
        from graphtune.backends.sqlite import connect_sqlite, migrate

        conn = connect_sqlite(path_from_url(url, "sqlite"))
        migrate(conn, "configs", {1: _MIGRATIONS[1]})
        conn.close()
    else:
        from graphtune.backends.config_postgres import _MIGRATIONS
        from graphtune.backends.postgres import libpq_url, migrate

        with psycopg.connect(libpq_url(url), autocommit=True) as conn:
            migrate(conn, "configs", {1: _MIGRATIONS[1]})
    with open_config_store(url) as store:
        v1 = put(store, BASE)
        assert store.claim_tuning("wf", "t1", actor="a").thread_id == "t1"
        assert store.get("wf", v1.version).config == BASE


def test_shares_the_database_with_the_trace_store(url):
    from graphtune.backends.traces import open_trace_store

    with open_trace_store(url), open_config_store(url) as store:
        assert put(store, BASE).version == 1


def test_a_rejection_is_logged_and_changes_nothing(store):
    v1 = put(store, variant(1))
    store.promote("wf", v1.version, expected_active=None, actor="a", reason="init")
    v2 = put(store, variant(2))
    entry = store.record_rejection("wf", v2.version, actor="dana", reason="latency risk", evidence="thread t1")
    assert (entry.action, entry.version, entry.from_version, entry.actor) == ("reject", v2.version, v1.version, "dana")
    assert entry.reason == "latency risk" and entry.evidence == "thread t1"
    assert store.active("wf").version == v1.version
    assert store.history("wf")[0] == entry
    with pytest.raises(UnknownVersionError):
        store.record_rejection("wf", 99, actor="dana", reason="?")


def test_one_tuning_run_holds_a_workflow_at_a_time(store):
    from graphtune.backends.config_store import TuningBusyError

    claim = store.claim_tuning("wf", "thread-1", actor="dana")
    assert (claim.thread_id, claim.actor) == ("thread-1", "dana")
    assert store.claim_tuning("wf", "thread-1", actor="dana") == claim  # the same run again (a resumed node)
    with pytest.raises(TuningBusyError, match="thread-1.*graphtune unlock wf") as busy:
        store.claim_tuning("wf", "thread-2", actor="sam")
    assert busy.value.holder == claim
    assert store.claim_tuning("other", "thread-2", actor="sam").thread_id == "thread-2"  # per workflow
    assert store.release_tuning("wf", "thread-2", actor="sam") is None  # not its claim
    assert store.tuning_claim("wf") == claim
    assert store.release_tuning("wf", "thread-1", actor="dana") == claim
    assert store.tuning_claim("wf") is None
    assert store.claim_tuning("wf", "thread-2", actor="sam").thread_id == "thread-2"
    assert [e.action for e in store.history("wf")] == []  # a run's own claim and release are not config changes


def test_a_stale_tuning_claim_is_released_by_name_and_logged(store):
    store.claim_tuning("wf", "crashed-thread", actor="dana")
    released = store.release_tuning("wf", None, actor="ops", reason="the laptop died")
    assert released.thread_id == "crashed-thread"
    entry = store.history("wf")[0]
    assert (entry.action, entry.actor, entry.reason) == ("release", "ops", "the laptop died")
    assert entry.details["thread_id"] == "crashed-thread"
    assert store.release_tuning("wf", None, actor="ops") is None


def test_concurrent_tuning_claims_one_wins(store):
    results, errors = run_together([lambda i=i: store.claim_tuning("wf", f"thread-{i}", actor="a") for i in range(4)])
    winners = [r for r in results if r is not None]
    assert len(winners) == 1
    assert sum(type(e).__name__ == "TuningBusyError" for e in errors) == 3
    assert store.tuning_claim("wf").thread_id == winners[0].thread_id
