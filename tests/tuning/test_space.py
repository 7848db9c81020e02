import pytest
from pydantic import ValidationError

from graphtune.tuning.config_paths import config_diff, config_hash, format_diff, get_path, set_path
from graphtune.tuning.mutations import Candidate, InvalidCandidate, Mutation, apply_mutations, build_candidate, check_candidate
from graphtune.tuning.space import SearchSpace

CONFIG = {
    "llm": {"temperature": 0.2, "max_tokens": 512},
    "rag": {"top_k": 4, "rerank": False},
    "nodes": {"qa_agent": {"enabled": True}, "qa_with_tool_agent": {"enabled": False}},
    "router": {"summary_keywords": ["summarize", "overview"]},
    "prompts": {"answer": "Use {context}"},
}
SPACE = SearchSpace.model_validate({
    "tunables": {
        "llm.temperature": {"type": "float", "low": 0, "high": 1, "step": 0.1, "requires_model": True},
        "llm.max_tokens": {"type": "int", "low": 16, "high": 1024, "log": True},
        "rag.top_k": {"type": "int", "low": 1, "high": 10},
        "rag.rerank": {"type": "bool"},
        "nodes.qa_agent.enabled": {"type": "bool"},
        "nodes.qa_with_tool_agent.enabled": {"type": "bool"},
        "router.summary_keywords": {"type": "choice", "values": [["summarize", "overview"], ["summarize", "overview", "recap"]]},
        "prompts.answer": {"type": "text", "placeholders": ["{context}"], "max_length": 50},
    },
    "constraints": [{"type": "exactly_one", "paths": ["nodes.qa_agent.enabled", "nodes.qa_with_tool_agent.enabled"]}],
})


def candidate(**changes):
    return Candidate(mutations=[Mutation(path=p.replace("__", "."), value=v) for p, v in changes.items()], rationale="test")


def codes(rejections):
    return [r.code for r in rejections]


def test_valid_candidate_applies_without_touching_the_base():
    new = build_candidate(SPACE, CONFIG, candidate(rag__top_k=8, rag__rerank=True))
    assert new["rag"] == {"top_k": 8, "rerank": True}
    assert CONFIG["rag"]["top_k"] == 4
    assert format_diff(config_diff(CONFIG, new)) == "rag.rerank: false -> true\nrag.top_k: 4 -> 8"


@pytest.mark.parametrize("changes, code, words", [
    ({"rag__topk": 3}, "unknown_path", "did you mean rag.top_k"),
    ({"rag__top_k": 11}, "out_of_range", "[1, 10]"),
    ({"rag__top_k": 2.5}, "wrong_type", "an integer"),
    ({"rag__top_k": True}, "wrong_type", "an integer"),
    ({"llm__temperature": "hot"}, "wrong_type", "a finite number"),
    ({"llm__temperature": 0.25}, "off_step", "multiple of 0.1"),
    ({"rag__rerank": "yes"}, "wrong_type", "true or false"),
    ({"router__summary_keywords": ["tl;dr"]}, "not_allowed", "one of"),
    ({"prompts__answer": "no placeholder"}, "not_allowed", "{context}"),
    ({"prompts__answer": "{context}" + "x" * 60}, "out_of_range", "at most 50 characters"),
])
def test_rejections_name_the_path_and_what_was_expected(changes, code, words):
    rejections = check_candidate(SPACE, CONFIG, candidate(**changes))
    assert codes(rejections) == [code]
    assert words in rejections[0].message
    assert rejections[0].path == next(iter(changes)).replace("__", ".")


def test_constraint_violation_is_reported_on_the_resulting_config():
    rejections = check_candidate(SPACE, CONFIG, candidate(nodes__qa_with_tool_agent__enabled=True))
    assert codes(rejections) == ["constraint"]
    assert "exactly one of nodes.qa_agent.enabled, nodes.qa_with_tool_agent.enabled" in rejections[0].message
    swapped = candidate(nodes__qa_with_tool_agent__enabled=True, nodes__qa_agent__enabled=False)
    assert check_candidate(SPACE, CONFIG, swapped) == []


def test_model_only_tunables_are_refused_offline():
    rejections = check_candidate(SPACE, CONFIG, candidate(llm__temperature=0.5), model_available=False)
    assert codes(rejections) == ["needs_model"]
    assert "llm.temperature" not in SPACE.available(model_available=False)
    assert check_candidate(SPACE, CONFIG, candidate(llm__temperature=0.5), model_available=True) == []


def test_duplicate_and_no_op_candidates_are_rejected():
    dup = Candidate(mutations=[Mutation(path="rag.top_k", value=3), Mutation(path="rag.top_k", value=5)])
    assert "duplicate_path" in codes(check_candidate(SPACE, CONFIG, dup))
    assert "changes nothing" in check_candidate(SPACE, CONFIG, candidate(rag__top_k=4))[0].message


def test_invalid_candidate_lists_every_reason():
    with pytest.raises(InvalidCandidate) as info:
        build_candidate(SPACE, CONFIG, candidate(rag__top_k=0, rag__rerank=1))
    assert len(info.value.rejections) == 2
    assert "rag.top_k" in str(info.value) and "rag.rerank" in str(info.value)


def test_empty_candidate_is_a_validation_error():
    with pytest.raises(ValidationError):
        Candidate(mutations=[])


def test_domains_reject_impossible_bounds():
    for bad in ({"type": "int", "low": 5, "high": 1}, {"type": "float", "low": 0, "high": 1, "log": True},
                {"type": "float", "low": 0, "high": 1, "step": 0}, {"type": "choice", "values": []}):
        with pytest.raises(ValidationError):
            SearchSpace.model_validate({"tunables": {"x": bad}})


def test_check_covers_finds_missing_and_out_of_domain_defaults():
    config = set_path(CONFIG, "rag.top_k", 40)
    del config["rag"]["rerank"]
    problems = SPACE.check_covers(config)
    assert any("rag.rerank has no value" in p for p in problems)
    assert any("rag.top_k" in p and "[1, 10]" in p for p in problems)


def test_hash_ignores_key_order_and_diff_reports_added_and_removed_leaves():
    reordered = {k: CONFIG[k] for k in reversed(list(CONFIG))}
    assert config_hash(reordered) == config_hash(CONFIG)
    assert config_hash(set_path(CONFIG, "rag.top_k", 5)) != config_hash(CONFIG)
    changed = set_path(CONFIG, "rag.new_knob", 1)
    assert config_diff(CONFIG, changed) == [("rag.new_knob", None, 1)]
    assert get_path(changed, "rag.new_knob") == 1
    assert apply_mutations(CONFIG, []) == CONFIG


@pytest.mark.parametrize("scope, expected", [
    ([], set(SPACE.tunables)),
    (["rag"], {"rag.top_k", "rag.rerank"}),
    (["rag.*"], {"rag.top_k", "rag.rerank"}),
    (["rag.top_k", "llm"], {"rag.top_k", "llm.temperature", "llm.max_tokens"}),
    (["ra"], set()),  # a prefix matches whole path segments only
    (["*"], set(SPACE.tunables)),
])
def test_restricted_keeps_the_tunables_in_scope(scope, expected):
    assert set(SPACE.restricted(scope).tunables) == expected


def test_restricted_keeps_constraints_that_touch_the_scope():
    assert SPACE.restricted(["rag"]).constraints == []
    nodes = SPACE.restricted(["nodes.qa_agent.enabled"])
    assert len(nodes.constraints) == 1
    # the out-of-scope half of the rule keeps its value, so turning the only answer node off is refused
    rejections = check_candidate(nodes, CONFIG, candidate(nodes__qa_agent__enabled=False))
    assert codes(rejections) == ["constraint"]
    assert codes(nodes.restricted([]).check_config(CONFIG)) == []


def test_restricted_refuses_paths_outside_the_scope_and_leaves_the_space_alone():
    rag = SPACE.restricted(["rag"])
    assert codes(check_candidate(rag, CONFIG, candidate(llm__max_tokens=64))) == ["unknown_path"]
    assert "llm.max_tokens" in SPACE.tunables
