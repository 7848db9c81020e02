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
