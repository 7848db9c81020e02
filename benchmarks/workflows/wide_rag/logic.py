"""wide_rag's decisions, as pure functions: the graph's nodes and the replay both call these, so the
replay cannot drift from the graph.

The simulated world: each question is asked over a corpus of ``corpus_tokens`` tokens that holds the
question's facts, each a passage of ``tokens`` tokens at ``offset``. The corpus is cut into chunks of
``chunk_size`` tokens, each starting ``chunk_size - overlap`` after the previous one, so whether a fact
lands whole in one chunk is plain geometry: small chunks split long facts. Retrieval ranks the chunk
holding a fact among all the corpus's chunks: big chunks dilute the fact (a weaker match), small
chunks mean many more competitors. An optional reranker reorders the retrieved chunks and keeps the
best few. The answer model has an 8k-token window (prompt plus ``max_tokens``; overflowing it is an
error, as a hosted model's API refuses the request), uses the facts in its context less reliably as
the context grows, and states the facts it uses one after another, so a small ``max_tokens`` cuts the
later ones off. Every hidden property is a keyed draw (``_sim``) on the question id, computed once per
question.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from langchain_core.messages import HumanMessage, SystemMessage

from .._sim import Reply, lognormal_ms, normal, unit

MODEL = "sim-chat-8k"
WINDOW = 8192  # the answer model's context window: prompt + max_tokens
SYSTEM_TOKENS = 150  # instructions
HEADER_TOKENS = 6  # per context chunk ("[doc 12, chunk 40]")
STITCH = 0.3  # the model rebuilds a fact split over two chunks this often (when it has the piece)
PAD = 0.15  # told its token budget, the model pads its answer with this share of the unused budget

_SQRT2 = math.sqrt(2.0)


class Knobs(NamedTuple):
    chunk_size: int
    overlap: int
    top_k: int
    mode: str
    rerank: bool
    keep: int
    max_tokens: int
    temperature: float


def knobs(config: dict) -> Knobs:
    c, r, k, m = config["chunking"], config["retrieval"], config["rerank"], config["llm"]
    return Knobs(int(c["chunk_size"]), int(c["overlap"]), int(r["top_k"]), r["mode"], bool(k["enabled"]),
                 int(k["keep"]), int(m["max_tokens"]), float(m["temperature"]))


@dataclass(frozen=True)
class Fact:
    text: str
    offset: int  # where its passage starts in the corpus (tokens)
    tokens: int  # the passage's length
    words: int  # answer tokens the model spends stating it
    lexical: float  # how much the question shares its words (bm25 likes it; dense prefers paraphrase)
    z_bm25: float  # retrieval noise per mode, standard normal
    z_dense: float
    z_rerank: float
    use: float  # uniform: the model uses the fact when in context if use < p_use
    stitch: float  # uniform: a split fact is rebuilt if stitch < STITCH


@dataclass(frozen=True)
class World:
    qid: str
    question: str
    question_tokens: int
    corpus_tokens: int
    fill: float  # chunks end on sentence boundaries: mean share of chunk_size a chunk really holds
    facts: tuple[Fact, ...]
    intro: int  # answer tokens before the first fact
    bm25_ms: float
    dense_ms: float
    rerank_speed: float
    gen_speed: float


_WORLDS: dict[str, World] = {}


def world(inputs: dict) -> World:
    """The question's world, memoised per question id (the replay asks millions of times; ids are
    unique across dev and test)."""
    qid = inputs["qid"]
    hit = _WORLDS.get(qid)
    if hit is not None:
        return hit
    facts = tuple(
        Fact(text=f["text"], offset=int(f["offset"]), tokens=int(f["tokens"]),
             words=35 + int(115 * unit(qid, i, "words")), lexical=unit(qid, i, "lexical"),
             z_bm25=normal(qid, i, "bm25"), z_dense=normal(qid, i, "dense"), z_rerank=normal(qid, i, "rerank"),
             use=unit(qid, i, "use"), stitch=unit(qid, i, "stitch"))
        for i, f in enumerate(inputs["facts"]))
    made = World(qid=qid, question=inputs["question"], question_tokens=int(inputs["question_tokens"]),
                 corpus_tokens=int(inputs["corpus_tokens"]), fill=0.82 + 0.18 * unit(qid, "fill"), facts=facts,
                 intro=8 + int(22 * unit(qid, "intro")), bm25_ms=lognormal_ms(30, 0.25, qid, "bm25_ms"),
                 dense_ms=lognormal_ms(70, 0.3, qid, "dense_ms"), rerank_speed=lognormal_ms(1.0, 0.2, qid, "rerank_ms"),
                 gen_speed=lognormal_ms(1.0, 0.15, qid, "gen_ms"))
    _WORLDS[qid] = made
    return made


# -- chunk -------------------------------------------------------------------------------------------


class Chunked(NamedTuple):
    n_chunks: int
    stride: int
    ms: float


def chunk(w: World, k: Knobs) -> Chunked:
    """Cut the corpus into ``n_chunks`` chunks ``stride`` apart (overlap capped at half a chunk)."""
    stride = k.chunk_size - min(k.overlap, k.chunk_size // 2)
    n = 1 + max(0, -(-(w.corpus_tokens - k.chunk_size) // stride))
    return Chunked(n, stride, 3.0 + 0.012 * n)


# -- retrieve ----------------------------------------------------------------------------------------


class Hit(NamedTuple):
    fact: int  # index into World.facts
    rank: int  # 1 = best
    split: bool  # the fact's passage straddles a chunk boundary: this chunk holds only part of it


class Retrieved(NamedTuple):
    hits: tuple[Hit, ...]  # fact chunks among the retrieved, best first
    n: int  # chunks retrieved
    ms: float


def _tail(z: float) -> float:
    """P(a distractor chunk outscores a chunk of match strength z)."""
    return 0.5 * math.erfc(z / _SQRT2)


def retrieve(w: World, k: Knobs, c: Chunked) -> Retrieved:
    """Rank each fact's chunk among all chunks; keep those within top_k."""
    size, n = k.chunk_size, min(k.top_k, c.n_chunks)
    hits = []
    for i, f in enumerate(w.facts):
        start = min(f.offset // c.stride, c.n_chunks - 1) * c.stride  # the last chunk starting at or before it
        split = f.offset + f.tokens > start + size
        # a bigger chunk is a weaker match for the fact; a fragment carries only part of it
        match = -0.45 * math.log(size / f.tokens) if size > f.tokens else 0.0
        if split:
            match -= 0.6 + (0.8 * math.log(f.tokens / size) if f.tokens > size else 0.0)
        zb = 2.1 + 1.6 * (f.lexical - 0.5) + 0.8 * f.z_bm25
        zd = 2.4 - 0.9 * (f.lexical - 0.5) + 0.8 * f.z_dense
        z = match + (zb if k.mode == "bm25" else zd if k.mode == "dense" else max(zb, zd) + 0.25)
        rank = 1 + int((c.n_chunks - 1) * _tail(z))
        if rank <= n:
            hits.append(Hit(i, rank, split))
    hits.sort(key=lambda h: h.rank)
    base = w.bm25_ms if k.mode == "bm25" else w.dense_ms if k.mode == "dense" else max(w.bm25_ms, w.dense_ms) + 8.0
    return Retrieved(tuple(hits), n, base + 0.4 * n)


# -- rerank ------------------------------------------------------------------------------------------


class Context(NamedTuple):
    hits: tuple[Hit, ...]  # fact chunks in the answer's context
    n: int  # chunks in the context
    ms: float  # the reranker's time (0 without it)


def rerank(w: World, k: Knobs, r: Retrieved) -> Context:
    """A cross-encoder reads every retrieved chunk (its time grows with their tokens) and keeps ``keep``."""
    size = k.chunk_size
    hits = []
    for h in r.hits:
        f = w.facts[h.fact]
        z = 2.3 + 0.7 * f.z_rerank - (0.3 * math.log(size / f.tokens) if size > f.tokens else 0.0)
        if h.split:
            z -= 0.8
        rank = 1 + int((r.n - 1) * _tail(z))
        if rank <= k.keep:
            hits.append(Hit(h.fact, rank, h.split))
    tokens = r.n * min(size, w.corpus_tokens)
    ms = w.rerank_speed * (40.0 + 0.012 * tokens)
    return Context(tuple(sorted(hits, key=lambda h: h.rank)), min(k.keep, r.n), ms)


def no_rerank(r: Retrieved) -> Context:
    return Context(r.hits, r.n, 0.0)


# -- generate ----------------------------------------------------------------------------------------


def chunk_tokens(w: World, k: Knobs) -> int:
    return round(min(k.chunk_size, w.corpus_tokens) * w.fill)


def prompt_tokens(w: World, k: Knobs, ctx: Context) -> int:
    return SYSTEM_TOKENS + w.question_tokens + ctx.n * (chunk_tokens(w, k) + HEADER_TOKENS)


def overflow(w: World, k: Knobs, ctx: Context) -> str | None:
    """The API's refusal when prompt + max_tokens exceed the window (None when it fits)."""
    prompt = prompt_tokens(w, k, ctx)
    if prompt + k.max_tokens <= WINDOW:
        return None
    return (f"This model's maximum context length is {WINDOW} tokens. However, you requested "
            f"{prompt + k.max_tokens} tokens ({prompt} in the messages, {k.max_tokens} in the completion).")


def prompt(w: World, ctx: Context) -> list:
    """The answer model's messages: the context (fact chunks shown by their fact, the rest summarised) and
    the question. The question message carries the question id and the context for the scripted model."""
    shown = []
    for h in ctx.hits:
        text = w.facts[h.fact].text
        shown.append(f"[chunk {h.rank}] ... {text[: len(text) // 2] if h.split else text} ...")
    others = ctx.n - len(ctx.hits)
    text = "Answer from these manual excerpts only; state every relevant fact.\n" + "\n".join(shown)
    if others > 0:
        text += f"\n({others} more excerpts without the asked facts)"
    return [SystemMessage(text), HumanMessage(w.question, additional_kwargs={"qid": w.qid, "context": ctx})]


def respond(k: Knobs, messages: list) -> Reply:
    """The scripted answer model (its settings bound): the reply to the prompt ``prompt`` built."""
    meta = messages[-1].additional_kwargs
    return answer(_WORLDS[meta["qid"]], k, meta["context"])


def answer(w: World, k: Knobs, ctx: Context) -> Reply:
    """The answer model's reply. Facts are stated in their order; one that would end past max_tokens is
    cut off. Raises ValueError on a context overflow."""
    refusal = overflow(w, k, ctx)
    if refusal:
        raise ValueError(refusal)
    prompt = prompt_tokens(w, k, ctx)
    context = prompt - SYSTEM_TOKENS - w.question_tokens
    p_use = 0.98 - 0.02 * k.temperature - 0.3 * (context / WINDOW) ** 2
    verbose = 1.0 + 0.08 * k.temperature
    present = {h.fact for h in ctx.hits if not h.split or w.facts[h.fact].stitch < STITCH}
    stated, position, cut = [], w.intro, None
    for i, f in enumerate(w.facts):
        if i in present and f.use < p_use:
            position += round(f.words * verbose)
            if position > k.max_tokens:
                cut = f.text.split()
                break
            stated.append(f.text)
    if cut is not None:  # the reply stops mid-fact at max_tokens
        text = "From the manuals: " + "".join(s + "; " for s in stated) + " ".join(cut[: len(cut) // 2])
        out = k.max_tokens
    else:
        text = "From the manuals: " + "; ".join(stated) + "." if stated else "The retrieved passages do not say."
        needed = position + 12 if stated else 25
        out = min(k.max_tokens, needed + round(PAD * max(0, k.max_tokens - needed)))
    ms = w.gen_speed * (250.0 + 0.05 * prompt) + 14.0 * out
    return Reply(text=text, input_tokens=prompt, output_tokens=out, ms=ms)
