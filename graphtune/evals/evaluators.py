"""Evaluators: per-example scores from the workflow's output, the expected row and the run's cost.

Quality metrics (exact, contains, token_f1, retrieval_hit, judge) are ``None`` for unlabelled rows
and 0 for a run that failed: an error is a wrong answer. The same comparisons apply to any output
field and expected field (a spec's field metrics), and a spec may name evaluators of its own.
Bump ``EVALUATOR_VERSION`` whenever a scoring rule changes, so cached results scored the old way are
not reused; ``evaluator_version`` adds what the spec's own metrics depend on.
"""

from __future__ import annotations

import hashlib
import inspect
import math
import re
import string
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, Field

from graphtune.spec import CustomMetric, FieldMetric

if TYPE_CHECKING:
    from graphtune.evals.datasets import Example
    from graphtune.spec import WorkflowSpec

EVALUATOR_VERSION = "1"
QUALITY = ("exact", "contains", "token_f1", "retrieval_hit", "judge")


@dataclass
class RunOutcome:
    """What one example's run produced and cost."""

    answer: str | None
    sources: list[str] | None
    latency_ms: float
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def normalize(text: str) -> str:
    text = text.lower().translate(str.maketrans("", "", string.punctuation))
    return " ".join(w for w in text.split() if w not in ("a", "an", "the"))


def read_output(state: Any, path: str | None) -> Any:
    """A dotted path into the final state; integers index lists (``messages.-1.content``)."""
    if path is None:
        return None
    node = state
    for part in path.split("."):
        if node is None:
            return None
        if isinstance(node, dict):
            node = node.get(part)
        elif isinstance(node, (list, tuple)):
            try:
                node = node[int(part)]
            except (ValueError, IndexError):
                return None
        else:
            node = getattr(node, part, None)
    return node


# --- comparisons of one output value with one reference value ---------------------------------------


def same_text(output: Any, reference: Any) -> float:
    return float(normalize(str(output)) == normalize(str(reference)))


def facts_stated(output: Any, facts: list) -> float:
    """Share of the facts the text states."""
    text = normalize(str(output))
    return sum(normalize(str(f)) in text for f in facts) / len(facts)


def overlap_f1(output: Any, reference: Any) -> float:
    predicted, truth = normalize(str(output)).split(), normalize(str(reference)).split()
    common = sum((Counter(predicted) & Counter(truth)).values())
    if not predicted or not truth or not common:
        return 0.0
    precision, recall = common / len(predicted), common / len(truth)
    return 2 * precision * recall / (precision + recall)


def recall(found: Any, wanted: list) -> float:
    """Share of the wanted items among those found."""
    found = set(_as_list(found))
    return sum(w in found for w in wanted) / len(wanted)


def _as_list(value: Any) -> list:
    return [] if value is None else list(value) if isinstance(value, (list, tuple, set)) else [value]


# --- the built-in metrics -------------------------------------------------------------------------


def exact(answer: str, expected: dict) -> float | None:
    if "answer" not in expected:
        return None
    return same_text(answer, expected["answer"])


def contains(answer: str, expected: dict) -> float | None:
    """Share of the expected facts the answer states (the whole reference answer when no facts are given)."""
    facts = expected.get("facts") or ([expected["answer"]] if "answer" in expected else [])
    if not facts:
        return None
    return facts_stated(answer, facts)


def token_f1(answer: str, expected: dict) -> float | None:
    if "answer" not in expected:
        return None
    return overlap_f1(answer, expected["answer"])


def retrieval_hit(sources: list[str] | None, expected: dict) -> float | None:
    """Share of the expected source documents among those retrieved (recall)."""
    wanted = expected.get("sources")
    if not wanted:
        return None
    return recall(sources, wanted)


def score(metrics: list[str], outcome: RunOutcome, expected: dict | None) -> dict[str, float | None]:
    """Every requested built-in metric except ``judge`` (async, see ``judge_answer``)."""
    scores: dict[str, float | None] = {}
    answer = outcome.answer or ""
    for metric in metrics:
        if metric in QUALITY:
            if metric == "judge" or not expected:
                scores[metric] = None
            elif outcome.error is not None:
                scores[metric] = 0.0 if _applies(metric, expected) else None
            elif metric == "retrieval_hit":
                scores[metric] = retrieval_hit(outcome.sources, expected)
            else:
                scores[metric] = {"exact": exact, "contains": contains, "token_f1": token_f1}[metric](answer, expected)
        elif metric == "latency_ms":
            scores[metric] = outcome.latency_ms
        elif metric in ("input_tokens", "output_tokens"):
            scores[metric] = float(getattr(outcome, metric))
        elif metric == "total_tokens":
            scores[metric] = float(outcome.input_tokens + outcome.output_tokens)
        elif metric == "cost_usd":
            scores[metric] = outcome.cost_usd
        elif metric == "error":
            scores[metric] = float(outcome.error is not None)
    return scores


def _applies(metric: str, expected: dict) -> bool:
    if metric == "retrieval_hit":
        return bool(expected.get("sources"))
    if metric == "contains":
        return bool(expected.get("facts") or "answer" in expected)
    return "answer" in expected


def missing_outputs(spec: WorkflowSpec, outcome: RunOutcome) -> dict[str, str]:
    """Built-in quality metrics whose output field a successful run did not produce (scored as wrong)."""
    if outcome.error is not None:
        return {}
    notes = {}
    for metric in spec.evals.metric_names:
        if metric in QUALITY:
            absent, key = (outcome.sources is None, "sources") if metric == "retrieval_hit" else (outcome.answer is None, "answer")
            if absent:
                notes[metric] = f"the final state has no {getattr(spec.evals.output, key)!r} (evals.output.{key})"
    return notes


# --- the spec's own metrics -----------------------------------------------------------------------

FIELD_KINDS = {
    "exact": same_text,
    "contains": lambda output, reference: facts_stated(output, _as_list(reference)),
    "token_f1": overlap_f1,
    "retrieval_hit": lambda output, reference: recall(output, _as_list(reference)),
}


def field_score(metric: FieldMetric, state: Any, example: Example, error: str | None) -> tuple[float | None, str | None]:
    """(score, note): ``None`` when the row has no such expected field, 0 for a failed run or a missing
    output field (a wrong answer), with a note naming the missing field."""
    expected = example.expected or {}
    reference = expected.get(metric.expected)
    if reference is None or (metric.kind in ("contains", "retrieval_hit") and not _as_list(reference)):
        return None, None
    if error is not None:
        return 0.0, None
    output = read_output(state, metric.output)
    if output is None:
        return 0.0, f"the final state has no {metric.output!r}"
    return FIELD_KINDS[metric.kind](output, reference), None


async def custom_scores(metric: CustomMetric, folder, state: Any, example: Example,
                        error: str | None) -> tuple[dict[str, float | None], str | None]:
    """(scores, note): the evaluator's scores of one run; a raising or ill-typed evaluator leaves the row
    unscored with a note naming the error. A failed run is not passed to it and scores ``on_error``."""
    names = list(metric.directions())
    if error is not None:
        return dict.fromkeys(names, metric.on_error), None
    try:
        value = metric.function(folder)(state, example)
        if inspect.isawaitable(value):
            value = await value
        return _named_scores(metric, value), None
    except Exception as exc:  # the team's code: any failure is this row's note, never the end of the run
        return dict.fromkeys(names), f"evaluator {metric.evaluator} raised {type(exc).__name__}: {exc}"


def _named_scores(metric: CustomMetric, value: Any) -> dict[str, float | None]:
    if metric.name is not None:
        return {metric.name: _number(value, metric.name)}
    if not isinstance(value, Mapping):
        raise TypeError(f"returned {type(value).__name__}, expected a dict of {sorted(metric.scores)}")
    undeclared = sorted(set(value) - set(metric.scores))
    if undeclared:
        raise TypeError(f"returned undeclared score(s) {undeclared}; declare them under scores")
    return {name: _number(value.get(name), name) for name in metric.scores}


def _number(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise TypeError(f"returned {value!r} for {name}, expected a finite number or None")
    return float(value)


async def score_declared(spec: WorkflowSpec, state: Any, example: Example,
                         error: str | None) -> tuple[dict[str, float | None], dict[str, str]]:
    """Scores of the spec's field and custom metrics for one run, with a note per metric left without
    a usable score on this row."""
    scores: dict[str, float | None] = {}
    notes: dict[str, str] = {}
    for metric in spec.evals.declared:
        if isinstance(metric, FieldMetric):
            scores[metric.name], note = field_score(metric, state, example, error)
        else:
            found, note = await custom_scores(metric, spec.folder, state, example, error)
            scores.update(found)
        for name in metric.directions():
            if note:
                notes[name] = note
    return scores, notes


def evaluator_version(spec: WorkflowSpec) -> str:
    """``EVALUATOR_VERSION``, plus a digest of the spec's own metric declarations and the source files of
    its custom evaluators: a changed evaluator never reuses results cached under the old one."""
    if not spec.evals.declared:
        return EVALUATOR_VERSION
    digest = hashlib.sha256()
    for metric in spec.evals.declared:
        digest.update(metric.model_dump_json().encode())
        if isinstance(metric, CustomMetric):
            module = sys.modules.get(metric.function(spec.folder).__module__)
            source = getattr(module, "__file__", None)
            if source:
                with open(source, "rb") as file:
                    digest.update(file.read())
    return f"{EVALUATOR_VERSION}+{digest.hexdigest()[:12]}"


class Verdict(BaseModel):
    """The judge model's structured answer."""

    score: float = Field(ge=0, le=1, description="1 = fully correct and complete, 0 = wrong or missing")
    reason: str = Field(description="One sentence")


JUDGE_PROMPT = (
    "You grade a help assistant's answer against a reference answer. Score 1 when the answer states the "
    "reference's facts correctly, 0 when it is wrong or says nothing useful, in between when partly right.\n\n"
    "Question: {question}\nReference answer: {reference}\nAssistant's answer: {answer}"
)


async def judge_answer(model, question: str, answer: str, expected: dict, config: dict | None = None) -> float | None:
    """LLM-as-judge through ``ChatOpenAI`` structured output; only used when a model is configured."""
    if not expected or "answer" not in expected:
        return None
    prompt = JUDGE_PROMPT.format(question=question, reference=expected["answer"], answer=answer)
    verdict = await model.with_structured_output(Verdict).ainvoke(prompt, config)
    return float(verdict.score)


def question_of(inputs: dict) -> str:
    """Best-effort question text of a row's inputs, for the judge prompt."""
    if "question" in inputs:
        return str(inputs["question"])
    messages = inputs.get("messages") or []
    if messages:
        last = messages[-1]
        return str(last.get("content") if isinstance(last, dict) else last)
    return re.sub(r"\s+", " ", str(inputs))[:500]
