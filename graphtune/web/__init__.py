"""The web view: approvals, live experiments, config history, hot spots and traces as HTML pages
(``graphtune.web.app``), served by the LangGraph server or by ``graphtune ui``."""
