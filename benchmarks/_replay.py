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
from graphtune.tuning.configs import config_hash  # noqa: E402
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

    def result(self, config: dict, example: Example) -> ExampleResult:
        """One example's result, exactly as ``EvalRunner`` would score the real graph's run (latency is
        the simulated one); memoised per config and example."""
        key = (config_hash(config), example.id)
        hit = self._memo.get(key)
        if hit is None:
            hit = self._memo[key] = replay_result(self.spec, self.module, config, example)
        return hit

    def report(self, config: dict, dataset: Dataset, examples: list[Example] | None = None) -> EvalReport:
        examples = dataset.examples if examples is None else examples
        results = [self.result(config, e) for e in examples]
        summary = {m: summarize([r.scores[m] for r in results if r.scores.get(m) is not None]) for m in self.spec.evals.metrics}
        return EvalReport(workflow=self.spec.workflow, dataset=dataset.name, dataset_hash=dataset.hash,
                          config_hash=config_hash(config), results=results, summary=summary, examples_total=len(examples))

    def score(self, report: EvalReport) -> float | None:
        return report.value(self.spec.objective.metric, self.statistic)

    @cached_property
    def landscape_dev(self) -> Landscape:
        return landscape(self, self.dev)

    @cached_property
    def landscape_test(self) -> Landscape:
        return landscape(self, self.test)


def load_workflow(name: str) -> SuiteWorkflow:
    module = importlib.import_module(f"workflows.{name}")
    spec = load_spec(WORKFLOWS_DIR / name / "graphtune.yaml")
    names = [d.name for d in spec.evals.datasets]
    if names[:2] != ["dev", "test"]:
        raise ValueError(f"{spec.path}: evals.datasets must list dev then test, got {names}")
    dev = load_dataset(spec.dataset_path("dev"), "dev")
    test = load_dataset(spec.dataset_path("test"), "test")
    return SuiteWorkflow(name=name, module=module, spec=spec, dev=dev, test=test)


def replay_result(spec: WorkflowSpec, module: Any, config: dict, example: Example) -> ExampleResult:
    replayed = module.replay(config, example)
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


def landscape(workflow: SuiteWorkflow, dataset: Dataset) -> Landscape:
    import _grid

    spec = workflow.spec
    base_report = workflow.report(spec.config, dataset)
    points = []
    for config in _grid.grid_configs(spec):
        report = base_report if config_hash(config) == config_hash(spec.config) else workflow.report(config, dataset)
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
