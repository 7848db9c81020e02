"""The workflow spec (``graphtune.yaml``): what graphtune tunes, how it scores a candidate, and its limits.

A spec names the graph factory, the current config, the search space, the eval sets and metrics,
the objective and the guardrails. Loading errors name the file, the key path and what was expected.
A bundled workflow can be named instead of a path: ``load_spec("support_qa")``.
"""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path
from typing import Annotated, Any, Callable, Literal, Union

import yaml
from pydantic import (BaseModel, ConfigDict, Discriminator, Field, PrivateAttr, Tag, ValidationError, field_validator,
                      model_validator)

from graphtune.throttling import DEFAULT_MAX_RETRIES
from graphtune.tuning.space import Constraint, Domain, SearchSpace

BUNDLED_SPECS = {"support_qa": Path(__file__).parent / "graphs" / "support_qa.yaml"}
METRICS = (
    "exact", "contains", "token_f1", "retrieval_hit", "judge",
    "latency_ms", "input_tokens", "output_tokens", "total_tokens", "cost_usd", "error",
)
HIGHER_IS_BETTER = {"exact", "contains", "token_f1", "retrieval_hit", "judge"}
Direction = Literal["maximize", "minimize"]
TARGET = r"^([A-Za-z_][\w.]*|[\w./-]+\.py):[A-Za-z_]\w*$"  # module:function or file.py:function
METRIC_NAME = r"^[A-Za-z_][\w.-]*$"


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


class FieldMetric(_Strict):
    """A built-in comparison of any output field with any expected field, under a name of its own:
    ``{name: team_exact, kind: exact, output: assigned_team, expected: team}``. Higher is better."""

    name: str = Field(pattern=METRIC_NAME)
    kind: Literal["exact", "contains", "token_f1", "retrieval_hit"]
    output: str = Field(description="Dotted path into the final state (-1 indexes lists)")
    expected: str = Field(description="Key of the row's expected values")

    def directions(self) -> dict[str, Direction]:
        return {self.name: "maximize"}


class CustomMetric(_Strict):
    """Scores from a function of the team's own, called with (final state, example) after each run.

    One score: ``{name: tool_calls, evaluator: metrics.py:tool_calls, direction: minimize}`` and the
    function returns a number. Several: ``{evaluator: ..., scores: {precision: maximize, recall: maximize}}``
    and it returns a dict of them. ``None`` leaves a row unscored; a failed run is not passed to the
    function and scores ``on_error`` (unscored by default).
    """

    evaluator: str = Field(pattern=TARGET, description="module:function or file.py:function, relative to the spec")
    name: str | None = Field(None, pattern=METRIC_NAME)
    direction: Direction | None = None
    scores: dict[str, Direction] | None = Field(None, description="score name -> direction, for a function returning a dict")
    on_error: float | None = Field(None, description="The score of a run that failed; unscored when not given")

    _function: Callable | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _one_form(self):
        if (self.name is None) == (self.scores is None):
            raise ValueError("give either name and direction (one score) or scores (name -> direction)")
        if self.name is not None and self.direction is None:
            raise ValueError(f"{self.name}: direction is required (maximize or minimize)")
        if self.scores is not None and self.direction is not None:
            raise ValueError("direction goes with each name under scores")
        bad = [k for k in self.scores or {} if not re.fullmatch(METRIC_NAME, k)]
        if bad or self.scores == {}:
            raise ValueError(f"scores: expected metric names (letters, digits, _ . -) mapped to a direction, got {bad or 'none'}")
        return self

    def directions(self) -> dict[str, Direction]:
        return {self.name: self.direction} if self.name is not None else dict(self.scores)

    def function(self, folder: Path) -> Callable:
        """The evaluator, imported once from the spec's folder; raises ``ValueError`` saying why it is unusable."""
        if self._function is None:
            target, _, attr = self.evaluator.rpartition(":")
            try:
                module = import_target(target, folder)
            except Exception as exc:
                raise ValueError(f"cannot import {target!r}: {type(exc).__name__}: {exc}") from exc
            function = getattr(module, attr, None)
            if not callable(function):
                raise ValueError(f"{target} has no callable {attr!r}")
            try:
                inspect.signature(function).bind(None, None)
            except TypeError:
                raise ValueError(f"{self.evaluator} must take (output, example), not {inspect.signature(function)}") from None
            except ValueError:  # a builtin without a signature: called as it is
                pass
            self._function = function
        return self._function


def _metric_form(value: Any) -> str | None:
    if isinstance(value, str):
        return "builtin"
    if isinstance(value, dict):
        return "custom" if "evaluator" in value else "field" if "kind" in value else None
    return None


MetricDeclaration = Annotated[
    Union[Annotated[str, Tag("builtin")], Annotated[FieldMetric, Tag("field")], Annotated[CustomMetric, Tag("custom")]],
    Discriminator(_metric_form, custom_error_type="metric_form",
                  custom_error_message="expected a built-in metric name, a mapping with kind (exact, contains, token_f1, "
                                       "retrieval_hit), output and expected, or a mapping with evaluator (module:function)"),
]


class EvalSpec(_Strict):
    datasets: list[DatasetRef] = Field(min_length=1)
    metrics: list[MetricDeclaration] = Field(
        default_factory=lambda: ["contains", "token_f1", "latency_ms", "total_tokens", "cost_usd", "error"],
        description="Built-in metric names, field comparisons (kind/output/expected) and custom evaluators")
    output: OutputPaths = Field(default_factory=OutputPaths)
    concurrency: int = Field(8, ge=1, le=256)
    timeout_s: float = Field(60.0, gt=0, description="Per example; a timeout counts as an error")

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, metrics: list) -> list:
        unknown = [m for m in metrics if isinstance(m, str) and m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; expected some of {list(METRICS)}, or a mapping "
                             "(see docs/metrics.md)")
        names = [n for m in metrics for n in ([m] if isinstance(m, str) else m.directions())]
        clashes = sorted({n for n in names if names.count(n) > 1})
        if clashes:
            raise ValueError(f"metric name(s) {clashes} declared twice (built-in names are taken)")
        return metrics

    @property
    def declared(self) -> list[FieldMetric | CustomMetric]:
        """The metrics defined in the spec rather than built in."""
        return [m for m in self.metrics if not isinstance(m, str)]

    @property
    def metric_names(self) -> list[str]:
        """Every score name the evals produce, in declaration order."""
        return [n for m in self.metrics for n in ([m] if isinstance(m, str) else m.directions())]

    def direction_of(self, metric: str) -> Direction | None:
        """Which way is better for a metric: declared for the spec's own, fixed for built-in ones."""
        for m in self.declared:
            if metric in m.directions():
                return m.directions()[metric]
        if metric in METRICS:
            return "maximize" if metric in HIGHER_IS_BETTER else "minimize"
        return None


class Objective(_Strict):
    metric: str
    direction: Direction | None = Field(None, description="Default: the metric's own (declared, or built in)")

    @model_validator(mode="after")
    def _direction(self):
        if self.direction is None and self.metric in METRICS:
            self.direction = "maximize" if self.metric in HIGHER_IS_BETTER else "minimize"
        return self


class Guardrail(_Strict):
    """A limit a candidate must respect against the baseline, e.g. p95 latency at most 1.2x."""

    metric: str
    statistic: Literal["mean", "p50", "p95"] = "mean"
    max_ratio: float | None = Field(None, gt=0, description="candidate <= max_ratio x baseline")
    max_value: float | None = Field(None, description="candidate <= max_value, whatever the baseline")
    margin: float | None = Field(None, ge=0, description="non-inferiority: at most this much worse than the baseline")
    direction: Direction | None = Field(None, description="The metric's direction; filled from the spec for its own metrics")

    @model_validator(mode="after")
    def _one_bound(self):
        bounds = [b for b in ("max_ratio", "max_value", "margin") if getattr(self, b) is not None]
        if len(bounds) != 1:
            raise ValueError(f"give exactly one of max_ratio, max_value, margin (got {bounds or 'none'})")
        return self

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "maximize" if self.direction else self.metric in HIGHER_IS_BETTER

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
    graph: str = Field(pattern=TARGET,
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

    @property
    def folder(self) -> Path:
        """Where the spec's relative paths and ``module:function`` targets are resolved from."""
        return self.path.parent.resolve() if self.path else Path.cwd()

    def dataset_path(self, name: str | None = None) -> Path:
        """A dataset's file (the first dataset by default), resolved against the spec's directory."""
        refs = {d.name: d for d in self.evals.datasets}
        if name is not None and name not in refs:
            raise SpecError(f"{self.path}: no dataset {name!r} in evals.datasets; known: {', '.join(refs)}")
        ref = refs[name] if name else self.evals.datasets[0]
        path = Path(ref.path)
        return (path if path.is_absolute() else self.folder / path).resolve()

    def graph_factory(self) -> Callable[[dict], Any]:
        """The factory named by ``graph``, importable from the spec's own folder (as ``langgraph.json``
        resolves its graphs): ``pkg.module:function`` or ``path/to/file.py:function``, no PYTHONPATH needed."""
        target, _, attr = self.graph.rpartition(":")
        try:
            module = import_target(target, self.folder)
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

    file = None
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
    module = importlib.import_module(target)
    if file is not None and Path(getattr(module, "__file__", None) or "").resolve() != file:
        raise ImportError(f"the module name {target!r} is taken by {getattr(module, '__file__', None) or 'a built-in module'}; "
                          f"rename {file.name}")
    return module


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
    problems = spec.space.check_covers(spec.config) + _metric_problems(spec)
    if spec.benchmark is not None:
        problems += _benchmark_problems(spec)
    if problems:
        raise SpecError(f"{where}: " + "; ".join(problems))
    return spec


def _metric_problems(spec: WorkflowSpec) -> list[str]:
    """Objective and guardrails on metrics the evals do not produce, guardrail directions that contradict
    their metric, custom evaluators that cannot be imported or called. Fills in the directions of the
    spec's own metrics, which only the declarations know."""
    problems = []
    available = spec.evals.metric_names or list(METRICS)
    for key, holder in [("objective", spec.objective)] + [(f"guardrails[{i}]", g) for i, g in enumerate(spec.guardrails)]:
        if holder.metric not in available:
            problems.append(f"{key}.metric: {holder.metric!r} is not among evals.metrics {sorted(available)}")
            continue
        natural = spec.evals.direction_of(holder.metric)
        if isinstance(holder, Guardrail):
            if holder.direction not in (None, natural):
                problems.append(f"{key}.direction: {holder.metric} is declared {natural}, not {holder.direction}")
            elif holder.metric not in METRICS:
                holder.direction = natural
        elif holder.direction is None:
            holder.direction = natural
    for index, metric in enumerate(spec.evals.metrics):
        if isinstance(metric, CustomMetric):
            try:
                metric.function(spec.folder)
            except ValueError as exc:
                problems.append(f"evals.metrics[{index}].evaluator: {exc}")
    return problems


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
    from graphtune.tuning.config_paths import get_path, has_path

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
    loc = error["loc"]
    parts: list[str] = []
    for i, item in enumerate(loc):
        if (i == 2 and loc[0] == "tunables" and item in {"float", "int", "choice", "bool", "text"}) or (
                i == 3 and loc[:2] == ("evals", "metrics") and item in {"builtin", "field", "custom"}):
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
