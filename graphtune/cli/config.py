"""``graphtune config``: the versioned configs of a workflow: show, history, diff, rollback, export, init."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
import yaml
from rich.markup import escape
from rich.table import Table

from graphtune.backends.config_store import ChangeLogEntry, ConfigStore, ConfigStoreError, ConfigVersion, open_config_store
from graphtune.backends.traces import UnknownBackendError
from graphtune.cli.common import AsOpt, DbOpt, JsonOpt, actor, console, fail, group, print_json
from graphtune.tuning.config_paths import config_diff, format_diff

config_app = group("Versioned workflow configs: show, history, diff, rollback, export, init.")

WorkflowOpt = Annotated[Optional[str], typer.Option("--workflow", "-w", help="Workflow name. Default: the workflow of --spec.")]
SpecOpt = Annotated[Path, typer.Option("--spec", help="Workflow spec file (or a bundled workflow's name).")]
DEFAULT_SPEC = Path("graphtune.yaml")


@contextmanager
def _store(db: str | None) -> Iterator[ConfigStore]:
    """The store, with its refusals (unknown version, lost compare-and-set) as one error line each."""
    try:
        store = open_config_store(db)
    except UnknownBackendError as exc:
        raise fail(str(exc)) from None
    try:
        yield store
    except ConfigStoreError as exc:
        raise fail(str(exc), code=1) from None
    finally:
        store.close()


def _load_spec(spec: Path):
    from graphtune.spec import SpecError, load_spec

    try:
        return load_spec(spec)
    except SpecError as exc:
        raise fail(str(exc)) from None


def _workflow(workflow: str | None, spec: Path) -> str:
    return workflow or _load_spec(spec).workflow


def _active(store: ConfigStore, workflow: str) -> ConfigVersion:
    version = store.active(workflow)
    if version is not None:
        return version
    stored = store.versions(workflow)
    if stored:
        raise fail(f"workflow {workflow!r} has {len(stored)} stored versions but none is active; "
                   "make one active with `graphtune config init` or a promotion", code=1)
    known = ", ".join(store.workflows()) or "none"
    raise fail(f"workflow {workflow!r} has no configs in {store.url} (workflows there: {known})", code=1)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (prompts) as ``|`` blocks, so exported specs stay readable."""


_Dumper.add_representer(
    str, lambda dumper, s: dumper.represent_scalar("tag:yaml.org,2002:str", s, style="|" if "\n" in s else None)
)


def _yaml(data) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=120)


def _weights(weights: dict) -> str:
    return ", ".join(f"v{v} {w * 100:.4g}%" for v, w in weights.items())


def _details(entry: ChangeLogEntry) -> str:
    if entry.action == "split":
        return _weights(entry.details.get("weights", {}))
    if "cleared_split" in entry.details:
        return f"cleared split {_weights(entry.details['cleared_split'])}"
    if entry.action == "register":
        return f"from {entry.details.get('source', '?')}"
    return ""


def _with_config(text: str, spec: dict) -> str:
    """The spec's text with its top-level ``config:`` block replaced by ``spec["config"]`` and every other
    line (comments, flow style) kept as written; a plain dump of ``spec`` if the block is not found that way."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, line in enumerate(lines) if re.match(r"config\s*:", line)), None)
    if start is not None:
        end = start + 1
        while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t"):
            end += 1  # the block: indented lines and blank lines, up to the next top-level line
        while end > start + 1 and not lines[end - 1].strip():
            end -= 1  # blank lines before the next key stay where they are
        replaced = "".join(lines[:start]) + _yaml({"config": spec["config"]}) + "".join(lines[end:])
        try:
            if yaml.safe_load(replaced) == spec:
                return replaced
        except yaml.YAMLError:  # e.g. an alias to an anchor that was inside the old block
            pass
    return _yaml(spec)


@config_app.command("show")
def config_show(
    workflow: WorkflowOpt = None,
    version: Annotated[Optional[int], typer.Option("--version", help="A stored version instead of the active one.")] = None,
    spec: SpecOpt = DEFAULT_SPEC,
    db: DbOpt = None,
    as_json: JsonOpt = False,
):
    """The active (or a given) config as YAML, with its version, hash, who promoted it and the traffic split."""
    from graphtune.tracing.viewer import fmt_time

    name = _workflow(workflow, spec)
    with _store(db) as store:
        active = store.active(name)
        shown = store.get(name, version) if version is not None else _active(store, name)
        is_active = active is not None and active.version == shown.version
        promoted = next((e for e in store.history(name, limit=1000) if e.action in ("promote", "rollback")), None) if is_active else None
        split = store.split(name)
    if as_json:
        print_json({"config_version": shown.model_dump(), "active": is_active,
                    "promoted": promoted and promoted.model_dump(), "split": split and split.model_dump()})
        return
    state = "active" if is_active else f"not active; active is v{active.version}" if active else "not active"
    console.print(f"[bold]{escape(name)}[/bold] v{shown.version} ({state})  hash {shown.hash[:12]}")
    note = f": {shown.note}" if shown.note else ""
    console.print(f"stored {fmt_time(shown.created_at)} by {shown.created_by} from {shown.source}{note}", markup=False)
    if promoted:
        evidence = f" [{promoted.evidence}]" if promoted.evidence else ""
        verb = "promoted" if promoted.action == "promote" else "rolled back to"
        console.print(f"{verb} {fmt_time(promoted.at)} by {promoted.actor}: {promoted.reason}{evidence}", markup=False)
    if split:
        console.print(f"traffic split (revision {split.revision}): {_weights(split.weights)}", markup=False)
    console.print(_yaml(shown.config), markup=False, highlight=False, soft_wrap=True, end="")


@config_app.command("history")
def config_history(
    workflow: WorkflowOpt = None,
    limit: Annotated[int, typer.Option(help="How many entries.")] = 20,
    spec: SpecOpt = DEFAULT_SPEC,
    db: DbOpt = None,
    as_json: JsonOpt = False,
):
    """The change log, newest first: who registered, promoted, rolled back or split what, when and why."""
    from graphtune.tracing.viewer import fmt_time

    name = _workflow(workflow, spec)
    with _store(db) as store:
        entries = store.history(name, limit=limit)
        if not entries and not store.versions(name):
            raise fail(f"workflow {name!r} has no configs in {store.url} (workflows there: {', '.join(store.workflows()) or 'none'})", code=1)
    if as_json:
        print_json([e.model_dump() for e in entries])
        return
    table = Table(title=f"config history of {name}, newest first")
    for column in ("when", "action", "version", "from", "actor", "reason", "evidence", "details"):
        table.add_column(column, no_wrap=column == "when")
    for e in entries:
        style = {"promote": "bold", "rollback": "yellow"}.get(e.action, "")
        table.add_row(fmt_time(e.at), e.action, f"v{e.version}" if e.version else "-",
                      f"v{e.from_version}" if e.from_version else "-", e.actor, e.reason, e.evidence, _details(e), style=style)
    console.print(table)


@config_app.command("diff")
def config_diff_command(
    a: Annotated[int, typer.Argument(help="The old version.")],
    b: Annotated[int, typer.Argument(help="The new version.")],
    workflow: WorkflowOpt = None,
    spec: SpecOpt = DEFAULT_SPEC,
    db: DbOpt = None,
    as_json: JsonOpt = False,
):
    """What changed between two versions, one line per changed setting."""
    name = _workflow(workflow, spec)
    with _store(db) as store:
        diff = config_diff(store.get(name, a).config, store.get(name, b).config)
    if as_json:
        print_json([{"path": p, "old": old, "new": new} for p, old, new in diff])
        return
    console.print(f"[bold]{escape(name)}[/bold] v{a} -> v{b}")
    console.print(format_diff(diff), markup=False, highlight=False, soft_wrap=True)


@config_app.command("rollback")
def config_rollback(
    version: Annotated[int, typer.Argument(help="The stored version to make active again.")],
    reason: Annotated[str, typer.Option("--reason", "-m", help="Why: kept in the change log.")],
    who: AsOpt = None,
    evidence: Annotated[str, typer.Option(help="A link or eval run id backing the decision.")] = "",
    workflow: WorkflowOpt = None,
    spec: SpecOpt = DEFAULT_SPEC,
    db: DbOpt = None,
    as_json: JsonOpt = False,
):
    """Make an earlier version active again (refused if someone promoted meanwhile); clears any traffic split."""
    name, who = _workflow(workflow, spec), actor(who)
    with _store(db) as store:
        current = _active(store, name)
        target = store.rollback(name, version, actor=who, reason=reason, evidence=evidence)  # CAS against `current`
    diff = config_diff(current.config, target.config)
    if as_json:
        print_json({"workflow": name, "from_version": current.version, "version": target.version, "actor": who,
                    "reason": reason, "changes": [{"path": p, "old": old, "new": new} for p, old, new in diff]})
        return
    console.print(f"[bold]{escape(name)}[/bold]: rolled back from v{current.version} to v{target.version} by {escape(who)}: {escape(reason)}")
    console.print(format_diff(diff), markup=False, highlight=False, soft_wrap=True)


@config_app.command("export")
def config_export(
    workflow: WorkflowOpt = None,
    spec: SpecOpt = DEFAULT_SPEC,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Write here instead of stdout (may be the spec itself).")] = None,
    db: DbOpt = None,
):
    """The spec file with its config replaced by the active config; other keys keep their order."""
    if workflow is None:
        loaded = _load_spec(spec)
        name, path = loaded.workflow, loaded.path
    else:
        name, path = workflow, spec
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = yaml.safe_load(text)
    except (OSError, yaml.YAMLError) as exc:
        raise fail(f"{path}: cannot read the spec: {exc}") from None
    if not isinstance(data, dict):
        raise fail(f"{path}: expected a mapping at the top level")
    with _store(db) as store:
        active = _active(store, name)
    text = _with_config(text, {**data, "config": active.config})
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text, encoding="utf-8")
        console.print(f"wrote {output}: {name} v{active.version}", markup=False)


@config_app.command("init")
def config_init(
    spec: SpecOpt = DEFAULT_SPEC,
    who: AsOpt = None,
    db: DbOpt = None,
    as_json: JsonOpt = False,
):
    """Store the spec's config and make it active, unless the workflow already has an active version."""
    loaded = _load_spec(spec)
    with _store(db) as store:
        before = store.active(loaded.workflow)
        active = store.ensure_active(loaded.workflow, loaded.config, actor=actor(who))
    if as_json:
        print_json({"workflow": loaded.workflow, "version": active.version, "created": before is None})
    elif before is None:
        console.print(f"[bold]{loaded.workflow}[/bold]: v{active.version} from {escape(str(loaded.path))} is now active")
    else:
        console.print(f"[bold]{loaded.workflow}[/bold]: v{active.version} is already active; left unchanged "
                      "(use `graphtune config rollback` or the controller to change it)")
