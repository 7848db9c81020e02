"""A tiny ticket-triage agent for metric tests: it assigns a team after looking the ticket up with a tool.

``agent.strategy`` sets how: ``guess`` makes no tool call and is wrong, ``verify`` makes two calls and
is right, ``exhaustive`` makes six and is right too. The final state lists the tool calls made, so a
spec's own evaluator can count them per task.
"""

from typing import TypedDict

from langgraph.graph import END, START, StateGraph

TEAMS = {"refund": "billing", "login": "accounts", "crash": "engineering"}
CALLS_PER_STRATEGY = {"guess": 0, "verify": 2, "exhaustive": 6}


class State(TypedDict, total=False):
    ticket: str
    tool_calls: list[str]
    assigned_team: str


def build_graph(config: dict):
    strategy = config["agent"]["strategy"]

    def triage(state: State) -> dict:
        calls = [f"lookup:{state['ticket']}"] * CALLS_PER_STRATEGY[strategy]
        team = "general" if strategy == "guess" else TEAMS.get(state["ticket"], "general")
        return {"tool_calls": calls, "assigned_team": team}

    graph = StateGraph(State)
    graph.add_node("triage", triage)
    graph.add_edge(START, "triage")
    graph.add_edge("triage", END)
    return graph.compile(name="triage_toy")
