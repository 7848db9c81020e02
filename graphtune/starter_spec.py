"""A starter ``graphtune.yaml`` for a graph nobody has described yet (``graphtune init``).

The tunables are guessed from the config's leaves, the dataset row from the graph's input state;
every guess is marked in the text so the person checks it before tuning. Pure: values in, text out.
"""

from __future__ import annotations

import math
import types
import typing
from typing import Any

import yaml

from graphtune.spec import METRICS

WIDE = 10.0  # a numeric range whose high/low ratio reaches this is searched on a log scale
TODO_TEXT = "TODO"


def infer_tunable(value: Any) -> tuple[dict | None, str]:
    """The domain guessed for one config leaf, and the comment that goes beside it (None: not tunable)."""
    if isinstance(value, bool):
        return {"type": "bool"}, ""
    if isinstance(value, (int, float)):
        kind = "int" if isinstance(value, int) else "float"
        low, high = _int_range(value) if kind == "int" else _float_range(value)
        domain = {"type": kind, "low": low, "high": high}
        if low > 0 and high / low >= WIDE:
            domain["log"] = True
        return domain, f"TODO: range guessed around {value:g}; set the values that make sense"
    if isinstance(value, str):
        return {"type": "choice", "values": [value]}, "TODO: add the other values worth trying"
    return None, f"not tunable as it stands ({type(value).__name__}); add a choice domain by hand to tune it"


def _int_range(value: int) -> tuple[int, int]:
    if value > 0:
        return max(1, value // 4), max(value * 4, value + 3)
    if value == 0:
        return 0, 10
    return value * 4, 0


def _float_range(value: float) -> tuple[float, float]:
    if 0.0 <= value <= 1.0:
        return 0.0, 1.0  # a share, probability or temperature
    if value > 0:
        return value / 4, value * 4
    return value * 4, 0.0


def leaves(config: dict, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted path, value) of every leaf; lists are leaves."""
    found = []
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            found += leaves(value, path + ".")
        else:
            found.append((path, value))
    return found


# --- the dataset row ------------------------------------------------------------------------------


def state_fields(schema: Any) -> dict[str, Any]:
    """Field name -> type of a graph's state schema (TypedDict, pydantic model or dataclass)."""
    if schema is None:
        return {}
    try:
        return typing.get_type_hints(schema, include_extras=True)
    except Exception:  # unresolvable annotations: the names still help
        return dict(getattr(schema, "__annotations__", {}))


def _is_reducer(kind: Any) -> bool:
    return typing.get_origin(kind) is typing.Annotated


def _placeholder(name: str, kind: Any) -> Any:
    if name == "messages":
        return [{"role": "user", "content": "TODO: what a user sends"}]
    if typing.get_origin(kind) is typing.Annotated:
        kind = typing.get_args(kind)[0]
    if typing.get_origin(kind) in (typing.Union, types.UnionType):  # Optional[X] -> X
        kind = next((a for a in typing.get_args(kind) if a is not type(None)), kind)
    origin = typing.get_origin(kind) or kind
    for python_type, value in ((bool, False), (int, 0), (float, 0.0), (list, []), (tuple, []), (dict, {})):
        if isinstance(origin, type) and issubclass(origin, python_type):
            return value
    return f"{TODO_TEXT}: {name}"


def output_paths(fields: dict[str, Any]) -> tuple[str, str | None]:
    """Where the final state holds the answer and the sources, as ``evals.output`` names them."""
    if "answer" in fields:
        answer = "answer"
    elif "messages" in fields:
        answer = "messages.-1.content"
    else:
        answer = next((n for n, k in fields.items() if k is str), "answer")
    return answer, "sources" if "sources" in fields else None


def example_row(inputs: dict[str, Any], outputs: dict[str, Any], explicit_inputs: bool) -> dict:
    """One dataset row in the shape the graph takes. Without a separate input schema every state key
    that is not an output or a reducer channel is offered; the person keeps those the graph reads."""
    answer, sources = output_paths(outputs)
    skip = set() if explicit_inputs else {answer.split(".")[0], sources}
    row_inputs = {name: _placeholder(name, kind) for name, kind in inputs.items()
                  if name not in skip and (explicit_inputs or name == "messages" or not _is_reducer(kind))}
    expected: dict[str, Any] = {"answer": "TODO: the answer you expect",
                                "facts": ["TODO: a fact the answer must contain"]}
    if sources:
        expected["sources"] = ["TODO: an id the answer should cite"]
    return {"id": "example-1", "inputs": row_inputs, "expected": expected, "tags": []}


# --- the spec's text ------------------------------------------------------------------------------


def _flow(data: Any) -> str:
    """One line of YAML (a scalar alone is dumped as a document: drop its end marker)."""
    text = yaml.safe_dump(data, default_flow_style=True, sort_keys=False, width=math.inf, allow_unicode=True)
    return text.removesuffix("\n...\n").strip()


def _block(data: Any) -> str:
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120, default_flow_style=None)


def starter_spec(*, workflow: str, graph: str, config: dict, outputs: dict[str, Any], dataset: str = "dev.jsonl",
                 spec_name: str = "graphtune.yaml") -> str:
    """The text of a spec that ``load_spec`` accepts, with a comment on every guess."""
    answer, sources = output_paths(outputs)
    lines = [
        f"# graphtune spec of {workflow}, written by `graphtune init`: check every TODO, then",
        f"#   graphtune eval --spec {spec_name}     (the shipped config's score)",
        f'#   graphtune tune --spec {spec_name} --dry-run "what you want"',
        f"workflow: {_flow(workflow)}",
        "description: TODO what the workflow does, in one sentence (the proposer reads it)",
        f"graph: {_flow(graph)}",
        "",
        "# The config the graph runs with today.",
        _block({"config": config}).rstrip(),
        "",
        "# What the tuner may change, guessed from the config's leaves: delete what must stay fixed.",
        "tunables:",
    ]
    tunables, skipped = [], []
    for path, value in leaves(config):
        domain, note = infer_tunable(value)
        if domain is None:
            skipped.append(f"#   {path}: {note}")
        else:
            tunables.append(f"  {_flow({path: domain})[1:-1]}" + (f"  # {note}" if note else ""))
    if not tunables:
        lines[-1] = "tunables: {}  # TODO: the config has no leaf graphtune can tune as it stands"
    lines += tunables + (["# Left out:", *skipped] if skipped else [])
    metrics = ["contains", "token_f1", "latency_ms", "total_tokens", "cost_usd", "error"]
    lines += [
        "",
        "evals:",
        "  datasets:",
        f"    - {_flow({'name': 'dev', 'path': dataset})}  # TODO: more rows like its example; a test set too",
        f"  metrics: {_flow(metrics)}  # any of {', '.join(METRICS)}",
        f"  output: {_flow({'answer': answer, 'sources': sources})}  # where the final state holds them",
        "",
        "# TODO: what a better config means. maximize a quality metric (contains, exact, token_f1, judge),",
        "# or minimize latency_ms / cost_usd / total_tokens with the quality kept by a guardrail.",
        "objective: {metric: contains, direction: maximize}",
        "",
        "# Limits a candidate must keep against the shipped config. Examples:",
        "#   - {metric: latency_ms, statistic: p95, max_ratio: 1.2}   # p95 latency at most 1.2x",
        "#   - {metric: contains, statistic: mean, margin: 0.02}      # at most 2 points less accurate",
        "guardrails:",
        "  - {metric: error, statistic: mean, max_value: 0.05}  # at most 5% of examples fail",
        "",
        "# USD per 1M tokens of each model the graph calls, for cost_usd. Example:",
        "#   gpt-4.1-mini: {input_per_1m: 0.40, output_per_1m: 1.60}",
        "pricing: {}",
        "",
    ]
    return "\n".join(lines)
