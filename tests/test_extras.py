import pytest

from graphtune.extras import MissingExtraError, needs_extra


def _missing(name: str):
    raise ModuleNotFoundError(f"No module named {name!r}", name=name)


@pytest.mark.parametrize("module", ["psycopg", "psycopg_pool", "langgraph.checkpoint.postgres.aio"])
def test_a_missing_package_of_the_extra_names_the_feature_and_the_install_line(module):
    with pytest.raises(MissingExtraError) as caught:
        with needs_extra("postgres", "a PostgreSQL trace store"):
            _missing(module)
    assert str(caught.value) == (f"a PostgreSQL trace store needs the 'postgres' extra ({module} is not installed): "
                                 "pip install 'graphtune[postgres]'")
    assert isinstance(caught.value, ImportError) and caught.value.extra == "postgres"


@pytest.mark.parametrize("module", ["langgraph.checkpoint", "psycopgx", "mycompany.workflow"])
def test_any_other_missing_module_passes_through_unchanged(module):
    """A user's own broken import (or a core package's) is not blamed on an extra."""
    with pytest.raises(ModuleNotFoundError) as caught:
        with needs_extra("postgres", "a PostgreSQL trace store"):
            _missing(module)
    assert not isinstance(caught.value, MissingExtraError) and caught.value.name == module


def test_imports_that_work_are_untouched():
    with needs_extra("examples", "the support_qa example's retrieval"):
        import json
    assert json.dumps(1) == "1"
