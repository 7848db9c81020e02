"""The FAQ answer service's simulated world: the FAQ knowledge base and every decision of a run.

Both ``graph.py`` (the real LangGraph workflow) and ``replay.py`` (the same run as arithmetic) call
these pure functions, so the two cannot drift. Every draw is keyed by the request id (and the config
values that matter); a question's difficulty is shared by all models, so a more capable setup answers
a superset of what a weaker one answers, and accuracy comparisons between configs are tight.

One run: an optional answer cache (a hit replays what this pipeline answered for the same question
earlier, stale if the FAQ entry changed since), an index search (latency grows with ``top_k``; the
approximate index is fast but ranks worse and misses some entries; a search past its deadline
raises ``TimeoutError``), an optional reranker (slow, puts the right entry first and keeps the top
few, so the prompt is short and focused), then the answer model (time to first token grows with the
prompt, then per output token; ``max_tokens`` caps long replies but cuts answers whose fact comes late).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from .._sim import lognormal_ms, normal, pick, unit

# -- the FAQ knowledge base ---------------------------------------------------------------------------

CATEGORIES = ("headphones", "laptops", "phone cases", "smart watches", "cameras", "speakers", "tablets", "keyboards")
# topic -> (question paraphrases, answer lead, fact template, values; no value's text contains another's)
TOPICS = {
    "returns": (("How long do I have to return {c}?", "What is the return window for {c}?",
                 "Can I still send back {c} I bought a while ago?"),
                "The return window for {c} is", "{v} days", (14, 21, 30, 45, 60, 90)),
    "warranty": (("How long is the warranty on {c}?", "What warranty comes with {c}?",
                  "Are {c} covered if they break after a year?"),
                 "The warranty on {c} lasts", "{v} months", (12, 18, 24, 30)),
    "shipping": (("How fast is standard shipping for {c}?", "When will my {c} arrive with standard shipping?",
                  "How many days does delivery of {c} take?"),
                 "Standard shipping for {c} takes", "{v} business days", (2, 3, 4, 5, 7)),
    "restocking": (("Is there a restocking fee for {c}?", "How much is the restocking fee on returned {c}?",
                    "Do you charge anything when I return opened {c}?"),
                   "The restocking fee for opened {c} is", "{v} percent", (10, 15, 20, 25)),
}


@dataclass(frozen=True)
class Doc:
    id: str
    topic: str
    category: str
    questions: tuple[str, ...]
    lead: str
    fact: str  # the current answer
    old_fact: str  # what the entry said before its last update
    updated_ago_s: float  # when the entry last changed


def _doc(topic: str, category: str) -> Doc:
    questions, lead, template, values = TOPICS[topic]
    doc_id = f"faq-{topic}-{category.replace(' ', '-')}"
    value = pick(list(values), doc_id, "value")
    old = pick([v for v in values if v != value], doc_id, "old")
    return Doc(id=doc_id, topic=topic, category=category, questions=tuple(q.format(c=category) for q in questions),
               lead=lead.format(c=category), fact=template.format(v=value), old_fact=template.format(v=old),
               updated_ago_s=lognormal_ms(43200.0, 1.5, doc_id, "updated"))


DOCS: tuple[Doc, ...] = tuple(_doc(t, c) for t in TOPICS for c in CATEGORIES)
DOC_BY_QUESTION = {q: d for d in DOCS for q in d.questions}
DOC_IDS = tuple(d.id for d in DOCS)

# -- the services and models ------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    quality: float  # share of questions it answers right from a focused prompt
    first_token_ms: float
    prefill_ms: float  # per input token
    token_ms: float  # per output token
    verbosity: float  # reply length relative to the medium model


MODELS = {
    "swift-nano": ModelSpec(quality=0.70, first_token_ms=80, prefill_ms=0.05, token_ms=3.2, verbosity=0.85),
    "swift-mini": ModelSpec(quality=0.89, first_token_ms=170, prefill_ms=0.11, token_ms=6.5, verbosity=1.0),
    "swift-pro": ModelSpec(quality=0.95, first_token_ms=340, prefill_ms=0.24, token_ms=9.5, verbosity=1.25),
}
INDEXES = {"exact": (60.0, 22.0, 0.35), "approximate": (18.0, 3.0, 0.30)}  # base ms, ms per hit, log-sd
SEARCH_DEADLINE_MS = 800.0
APPROX_MISS = 0.01  # the approximate index never returns the entry
RERANK_KEEP = 3
RERANK_MS = (30.0, 8.0, 0.25)  # base ms, ms per candidate, log-sd
CACHE_MS = 4.0
REPEAT_SHARE = 0.55  # share of questions some customer asked before (a cache candidate)
PROMPT_TOKENS = 70
DOC_TOKENS = 160
FACT_TOKENS = 4
STREAM_MS = (10.0, 0.25)  # streaming overhead: fixed, per output token


@dataclass(frozen=True)
class Config:
    index: str
    top_k: int
    rerank: bool
    model: str
    max_tokens: int
    stream: bool
    cache: bool
    ttl_s: float

    @classmethod
    def of(cls, config: dict) -> Config:
        r, llm, cache = config["retrieval"], config["llm"], config["cache"]
        return cls(r["index"], int(r["top_k"]), bool(config["rerank"]["enabled"]), llm["model"], int(llm["max_tokens"]),
                   bool(llm["stream"]), bool(cache["enabled"]), float(cache["ttl_s"]))


@dataclass(frozen=True)
class Request:
    """A request's fixed draws (its question's hardness, where the right entry ranks, when it was asked before)."""

    id: str
    question: str
    doc: Doc
    difficulty: float
    rank_exact: int
    rank_approx: int | None  # None: the approximate index misses the entry
    asked_ago_s: float | None  # None: a first-time question


@lru_cache(maxsize=None)
def request(request_id: str, question: str) -> Request:
    rank = 1 + int(-math.log(1.0 - unit(request_id, "rank")) * 2.2)
    approx = None
    if not unit(request_id, "approx-miss") < APPROX_MISS:
        approx = rank + int(unit(request_id, "approx-shift") * 8)
    asked = None
    if unit(request_id, "repeat") < REPEAT_SHARE:
        asked = lognormal_ms(1200.0, 1.6, request_id, "asked")
    return Request(request_id, question, DOC_BY_QUESTION[question], unit(request_id, "difficulty"), rank, approx, asked)


@lru_cache(maxsize=None)
def ranking(req: Request, index: str) -> tuple[str, ...]:
    """The index's 20 best entries for the request, best first."""
    rank = req.rank_exact if index == "exact" else req.rank_approx
    others = [d for d in DOC_IDS if d != req.doc.id]
    order = sorted(others, key=lambda d: unit(req.id, index, d))
    if rank is not None and rank <= 20:
        order.insert(rank - 1, req.doc.id)
    return tuple(order[:20])


@lru_cache(maxsize=None)
def search_ms(request_id: str, index: str, top_k: int) -> float:
    base, per_hit, sigma = INDEXES[index]
    return lognormal_ms(base + per_hit * top_k, sigma, request_id, "search", index)


def search(cfg: Config, req: Request) -> tuple[tuple[str, ...], float, str | None]:
    """(entries found, ms waited, error): a search past the deadline waits the deadline and fails."""
    ms = search_ms(req.id, cfg.index, cfg.top_k)
    if ms > SEARCH_DEADLINE_MS:
        return (), SEARCH_DEADLINE_MS, f"index search did not answer within {SEARCH_DEADLINE_MS / 1000:.2f} s"
    return ranking(req, cfg.index)[:cfg.top_k], ms, None


def rerank(cfg: Config, req: Request, docs: tuple[str, ...]) -> tuple[tuple[str, ...], float]:
    """The reranker scores every candidate: the right entry goes first, the top few are kept."""
    base, per_doc, _ = RERANK_MS
    ms = (base + per_doc * len(docs)) * _rerank_noise(req.id)
    if req.doc.id in docs:
        docs = (req.doc.id,) + tuple(d for d in docs if d != req.doc.id)
    return docs[:RERANK_KEEP], ms


@lru_cache(maxsize=None)
def _rerank_noise(request_id: str) -> float:
    return math.exp(RERANK_MS[2] * normal(request_id, "rerank"))


@dataclass(frozen=True)
class Answer:
    text: str
    input_tokens: int
    output_tokens: int
    ms: float


@lru_cache(maxsize=None)
def _reply_shape(request_id: str, model: str) -> tuple[int, int, float]:
    """(tokens before the fact, whole reply length, first-token noise) as this model writes it."""
    spec = MODELS[model]
    fact_at = int(round(42.0 * spec.verbosity * math.exp(0.45 * normal(request_id, "fact-at", model))))
    length = int(round(70.0 * spec.verbosity * math.exp(0.6 * normal(request_id, "length", model))))
    return fact_at, max(length, fact_at + FACT_TOKENS + 4), math.exp(0.25 * normal(request_id, "first-token", model))


def answer(cfg: Config, req: Request, docs: tuple[str, ...]) -> Answer:
    """The model's reply from a prompt holding ``docs``: right when the entry is there and the question
    is within the model's reach (less so in a long prompt, or with the entry far down); cut at ``max_tokens``."""
    spec = MODELS[cfg.model]
    doc = req.doc
    if doc.id in docs:
        position = docs.index(doc.id)
        reach = spec.quality * (1.0 - 0.025 * (len(docs) - 1)) * (1.0 - 0.03 * position)
        right = req.difficulty < reach
    else:
        right = False
    value = doc.fact if right else _wrong(req)
    fact_at, length, noise = _reply_shape(req.id, cfg.model)
    input_tokens = PROMPT_TOKENS + len(req.question.split()) + DOC_TOKENS * len(docs)
    output_tokens = min(length, cfg.max_tokens)
    text = f"{doc.lead} {value}." if fact_at + FACT_TOKENS <= output_tokens else f"{doc.lead} ..."
    ms = spec.first_token_ms * noise + spec.prefill_ms * input_tokens + spec.token_ms * output_tokens
    if cfg.stream:
        ms += STREAM_MS[0] + STREAM_MS[1] * output_tokens
    return Answer(text, input_tokens, output_tokens, ms)


@lru_cache(maxsize=None)
def _wrong(req: Request) -> str:
    _, _, template, values = TOPICS[req.doc.topic]
    wrong = [template.format(v=v) for v in values]
    return pick([w for w in wrong if w != req.doc.fact], req.id, "wrong")


def cache_hit(cfg: Config, req: Request) -> tuple[bool, bool]:
    """(hit, stale): a question asked within ``ttl_s`` is served from the cache; stale when its FAQ entry
    changed after the cached answer was written."""
    if req.asked_ago_s is None or req.asked_ago_s > cfg.ttl_s:
        return False, False
    return True, req.doc.updated_ago_s < req.asked_ago_s


def cached_answer(cfg: Config, req: Request) -> tuple[str, list[str]]:
    """What this pipeline answered when the question was first asked (the search then succeeded), with
    the entry's old value if it changed since."""
    docs = ranking(req, cfg.index)[:cfg.top_k]
    if cfg.rerank:
        docs, _ = rerank(cfg, req, docs)
    reply = answer(cfg, req, docs)
    _, stale = cache_hit(cfg, req)
    text = reply.text.replace(req.doc.fact, req.doc.old_fact) if stale else reply.text
    return text, list(docs)
