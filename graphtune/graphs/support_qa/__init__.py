"""support_qa, the bundled example workflow: router, bm25s retrieval, answer agents, order tool."""

from graphtune.graphs.support_qa.graph import DEFAULT_CONFIG, build_graph

__all__ = ["DEFAULT_CONFIG", "build_graph"]
