import pytest

from graphtune.backends.config_sqlite import SqliteConfigStore
from graphtune.backends.config_store import open_config_store
from graphtune.backends.traces import UnknownBackendError


def test_unknown_scheme_names_the_accepted_ones():
    with pytest.raises(UnknownBackendError) as info:
        open_config_store("mongodb://localhost/x")
    message = str(info.value)
    assert "mongodb://localhost/x" in message and "sqlite:///" in message and "postgresql://" in message
    assert "jsonl" not in message and "\n" not in message


def test_jsonl_is_for_traces_only():
    with pytest.raises(UnknownBackendError) as info:
        open_config_store("jsonl:///tmp/traces")
    message = str(info.value)
    assert "jsonl:///tmp/traces" in message and "traces only" in message
    assert "sqlite:///" in message and "postgresql://" in message and "\n" not in message


def test_url_without_path_is_rejected():
    with pytest.raises(UnknownBackendError, match="names no path"):
        open_config_store("sqlite://")


def test_database_url_from_the_environment(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path}/env.db"
    monkeypatch.setenv("GRAPHTUNE_DATABASE_URL", url)
    monkeypatch.setenv("GRAPHTUNE_TRACES_URL", f"jsonl:///{tmp_path}/traces")  # moves the traces, not the configs
    with open_config_store() as store:
        assert isinstance(store, SqliteConfigStore) and store.url == url
    assert (tmp_path / "env.db").exists()


def test_default_is_the_project_database(tmp_path, monkeypatch):
    monkeypatch.delenv("GRAPHTUNE_DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)
    with open_config_store() as store:
        assert store.url == "sqlite:///.graphtune/graphtune.db"
    assert (tmp_path / ".graphtune" / "graphtune.db").exists()
