"""What a live experiment tests: the goal's live stand-in and the guardrails, the request's margins
carried over where live traffic records the metric, defaults elsewhere."""

from graphtune.spec import Guardrail, load_spec
from graphtune.tuning.experiment import GUARDRAILS, LiveGuardrail, check_guardrails, live_plan
from graphtune.tuning.request import TuningGoal, TuningRequest
from graphtune.tuning.sequential import ArmStats


def request(metric: str, *guards: Guardrail) -> TuningRequest:
    return TuningRequest(workflow="support_qa", goal=TuningGoal(metric=metric, direction="maximize" if metric == "contains" else "minimize"),
                         guardrails=list(guards))


def test_quality_goal_is_net_feedback_with_the_default_guardrails():
    plan = live_plan(request("contains"))
    assert (plan.primary, plan.higher_is_better) == ("net_feedback", True)
    assert plan.guardrails == [g for g in GUARDRAILS if g.metric != "net_feedback"]


def test_spec_guardrails_carry_over_with_their_margins():
    plan = live_plan(TuningRequest.default_for(load_spec("support_qa")))
    described = [g.describe() for g in plan.guardrails]
    # p95 latency <= 1.2x and error <= 0.05 from the spec; cost is offline-only; feedback is the goal itself
    assert described == ["p95 latency_ms at most 1.2x baseline", "error at most 0.05"]


def test_a_latency_goal_drops_latency_guardrails_and_keeps_margins_in_the_metric_units():
    plan = live_plan(request("latency_ms", Guardrail(metric="latency_ms", statistic="p95", max_ratio=1.5),
                             Guardrail(metric="error", margin=0.01), Guardrail(metric="contains", margin=0.02)))
    assert plan.primary == "latency_ms" and not plan.higher_is_better
    assert [g.describe() for g in plan.guardrails] == ["error at most 0.01 above baseline",
                                                       "net_feedback at most 0.03 below baseline"]


class _Evidence:
    """Just what check_guardrails reads from a LiveEvidence."""

    def __init__(self, arms: dict, exceeding: tuple[int, int]):
        self._arms, self._exceeding = arms, exceeding

    def arms(self, metric):
        return self._arms[metric]

    def latency_exceeding(self, quantile, max_ratio):
        return self._exceeding


def test_quantile_and_absolute_limits_are_tested_on_the_candidate():
    errors = (ArmStats.of_counts(10, 2000), ArmStats.of_counts(10, 6000))
    latency = (ArmStats.of_values([100.0, 110.0] * 1000), ArmStats.of_values([100.0, 105.0] * 3000))
    evidence = _Evidence({"error": errors, "latency_ms": latency}, exceeding=(20, 2000))  # 1% above 1.5x base p95
    p95, ceiling = (LiveGuardrail(metric="latency_ms", statistic="p95", margin=0.5, relative=True),
                    LiveGuardrail(metric="error", max_value=0.05))
    held = check_guardrails(evidence, [p95, ceiling])
    assert [g.decision for g in held] == ["non_inferior", "non_inferior"]
    broken = check_guardrails(_Evidence({"error": errors, "latency_ms": latency}, exceeding=(400, 2000)), [p95])
    assert broken[0].decision == "inferior"  # 20% of candidate runs above the limit: its p95 is surely over
