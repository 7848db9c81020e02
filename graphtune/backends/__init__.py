"""Storage behind small protocols: trace stores now; config and experiment stores join them."""

from graphtune.backends.traces import EventQuery, TraceStore, UnknownBackendError, open_trace_store

__all__ = ["EventQuery", "TraceStore", "UnknownBackendError", "open_trace_store"]
