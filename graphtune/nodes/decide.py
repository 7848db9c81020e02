"""The controller's decide step: compare the evaluated candidates, pick the best, choose the next step.

Pure computation over state (``graphtune.tuning.decision``), so the node is sync and re-runs give the
same answer. It writes ``decision`` and a short progress message; ``route_after_decide`` turns the
decision into the next node: another round re-observes, or the best candidate goes to approval.
"""

from __future__ import annotations

from typing import Literal

from langchain_core.messages import AIMessage
from langgraph.runtime import Runtime

from graphtune.graphs.context import ControllerContext
from graphtune.graphs.state import ControllerState
from graphtune.tuning.decision import decide
from graphtune.tuning.report import format_decision

ROUTES: dict[str, Literal["observe", "approve", "finish"]] = {"propose": "observe", "approve": "approve", "finish": "finish"}


def decide_node(state: ControllerState, runtime: Runtime[ControllerContext] | None = None) -> dict:
    decision = decide(dict(state))
    return {"decision": decision.model_dump(mode="json"),
            "messages": [AIMessage(content=format_decision(decision), name="decide")]}


def route_after_decide(state: ControllerState) -> Literal["observe", "approve", "finish"]:
    """``propose`` maps to ``observe``: a new round looks at fresh evidence before proposing again."""
    decision = state.get("decision") or {}
    return ROUTES.get(decision.get("next", "finish"), "finish")
