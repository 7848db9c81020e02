"""The controller's first step: turn a chat message or a structured request into a checked ``TuningRequest``.

The node takes three kinds of input:

- ``state["request"]`` already set, as a dict from the CLI or SDK. It is validated, and the goal and
  guardrails it leaves out come from the spec.
- a chat message (the last human message). With a model configured, the message is read by the
  model with structured output (``RequestDraft``) and the draft is checked against the spec. A
  malformed or invalid draft gets one retry with the reasons; after that the deterministic parser
  reads the message, and the reply says so. Fields the model left out that the deterministic reader
  finds in the message ("try 3 candidates") are filled in, and the notes name them. With no model,
  the deterministic parser reads it.
- ``state["spec"]`` set by the CLI to a spec file or bundled name. That fixes the workflow, so the
  message only has to state the goal.

With a model configured, its endpoint is checked first (one ``GET /models``): an endpoint that
cannot be reached or refuses the key ends the run here as ``failed``, with what to fix.

Every outcome is a state update; intake does not raise on what a person typed. When there is no
request, the update sets ``request`` to None and ``outcome`` to ``unknown_workflow`` or
``failed``, and the graph ends there. Spec files are read and the model is built in a thread,
because async nodes must not block the LangGraph server's event loop.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime
from langgraph.types import Overwrite
from pydantic import BaseModel

from graphtune.graphs.context import ControllerContext
from graphtune.graphs.state import ControllerState, Outcome
from graphtune.llm import OFFLINE_NOTICE, endpoint_problem
from graphtune.prompts import render_prompt
from graphtune.spec import BUNDLED_SPECS, SpecError, WorkflowSpec, load_spec
from graphtune.tuning.request import Budget, TuningRequest
from graphtune.tuning.request_parser import (
    DEFAULT_MARGIN,
    DEFAULT_MAX_RATIO,
    DraftProblems,
    ParsedRequest,
    RequestDraft,
    RequestError,
    UnknownWorkflow,
    check_draft,
    complete_request,
    find_workflows,
    metrics_of,
    parse_request,
    quality_metric,
    resolve_workflow,
)

STEP = "intake"
MODEL_ATTEMPTS = 2  # the first answer, and one retry told what was wrong


class _Specs(BaseModel):
    """The workflows this run may tune: name -> spec, and name -> the source string later steps load it from."""

    specs: dict[str, WorkflowSpec]
    sources: dict[str, str]
    fixed: str | None = None  # set when state["spec"] chose the workflow
    broken: dict[str, str] = {}  # name -> why its spec failed to load


async def intake(state: ControllerState, runtime: Runtime[ControllerContext]) -> dict:
    ctx = runtime.context if runtime.context is not None else ControllerContext()
    try:
        known = await asyncio.to_thread(_load_specs, ctx, state.get("spec"))
    except (SpecError, OSError) as exc:  # OSError: e.g. the path is a directory
        return _stop("failed", f"I cannot load the spec {state.get('spec')!r}: {exc}")

    fixed_spec = known.specs[known.fixed] if known.fixed else None
    if ctx.has_model() and (problem := await _model_problem(ctx, fixed_spec)):
        return _stop("failed", f"The model is unusable, so this run stops here: {problem}.")

    if state.get("request") is not None:
        return _from_structured(state["request"], known)

    text = _last_human_text(state.get("messages") or [])
    if not known.fixed and (named := find_workflows(text, [*known.specs, *known.broken])) and named[0][0] in known.broken:
        return _broken(named[0][0], known)
    usage: list[dict] = []
    if not ctx.has_model():
        result = parse_request(text, known.specs, workflow=known.fixed)
        how = f"{OFFLINE_NOTICE}; read by the deterministic parser"
    elif not text.strip():
        result = parse_request(text, known.specs, workflow=known.fixed)
        how = "empty message: the spec's defaults, without asking the model"
    else:
        result, usage, reasons = await _read_with_model(ctx, text, known, fixed_spec)
        how = "read by the model, checked against the spec"
        if result is None:
            result = parse_request(text, known.specs, workflow=known.fixed)
            how = ("the model's answer was unusable twice (" + "; ".join(reasons)
                   + "); read by the deterministic parser instead")
    if isinstance(result, UnknownWorkflow):
        return _stop("unknown_workflow", _unknown_message(result, known), usage=usage)
    request = result.request.model_copy(update={"notes": [how, *result.request.notes]})
    return _success(request, known.sources[result.name], usage)


# -- inputs ------------------------------------------------------------------------------------------


def _load_specs(ctx: ControllerContext, fixed: str | None) -> _Specs:
    """Blocking (it reads files): call through ``asyncio.to_thread``."""
    if fixed:
        source = str(ctx.specs.get(fixed, fixed))
        spec = load_spec(source)  # a bad fixed spec is the run's failure: let SpecError say why
        return _Specs(specs={spec.workflow: spec}, sources={spec.workflow: source}, fixed=spec.workflow)
    sources = {name: name for name in BUNDLED_SPECS} | {name: str(path) for name, path in ctx.specs.items()}
    specs, broken = {}, {}
    for name, source in sources.items():
        try:
            specs[name] = load_spec(source)
        except (SpecError, OSError) as exc:
            broken[name] = str(exc)
    return _Specs(specs=specs, sources=sources, broken=broken)


def _last_human_text(messages: list) -> str:
    """The text of the last human message; content may be a string or a list of content blocks."""
    for message in reversed(messages):
        if getattr(message, "type", None) != "human":
            continue
        content = message.content
        if isinstance(content, str):
            return content
        parts = [c if isinstance(c, str) else c.get("text", "") for c in content
                 if isinstance(c, str) or (isinstance(c, dict) and c.get("type") == "text")]
        return "\n".join(p for p in parts if p)
    return ""


def _from_structured(data: Any, known: _Specs) -> dict:
    if isinstance(data, BaseModel):
        data = data.model_dump(mode="json")
    if not isinstance(data, dict):
        return _stop("failed", f"The structured request must be a mapping of TuningRequest fields, not {type(data).__name__}.")
    wanted = data.get("workflow")
    if known.fixed:
        name = known.fixed
        if wanted and resolve_workflow(str(wanted), [name]) is None:
            return _stop("failed", f"The request names workflow {wanted!r}, but the spec given is {name}'s.", workflow=name)
    else:
        name = resolve_workflow(wanted, known.specs) if isinstance(wanted, str) else None
        if name is None and isinstance(wanted, str) and (broken := resolve_workflow(wanted, known.broken)):
            return _broken(broken, known)
        if name is None:
            mentioned = str(wanted) if wanted else None
            return _stop("unknown_workflow", _unknown_message(UnknownWorkflow(mentioned=mentioned, known=_descriptions(known)), known))
    try:
        request = complete_request(data, known.specs[name])
    except RequestError as exc:
        return _stop("failed", f"The structured request for {name} is invalid: {exc}", workflow=known.specs[name].workflow)
    request = request.model_copy(update={"notes": ["structured request, checked against the spec", *request.notes]})
    return _success(request, known.sources[name], [])


# -- the model ---------------------------------------------------------------------------------------


async def _model_problem(ctx: ControllerContext, spec: WorkflowSpec | None) -> str | None:
    """Why the configured model cannot be used (its integration is not installed, unreachable endpoint,
    refused key), checked once here so a dead endpoint fails the run at once instead of every later call."""
    try:
        model = await asyncio.to_thread(ctx.build_chat_model, spec)
    except Exception as exc:  # noqa: BLE001 - a model that cannot even be built is the run's failure
        return f"cannot build the model {ctx.model!r}: {type(exc).__name__}: {_short(exc)}"
    return await endpoint_problem(model)


async def _read_with_model(ctx: ControllerContext, text: str, known: _Specs, spec: WorkflowSpec | None
                           ) -> tuple[ParsedRequest | UnknownWorkflow | None, list[dict], list[str]]:
    """(result or None when the model's answer stayed unusable, token usage per call, last reasons).

    A usable draft is completed by the deterministic reader for every field the model left out."""
    model = await asyncio.to_thread(ctx.build_chat_model, spec)
    # include_raw keeps the AIMessage, and with it usage_metadata, which parsing would drop
    reader = model.with_structured_output(RequestDraft, include_raw=True)
    values = _prompt_values(known)
    usage: list[dict] = []
    reasons: list[str] = []
    for _ in range(MODEL_ATTEMPTS):
        feedback = "\n".join(f"- {r}" for r in reasons)
        prompt = await asyncio.to_thread(render_prompt, "intake", **values, feedback=feedback)
        try:
            out = await reader.ainvoke([SystemMessage(prompt), HumanMessage(text)])
        except Exception as exc:  # noqa: BLE001 - a failing model must not fail the run: retry, then fall back
            reasons = [f"the model call failed: {type(exc).__name__}: {_short(exc)}"]
            continue
        usage.append(_usage(out.get("raw")))
        draft, error = out.get("parsed"), out.get("parsing_error")
        if error is not None or not isinstance(draft, RequestDraft):
            reasons = [f"the answer is not a valid RequestDraft: {_short(error) if error else 'no structured answer'}"]
            continue
        result = check_draft(draft, known.specs, workflow=known.fixed, text=text)
        if not isinstance(result, DraftProblems):
            return result, usage, []
        reasons = result.reasons
    return None, usage, reasons


def _prompt_values(known: _Specs) -> dict[str, str]:
    """The facts the prompt lists: each workflow's metrics, objective, guardrails and tunables, and the budget fields."""
    blocks = []
    for name, spec in known.specs.items():
        tunables = ", ".join(f"{path} ({domain.type})" for path, domain in spec.tunables.items())
        guardrails = "; ".join(g.describe() for g in spec.guardrails) or "none"
        blocks.append("\n".join([
            f"### {name}",
            spec.description or "(no description)",
            f"- metrics: {', '.join(metrics_of(spec))}",
            f"- quality metric: {quality_metric(spec) or 'none'}",
            f"- objective: {spec.objective.direction} {spec.objective.metric}",
            f"- spec guardrails: {guardrails}",
            f"- tunables: {tunables or 'none'}",
        ]))
    budget = "\n".join(f"  - {name}: {field.description} (default {field.default})" for name, field in Budget.model_fields.items())
    return {"workflows": "\n\n".join(blocks) or "(none)", "budget": budget,
            "margin": f"{DEFAULT_MARGIN:g}", "max_ratio": f"{DEFAULT_MAX_RATIO:g}"}


def _usage(raw: Any) -> dict:
    meta = getattr(raw, "usage_metadata", None) or {}
    return {"step": STEP, "input_tokens": int(meta.get("input_tokens", 0)), "output_tokens": int(meta.get("output_tokens", 0))}


def _short(error: object, limit: int = 400) -> str:
    text = " ".join(str(error).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


# -- updates -----------------------------------------------------------------------------------------


def _success(request: TuningRequest, source: str, usage: list[dict]) -> dict:
    """A new tuning run; on a thread that already ran one, everything that run produced is cleared."""
    return {
        "request": request.model_dump(mode="json"),
        "spec": source,
        "round": 0,
        "started_at": time.time(),
        "messages": [AIMessage(_summary(request), name=STEP)],
        **_fresh_run(),
        "controller_usage": Overwrite(usage),
    }


def _fresh_run() -> dict[str, Any]:
    return {"baseline": None, "observation": None, "eval_observation": None, "decision": None, "report": None, "approval": None,
            "approval_error": None, "outcome": None, "tuning_claim": None, "experiment": None,
            "candidates": Overwrite([]), "rejected_proposals": Overwrite([]), "evals": Overwrite({})}


def _stop(status: str, message: str, *, workflow: str | None = None, usage: list[dict] | None = None) -> dict:
    """No request: the graph routes ``request is None`` to END, with the reason in ``outcome``."""
    update: dict[str, Any] = {
        "request": None,
        "outcome": Outcome(status=status, workflow=workflow, message=message).model_dump(),
        "messages": [AIMessage(message, name=STEP)],
    }
    if usage:
        update["controller_usage"] = usage
    return update


def _summary(request: TuningRequest) -> str:
    budget = request.budget
    parts = [f"{budget.candidates} candidates", f"{budget.rounds} rounds"]
    parts += [f"{budget.wall_time_s:g} s"] if budget.wall_time_s else []
    parts += [f"{budget.examples} example evaluations"] if budget.examples else []
    parts += [f"{budget.tokens} tokens"] if budget.tokens else []
    parts += [f"${budget.cost_usd:g}"] if budget.cost_usd else []
    lines = [
        f"Tuning {request.workflow}: {request.goal.describe()}.",
        "Guardrails: " + ("; ".join(g.describe() for g in request.guardrails) or "none") + ".",
        "Budget: " + ", ".join(parts) + " (whichever comes first).",
        "Scope: " + (", ".join(request.scope) if request.scope else "all tunables") + ".",
        "How I read it:",
        *(f"- {note}" for note in request.notes),
    ]
    return "\n".join(lines)


def _descriptions(known: _Specs) -> dict[str, str]:
    return {name: spec.description for name, spec in known.specs.items()}


def _unknown_message(result: UnknownWorkflow, known: _Specs) -> str:
    message = result.describe()
    if known.broken:
        message += "\nSpecs that failed to load: " + "; ".join(f"{name} ({error})" for name, error in known.broken.items())
    return message


def _broken(name: str, known: _Specs) -> dict:
    return _stop("failed", f"The spec of workflow {name} cannot be loaded: {known.broken[name]}", workflow=name)
