"""Prompt texts live here as ``<name>.md`` files, loaded by name: no prompt strings inside node code.

``load_prompt("propose")`` returns the text; ``render_prompt("propose", objective=...)`` fills its
``{placeholders}`` (``str.format``; literal braces in a prompt are written ``{{ }}``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

_DIR = Path(__file__).parent


@lru_cache(maxsize=None)
def load_prompt(name: str) -> str:
    path = _DIR / f"{name}.md"
    if not path.is_file():
        known = sorted(p.stem for p in _DIR.glob("*.md"))
        raise FileNotFoundError(f"no prompt named {name!r} in {_DIR}; known prompts: {known}")
    return path.read_text(encoding="utf-8").strip()


def render_prompt(name: str, **values: object) -> str:
    try:
        return load_prompt(name).format(**values)
    except KeyError as missing:
        raise KeyError(f"prompt {name!r} needs a value for {missing}") from None
