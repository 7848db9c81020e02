"""What every suite workflow simulates with: hash-seeded draws, simulated time and a scripted chat model.

The suite workflows stand in for real services and models, and every draw is a pure function of its
key (the example id, the config values that matter, the attempt number): a config's score on an
example can be replayed exactly by the workflow's ``replay`` function, without running the graph.

Time is simulated: each service call or model reply has a simulated duration in milliseconds. The
graph really waits for it (``wait``), scaled by ``SIM_TIME_SCALE`` (default 1; tests use less), and
adds it to the state's ``sim_ms``, so a run's simulated latency is exact and its measured latency is
at least the simulated one times the scale. Decisions (a timeout, a failure) are made on simulated
values, never on the clock.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import operator
import os
from dataclasses import dataclass, field
from typing import Annotated, Any, Callable

from langchain_core.language_models.chat_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult

SCALE_ENV = "SIM_TIME_SCALE"

SimMs = Annotated[float, operator.add]
"""The state field type of ``sim_ms``: every node returns the simulated milliseconds it took."""


def unit(*key: Any) -> float:
    """A uniform draw in [0, 1), fixed by its key."""
    digest = hashlib.sha256("\x1f".join(map(str, key)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def normal(*key: Any) -> float:
    """A standard normal draw fixed by its key (Box-Muller on two keyed uniforms)."""
    u1 = max(unit(*key, "n1"), 1e-12)
    return math.sqrt(-2.0 * math.log(u1)) * math.cos(2.0 * math.pi * unit(*key, "n2"))


def lognormal_ms(median_ms: float, sigma: float, *key: Any) -> float:
    """A latency with a long right tail, as services have: median ``median_ms``, log-sd ``sigma``."""
    return median_ms * math.exp(sigma * normal(*key))


def chance(p: float, *key: Any) -> bool:
    """True with probability ``p``, fixed by its key."""
    return unit(*key) < p


def pick(options: list, *key: Any):
    return options[int(unit(*key) * len(options))]


def time_scale() -> float:
    """Real seconds per simulated second (``SIM_TIME_SCALE``, default 1)."""
    try:
        return max(0.0, float(os.environ.get(SCALE_ENV, "1")))
    except ValueError:
        return 1.0


async def wait(ms: float) -> None:
    """Wait for ``ms`` simulated milliseconds (scaled)."""
    seconds = ms / 1000.0 * time_scale()
    if seconds > 0:
        await asyncio.sleep(seconds)


@dataclass
class Step:
    """One node execution as a recorder would see it."""

    node: str
    ms: float
    error: str | None = None  # "TypeName: message" when the node raised
    attributes: dict[str, Any] = field(default_factory=dict)  # e.g. {"tool": "crm", "attempts": 3}


@dataclass
class Replayed:
    """A run of the workflow on one example, computed without running the graph.

    ``output`` holds what the spec's ``evals.output`` paths read from the final state; ``latency_ms``
    is the run's simulated duration (the graph's final ``sim_ms``); ``error`` the exception that
    escaped the graph, as ``"TypeName: message"``; tokens are what the workflow's chat models report
    (``model`` names them for pricing). ``steps`` are the node executions in order.
    """

    output: dict[str, Any]
    latency_ms: float
    steps: list[Step] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    model: str | None = None
    error: str | None = None


@dataclass
class Reply:
    """What a scripted chat model answers: text, token counts and how long it takes (simulated ms)."""

    text: str
    input_tokens: int
    output_tokens: int
    ms: float
    tool_calls: list[dict] = field(default_factory=list)


class ScriptedChatModel(BaseChatModel):
    """A real LangChain chat model whose reply is a pure function of the prompt: the recorder and the
    eval runner see its token usage and model name exactly as they would a hosted model's."""

    model_name: str = "sim-model"
    respond: Callable[[list[BaseMessage]], Reply]

    @property
    def _llm_type(self) -> str:
        return self.model_name

    def _message(self, reply: Reply) -> AIMessage:
        usage = {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens,
                 "total_tokens": reply.input_tokens + reply.output_tokens}
        return AIMessage(reply.text, tool_calls=reply.tool_calls, usage_metadata=usage,
                         response_metadata={"model_name": self.model_name, "sim_ms": reply.ms})

    def _generate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        import time

        reply = self.respond(messages)
        time.sleep(reply.ms / 1000.0 * time_scale())
        return ChatResult(generations=[ChatGeneration(message=self._message(reply))])

    async def _agenerate(self, messages, stop=None, run_manager=None, **kwargs) -> ChatResult:
        reply = self.respond(messages)
        await wait(reply.ms)
        return ChatResult(generations=[ChatGeneration(message=self._message(reply))])
