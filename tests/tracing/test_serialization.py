"""State values JSON cannot hold become type-tagged data, never an exception: unit cases, a
property test over arbitrary nested values, and whole graph runs whose state holds such values."""

from __future__ import annotations

import dataclasses
import datetime
import decimal
import enum
import fractions
import math
import uuid
from typing import Any, TypedDict

import numpy as np
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from langchain_core.messages import AIMessage, HumanMessage, ToolMessage
from langgraph.graph import START, StateGraph
from pydantic import BaseModel

from graphtune import EventKind, TrajectoryRecorder
from graphtune.backends.jsonl import JsonlTraceStore
from graphtune.backends.sqlite import SqliteTraceStore
from graphtune.tracing.serialization import MAX_DEPTH, MAX_ITEMS, MAX_STRING, message_to_dict, to_jsonable


class Color(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 3


class Plain:
    def __init__(self, n):
        self.n = n

    def __repr__(self):
        return f"Plain({self.n})"


class BrokenRepr:
    def __repr__(self):
        raise RuntimeError("no repr for you")


class BrokenEverything:
    """Raises on any attribute access beyond the basics, and on repr."""

    def __getattr__(self, name):
        raise RuntimeError(f"no {name}")

    def __repr__(self):
        raise RuntimeError("no repr")


class Account(BaseModel):
    name: str
    opened: datetime.date
    tags: set[str] = set()


@dataclasses.dataclass
class Point:
    x: float
    label: bytes


class MyFloat(float):
    pass


def roundtrips(value: Any) -> Any:
    out = to_jsonable(value)
    assert orjson.loads(orjson.dumps(out)) == out
    return out


# -- unit cases ------------------------------------------------------------------------------------


def test_plain_json_values_pass_through():
    value = {"a": 1, "b": "two", "c": [1.5, None, True], "d": {"e": []}}
    assert roundtrips(value) == value
    flat = {"q": "hello", "n": 3, "ok": False, "none": None}
    assert roundtrips(flat) == flat


def test_bytes_are_tagged_with_length_and_hash_not_content():
    out = roundtrips(b"secret-bytes")
    assert out["__type__"] == "bytes" and out["length"] == 12 and len(out["sha256"]) == 64
    assert "secret" not in orjson.dumps(out).decode()
    assert roundtrips(bytearray(b"ab"))["length"] == 2
    assert roundtrips(memoryview(b"abc"))["length"] == 3


def test_time_values_uuid_and_sets_are_tagged():
    assert roundtrips(datetime.datetime(2026, 11, 21, 8, 30)) == {"__type__": "datetime", "iso": "2026-11-21T08:30:00"}
    assert roundtrips(datetime.date(2026, 11, 21)) == {"__type__": "date", "iso": "2026-11-21"}
    assert roundtrips(datetime.time(8, 30)) == {"__type__": "time", "iso": "08:30:00"}
    assert roundtrips(datetime.timedelta(seconds=90)) == {"__type__": "timedelta", "seconds": 90.0}
    u = uuid.UUID("12345678-1234-5678-1234-567812345678")
    assert roundtrips(u) == {"__type__": "uuid", "value": str(u)}
    s = roundtrips({3, 1, 2})
    assert s["__type__"] == "set" and sorted(s["items"]) == [1, 2, 3]
    assert roundtrips(frozenset({"a"})) == {"__type__": "frozenset", "items": ["a"]}
    assert roundtrips((1, "a")) == [1, "a"]


def test_non_finite_floats_are_tagged():
    assert roundtrips(float("nan")) == {"__type__": "float", "repr": "nan"}
    assert roundtrips(float("inf")) == {"__type__": "float", "repr": "inf"}
    assert roundtrips(float("-inf")) == {"__type__": "float", "repr": "-inf"}
    assert roundtrips({"score": float("nan")}) == {"score": {"__type__": "float", "repr": "nan"}}


def test_numbers_outside_json_are_made_safe():
    # integers beyond 64 bits, float subclasses and numpy scalars
    huge = roundtrips(2**80)
    assert huge["__type__"] == "int" and huge["repr"] == str(2**80)
    assert roundtrips({"n": -(2**70)})["n"]["__type__"] == "int"
    assert roundtrips(2**63 - 1) == 2**63 - 1
    assert roundtrips(MyFloat(1.5)) == 1.5
    assert roundtrips({"f": MyFloat(2.5)}) == {"f": 2.5}
    assert roundtrips(np.float64(0.25)) == 0.25
    assert roundtrips(np.float32(0.5)) == 0.5
    assert roundtrips(np.int64(7)) == 7
    assert roundtrips(np.bool_(True)) is True
    assert roundtrips(np.float64("nan")) == {"__type__": "float", "repr": "nan"}
    assert roundtrips(decimal.Decimal("1.10"))["__type__"] == "decimal.Decimal"
    assert roundtrips(fractions.Fraction(1, 3))["__type__"] == "fractions.Fraction"
    assert roundtrips(1 + 2j)["__type__"] == "complex"


def test_strings_that_are_not_valid_utf8_are_made_safe():
    out = roundtrips("ab\ud800cd")
    assert out.startswith("ab") and out.endswith("cd")
    assert roundtrips({"k": "x\udfffy"})["k"].startswith("x")
    keyed = roundtrips({"\ud83d": 1})
    assert list(keyed.values()) == [1]
    assert roundtrips("héllo wörld ✓") == "héllo wörld ✓"


def test_enums_custom_objects_and_broken_reprs():
    assert roundtrips(Color.RED) == {"__type__": f"{__name__}.Color", "value": "red"}
    assert roundtrips(Level.HIGH) == {"__type__": f"{__name__}.Level", "value": 3}
    assert roundtrips(Plain(4)) == {"__type__": f"{__name__}.Plain", "repr": "Plain(4)"}
    broken = roundtrips(BrokenRepr())
    assert broken["__type__"] == f"{__name__}.BrokenRepr" and "unrepresentable" in broken["repr"]
    everything = roundtrips(BrokenEverything())
    assert everything["__type__"] == f"{__name__}.BrokenEverything"
    assert roundtrips([BrokenRepr(), 1])[1] == 1
    assert roundtrips(Plain)["__type__"] == "type"


def test_pydantic_models_dataclasses_and_messages():
    acct = roundtrips(Account(name="a", opened=datetime.date(2026, 1, 2), tags={"x"}))
    assert acct["__type__"] == f"{__name__}.Account"
    assert acct["value"]["name"] == "a"
    assert acct["value"]["opened"] == {"__type__": "date", "iso": "2026-01-02"}
    assert acct["value"]["tags"] == {"__type__": "set", "items": ["x"]}
    assert roundtrips(Account)["__type__"]  # the class itself, not an instance
    point = roundtrips(Point(1.0, b"zz"))
    assert point["__type__"] == f"{__name__}.Point"
    assert point["value"]["x"] == 1.0 and point["value"]["label"]["__type__"] == "bytes"

    ai = AIMessage("hi", id="m1", tool_calls=[{"name": "search", "args": {"q": "x"}, "id": "c1"}])
    out = roundtrips([HumanMessage("hello", id="h1"), ai, ToolMessage("res", tool_call_id="c1", name="search")])
    assert out[0] == {"type": "human", "content": "hello", "id": "h1"}
    assert out[1]["type"] == "ai" and out[1]["tool_calls"][0]["name"] == "search"
    assert out[2]["tool_call_id"] == "c1" and out[2]["name"] == "search"
    assert message_to_dict(ai) == out[1]


def test_deep_nesting_and_self_reference_are_bounded():
    deep: Any = "leaf"
    for _ in range(5000):
        deep = {"d": [deep]}
    out = roundtrips(deep)
    depth = 0
    node = out
    while isinstance(node, (dict, list)) and "truncated" not in (node if isinstance(node, dict) else {}):
        node = node["d"] if isinstance(node, dict) else node[0]
        depth += 1
    assert depth <= MAX_DEPTH + 1
    assert node["truncated"] == "depth"

    loop: list = [1]
    loop.append(loop)
    roundtrips(loop)
    cyclic: dict = {}
    cyclic["self"] = cyclic
    roundtrips(cyclic)


def test_large_values_are_truncated():
    text = roundtrips("x" * (MAX_STRING + 50))
    assert len(text) < MAX_STRING + 30 and text.endswith("[+50 chars]")
    items = roundtrips(list(range(MAX_ITEMS + 10)))
    assert len(items) == MAX_ITEMS + 1 and items[-1] == {"__truncated__": 10}
    mapping = roundtrips({f"k{i}": i for i in range(MAX_ITEMS + 5)})
    assert mapping["__truncated__"] == 5
    assert roundtrips({1: "a", None: "b", (1, 2): "c"}) == {"1": "a", "None": "b", "(1, 2)": "c"}


# -- property: any nested value serializes --------------------------------------------------------------

_chars = st.characters(exclude_categories=())  # surrogates included
_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**200), max_value=2**200),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats().map(MyFloat),
    st.text(alphabet=_chars, max_size=30),
    st.binary(max_size=20),
    st.datetimes(),
    st.dates(),
    st.times(),
    st.timedeltas(),
    st.uuids(),
    st.decimals(allow_nan=True),
    st.fractions(),
    st.complex_numbers(),
    st.sampled_from([Color.RED, Level.HIGH, Plain(1), Plain]),
    st.builds(BrokenRepr),  # builds, not instances: hypothesis itself reprs sampled values
    st.builds(BrokenEverything),
    st.builds(object),
    st.builds(Point, st.floats(), st.binary(max_size=4)),
    st.builds(Account, name=st.text(alphabet=_chars, max_size=5), opened=st.dates()),
    st.builds(lambda c: HumanMessage(content=c), st.text(max_size=10)),
    st.floats(allow_nan=True).map(np.float64),
    st.integers(min_value=-(2**63), max_value=2**63 - 1).map(np.int64),
)
_keys = st.one_of(st.text(alphabet=_chars, max_size=8), st.integers(), st.none(), st.tuples(st.integers()), st.booleans())
_values = st.recursive(
    _leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=5),
        st.tuples(children, children),
        st.dictionaries(_keys, children, max_size=5),
        st.frozensets(st.one_of(st.integers(), st.text(alphabet=_chars, max_size=5)), max_size=4),
    ),
    max_leaves=25,
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_values)
def test_to_jsonable_output_is_always_orjson_serializable(value):
    out = to_jsonable(value)
    encoded = orjson.dumps(out)  # strict: no numpy option, no non-str keys option
    back = orjson.loads(encoded)
    assert _same_json(back, out)


def _same_json(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same_json(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same_json(x, y) for x, y in zip(a, b))
    return a == b


# -- whole runs: odd state never breaks recording ---------------------------------------------------------


class Loose(TypedDict, total=False):
    blob: Any
    step: int


ODD_VALUES = {
    "bytes": b"\x00\xffraw",
    "when": datetime.datetime(2026, 11, 21, 12, 0, tzinfo=datetime.timezone.utc),
    "tags": {"a", "b"},
    "plain": Plain(3),
    "broken": BrokenRepr(),
    "nan": float("nan"),
    "inf": float("-inf"),
    "huge": 2**90,
    "npf": np.float64(1.25),
    "surrogate": "bad\ud800text",
    "model": Account(name="acct", opened=datetime.date(2026, 1, 1)),
    "point": Point(2.0, b"p"),
    "messages": [HumanMessage("hi", id="h"), AIMessage("yo", id="a")],
    "deep": [[[[[[[[[[[["bottom"]]]]]]]]]]]],
    "color": Color.RED,
}


def _odd_graph():
    def produce(state: Loose) -> dict:
        return {"blob": dict(ODD_VALUES), "step": 1}

    def consume(state: Loose) -> dict:
        assert state["blob"]["huge"] == 2**90  # the state itself is untouched by recording
        return {"blob": [state["blob"], BrokenEverything(), {"k": {1, 2}}], "step": 2}

    builder = StateGraph(Loose)
    builder.add_node("produce", produce)
    builder.add_node("consume", consume)
    builder.add_edge(START, "produce")
    builder.add_edge("produce", "consume")
    return builder.compile()


@pytest.mark.parametrize("kind", ["sqlite", "jsonl"])
def test_graph_with_unserializable_state_runs_and_is_recorded(tmp_path, kind):
    url = f"sqlite:///{tmp_path}/t.db" if kind == "sqlite" else f"jsonl:///{tmp_path}/traces"
    store = SqliteTraceStore(url) if kind == "sqlite" else JsonlTraceStore(url)
    rec = TrajectoryRecorder(store, sample_rate=1.0, spill_dir=str(tmp_path / "spill"), flush_interval=0.05)
    try:
        out = _odd_graph().invoke({"blob": BrokenRepr(), "step": 0}, config={"callbacks": [rec]})
        assert out["step"] == 2
        assert rec.flush(10)
        stats = rec.stats()
        assert stats["store_errors"] == 0 and stats["spilled"] == 0 and stats["dropped"] == 0
        events = store.read()
        assert [e.kind for e in events] == [
            EventKind.RUN_START, EventKind.NODE_START, EventKind.NODE_END,
            EventKind.NODE_START, EventKind.NODE_END, EventKind.RUN_END,
        ]
        blob = events[2].attributes["output"]["blob"]
        assert blob["bytes"]["__type__"] == "bytes"
        assert blob["when"] == {"__type__": "datetime", "iso": "2026-11-21T12:00:00+00:00"}
        assert blob["tags"]["__type__"] == "set"
        assert blob["plain"]["repr"] == "Plain(3)"
        assert blob["broken"]["__type__"].endswith("BrokenRepr")
        assert blob["nan"] == {"__type__": "float", "repr": "nan"}
        assert blob["huge"]["__type__"] == "int"
        assert blob["npf"] == 1.25
        assert blob["surrogate"].startswith("bad")
        assert blob["model"]["value"]["name"] == "acct"
        assert blob["point"]["value"]["x"] == 2.0
        assert [m["type"] for m in blob["messages"]] == ["human", "ai"]
        assert blob["color"]["value"] == "red"
        assert events[0].attributes["input"]["blob"]["__type__"].endswith("BrokenRepr")
        consumed = events[4].attributes["output"]["blob"]
        assert consumed[1]["__type__"].endswith("BrokenEverything")
    finally:
        rec.close()
        store.close()
