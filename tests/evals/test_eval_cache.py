import pytest

from graphtune.backends.eval_cache import CacheKey, open_eval_cache
from graphtune.backends.traces import UnknownBackendError


@pytest.fixture(params=["sqlite", "postgres"])
def cache_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/cache.db"
    return request.getfixturevalue("pg_url")


def test_put_get_replace_and_reopen(cache_url):
    key = CacheKey("c" * 64, "d" * 64, "1")
    with open_eval_cache(cache_url) as cache:
        assert cache.get_many(key, ["a"]) == {}
        cache.put(key, "a", {"scores": {"contains": 1.0}})
        cache.put(key, "b", {"scores": {"contains": 0.0}})
        cache.put(key, "b", {"scores": {"contains": 0.5}})
        assert cache.get_many(CacheKey("c" * 64, "d" * 64, "2"), ["a"]) == {}
    with open_eval_cache(cache_url) as cache:
        assert cache.get_many(key, ["a", "b", "z"]) == {"a": {"scores": {"contains": 1.0}}, "b": {"scores": {"contains": 0.5}}}
        assert len(cache.get_many(key, [f"x{i}" for i in range(1200)] + ["a"])) == 1


def test_unknown_scheme():
    with pytest.raises(UnknownBackendError, match="sqlite:///FILE or postgresql"):
        open_eval_cache("jsonl:///tmp/x")
