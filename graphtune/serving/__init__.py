"""Serving a workflow to live users: sticky routing by the config store's traffic split, one compiled
graph per config version, recorded production runs with their run tags, and checked user feedback.

``ServedWorkflow`` is what an application wraps its workflow in; ``LiveRouting`` is the routing part
alone, which the LangGraph server's graph factories use (``graphtune.graphs.served``).
"""

from graphtune.serving.feedback import FeedbackOutcome, FeedbackStats
from graphtune.serving.routing import (
    ASSIGNED_VARIANTS,
    OUTAGE_EVENT,
    RECOVERY_EVENT,
    VARIANT_BASELINE,
    VARIANT_CANDIDATE,
    VARIANT_UNASSIGNED,
    LiveRouting,
    Route,
    experiment_salt,
    shared_routing,
)
from graphtune.serving.workflow import ServedRun, ServedWorkflow, ServingStats

__all__ = [
    "ASSIGNED_VARIANTS", "OUTAGE_EVENT", "RECOVERY_EVENT", "VARIANT_BASELINE", "VARIANT_CANDIDATE", "VARIANT_UNASSIGNED",
    "FeedbackOutcome", "FeedbackStats", "LiveRouting", "Route", "ServedRun", "ServedWorkflow", "ServingStats",
    "experiment_salt", "shared_routing",
]
