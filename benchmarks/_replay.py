"""The suite workflows' replay: a config's eval on a split computed from the workflow's ``replay``
function, scored by graphtune's own evaluators, and the exhaustive landscape over the spec's grid.

A suite workflow is a package ``benchmarks/workflows/<name>/`` holding ``graphtune.yaml`` (its spec,
with ``benchmark.grid``), ``dev.jsonl`` and ``test.jsonl``, and exporting ``replay(config, example)
-> Replayed`` (``workflows/_sim.py``), ``REQUEST`` (the plain request a user would type) and
optionally ``STATISTIC`` (the objective's statistic the request is about; default ``mean``).
"""

from __future__ import annotations

import importlib
import os
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

from graphtune.evals.datasets import Dataset, Example, load_dataset  # noqa: E402
from graphtune.evals.evaluators import RunOutcome, score  # noqa: E402
from graphtune.evals.runner import EvalReport, ExampleResult, price  # noqa: E402
from graphtune.evals.stats import summarize  # noqa: E402
from graphtune.spec import WorkflowSpec, load_spec  # noqa: E402
from graphtune.tuning.config_paths import config_hash  # noqa: E402
from graphtune.tuning.decision import feasible  # noqa: E402

WORKFLOWS_DIR = HERE / "workflows"
REACH_SHARE = 0.95


def suite_names() -> list[str]:
    """Every workflow package under ``benchmarks/workflows/`` with a spec."""
    return sorted(p.parent.name for p in WORKFLOWS_DIR.glob("*/graphtune.yaml"))


@dataclass
class SuiteWorkflow:
    name: str
    module: Any
    spec: WorkflowSpec
    dev: Dataset
    test: Dataset
    _memo: dict = field(default_factory=dict, repr=False)

    @property
    def request(self) -> str:
        return self.module.REQUEST

    @property
    def statistic(self) -> str:
        return getattr(self.module, "STATISTIC", "mean")

    @property
    def direction(self) -> str:
        return self.spec.objective.direction or "maximize"

    def replayed(self, config: dict, example: Example, digest: str | None = None) -> tuple[Any, ExampleResult]:
        """One example's run (``Replayed``) and its result, exactly as ``EvalRunner`` would score the real
        graph's run (latency is the simulated one); memoised per config and example."""
        key = (digest or config_hash(config), example.id)
        hit = self._memo.get(key)
        if hit is None:
            replayed = self.module.replay(config, example)
            hit = self._memo[key] = (replayed, score_replayed(self.spec, replayed, example))
        return hit

    def result(self, config: dict, example: Example, digest: str | None = None) -> ExampleResult:
        return self.replayed(config, example, digest)[1]

    def full_report(self, config: dict, dataset: Dataset) -> EvalReport:
        """The config's report on every example of a split (memoised)."""
        key = ("report", config_hash(config), dataset.hash)
        if key not in self._memo:
            self._memo[key] = self.report(config, dataset)
        return self._memo[key]

    def judge(self, config: dict, dataset: Dataset) -> tuple[float | None, bool]:
        """The config's objective score on a split and whether it keeps every guardrail against the
        shipped config there: what the landscape ranks."""
        report = self.full_report(config, dataset)
        return self.score(report), feasible(report, self.full_report(self.spec.config, dataset), self.spec.guardrails)

    def report(self, config: dict, dataset: Dataset, examples: list[Example] | None = None, *, memo: bool = True) -> EvalReport:
        """The config's report on ``examples`` (default: the whole split); ``memo=False`` keeps nothing
        (the landscape scores thousands of configs once each)."""
        examples = dataset.examples if examples is None else examples
        digest = config_hash(config)
        results = ([self.result(config, e, digest) for e in examples] if memo
                   else [score_replayed(self.spec, self.module.replay(config, e), e) for e in examples])
        summary = {m: summarize([r.scores[m] for r in results if r.scores.get(m) is not None]) for m in self.spec.evals.metrics}
        return EvalReport(workflow=self.spec.workflow, dataset=dataset.name, dataset_hash=dataset.hash,
                          config_hash=config_hash(config), results=results, summary=summary, examples_total=len(examples))

    def score(self, report: EvalReport) -> float | None:
        return report.value(self.spec.objective.metric, self.statistic)

    @cached_property
    def landscape_dev(self) -> Landscape:
        return cached_landscape(self, self.dev)

    @cached_property
    def landscape_test(self) -> Landscape:
        return cached_landscape(self, self.test)

    def fingerprint(self, dataset: Dataset) -> str:
        """What a landscape depends on: the spec, the split, the workflow's code, the evaluators."""
        import hashlib

        from graphtune.evals.evaluators import EVALUATOR_VERSION

        digest = hashlib.sha256(f"{dataset.hash}|{EVALUATOR_VERSION}".encode())
        folder = Path(self.spec.path).parent
        for path in sorted([*folder.glob("*.py"), folder / "graphtune.yaml", WORKFLOWS_DIR / "_sim.py"]):
            digest.update(path.read_bytes())
        return digest.hexdigest()[:16]


def load_workflow(name: str, directory: Path = WORKFLOWS_DIR) -> SuiteWorkflow:
    """A suite workflow by name; ``directory`` (a package folder on ``sys.path``'s terms) holds it."""
    from graphtune.spec import import_target

    module = import_target(f"{directory.name}.{name}", directory.parent)
    spec = load_spec(directory / name / "graphtune.yaml")
    names = [d.name for d in spec.evals.datasets]
    if names[:2] != ["dev", "test"]:
        raise ValueError(f"{spec.path}: evals.datasets must list dev then test, got {names}")
    dev = load_dataset(spec.dataset_path("dev"), "dev")
    test = load_dataset(spec.dataset_path("test"), "test")
    return SuiteWorkflow(name=name, module=module, spec=spec, dev=dev, test=test)


def score_replayed(spec: WorkflowSpec, replayed: Any, example: Example) -> ExampleResult:
    """The ``ExampleResult`` graphtune's runner would give the run, scored by its own evaluators."""
    answer = replayed.output.get(spec.evals.output.answer) if spec.evals.output.answer else None
    sources = replayed.output.get(spec.evals.output.sources) if spec.evals.output.sources else None
    usage = {replayed.model: {"input_tokens": replayed.input_tokens, "output_tokens": replayed.output_tokens}} if replayed.model else {}
    outcome = RunOutcome(
        answer=None if answer is None or replayed.error else str(answer),
        sources=list(sources) if isinstance(sources, (list, tuple)) and not replayed.error else None,
        latency_ms=replayed.latency_ms, input_tokens=replayed.input_tokens, output_tokens=replayed.output_tokens,
        cost_usd=price(spec, usage), error=replayed.error)
    return ExampleResult(example_id=example.id, scores=score(spec.evals.metrics, outcome, example.expected),
                         answer=outcome.answer, sources=outcome.sources, error=replayed.error)


# -- the landscape -----------------------------------------------------------------------------------


@dataclass
class Point:
    config: dict
    digest: str
    score: float | None
    feasible: bool


@dataclass
class Landscape:
    """Every grid config scored on one split; feasibility against the spec's config on that split."""

    direction: str
    points: list[Point]
    baseline: Point

    @cached_property
    def best(self) -> Point:
        sign = 1.0 if self.direction == "maximize" else -1.0
        pool = [p for p in self.points if p.feasible and p.score is not None]
        return max(pool, key=lambda p: sign * p.score)

    @property
    def threshold(self) -> float:
        best = self.best.score
        return REACH_SHARE * best if self.direction == "maximize" else best / REACH_SHARE

    def reaches(self, score: float | None, is_feasible: bool) -> bool:
        if score is None or not is_feasible:
            return False
        return score >= self.threshold if self.direction == "maximize" else score <= self.threshold

    def headroom(self, score: float | None, is_feasible: bool) -> float:
        """(presented - default) / (best - default); presenting nothing (or an infeasible config) is the
        default's own share: 0, or the baseline's place when it breaks a guardrail itself."""
        best, base = self.best.score, self.baseline.score
        if best is None or base is None or best == base:
            return 1.0
        if score is None or not is_feasible:
            score = base
        return (score - base) / (best - base)

    def summary(self) -> dict:
        feasible_share = sum(p.feasible for p in self.points) / len(self.points)
        reach_share = sum(self.reaches(p.score, p.feasible) for p in self.points) / len(self.points)
        return {"grid_size": len(self.points), "default_score": _round(self.baseline.score),
                "default_feasible": self.baseline.feasible, "best_score": _round(self.best.score),
                "feasible_share": round(feasible_share, 4), "reach_95pct_share": round(reach_share, 4)}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


LANDSCAPE_CACHE = Path(".graphtune/bench/landscapes")


def cached_landscape(workflow: SuiteWorkflow, dataset: Dataset) -> Landscape:
    """The landscape, read from ``.graphtune/bench/landscapes/`` when nothing it depends on changed."""
    import json

    path = LANDSCAPE_CACHE / f"{workflow.name}-{dataset.name}-{workflow.fingerprint(dataset)}.json"
    if path.exists():
        import _grid

        rows = json.loads(path.read_text())
        configs = {config_hash(c): c for c in _grid.grid_configs(workflow.spec)}
        points = [Point(config=configs[d], digest=d, score=score, feasible=ok) for d, score, ok in rows]
        return Landscape(direction=workflow.direction, points=points, baseline=points[0])
    land = landscape(workflow, dataset)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([[p.digest, p.score, p.feasible] for p in land.points]))
    return land


def landscape(workflow: SuiteWorkflow, dataset: Dataset) -> Landscape:
    import _grid

    spec = workflow.spec
    base_report = workflow.report(spec.config, dataset)
    points = []
    for config in _grid.grid_configs(spec):
        report = workflow.report(config, dataset, memo=False)
        ok = feasible(report, base_report, spec.guardrails)
        points.append(Point(config=config, digest=config_hash(config), score=workflow.score(report), feasible=ok))
    return Landscape(direction=workflow.direction, points=points, baseline=points[0])


def main() -> None:
    """Print each suite workflow's landscape on dev and test."""
    import json

    os.environ.pop("GRAPHTUNE_MODEL", None)
    for name in sys.argv[1:] or suite_names():
        workflow = load_workflow(name)
        print(json.dumps({"workflow": name, "dev": workflow.landscape_dev.summary(), "test": workflow.landscape_test.summary()}))


if __name__ == "__main__":
    main()


# -- the replay against the real graph ----------------------------------------------------------------


def node_steps():
    """A callback handler collecting the graph's node executions in order, as ``steps``: tuples of
    (node, the simulated ms it returned or None, "Type: message" when it raised or None)."""
    from langchain_core.callbacks import BaseCallbackHandler

    class NodeSteps(BaseCallbackHandler):
        run_inline = True

        def __init__(self):
            self.runs: dict = {}

        def on_chain_start(self, serialized, inputs, *, run_id, metadata=None, name=None, **kwargs):
            if name and name == (metadata or {}).get("langgraph_node"):
                self.runs[run_id] = [name, None, None]

        def on_chain_end(self, outputs, *, run_id, **kwargs):
            if run_id in self.runs and isinstance(outputs, dict):
                self.runs[run_id][1] = outputs.get("sim_ms")

        def on_chain_error(self, error, *, run_id, **kwargs):
            if run_id in self.runs:
                self.runs[run_id][2] = f"{type(error).__name__}: {error}"

        @property
        def steps(self) -> list[tuple]:
            return [tuple(run) for run in self.runs.values()]

    return NodeSteps()


async def graph_run(spec: WorkflowSpec, config: dict, example: Example) -> dict:
    """Run the real graph on one example: what the replay must equal (simulated time scaled by the
    caller's ``SIM_TIME_SCALE``)."""
    from langchain_core.callbacks import UsageMetadataCallbackHandler

    from graphtune.evals.runner import read_output

    usage = UsageMetadataCallbackHandler()
    graph = spec.build_graph(config)
    nodes: list[str] = []
    final: dict = {}
    error = None
    try:
        async for mode, chunk in graph.astream(dict(example.inputs), {"callbacks": [usage]}, stream_mode=["updates", "values"]):
            if mode == "updates":
                nodes += [name for name in chunk if not name.startswith("__")]
            else:
                final = chunk
    except Exception as exc:  # as the eval runner reports it
        error = f"{type(exc).__name__}: {exc}"
    tokens = {m: (u.get("input_tokens", 0), u.get("output_tokens", 0)) for m, u in usage.usage_metadata.items()}
    out = spec.evals.output
    return {"nodes": nodes, "error": error, "sim_ms": None if error else final.get("sim_ms"), "tokens": tokens,
            "answer": read_output(final, out.answer) if not error else None,
            "sources": read_output(final, out.sources) if not error and out.sources else None}


def replay_view(spec: WorkflowSpec, replayed: Any) -> dict:
    """The replay in ``graph_run``'s terms."""
    out = spec.evals.output
    tokens = {replayed.model: (replayed.input_tokens, replayed.output_tokens)} if replayed.model else {}
    ok = [s.node for s in replayed.steps if not s.error]
    return {"nodes": ok, "error": replayed.error, "sim_ms": None if replayed.error else replayed.latency_ms,
            "tokens": {m: t for m, t in tokens.items() if t != (0, 0)},
            "answer": None if replayed.error else replayed.output.get(out.answer),
            "sources": None if replayed.error or not out.sources else replayed.output.get(out.sources)}


async def mismatches(workflow: SuiteWorkflow, configs: list[dict], examples: list[Example]) -> list[str]:
    """Every difference between the replay and the real graph over ``configs`` x ``examples``:
    node sequence (as a multiset; parallel branches finish in any order), error, simulated time,
    tokens per model and the fields the evaluators read."""
    found = []
    for config in configs:
        for example in examples:
            real = await graph_run(workflow.spec, config, example)
            real["tokens"] = {m: t for m, t in real["tokens"].items() if t != (0, 0)}
            replay = replay_view(workflow.spec, workflow.module.replay(config, example))
            for key in ("error", "tokens", "answer", "sources"):
                if real[key] != replay[key]:
                    found.append(f"{config_hash(config)[:8]} {example.id} {key}: graph {real[key]!r} != replay {replay[key]!r}")
            if sorted(real["nodes"]) != sorted(replay["nodes"]):
                found.append(f"{config_hash(config)[:8]} {example.id} nodes: graph {real['nodes']} != replay {replay['nodes']}")
            if real["sim_ms"] is not None or replay["sim_ms"] is not None:
                if real["sim_ms"] is None or replay["sim_ms"] is None or abs(real["sim_ms"] - replay["sim_ms"]) > 1e-6 * max(1.0, abs(replay["sim_ms"])):
                    found.append(f"{config_hash(config)[:8]} {example.id} sim_ms: graph {real['sim_ms']!r} != replay {replay['sim_ms']!r}")
    return found


async def runner_mismatches(workflow: SuiteWorkflow, configs: list[dict], examples: list[Example]) -> list[str]:
    """Every per-example score where graphtune's real ``EvalRunner`` and the replay disagree (latency
    aside: the runner measures wall time, the replay reports simulated time)."""
    from graphtune.evals.runner import EvalRunner

    subset = workflow.dev.model_copy(update={"examples": examples})
    found = []
    for config in configs:
        report = await EvalRunner(workflow.spec).run(config, dataset=subset)
        for result in report.results:
            example = next(e for e in examples if e.id == result.example_id)
            expected = workflow.result(config, example)
            for metric, value in result.scores.items():
                if metric == "latency_ms":
                    continue
                want = expected.scores.get(metric)
                if (value is None) != (want is None) or (value is not None and abs(value - want) > 1e-9):
                    found.append(f"{config_hash(config)[:8]} {example.id} {metric}: runner {value!r} != replay {want!r}")
    return found


def sample_configs(workflow: SuiteWorkflow, count: int = 3, seed: int = 0, *, best: bool = True) -> list[dict]:
    """The shipped config, the best grid config on dev (scoring the whole grid), and grid configs drawn at random."""
    import random

    import _grid

    grid = _grid.grid_configs(workflow.spec)
    picks = [workflow.spec.config] + ([workflow.landscape_dev.best.config] if best else [])
    return picks + random.Random(seed).sample(grid, min(len(grid), max(0, count - len(picks))))
