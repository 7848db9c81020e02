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


EVALUATORS = "def count(output, example):\n    return 1\n\ndef split(output, example):\n    return {}\n\nNOT_CALLABLE = 3\n"


def own_metrics(tmp_path) -> list:
    """The spec's own metrics, with an evaluator file named after the test: a spec folder earlier on
    ``sys.path`` would otherwise hold a file of the same name (which the import refuses)."""
    module = f"{tmp_path.name}_evals"
    (tmp_path / f"{module}.py").write_text(EVALUATORS)
    return [{"name": "team_exact", "kind": "exact", "output": "assigned_team", "expected": "team"},
            {"name": "tool_calls", "evaluator": f"{module}.py:count", "direction": "minimize"},
            {"evaluator": f"{module}.py:split", "scores": {"precision": "maximize", "recall": "maximize"}},
            "latency_ms"]


def own_metrics_spec(tmp_path, metrics=None, **changes):
    metrics = own_metrics(tmp_path) if metrics is None else metrics
    return {**GOOD, "evals": {**GOOD["evals"], "metrics": metrics}, "objective": {"metric": "team_exact"},
            "guardrails": [{"metric": "tool_calls", "max_value": 3}], **changes}


def test_the_specs_own_metrics_load_with_their_directions(tmp_path):
    spec = load_spec(write(tmp_path, own_metrics_spec(tmp_path)))
    assert spec.evals.metric_names == ["team_exact", "tool_calls", "precision", "recall", "latency_ms"]
    assert spec.objective.direction == "maximize"
    assert spec.guardrails[0].direction == "minimize" and not spec.guardrails[0].higher_is_better
    assert spec.evals.direction_of("recall") == "maximize" and spec.evals.direction_of("latency_ms") == "minimize"
    assert spec.evals.declared[1].function(spec.folder)(None, None) == 1


@pytest.mark.parametrize("metric, expected", [
    ({"name": "x", "output": "a", "expected": "b"}, "evals.metrics[0]: expected a built-in metric name, a mapping with kind"),
    ({"name": "x", "kind": "fuzzy", "output": "a", "expected": "b"}, "evals.metrics[0].kind: Input should be 'exact'"),
    ({"name": "x", "evaluator": "evals.py:count"}, "evals.metrics[0]: x: direction is required"),
    ({"evaluator": "evals.py:count", "direction": "minimize"}, "give either name and direction (one score) or scores"),
    ({"name": "x", "evaluator": "evals.py", "direction": "minimize"}, "evals.metrics[0].evaluator: String should match"),
    ({"name": "latency_ms", "evaluator": "evals.py:count", "direction": "minimize"}, "metric name(s) ['latency_ms'] declared twice"),
])
def test_a_bad_metric_declaration_names_its_key(tmp_path, metric, expected):
    data = own_metrics_spec(tmp_path, [metric, "latency_ms"], objective={"metric": "latency_ms"}, guardrails=[])
    assert expected in error_of(tmp_path, data)


@pytest.mark.parametrize("function, expected", [
    ("missing", "evals.metrics[1].evaluator: {module}.py has no callable 'missing'"),
    ("NOT_CALLABLE", "evals.metrics[1].evaluator: {module}.py has no callable 'NOT_CALLABLE'"),
])
def test_a_custom_evaluator_is_imported_when_the_spec_loads(tmp_path, function, expected):
    metrics = own_metrics(tmp_path)
    metrics[1]["evaluator"] = metrics[1]["evaluator"].replace(":count", f":{function}")
    assert expected.format(module=f"{tmp_path.name}_evals") in error_of(tmp_path, own_metrics_spec(tmp_path, metrics))


@pytest.mark.parametrize("evaluator, expected", [
    ("no_such_evaluators.py:count", "evals.metrics[1].evaluator: cannot import 'no_such_evaluators.py': FileNotFoundError"),
    ("json.py:loads", "evals.metrics[1].evaluator: cannot import 'json.py': ImportError: the module name 'json' is taken by"),
])
def test_an_evaluator_file_that_is_missing_or_shadowed_is_refused(tmp_path, evaluator, expected):
    (tmp_path / "json.py").write_text("def loads(output, example):\n    return 1\n")  # the standard library's name
    metrics = own_metrics(tmp_path)
    metrics[1]["evaluator"] = evaluator
    assert expected in error_of(tmp_path, own_metrics_spec(tmp_path, metrics))


def test_a_custom_evaluator_must_take_output_and_example(tmp_path):
    (tmp_path / "spec_one_arg.py").write_text("def count(output):\n    return 1\n")
    metrics = own_metrics(tmp_path)
    metrics[1]["evaluator"] = "spec_one_arg.py:count"
    message = error_of(tmp_path, own_metrics_spec(tmp_path, metrics))
    assert "evals.metrics[1].evaluator: spec_one_arg.py:count must take (output, example), not (output)" in message


def test_objective_and_guardrails_must_name_a_declared_metric_the_right_way_round(tmp_path):
    message = error_of(tmp_path, own_metrics_spec(tmp_path, objective={"metric": "team_exactt"}))
    assert "objective.metric: 'team_exactt' is not among evals.metrics" in message
    wrong_way = own_metrics_spec(tmp_path, guardrails=[{"metric": "tool_calls", "max_value": 3, "direction": "maximize"}])
    assert "guardrails[0].direction: tool_calls is declared minimize, not maximize" in error_of(tmp_path, wrong_way)
