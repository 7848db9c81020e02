"""support_qa, the bundled example workflow: router, bm25s retrieval, answer agents, order tool."""

from graphtune.graphs.support_qa.graph import build_graph, default_config

__all__ = ["build_graph", "default_config"]
