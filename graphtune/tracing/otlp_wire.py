"""OTLP/protobuf wire encoding for spans, written by hand for the exporter's hot loop.

The exporter shares the GIL with the workflow it records, so every microsecond it spends per span
is a microsecond the workflow waits. Building ``opentelemetry.proto`` message objects costs about
one microsecond per nested message; a node span carries a dozen attributes. Encoding the few
fields a span needs straight to bytes, and caching the bytes of attributes every span of a run
shares, is several times cheaper. The output is the standard ``ExportTraceServiceRequest``
message (``opentelemetry/proto/collector/trace/v1/trace_service.proto``): the tests decode it with
``opentelemetry-proto`` and send it to a real OTLP receiver. Protobuf parsers accept a message's
fields in any order, so a span can be the join of runs of fields cached as bytes.

Field numbers (opentelemetry-proto 1.x):

- ``ExportTraceServiceRequest``: resource_spans=1
- ``ResourceSpans``: resource=1, scope_spans=2 · ``Resource``: attributes=1
- ``ScopeSpans``: scope=1, spans=2 · ``InstrumentationScope``: name=1, version=2
- ``Span``: trace_id=1, span_id=2, parent_span_id=4, name=5, kind=6, start_time_unix_nano=7 (fixed64),
  end_time_unix_nano=8 (fixed64), attributes=9, status=15 · ``Status``: message=2, code=3
- ``KeyValue``: key=1, value=2 · ``AnyValue``: string=1, bool=2, int=3, double=4, array=5
- ``ArrayValue``: values=1
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from functools import lru_cache
from itertools import chain
from typing import Any

SPAN_KIND_INTERNAL = 1
SPAN_KIND_CLIENT = 3
STATUS_OK = 1
STATUS_ERROR = 2

# Span fields trace_id, span_id, [parent_span_id,] start_time_unix_nano, end_time_unix_nano: tags and values.
_pack_head = struct.Struct("<2s16s2s8sBQBQ").pack
_pack_child_head = struct.Struct("<2s16s2s8s2s8sBQBQ").pack
_pack_d = struct.Struct("<d").pack


_SMALL = [bytes((i,)) for i in range(128)]


def varint(value: int) -> bytes:
    if value < 0x80:
        return _SMALL[value]
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _len_field(tag: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2); ``tag`` is the field number."""
    return _SMALL[(tag << 3) | 2] + varint(len(payload)) + payload


def _signed(value: int) -> int:
    """int64 fields encode negatives as ten-byte two's complement varints."""
    return value if value >= 0 else value + (1 << 64)


def any_value(value: Any) -> bytes:
    """An ``AnyValue`` message for a str, bool, int, float or a list of them (others become str)."""
    if isinstance(value, str):
        return _len_field(1, value.encode("utf-8", "surrogatepass"))
    if isinstance(value, bool):
        return b"\x10\x01" if value else b"\x10\x00"
    if isinstance(value, int):
        return b"\x18" + varint(_signed(value))
    if isinstance(value, float):
        return b"\x21" + _pack_d(value)
    if isinstance(value, (list, tuple)):
        return _len_field(5, b"".join(_len_field(1, any_value(v)) for v in value))
    return _len_field(1, str(value).encode("utf-8", "surrogatepass"))


_KEYS: dict[str, bytes] = {}


def _key(key: str) -> bytes:
    encoded = _KEYS.get(key)
    if encoded is None:
        if len(_KEYS) > 4096:  # attribute keys come from code, but guard against unbounded growth
            _KEYS.clear()
        encoded = _KEYS[key] = _len_field(1, key.encode("utf-8"))
    return encoded


def attribute(key: str, value: Any) -> bytes:
    """One ``KeyValue`` message."""
    return _key(key) + _len_field(2, any_value(value))


def span_attributes(pairs: Iterable[tuple[str, Any]]) -> bytes:
    """Span field 9 entries (repeated KeyValue) for ``(key, value)`` pairs; None values are skipped."""
    return b"".join([_len_field(9, attribute(k, v)) for k, v in pairs if v is not None])


def string_attribute(key: str, text: str | bytes) -> bytes:
    """``span_attributes([(key, text)])`` for one string (str or UTF-8 bytes), with one copy of the
    text instead of three: the hot case (captured input and output values)."""
    value = text if isinstance(text, bytes) else text.encode("utf-8", "surrogatepass")
    key_bytes = _key(key)
    n = len(value)
    any_len = 1 + len(varint(n)) + n
    kv_len = len(key_bytes) + 1 + len(varint(any_len)) + any_len
    return b"".join((b"\x4a", varint(kv_len), key_bytes, b"\x12", varint(any_len), b"\x0a", varint(n), value))


def span_head(trace_id: bytes, span_id: bytes, parent_span_id: bytes | None, start_ns: int, end_ns: int) -> bytes:
    """Span fields 1, 2, 4, 7 and 8 (ids and times) in one pack; ValueError for ids of the wrong length."""
    if len(trace_id) != 16 or len(span_id) != 8:
        raise ValueError("a trace id has 16 bytes, a span id 8")
    if not parent_span_id:
        return _pack_head(b"\x0a\x10", trace_id, b"\x12\x08", span_id, 0x39, start_ns, 0x41, end_ns)
    if len(parent_span_id) != 8:
        raise ValueError("a parent span id has 8 bytes")
    return _pack_child_head(b"\x0a\x10", trace_id, b"\x12\x08", span_id, b"\x22\x08", parent_span_id,
                            0x39, start_ns, 0x41, end_ns)


def name_and_kind(name: str, kind: int) -> bytes:
    """Span fields 5 and 6 (name, kind), for callers that cache them per name."""
    return _len_field(5, name.encode("utf-8", "surrogatepass")) + b"\x30" + varint(kind)


def status_field(code: int, message: str | None = None) -> bytes:
    """Span field 15 (Status); empty for an unset status."""
    if not code:
        return b""
    status = (_len_field(2, message.encode("utf-8", "surrogatepass")) if message else b"") + b"\x18" + varint(code)
    return _len_field(15, status)


def span(*, head: bytes, name: str, kind: int, attributes: bytes, status_code: int = 0,
         status_message: str | None = None) -> bytes:
    """One ``Span`` message (without its outer field tag): ``head`` from :func:`span_head`,
    ``attributes`` pre-encoded (:func:`span_attributes`), so attributes shared by many spans are
    encoded once."""
    return b"".join((head, name_and_kind(name, kind), attributes, status_field(status_code, status_message)))


@lru_cache(maxsize=4096)
def _span_tag(length: int) -> bytes:
    """The tag and length of one span in ``ScopeSpans.spans``: few distinct lengths, so cached."""
    return b"\x12" + varint(length)


def export_request(resource_attributes: Sequence[tuple[str, Any]], scope_name: str, scope_version: str,
                   spans: Sequence[bytes]) -> bytes:
    """An ``ExportTraceServiceRequest`` holding ``spans`` under one resource and one scope.

    One join of the headers, then each span's tag and the span: the spans (the bulk of the bytes)
    are copied once, and the per-span work runs in C (map, zip, chain)."""
    resource = b"".join(_len_field(1, attribute(k, v)) for k, v in resource_attributes if v is not None)
    scope_field = _len_field(1, _len_field(1, scope_name.encode()) + _len_field(2, scope_version.encode()))
    tags = list(map(_span_tag, map(len, spans)))
    scope_spans_len = len(scope_field) + sum(map(len, tags)) + sum(map(len, spans))
    resource_field = _len_field(1, resource)
    scope_spans_head = b"\x12" + varint(scope_spans_len)
    resource_spans_len = len(resource_field) + len(scope_spans_head) + scope_spans_len
    head = b"\x0a" + varint(resource_spans_len) + resource_field + scope_spans_head + scope_field
    return b"".join(chain((head,), chain.from_iterable(zip(tags, spans))))
