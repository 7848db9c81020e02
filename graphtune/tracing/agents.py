"""Recording for prebuilt agents, through the same diff logic as TrajectoryNode.

- LangChain v1 ``create_agent``: ``middleware=[TrajectoryMiddleware()]`` (an ``after_model`` hook;
  the cursor lives in the agent's state, so it survives restarts).
- The older ``langgraph.prebuilt.create_react_agent``: ``post_model_hook=trajectory_post_model_hook()``.
"""

from __future__ import annotations

from typing import Any, NotRequired

from langchain.agents.middleware import AgentMiddleware, AgentState
from langgraph.config import get_config

from graphtune.nodes.trajectory import MessageTrajectory
from graphtune.tracing.recorder import TrajectoryRecorder


class TrajectoryAgentState(AgentState):
    graphtune_trajectory: NotRequired[dict[str, Any]]


class TrajectoryMiddleware(AgentMiddleware):
    """Records each model turn's new messages and tool calls after the model runs."""

    state_schema = TrajectoryAgentState

    def __init__(self, recorder: TrajectoryRecorder | None = None):
        super().__init__()
        self._trajectory = MessageTrajectory(recorder)

    def after_model(self, state, runtime) -> dict[str, Any] | None:
        return self._trajectory.record(state, _current_config()) or None

    def after_agent(self, state, runtime) -> dict[str, Any] | None:
        """Also catch the final tool results and anything after the last model call."""
        return self._trajectory.record(state, _current_config()) or None


def trajectory_post_model_hook(recorder: TrajectoryRecorder | None = None):
    """A ``post_model_hook`` node for ``create_react_agent`` that records new messages."""
    trajectory = MessageTrajectory(recorder)

    def graphtune_trajectory(state: dict[str, Any]) -> dict[str, Any]:
        trajectory.record(state, _current_config())
        return {}  # the react agent's state has no cursor key: the cursor stays in memory per thread

    return graphtune_trajectory


def _current_config() -> dict:
    try:
        return get_config()
    except RuntimeError:  # called outside a runnable context
        return {}
