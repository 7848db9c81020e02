import pytest

from graphtune.backends.traces import UnknownBackendError, open_trace_store


def test_unknown_scheme_names_the_accepted_ones():
    with pytest.raises(UnknownBackendError) as info:
        open_trace_store("mongodb://localhost/x")
    message = str(info.value)
    assert "mongodb://localhost/x" in message
    assert "jsonl:///" in message and "sqlite:///" in message and "postgresql://" in message
    assert "\n" not in message


def test_url_without_path_is_rejected():
    with pytest.raises(UnknownBackendError, match="names no path"):
        open_trace_store("sqlite://")


@pytest.mark.parametrize("url", ["sqlite:/tmp/x.db", "sqlite://tmp/x.db", "sqlite:x.db", "jsonl:/tmp/traces", "jsonl://tmp/traces"])
def test_malformed_file_urls_are_refused_and_create_nothing(tmp_path, monkeypatch, url):
    """``sqlite:/tmp/x.db`` used to become ``./mp/x.db``: every store that takes a file URL refuses it
    with the forms it expects, and nothing is created in the working directory."""
    import asyncio

    from graphtune.backends.checkpoints import open_checkpointer
    from graphtune.backends.config_store import open_config_store
    from graphtune.backends.eval_cache import open_eval_cache

    monkeypatch.chdir(tmp_path)
    scheme = url.split(":", 1)[0]
    openers = [open_trace_store]
    if scheme == "sqlite":
        openers += [open_config_store, open_eval_cache]

    async def checkpointer():
        async with open_checkpointer(url):
            pass

    for opener in openers:
        with pytest.raises(UnknownBackendError) as info:
            opener(url)
        message = str(info.value)
        assert url in message and f"{scheme}:///relative/path" in message and f"{scheme}:////absolute/path" in message
    if scheme == "sqlite":
        with pytest.raises(UnknownBackendError, match="sqlite:////absolute/path"):
            asyncio.run(checkpointer())
    assert list(tmp_path.iterdir()) == []
