"""``graphtune init``: a starter spec (``graphtune.yaml``) and dataset stub from a graph factory and its config."""

from __future__ import annotations

import inspect
import json
import re
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
import yaml

from graphtune.cli.common import JsonOpt, console, fail, print_json

GRAPH_REF = re.compile(r"^(?P<target>[A-Za-z_][\w.]*|[\w./-]+\.py):(?P<attr>[A-Za-z_]\w*)$")
GENERIC_NAMES = {"graph", "graphs", "app", "main", "agent", "workflow", "__init__"}


def _factory(ref: str):
    from graphtune.spec import import_target

    match = GRAPH_REF.match(ref)
    if not match:
        raise fail(f"GRAPH {ref!r}: expected module:function or path/to/file.py:function")
    try:
        module = import_target(match["target"], Path.cwd())
    except Exception as exc:
        raise fail(f"GRAPH {ref!r}: cannot import {match['target']!r}: {type(exc).__name__}: {exc}") from None
    factory = getattr(module, match["attr"], None)
    if not callable(factory):
        raise fail(f"GRAPH {ref!r}: {match['target']} has no callable {match['attr']!r}")
    return factory


def _config(path: Path | None, factory, ref: str) -> dict:
    """The config file's mapping, else the default of the factory's first parameter."""
    if path is None:
        params = list(inspect.signature(factory).parameters.values())
        default = params[0].default if params else inspect.Parameter.empty
        if not isinstance(default, dict):
            raise fail(f"GRAPH {ref!r}: the factory has no default config; pass --config FILE (YAML or JSON)")
        return default
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))  # JSON is YAML
    except (OSError, yaml.YAMLError) as exc:
        raise fail(f"--config {path}: cannot read it: {getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(data, dict) or not data:
        raise fail(f"--config {path}: expected a mapping of settings (the dict the factory takes), got {type(data).__name__}")
    return data


def _schemas(factory, config: dict, ref: str) -> tuple[dict, dict, bool]:
    """(input fields, output fields, whether the graph declares its own input schema)."""
    from graphtune.starter_spec import state_fields

    try:
        graph = factory(config)
    except Exception as exc:
        raise fail(f"GRAPH {ref!r}: the factory raised {type(exc).__name__}: {exc} for this config") from None
    builder = getattr(graph, "builder", None)
    if builder is None:
        raise fail(f"GRAPH {ref!r}: the factory returned {type(graph).__name__}, expected a compiled LangGraph graph")
    state = getattr(builder, "state_schema", None)
    inputs = getattr(builder, "input_schema", None) or state
    return state_fields(inputs), state_fields(getattr(builder, "output_schema", None) or state), inputs is not state


def _workflow_name(ref: str) -> str:
    target = GRAPH_REF.match(ref)["target"]
    parts = [p for p in re.split(r"[./\\]", target.removesuffix(".py")) if p]
    name = next((p for p in reversed(parts) if p not in GENERIC_NAMES), parts[-1] if parts else "workflow")
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name)


def _graph_in_spec(ref: str, spec_dir: Path) -> str:
    """A file target relative to the spec's folder (where the spec resolves it); a module as given."""
    target, _, attr = ref.rpartition(":")
    if not target.endswith(".py"):
        return ref
    file, folder = Path(target).resolve(), spec_dir.resolve()
    return f"{(file.relative_to(folder) if file.is_relative_to(folder) else file).as_posix()}:{attr}"


def init_command(graph: str, config_file: Path | None, output: Path, workflow: str | None, as_json: bool) -> None:
    from graphtune.spec import SpecError, load_spec
    from graphtune.starter_spec import example_row, starter_spec

    if output.exists():
        raise fail(f"{output} exists; graphtune init never overwrites a spec (move it, or pass --output)")
    factory = _factory(graph)
    config = _config(config_file, factory, graph)
    inputs, outputs, explicit = _schemas(factory, config, graph)
    name = workflow or _workflow_name(graph)
    text = starter_spec(workflow=name, graph=_graph_in_spec(graph, output.parent), config=config, outputs=outputs,
                        spec_name=output.name)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    try:
        spec = load_spec(output)
    except SpecError as exc:  # e.g. a config key YAML cannot keep: leave nothing half-made behind
        output.unlink()
        raise fail(f"the starter spec does not load: {exc}") from None
    dataset = spec.dataset_path()
    wrote_dataset = not dataset.exists()
    if wrote_dataset:
        dataset.write_text(json.dumps(example_row(inputs, outputs, explicit), ensure_ascii=False) + "\n", encoding="utf-8")
    summary: dict[str, Any] = {"spec": str(output), "workflow": spec.workflow, "graph": spec.graph,
                               "tunables": list(spec.tunables), "dataset": str(dataset), "dataset_written": wrote_dataset}
    if as_json:
        print_json(summary)
        return
    console.print(f"wrote {output}: workflow {spec.workflow}, {len(spec.tunables)} tunables guessed from the config",
                  markup=False)
    console.print(f"wrote {dataset}: one example row to fill in and copy" if wrote_dataset
                  else f"kept {dataset} (it exists)", markup=False)
    console.print(f"next: check the TODOs in {output}, add rows, then\n"
                  f"  graphtune eval --spec {output}\n"
                  f"  graphtune tune --spec {output} --dry-run \"what you want\"", markup=False)


def register(app: typer.Typer) -> None:
    @app.command("init")
    def init(
        graph: Annotated[str, typer.Argument(help="The graph factory: module:function or path/to/file.py:function (takes the config dict, returns a compiled graph).")],
        config: Annotated[Optional[Path], typer.Option("--config", "-c", help="The config the factory takes, as a YAML or JSON file. Default: the factory's default argument.")] = None,
        output: Annotated[Path, typer.Option("--output", "-o", help="Where to write the spec; the dataset stub goes beside it.")] = Path("graphtune.yaml"),
        workflow: Annotated[Optional[str], typer.Option("--workflow", "-w", help="Workflow name (default: from the factory's module).")] = None,
        as_json: JsonOpt = False,
    ):
        """Write a starter spec from a graph factory and its config: tunables guessed from the config's leaves, a dataset stub, an objective to set."""
        init_command(graph, config, output, workflow, as_json)
