"""A scripted chat model for tests: answers with prepared ``AIMessage``s, tool calls and token usage.

langchain_core's fake chat models raise on ``bind_tools``; this one returns itself, so agents and
``ToolNode`` loops can drive it. Each call returns a fresh copy of the next scripted message (the
chat model layer stamps ids onto messages it returns; copies keep the script reusable), and the
model remembers the messages it was called with.
"""

from __future__ import annotations

import contextlib
from typing import Any

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult


class ScriptedChatModel(FakeMessagesListChatModel):
    """Replies with ``responses`` in order; raises once the script is exhausted (no silent cycling)."""

    model_name: str = "scripted-model"
    calls: list[list[BaseMessage]] = []

    def bind_tools(self, tools: Any, **kwargs: Any) -> ScriptedChatModel:  # type: ignore[override]
        return self

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        self.calls.append(list(messages))
        if self.i >= len(self.responses):
            raise AssertionError(f"scripted model called {self.i + 1} times, only {len(self.responses)} replies scripted")
        response = self.responses[self.i].model_copy(deep=True)
        self.i += 1
        return ChatResult(generations=[ChatGeneration(message=response)])

    @property
    def _llm_type(self) -> str:
        return "scripted-chat-model"


def usage(input_tokens: int, output_tokens: int) -> dict[str, int]:
    return {"input_tokens": input_tokens, "output_tokens": output_tokens, "total_tokens": input_tokens + output_tokens}


def ai(content: str = "", *, tool_calls: list[dict] | None = None, tokens: tuple[int, int] | None = None, **kw: Any) -> AIMessage:
    """An AIMessage; ``tool_calls`` entries are ``{"name", "args", "id"}`` dicts."""
    calls = [{"type": "tool_call", **c} for c in (tool_calls or [])]
    extra: dict[str, Any] = {"usage_metadata": usage(*tokens)} if tokens else {}
    return AIMessage(content=content, tool_calls=calls, **extra, **kw)


def scripted(*responses: AIMessage, model_name: str = "scripted-model") -> ScriptedChatModel:
    return ScriptedChatModel(responses=list(responses), model_name=model_name, calls=[])


@contextlib.contextmanager
def counted_acquires(limiter):
    """Count the turns asked of a LangChain rate limiter (``aacquire``) while the block runs."""
    asked: list[int] = []
    original = limiter.aacquire

    async def counting(*args, **kwargs):
        asked.append(1)
        return await original(*args, **kwargs)

    limiter.aacquire = counting
    try:
        yield asked
    finally:
        del limiter.aacquire
