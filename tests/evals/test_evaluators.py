import pytest

from graphtune.evals.evaluators import RunOutcome, contains, exact, retrieval_hit, score, token_f1

EXPECTED = {"answer": "Standard shipping takes 3 to 5 business days.", "facts": ["3 to 5 business days", "standard shipping"], "sources": ["kb-1", "kb-2"]}


def test_contains_counts_facts_ignoring_case_and_punctuation():
    assert contains("Standard Shipping: 3 to 5 business days!", EXPECTED) == 1.0
    assert contains("It takes 3 to 5 business days.", EXPECTED) == 0.5
    assert contains("Paris", {"answer": "paris"}) == 1.0
    assert contains("x", {"sources": ["a"]}) is None


def test_exact_and_token_f1():
    assert exact("the Paris.", {"answer": "paris"}) == 1.0
    assert token_f1("standard shipping takes 3 to 5 business days", EXPECTED) == 1.0
    assert 0 < token_f1("shipping takes a week", EXPECTED) < 1
    assert token_f1("", EXPECTED) == 0.0
    assert token_f1("x", {"facts": ["y"]}) is None


def test_retrieval_hit_is_recall_of_expected_sources():
    assert retrieval_hit(["kb-2", "kb-9"], EXPECTED) == 0.5
    assert retrieval_hit(None, EXPECTED) == 0.0
    assert retrieval_hit(["kb-1"], {"answer": "x"}) is None


def test_score_counts_errors_as_wrong_and_leaves_unlabelled_rows_unscored():
    metrics = ["contains", "token_f1", "retrieval_hit", "latency_ms", "total_tokens", "cost_usd", "error", "judge"]
    ok = RunOutcome(answer="3 to 5 business days for standard shipping", sources=["kb-1", "kb-2"], latency_ms=12.5,
                    input_tokens=100, output_tokens=20, cost_usd=0.001)
    scores = score(metrics, ok, EXPECTED)
    assert scores["contains"] == 1.0 and scores["retrieval_hit"] == 1.0 and scores["error"] == 0.0
    assert scores["total_tokens"] == 120 and scores["latency_ms"] == 12.5 and scores["judge"] is None
    failed = RunOutcome(answer=None, sources=None, latency_ms=3.0, error="RuntimeError: boom")
    scores = score(metrics, failed, EXPECTED)
    assert scores["contains"] == 0.0 and scores["token_f1"] == 0.0 and scores["error"] == 1.0
    unlabelled = score(metrics, ok, None)
    assert unlabelled["contains"] is None and unlabelled["latency_ms"] == 12.5


@pytest.mark.parametrize("values", [[0.0, 1.0, 1.0], [0.2, 0.4]])
def test_summaries(values):
    from graphtune.evals.stats import summarize

    s = summarize(values)
    assert s.n == len(values) and s.ci_low <= s.mean <= s.ci_high


def own(**fields):
    from graphtune.spec import CustomMetric, FieldMetric

    return FieldMetric(**fields) if "kind" in fields else CustomMetric(**fields)


def example(expected):
    from graphtune.evals.datasets import Example

    return Example(id="r1", inputs={}, expected=expected)


@pytest.mark.parametrize("kind, output, reference, expected", [
    ("exact", "Billing", "billing", 1.0),
    ("exact", 4, "4", 1.0),
    ("contains", "refund in 5 days by card", ["5 days", "cash"], 0.5),
    ("token_f1", "refund in five days", "refund within five days", 0.75),
    ("retrieval_hit", ["kb-1"], ["kb-1", "kb-2"], 0.5),
    ("retrieval_hit", ["kb-1"], "kb-1", 1.0),
])
def test_field_metrics_compare_any_output_field_with_any_expected_field(kind, output, reference, expected):
    from graphtune.evals.evaluators import field_score

    metric = own(name="m", kind=kind, output="result.value", expected="want")
    assert field_score(metric, {"result": {"value": output}}, example({"want": reference}), None) == (pytest.approx(expected), None)


def test_field_metrics_without_a_reference_are_unscored_and_a_missing_output_is_wrong_and_noted():
    from graphtune.evals.evaluators import field_score

    metric = own(name="team_exact", kind="exact", output="assigned_team", expected="team")
    assert field_score(metric, {"assigned_team": "x"}, example({"answer": "y"}), None) == (None, None)
    assert field_score(metric, {"assigned_team": "x"}, example(None), None) == (None, None)
    assert field_score(metric, None, example({"team": "billing"}), "RuntimeError: boom") == (0.0, None)
    assert field_score(metric, {"team": "billing"}, example({"team": "billing"}), None) == (0.0, "the final state has no 'assigned_team'")


def custom(function, **fields):
    metric = own(evaluator="m.py:f", **(fields or {"name": "calls", "direction": "minimize"}))
    metric._function = function
    return metric


def custom_scores(metric, state=None, error=None):
    import asyncio

    from graphtune.evals.evaluators import custom_scores as scores_of

    return asyncio.run(scores_of(metric, None, state or {}, example({"team": "x"}), error))


def test_custom_evaluators_return_one_score_or_named_scores_sync_or_async():
    assert custom_scores(custom(lambda output, ex: len(output["calls"])), {"calls": [1, 2]}) == ({"calls": 2.0}, None)
    assert custom_scores(custom(lambda output, ex: None)) == ({"calls": None}, None)

    async def both(output, ex):
        return {"precision": 1, "recall": 0.5}

    named = custom(both, scores={"precision": "maximize", "recall": "maximize"})
    assert custom_scores(named) == ({"precision": 1.0, "recall": 0.5}, None)
    partial = custom(lambda output, ex: {"recall": 0.5}, scores={"precision": "maximize", "recall": "maximize"})
    assert custom_scores(partial) == ({"precision": None, "recall": 0.5}, None)


@pytest.mark.parametrize("returned, note", [
    ({"calls": 1}, "returned {'calls': 1} for calls, expected a finite number or None"),
    ("three", "raised TypeError: returned 'three' for calls, expected a finite number or None"),
    (float("nan"), "returned nan for calls"),
])
def test_a_custom_evaluator_returning_the_wrong_thing_leaves_the_row_unscored_with_a_note(returned, note):
    scores, found = custom_scores(custom(lambda output, ex: returned))
    assert scores == {"calls": None} and found.startswith("evaluator m.py:f raised TypeError") and note in found


def test_a_raising_evaluator_is_a_note_and_a_failed_run_scores_on_error():
    def boom(output, ex):
        raise KeyError("tool_calls")

    assert custom_scores(custom(boom)) == ({"calls": None}, "evaluator m.py:f raised KeyError: 'tool_calls'")
    undeclared = custom(lambda output, ex: {"precision": 1, "f2": 0}, scores={"precision": "maximize"})
    assert "returned undeclared score(s) ['f2']; declare them under scores" in custom_scores(undeclared)[1]
    assert custom_scores(custom(boom), error="RuntimeError: x") == ({"calls": None}, None)
    wrong = custom(boom, name="ok", direction="maximize", on_error=0.0)
    assert custom_scores(wrong, error="RuntimeError: x") == ({"ok": 0.0}, None)
