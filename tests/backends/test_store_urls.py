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
