"""Redaction of message content and attributes before any store or exporter sees them.

The default masks what ``graphtune.tracing.patterns`` catalogues: credentials (detect-secrets' plugins
and cloud, payment and LLM-provider keys), e-mail addresses, card numbers (Luhn), IBANs (check
digits) and phone numbers. A custom hook is any
``Callable[[str], str]``. ``content_mode="hash"`` keeps only a hash and the length of message
content and captured state strings, for teams that may not store text at all.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from typing import Any, Literal

from graphtune.tracing.patterns import mask

ContentMode = Literal["full", "hash"]

# Every secret or identifier in the catalogue has a digit, an '@', a URL's '://', a PEM header or a
# run of 16 token characters: text without any of these skips the catalogue's regexes.
_QUICK = re.compile(r"[@\d]|://|PRIVATE|PuTTY|[A-Za-z0-9_\-]{16}")


def default_redact(text: str) -> str:
    """Mask the catalogue's credentials and personal identifiers (``graphtune.tracing.patterns``)."""
    if not _QUICK.search(text):
        return text
    return mask(text)


def hash_text(text: str) -> dict[str, Any]:
    return {"sha256": hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest(), "length": len(text)}


class Redactor:
    """Applies the redaction hook (and content mode) to every string in an event's attributes."""

    def __init__(self, hook: Callable[[str], str] | None = default_redact, content_mode: ContentMode = "full"):
        if content_mode not in ("full", "hash"):
            raise ValueError(f"content_mode must be 'full' or 'hash', got {content_mode!r}")
        self.hook = hook
        self.content_mode = content_mode

    def apply(self, value: Any, _structural: bool = True) -> Any:
        """Redact every string. Identifier keys (role, tool names, ids) are left alone only in the
        event's own attribute structure; inside captured user data (state, content, tool arguments)
        every string is redacted, whatever its key."""
        if isinstance(value, str):
            if self.content_mode == "hash":
                return hash_text(value)
            return self.hook(value) if self.hook else value
        if isinstance(value, dict):
            exempt = _STRUCTURAL_KEYS if _structural else _exempt_in_user_data(value)
            return {
                k: v if k in exempt else self.apply(v, _structural and k not in _USER_DATA_KEYS)
                for k, v in value.items()
            }
        if isinstance(value, list):
            return [self.apply(v, _structural) for v in value]
        return value


# Attribute keys that hold identifiers or names rather than user content: never masked or hashed.
_STRUCTURAL_KEYS = frozenset(
    {
        "__type__", "type", "id", "name", "tool_call_id", "status", "role", "message_id",
        "gen_ai.request.model", "gen_ai.response.model", "gen_ai.tool.name", "gen_ai.tool.call.id",
        "gen_ai.operation.name", "gen_ai.system", "error.type", "langgraph_node", "phase",
    }
)
# Attribute keys whose values are user data captured as is: no identifier exemptions inside them.
_USER_DATA_KEYS = frozenset({"input", "output", "content", "data", "args", "gen_ai.tool.call.arguments", "comment"})
_MESSAGE_KEYS = frozenset({"__type__", "type", "id", "tool_call_id", "status"})
_TOOL_CALL_KEYS = frozenset({"__type__", "type", "id", "name"})
_TYPE_ONLY = frozenset({"__type__"})


def _exempt_in_user_data(value: dict) -> frozenset:
    """Inside captured data, only the skeleton of a serialized message or tool call stays readable."""
    if value.get("type") == "tool_call" or ("args" in value and "name" in value and "id" in value):
        return _TOOL_CALL_KEYS
    if "content" in value and "type" in value:
        return _MESSAGE_KEYS
    return _TYPE_ONLY
