"""The workflow spec (``graphtune.yaml``): what graphtune tunes, how it scores a candidate, and its limits.

A spec names the graph factory, the current config, the search space, the eval sets and metrics,
the objective and the guardrails. Loading errors name the file, the key path and what was expected.
A bundled workflow can be named instead of a path: ``load_spec("support_qa")``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any, Callable, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from graphtune.throttling import DEFAULT_MAX_RETRIES
from graphtune.tuning.space import Constraint, Domain, SearchSpace

BUNDLED_SPECS = {"support_qa": Path(__file__).parent / "graphs" / "support_qa.yaml"}
METRICS = (
    "exact", "contains", "token_f1", "retrieval_hit", "judge",
    "latency_ms", "input_tokens", "output_tokens", "total_tokens", "cost_usd", "error",
)
HIGHER_IS_BETTER = {"exact", "contains", "token_f1", "retrieval_hit", "judge"}


class SpecError(ValueError):
    """A spec that cannot be used; the message names the file and key path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatasetRef(_Strict):
    name: str
    path: str = Field(description="JSONL file, relative to the spec file")


class OutputPaths(_Strict):
    """Where the graph's final state holds what evaluators read (dotted paths; -1 indexes lists)."""

    answer: str = "answer"
    sources: str | None = "sources"


class EvalSpec(_Strict):
    datasets: list[DatasetRef] = Field(min_length=1)
    metrics: list[str] = Field(default_factory=lambda: ["contains", "token_f1", "latency_ms", "total_tokens", "cost_usd", "error"])
    output: OutputPaths = Field(default_factory=OutputPaths)
    concurrency: int = Field(8, ge=1, le=256)
    timeout_s: float = Field(60.0, gt=0, description="Per example; a timeout counts as an error")

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, metrics: list[str]) -> list[str]:
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; expected some of {list(METRICS)}")
        return metrics


class Objective(_Strict):
    metric: str
    direction: Literal["maximize", "minimize"] | None = None

    @model_validator(mode="after")
    def _direction(self):
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; expected one of {list(METRICS)}")
        if self.direction is None:
            self.direction = "maximize" if self.metric in HIGHER_IS_BETTER else "minimize"
        return self


class Guardrail(_Strict):
    """A limit a candidate must respect against the baseline, e.g. p95 latency at most 1.2x."""

    metric: str
    statistic: Literal["mean", "p50", "p95"] = "mean"
    max_ratio: float | None = Field(None, gt=0, description="candidate <= max_ratio x baseline")
    max_value: float | None = Field(None, description="candidate <= max_value, whatever the baseline")
    margin: float | None = Field(None, ge=0, description="non-inferiority: at most this much worse than the baseline")

    @model_validator(mode="after")
    def _one_bound(self):
        if self.metric not in METRICS:
            raise ValueError(f"unknown metric {self.metric!r}; expected one of {list(METRICS)}")
        bounds = [b for b in ("max_ratio", "max_value", "margin") if getattr(self, b) is not None]
        if len(bounds) != 1:
            raise ValueError(f"give exactly one of max_ratio, max_value, margin (got {bounds or 'none'})")
        return self

    @property
    def higher_is_better(self) -> bool:
        return self.metric in HIGHER_IS_BETTER

    def describe(self) -> str:
        if self.max_ratio is not None:
            return f"{self.statistic} {self.metric} <= {self.max_ratio:g}x baseline"
        if self.max_value is not None:
            return f"{self.statistic} {self.metric} <= {self.max_value:g}"
        worse = "below" if self.higher_is_better else "above"
        return f"{self.statistic} {self.metric} at most {self.margin:g} {worse} baseline"


class ObserveSpec(_Strict):
    """Hot-spot thresholds for the controller's observe step."""

    window: str = "24h"
    p95_ms: float | None = Field(None, gt=0)
    error_rate: float = Field(0.05, ge=0, le=1)
    negative_feedback_rate: float = Field(0.2, ge=0, le=1)


class Price(_Strict):
    input_per_1m: float = Field(ge=0)
    output_per_1m: float = Field(ge=0)


class RateLimit(_Strict):
    """How hard graphtune may call the models of a run: one shared pace, and how long to ride out throttles."""

    requests_per_s: float | None = Field(None, gt=0, description="Model requests per second, shared by every call; null: no limit")
    max_retries: int = Field(DEFAULT_MAX_RETRIES, ge=0, le=30, description="Retries of a throttled (429) or failed (5xx) call")


class BenchmarkSpec(_Strict):
    """A finite grid over some tunables (numeric ones discretised) that benchmarks evaluate exhaustively.

    Every grid path must be a tunable, every value must lie in its domain, and the grid must hold the
    config's own value, so the current config is a grid point. Tunables outside the grid keep the
    config's value. Used by ``benchmarks/tuning_efficiency.py``.
    """

    grid: dict[str, list[Any]] = Field(min_length=1, description="tunable path -> the values the grid takes")

    @field_validator("grid")
    @classmethod
    def _values(cls, grid: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for path, values in grid.items():
            if not values:
                raise ValueError(f"{path}: expected at least one value")
            duplicates = [v for i, v in enumerate(values) if any(_same_value(v, w) for w in values[:i])]
            if duplicates:
                raise ValueError(f"{path}: duplicate value(s) {duplicates!r}")
        return grid

    def size(self) -> int:
        """Grid points before constraints are applied."""
        size = 1
        for values in self.grid.values():
            size *= len(values)
        return size


def _same_value(a: Any, b: Any) -> bool:
    """Equal as config values: 1 == 1.0, but True is not 1."""
    return isinstance(a, bool) == isinstance(b, bool) and a == b


class WorkflowSpec(_Strict):
    workflow: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    graph: str = Field(pattern=r"^([A-Za-z_][\w.]*|[\w./-]+\.py):[A-Za-z_]\w*$",
                       description="module:function or file.py:function (relative to the spec) building a compiled graph from a config dict")
    config: dict[str, Any]
    tunables: dict[str, Domain] = Field(default_factory=dict)
    constraints: list[Constraint] = Field(default_factory=list)
    evals: EvalSpec
    objective: Objective
    guardrails: list[Guardrail] = Field(default_factory=list)
    observe: ObserveSpec = Field(default_factory=ObserveSpec)
    pricing: dict[str, Price] = Field(default_factory=dict, description="model name -> USD per 1M tokens")
    benchmark: BenchmarkSpec | None = Field(None, description="A finite grid for the tuning-efficiency benchmark")
    rate_limit: RateLimit = Field(default_factory=RateLimit, description="Pace and retries of every model call")

    path: Path | None = Field(None, exclude=True)

    @property
    def space(self) -> SearchSpace:
        return SearchSpace(tunables=self.tunables, constraints=self.constraints)

    def dataset_path(self, name: str | None = None) -> Path:
        """A dataset's file (the first dataset by default), resolved against the spec's directory."""
        refs = {d.name: d for d in self.evals.datasets}
        if name is not None and name not in refs:
            raise SpecError(f"{self.path}: no dataset {name!r} in evals.datasets; known: {', '.join(refs)}")
        ref = refs[name] if name else self.evals.datasets[0]
        path = Path(ref.path)
        return (path if path.is_absolute() else (self.path.parent if self.path else Path.cwd()) / path).resolve()

    def graph_factory(self) -> Callable[[dict], Any]:
        """The factory named by ``graph``, importable from the spec's own folder (as ``langgraph.json``
        resolves its graphs): ``pkg.module:function`` or ``path/to/file.py:function``, no PYTHONPATH needed."""
        target, _, attr = self.graph.rpartition(":")
        folder = self.path.parent.resolve() if self.path else Path.cwd()
        try:
            module = import_target(target, folder)
        except Exception as exc:
            raise SpecError(f"{self.path}: graph: cannot import {target!r}: {type(exc).__name__}: {exc}") from exc
        factory = getattr(module, attr, None)
        if not callable(factory):
            raise SpecError(f"{self.path}: graph: {target} has no callable {attr!r}")
        return factory

    def build_graph(self, config: dict | None = None):
        """Compile the workflow for a config; a raising factory gives a SpecError naming it."""
        factory = self.graph_factory()
        try:
            return factory(self.config if config is None else config)
        except Exception as exc:
            raise SpecError(f"graph factory {self.graph} raised {type(exc).__name__}: {exc}") from exc


def import_target(target: str, folder: Path):
    """Import a dotted module or a ``.py`` file; ``folder`` (the spec's) joins the import path.

    A file inside packages (folders with ``__init__.py``) is imported by its dotted package path with
    the outermost package's parent on ``sys.path``, as pytest does, so its relative imports work.
    """
    import sys

    if target.endswith(".py"):
        file = (folder / target).resolve()
        if not file.is_file():
            raise FileNotFoundError(f"no such file {file}")
        root, parts = file.parent, [file.stem]
        while (root / "__init__.py").exists():
            parts.insert(0, root.name)
            root = root.parent
        folder, target = root, ".".join(parts)
    if str(folder) not in sys.path:  # last, so a spec's folder never shadows an installed module
        sys.path.append(str(folder))
    return importlib.import_module(target)


def load_spec(source: str | Path) -> WorkflowSpec:
    """Read and check a spec file, or a bundled workflow by name (``support_qa``)."""
    path = Path(source)
    if not path.exists() and str(source) in BUNDLED_SPECS:
        path = BUNDLED_SPECS[str(source)]
    if not path.exists():
        bundled = ", ".join(BUNDLED_SPECS)
        raise SpecError(f"{path}: no such spec file (bundled workflows: {bundled})")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise SpecError(f"{path}:{where} malformed YAML: {getattr(exc, 'problem', None) or exc}") from None
    return parse_spec(raw, path)


def parse_spec(raw: Any, path: Path | None = None) -> WorkflowSpec:
    where = str(path) if path else "spec"
    if not isinstance(raw, dict):
        raise SpecError(f"{where}: expected a mapping at the top level, got {type(raw).__name__}")
    retyped = _yaml_retyped_choices(raw)
    if retyped:
        raise SpecError(f"{where}: " + "; ".join(retyped))
    try:
        spec = WorkflowSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(f"{where}: " + "; ".join(_describe(e) for e in exc.errors())) from None
    spec.path = path
    problems = spec.space.check_covers(spec.config)
    available = set(METRICS) if not spec.evals.metrics else set(spec.evals.metrics)
    for name, metric in [("objective.metric", spec.objective.metric)] + [
        (f"guardrails[{i}].metric", g.metric) for i, g in enumerate(spec.guardrails)
    ]:
        if metric not in available:
            problems.append(f"{name}: {metric!r} is not among evals.metrics {sorted(available)}")
    if spec.benchmark is not None:
        problems += _benchmark_problems(spec)
    if problems:
        raise SpecError(f"{where}: " + "; ".join(problems))
    return spec


def _yaml_retyped_choices(raw: dict) -> list[str]:
    """Choice values YAML turned into something else: among text choices, a bare ``off``/``no``/``on``/``yes``
    becomes a boolean and ``1.0`` a number, so the workflow would be handed ``False`` where it expects "off"."""
    problems = []
    for path, domain in (raw.get("tunables") or {}).items():
        if not isinstance(domain, dict) or domain.get("type") != "choice" or not isinstance(domain.get("values"), list):
            continue
        values = domain["values"]
        if not any(isinstance(v, str) for v in values):
            continue
        for index, value in enumerate(values):
            if isinstance(value, (bool, int, float)):
                kind = "a boolean" if isinstance(value, bool) else "a number"
                problems.append(f"tunables.{path}.values[{index}]: YAML read {value!r} as {kind} among text choices; "
                                f"quote it (e.g. \"off\", \"1.0\") if the workflow expects text")
    return problems


def _benchmark_problems(spec: WorkflowSpec) -> list[str]:
    """Grid paths that are not tunables, grid values outside their domain, grids missing the config's value."""
    from graphtune.tuning.configs import get_path, has_path

    problems = []
    space = spec.space
    for path, values in spec.benchmark.grid.items():
        where = f"benchmark.grid[{path!r}]"
        if path not in spec.tunables:
            rejection = space.check_value(path, None)
            problems.append(f"{where}: {rejection.message if rejection else f'{path} is not a tunable'}")
            continue
        for index, value in enumerate(values):
            rejection = space.check_value(path, value, model_available=True)
            if rejection:
                problems.append(f"{where}[{index}]: {rejection.message}")
        if has_path(spec.config, path) and not any(_same_value(get_path(spec.config, path), v) for v in values):
            problems.append(f"{where}: must include the config's own value {get_path(spec.config, path)!r}, "
                            "so that the current config is a grid point")
    return problems


def _describe(error: dict) -> str:
    """One pydantic error as 'key path: what was expected'."""
    tags = {"float", "int", "choice", "bool", "text"}
    parts: list[str] = []
    for i, item in enumerate(error["loc"]):
        if i >= 2 and error["loc"][0] == "tunables" and i == 2 and item in tags:
            continue  # the discriminator's own branch name adds nothing
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            key = str(item)
            parts.append(f"[{key!r}]" if "." in key else (f".{key}" if parts else key))
    location = "".join(parts) or "(top level)"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = "unknown key"
    elif error["type"] == "missing":
        message = "required key is missing"
    return f"{location}: {message}"
