"""The offline answerer: a deterministic extractive chat model that stands in for the LLM.

It is a real LangChain chat model, so the workflow's node code is the same online and offline and
the recorder sees its token usage. It picks the context sentences that best match the question
(or, summarising, the articles' lead sentences), stops at ``max_tokens`` as a real model would,
and takes time like one: a fixed overhead plus a cost per input and per output token.
"""

from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Literal

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.outputs import ChatGeneration, ChatResult

from graphtune.graphs.support_qa.knowledge import count_tokens, split_sentences, words

MODEL_NAME = "graphtune-extractive"
_STOPWORDS = frozenset(
    "a an and are as at be but by can do does for from how i if in is it me my of on or our so that the their "
    "there this to was we what when where which who why will with you your".split()
)
_CONTEXT = re.compile(r"<context>\s*(.*?)\s*</context>", re.S)
_DOC = re.compile(r"^\[(?P<id>[^\]]+)\]\s*(?P<title>[^\n]*?)\n(?P<body>.*?)(?=^\[|\Z)", re.S | re.M)


class ExtractiveChatModel(BaseChatModel):
    mode: Literal["answer", "summary"] = "answer"
    max_tokens: int = 512
    relevance_floor: float = 0.5  # keep sentences scoring at least this share of the best one
    overhead_s: float = 0.02
    seconds_per_input_token: float = 0.00003
    seconds_per_output_token: float = 0.0004

    @property
    def _llm_type(self) -> str:
        return MODEL_NAME

    def _respond(self, messages: list[BaseMessage]) -> tuple[AIMessage, float]:
        prompt = "\n".join(str(m.content) for m in messages)
        question = next((str(m.content) for m in reversed(messages) if isinstance(m, HumanMessage)), "")
        match = _CONTEXT.search(prompt)
        docs = [(d["id"], d["body"].strip()) for d in _DOC.finditer(match.group(1))] if match else []
        sentences = self._summary(docs) if self.mode == "summary" else self._extract(question, docs)
        text, finish = self._truncate(" ".join(sentences) or "I could not find this in the help center.")
        input_tokens, output_tokens = count_tokens(prompt), count_tokens(text)
        usage = {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens}
        message = AIMessage(text, usage_metadata=usage, response_metadata={"model_name": MODEL_NAME, "finish_reason": finish})
        delay = self.overhead_s + input_tokens * self.seconds_per_input_token + output_tokens * self.seconds_per_output_token
        return message, delay

    def _extract(self, question: str, docs: list[tuple[str, str]]) -> list[str]:
        terms = {_stem(w) for w in words(question) if w not in _STOPWORDS}
        scored = []
        for rank, (_, body) in enumerate(docs):
            for position, sentence in enumerate(split_sentences(body)):
                overlap = terms & {_stem(w) for w in words(sentence)}
                if overlap:
                    scored.append((len(overlap) / (1 + 0.02 * len(sentence)) ** 0.5, rank, position, sentence))
        if not scored:
            return []
        best = max(s[0] for s in scored)
        kept = sorted((s for s in scored if s[0] >= self.relevance_floor * best), key=lambda s: (-s[0], s[1], s[2]))
        return [s[3] for s in kept]

    @staticmethod
    def _summary(docs: list[tuple[str, str]]) -> list[str]:
        if not docs:
            return []
        lead = split_sentences(docs[0][1])
        return lead[:2]

    def _truncate(self, text: str) -> tuple[str, str]:
        pieces = re.findall(r"\w+|[^\w\s]", text)
        if len(pieces) <= self.max_tokens:
            return text, "stop"
        # Cut at the token budget, as a model hitting max_tokens does.
        kept, seen = [], 0
        for word in text.split():
            seen += count_tokens(word)
            if seen > self.max_tokens:
                break
            kept.append(word)
        return " ".join(kept), "length"

    def _generate(self, messages, stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        message, delay = self._respond(messages)
        time.sleep(delay)
        return ChatResult(generations=[ChatGeneration(message=message)])

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs: Any) -> ChatResult:
        message, delay = self._respond(messages)
        await asyncio.sleep(delay)
        return ChatResult(generations=[ChatGeneration(message=message)])


def _stem(word: str) -> str:
    """A light suffix stripper: enough for 'refunds'/'refunded' to meet 'refund' in one sentence."""
    for suffix in ("ing", "ed", "es", "s"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word
