"""The bundled help-center knowledge: articles indexed with bm25s, the offline query rewriter, orders.

Everything is loaded once per process from ``graphtune/evals/data/support_qa`` and is read-only, so
every compiled graph (one per config version) shares one index.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from graphtune.extras import needs_extra

DATA_DIR = Path(__file__).resolve().parents[2] / "evals" / "data" / "support_qa"
_WORD = re.compile(r"[a-z0-9]+(?:[-'][a-z0-9]+)*")


@dataclass(frozen=True)
class Article:
    id: str
    title: str
    section: str
    body: str

    @property
    def sentences(self) -> list[str]:
        return split_sentences(self.body)


def split_sentences(text: str) -> list[str]:
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+(?=[A-Z0-9\"'])", text.strip()) if s.strip()]


def words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def count_tokens(text: str) -> int:
    """A tokenizer-free estimate (words and punctuation marks), stable across machines."""
    return len(re.findall(r"\w+|[^\w\s]", text))


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}:{number}: not valid JSON: {exc.msg}") from None
    return rows


class KnowledgeBase:
    """BM25 over title + body (English stopwords, Snowball stemming)."""

    def __init__(self, articles: list[Article]):
        with needs_extra("examples", "the support_qa example's retrieval"):
            import bm25s
            import Stemmer

        self.articles = articles
        self.by_id = {a.id: a for a in articles}
        self._stemmer = Stemmer.Stemmer("english")
        corpus = [f"{a.title}. {a.body}" for a in articles]
        self._retriever = bm25s.BM25()
        self._retriever.index(bm25s.tokenize(corpus, stopwords="en", stemmer=self._stemmer, show_progress=False), show_progress=False)
        self._bm25s = bm25s
        self._lock = threading.Lock()  # PyStemmer objects are not thread-safe; graphs run nodes in threads

    def search(self, query: str, k: int) -> list[tuple[Article, float]]:
        """The ``k`` best articles with their scores; articles that share no term are left out."""
        with self._lock:
            tokens = self._bm25s.tokenize([query], stopwords="en", stemmer=self._stemmer, show_progress=False, return_ids=False)
            if not tokens or not tokens[0]:
                return []
            k = max(1, min(k, len(self.articles)))
            ids, scores = self._retriever.retrieve(tokens, k=k, show_progress=False, n_threads=0)  # 0: no thread pool per query
        return [(self.articles[int(i)], float(s)) for i, s in zip(ids[0], scores[0]) if s > 0]

    def stem(self, text: str) -> set[str]:
        with self._lock:
            return set(self._stemmer.stemWords(words(text)))


@cache
def knowledge_base() -> KnowledgeBase:
    return KnowledgeBase([Article(r["id"], r["title"], r.get("section", ""), r["body"]) for r in _read_jsonl(DATA_DIR / "corpus.jsonl")])


@cache
def synonyms() -> dict[str, str]:
    return json.loads((DATA_DIR / "synonyms.json").read_text(encoding="utf-8"))


@cache
def orders() -> dict[str, dict]:
    return {row["order_id"]: row for row in _read_jsonl(DATA_DIR / "orders.jsonl")}


def expand_query(query: str) -> str:
    """The offline rewriter: append the help-center terms for everyday words the customer used."""
    table = synonyms()
    extra = [table[w] for w in dict.fromkeys(words(query)) if w in table]
    return f"{query} {' '.join(extra)}" if extra else query
