import textwrap

import pytest
import yaml

from graphtune.spec import SpecError, load_spec, parse_spec

GOOD = {
    "workflow": "toy",
    "graph": "tests.test_spec:build_toy",
    "config": {"rag": {"top_k": 4}},
    "tunables": {"rag.top_k": {"type": "int", "low": 1, "high": 10}},
    "evals": {"datasets": [{"name": "toy", "path": "toy.jsonl"}], "metrics": ["contains", "latency_ms", "error"]},
    "objective": {"metric": "contains"},
    "guardrails": [{"metric": "latency_ms", "statistic": "p95", "max_ratio": 1.2}, {"metric": "error", "max_value": 0.05}],
}


def build_toy(config):
    if config["rag"]["top_k"] == 7:
        raise ValueError("seven is not supported")
    return "compiled"


def write(tmp_path, data, name="graphtune.yaml"):
    path = tmp_path / name
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))
    return path


def error_of(tmp_path, data) -> str:
    path = write(tmp_path, data)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert str(path) in message
    return message


def test_good_spec_loads_with_defaults(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.objective.direction == "maximize"
    assert spec.dataset_path() == tmp_path / "toy.jsonl"
    assert spec.build_graph() == "compiled"
    assert spec.guardrails[0].describe() == "p95 latency_ms <= 1.2x baseline"


def test_bundled_spec_loads_by_name():
    spec = load_spec("support_qa")
    assert spec.workflow == "support_qa"
    assert spec.dataset_path().exists()
    assert spec.space.check_config(spec.config) == []


def test_malformed_yaml_names_line(tmp_path):
    message = error_of(tmp_path, "workflow: toy\nconfig: {rag: [1, 2\n")
    assert "malformed YAML" in message and "line" in message


def test_top_level_must_be_mapping(tmp_path):
    assert "expected a mapping" in error_of(tmp_path, "- just\n- a list\n")


def test_unknown_key_is_named(tmp_path):
    message = error_of(tmp_path, {**GOOD, "objectives": {"metric": "contains"}})
    assert "objectives: unknown key" in message


def test_nested_unknown_key_and_wrong_type_name_the_path(tmp_path):
    bad = {**GOOD, "tunables": {"rag.top_k": {"type": "int", "low": "one", "high": 10, "stepp": 1}}}
    message = error_of(tmp_path, bad)
    assert "tunables['rag.top_k'].low" in message
    assert "tunables['rag.top_k'].stepp: unknown key" in message


def test_missing_required_key(tmp_path):
    bad = {k: v for k, v in GOOD.items() if k != "graph"}
    assert "graph: required key is missing" in error_of(tmp_path, bad)


def test_tunable_without_config_value(tmp_path):
    bad = {**GOOD, "tunables": {**GOOD["tunables"], "rag.rerank": {"type": "bool"}}}
    assert "tunable rag.rerank has no value in config" in error_of(tmp_path, bad)


def test_default_config_outside_domain(tmp_path):
    bad = {**GOOD, "config": {"rag": {"top_k": 40}}}
    assert "rag.top_k: expected a value in [1, 10], got 40" in error_of(tmp_path, bad)


def test_unknown_metric_and_objective_outside_metrics(tmp_path):
    assert "unknown metric(s) ['accuracy']" in error_of(tmp_path, {**GOOD, "evals": {**GOOD["evals"], "metrics": ["accuracy"]}})
    message = error_of(tmp_path, {**GOOD, "objective": {"metric": "token_f1"}})
    assert "objective.metric: 'token_f1' is not among evals.metrics" in message


def test_guardrail_needs_exactly_one_bound(tmp_path):
    bad = {**GOOD, "guardrails": [{"metric": "latency_ms", "max_ratio": 1.2, "max_value": 100}]}
    assert "guardrails[0]" in error_of(tmp_path, bad) and "exactly one of" in error_of(tmp_path, bad)


def test_graph_reference_must_be_module_colon_function(tmp_path):
    assert "graph" in error_of(tmp_path, {**GOOD, "graph": "tests/test_spec.py"})
    assert "graph" in error_of(tmp_path, {**GOOD, "graph": "graph.py"})


def test_graph_factory_import_error_and_raise(tmp_path):
    spec = load_spec(write(tmp_path, {**GOOD, "graph": "no_such_module_xyz:build"}))
    with pytest.raises(SpecError, match="cannot import 'no_such_module_xyz'"):
        spec.build_graph()
    spec = load_spec(write(tmp_path, GOOD))
    with pytest.raises(SpecError, match="graph factory tests.test_spec:build_toy raised ValueError: seven is not supported"):
        spec.build_graph({"rag": {"top_k": 7}})


FACTORY = "def build(config):\n    return ('built', config)\n"


def test_graph_module_beside_the_spec_imports_without_pythonpath(tmp_path):
    (tmp_path / "my_flow_beside_spec.py").write_text(FACTORY)
    spec = load_spec(write(tmp_path, {**GOOD, "graph": "my_flow_beside_spec:build"}))
    assert spec.build_graph({"x": 1}) == ("built", {"x": 1})


def test_graph_file_path_inside_a_package_keeps_relative_imports(tmp_path):
    package = tmp_path / "gt_test_flows" / "spec_pkg_flow"
    package.mkdir(parents=True)
    (tmp_path / "gt_test_flows" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("LABEL = 'relative import works'\n")
    (package / "graph.py").write_text("from .helpers import LABEL\n\ndef build(config):\n    return LABEL\n")
    spec = load_spec(write(package, {**GOOD, "graph": "graph.py:build"}))
    assert spec.build_graph() == "relative import works"
    missing = load_spec(write(package, {**GOOD, "graph": "nope.py:build"}))
    with pytest.raises(SpecError, match="cannot import 'nope.py'.*no such file"):
        missing.build_graph()


def test_missing_file_lists_bundled_workflows(tmp_path):
    with pytest.raises(SpecError, match="no such spec file.*support_qa"):
        load_spec(tmp_path / "nope.yaml")


def test_parse_spec_without_file():
    with pytest.raises(SpecError, match=r"^spec: "):
        parse_spec({"workflow": "x"})


# -- rate limit ------------------------------------------------------------------------------------


def test_rate_limit_is_optional_and_names_its_bad_values(tmp_path):
    spec = load_spec(write(tmp_path, GOOD))
    assert spec.rate_limit.requests_per_s is None and spec.rate_limit.max_retries == 6
    spec = load_spec(write(tmp_path, {**GOOD, "rate_limit": {"requests_per_s": 2.5, "max_retries": 3}}))
    assert (spec.rate_limit.requests_per_s, spec.rate_limit.max_retries) == (2.5, 3)
    assert "rate_limit.requests_per_s" in error_of(tmp_path, {**GOOD, "rate_limit": {"requests_per_s": 0}})
    assert "rate_limit.max_retries" in error_of(tmp_path, {**GOOD, "rate_limit": {"max_retries": -1}})
    assert "rate_limit.per_minute" in error_of(tmp_path, {**GOOD, "rate_limit": {"per_minute": 60}})


# -- benchmark grid --------------------------------------------------------------------------------


def test_benchmark_grid_loads_and_is_optional(tmp_path):
    assert load_spec(write(tmp_path, GOOD)).benchmark is None
    spec = load_spec(write(tmp_path, {**GOOD, "benchmark": {"grid": {"rag.top_k": [1, 4, 8]}}}))
    assert spec.benchmark.grid == {"rag.top_k": [1, 4, 8]}
    assert spec.benchmark.size() == 3


def test_bundled_spec_grid_holds_its_config():
    spec = load_spec("support_qa")
    assert spec.benchmark is not None
    for path, values in spec.benchmark.grid.items():
        assert not spec.tunables[path].requires_model, path
        assert spec.space.check_value(path, values[0]) is None


def test_benchmark_grid_path_must_be_a_tunable(tmp_path):
    message = error_of(tmp_path, {**GOOD, "benchmark": {"grid": {"rag.topk": [1, 4]}}})
    assert "benchmark.grid['rag.topk']: rag.topk is not a tunable; did you mean rag.top_k?" in message


def test_benchmark_grid_values_must_fit_the_domain(tmp_path):
    message = error_of(tmp_path, {**GOOD, "benchmark": {"grid": {"rag.top_k": [4, 20, 2.5]}}})
    assert "benchmark.grid['rag.top_k'][1]: rag.top_k: expected a value in [1, 10], got 20" in message
    assert "benchmark.grid['rag.top_k'][2]: rag.top_k: expected an integer, got 2.5" in message


def test_benchmark_grid_must_hold_the_config_value(tmp_path):
    message = error_of(tmp_path, {**GOOD, "benchmark": {"grid": {"rag.top_k": [1, 2]}}})
    assert "benchmark.grid['rag.top_k']: must include the config's own value 4" in message


def test_benchmark_grid_rejects_empty_and_duplicate_values(tmp_path):
    assert "expected at least one value" in error_of(tmp_path, {**GOOD, "benchmark": {"grid": {"rag.top_k": []}}})
    assert "duplicate value(s) [4]" in error_of(tmp_path, {**GOOD, "benchmark": {"grid": {"rag.top_k": [4, 4]}}})
    assert "benchmark.grid: " in error_of(tmp_path, {**GOOD, "benchmark": {"grid": {}}})


def test_choice_values_yaml_turns_into_booleans_or_numbers_are_flagged(tmp_path):
    path = tmp_path / "graphtune.yaml"
    text = yaml.safe_dump({**GOOD, "tunables": {}}) + "tunables:\n  cache.mode: {type: choice, values: [off, lru, 1.0]}\n"
    path.write_text(text)
    with pytest.raises(SpecError) as error:
        load_spec(path)
    message = str(error.value)
    assert "tunables.cache.mode.values[0]: YAML read False as a boolean" in message
    assert "tunables.cache.mode.values[2]: YAML read 1.0 as a number" in message
