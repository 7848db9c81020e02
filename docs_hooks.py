"""MkDocs hook: the site's home page is README.md, its links to ``docs/PAGE.md`` made site-relative.

One source for the first screen, so the README and the site cannot drift apart."""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.structure.files import File, Files

README = Path(__file__).with_name("README.md")
DOCS_LINK = re.compile(r"\]\(docs/")


def on_files(files: Files, config) -> Files:
    home = DOCS_LINK.sub("](", README.read_text(encoding="utf-8"))
    files.append(File.generated(config, "index.md", content=home))
    return files
