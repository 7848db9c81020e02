"""Turn arbitrary state values into JSON-safe data without ever raising.

Workflow state holds messages, pydantic models, dataclasses, bytes, numpy scalars and objects of
the user's own classes. Values JSON cannot hold become ``{"__type__": ..., ...}`` tags so the
trajectory still says what was there.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import hashlib
import uuid
from typing import Any

MAX_STRING = 4000
MAX_ITEMS = 200
MAX_DEPTH = 8
_PLAIN = (str, int, bool, type(None))
_INT_MIN, _INT_MAX = -(2**63), 2**64 - 1  # what JSON encoders (orjson) accept


def _truncate(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return f"{text[:limit]}…[+{len(text) - limit} chars]"


def _valid_utf8(text: str) -> str:
    """Lone surrogates (from surrogateescape decoding, say) cannot be encoded: escape them."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _safe_repr(value: Any) -> str:
    try:
        return _truncate(repr(value), 200)
    except Exception as exc:  # a broken __repr__ must not break recording
        return f"<unrepresentable: {type(exc).__name__}>"


def type_name(value: Any) -> str:
    cls = type(value)
    return cls.__qualname__ if cls.__module__ == "builtins" else f"{cls.__module__}.{cls.__qualname__}"


def message_to_dict(message: Any) -> dict[str, Any]:
    """A LangChain message as the compact dict trajectories store."""
    data: dict[str, Any] = {"type": getattr(message, "type", None), "content": to_jsonable(message.content)}
    for attr in ("id", "name", "tool_call_id", "status"):
        value = getattr(message, attr, None)
        if value:
            data[attr] = value
    tool_calls = getattr(message, "tool_calls", None)
    if tool_calls:
        data["tool_calls"] = to_jsonable(tool_calls)
    return data


def to_jsonable(value: Any, *, max_string: int = MAX_STRING, _depth: int = 0) -> Any:
    """JSON-safe copy of ``value``: containers recursed, the rest type-tagged. Never raises."""
    if type(value) is dict and len(value) <= 8:
        for k, v in value.items():
            if type(k) is not str or not k.isascii() or type(v) not in _PLAIN:
                break
            if type(v) is str and (len(v) > max_string or not v.isascii()):
                break
            if type(v) is int and not _INT_MIN <= v <= _INT_MAX:
                break
        else:
            return value  # the common small flat state update: already JSON-safe (and a private copy)
    if value is None or isinstance(value, (bool, int, float)):
        if isinstance(value, float) and value != value:  # NaN is not JSON
            return {"__type__": "float", "repr": "nan"}
        if isinstance(value, float) and value in (float("inf"), float("-inf")):
            return {"__type__": "float", "repr": repr(value)}
        if isinstance(value, enum.Enum):
            return {"__type__": type_name(value), "value": to_jsonable(value.value, _depth=_depth + 1)}
        if isinstance(value, float):
            return value if type(value) is float else float(value)  # JSON encoders reject float subclasses
        if value is not None and type(value) is not bool and not _INT_MIN <= value <= _INT_MAX:
            return {"__type__": "int", "repr": _safe_repr(value)}  # JSON encoders stop at 64 bits
        return value
    if isinstance(value, str):
        return _valid_utf8(_truncate(value, max_string))
    if _depth >= MAX_DEPTH:
        return {"__type__": type_name(value), "repr": _safe_repr(value), "truncated": "depth"}
    try:
        return _convert(value, max_string, _depth)
    except Exception:
        return {"__type__": type_name(value), "repr": _safe_repr(value)}


def _convert(value: Any, max_string: int, depth: int) -> Any:
    nxt = depth + 1
    if isinstance(value, dict):
        items = list(value.items())
        out = {_valid_utf8(str(k)): to_jsonable(v, max_string=max_string, _depth=nxt) for k, v in items[:MAX_ITEMS]}
        if len(items) > MAX_ITEMS:
            out["__truncated__"] = len(items) - MAX_ITEMS
        return out
    if isinstance(value, (list, tuple, set, frozenset)):
        seq = list(value)
        out_list = [to_jsonable(v, max_string=max_string, _depth=nxt) for v in seq[:MAX_ITEMS]]
        if len(seq) > MAX_ITEMS:
            out_list.append({"__truncated__": len(seq) - MAX_ITEMS})
        if isinstance(value, (set, frozenset)):
            return {"__type__": type(value).__name__, "items": out_list}
        return out_list
    if hasattr(value, "content") and hasattr(value, "type") and type_name(value).startswith("langchain_core.messages"):
        return message_to_dict(value)
    if isinstance(value, enum.Enum):
        return {"__type__": type_name(value), "value": to_jsonable(value.value, _depth=nxt)}
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        return {"__type__": "bytes", "length": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    if isinstance(value, (datetime.datetime, datetime.date, datetime.time)):
        return {"__type__": type(value).__name__, "iso": value.isoformat()}
    if isinstance(value, datetime.timedelta):
        return {"__type__": "timedelta", "seconds": value.total_seconds()}
    if isinstance(value, uuid.UUID):
        return {"__type__": "uuid", "value": str(value)}
    if hasattr(value, "model_dump") and callable(value.model_dump):
        return {"__type__": type_name(value), "value": to_jsonable(value.model_dump(), max_string=max_string, _depth=nxt)}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = {f.name: getattr(value, f.name) for f in dataclasses.fields(value)}
        return {"__type__": type_name(value), "value": to_jsonable(fields, max_string=max_string, _depth=nxt)}
    if hasattr(value, "item") and hasattr(value, "dtype") and getattr(value, "ndim", None) == 0:
        return to_jsonable(value.item(), _depth=nxt)  # numpy scalar
    return {"__type__": type_name(value), "repr": _safe_repr(value)}
