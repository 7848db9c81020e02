"""graphtune: record, observe and tune LangGraph workflows."""

from graphtune.active import active_config
from graphtune.backends.traces import EventQuery, TraceStore, open_trace_store
from graphtune.nodes.trajectory import TrajectoryNode, TrajectoryState
from graphtune.tracing.events import EventKind, NodeStats, TrajectoryEvent
from graphtune.tracing.recorder import TrajectoryRecorder, default_recorder, run_tags, trace

__all__ = [
    "EventKind",
    "EventQuery",
    "NodeStats",
    "TraceStore",
    "TrajectoryEvent",
    "TrajectoryNode",
    "TrajectoryRecorder",
    "TrajectoryState",
    "active_config",
    "default_recorder",
    "open_trace_store",
    "run_tags",
    "trace",
]
