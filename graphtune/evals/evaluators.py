"""Evaluators: per-example scores from the workflow's output, the expected row and the run's cost.

Quality metrics (exact, contains, token_f1, retrieval_hit, judge) are ``None`` for unlabelled rows
and 0 for a run that failed: an error is a wrong answer. Bump ``EVALUATOR_VERSION`` whenever a
scoring rule changes, so cached results scored the old way are not reused.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, Field

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


def exact(answer: str, expected: dict) -> float | None:
    if "answer" not in expected:
        return None
    return float(normalize(answer) == normalize(str(expected["answer"])))


def contains(answer: str, expected: dict) -> float | None:
    """Share of the expected facts the answer states (the whole reference answer when no facts are given)."""
    facts = expected.get("facts") or ([expected["answer"]] if "answer" in expected else [])
    if not facts:
        return None
    text = normalize(answer)
    return sum(normalize(str(f)) in text for f in facts) / len(facts)


def token_f1(answer: str, expected: dict) -> float | None:
    if "answer" not in expected:
        return None
    predicted, truth = normalize(answer).split(), normalize(str(expected["answer"])).split()
    common = sum((Counter(predicted) & Counter(truth)).values())
    if not predicted or not truth or not common:
        return 0.0
    precision, recall = common / len(predicted), common / len(truth)
    return 2 * precision * recall / (precision + recall)


def retrieval_hit(sources: list[str] | None, expected: dict) -> float | None:
    """Share of the expected source documents among those retrieved (recall)."""
    wanted = expected.get("sources")
    if not wanted:
        return None
    found = set(sources or [])
    return sum(s in found for s in wanted) / len(wanted)


def score(metrics: list[str], outcome: RunOutcome, expected: dict | None) -> dict[str, float | None]:
    """Every requested metric except ``judge`` (async, see ``judge_answer``)."""
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
