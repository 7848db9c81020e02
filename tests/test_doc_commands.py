"""Every ``graphtune ...`` command that README.md and docs/*.md show works as shown.

Commands are read from fenced shell blocks (``bash``, ``sh``, ``console`` or unlabelled) and from inline
code in the prose. Each one is parsed by the real CLI: the command exists and so does every option, with
values of the right type, and no deprecated spelling (--backend, --actor, --comment). The commands of
shell blocks also run, in order, on a scratch database in a scratch directory (one per page), except:

- a line that ends with a comment starting ``#:`` (the comment says why: a long tune, a server);
- a transcript line (``$ graphtune ...``): the output of an earlier run, shown as it was.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import typer
from typer._click.exceptions import UsageError  # typer 0.29 ships its own click
from typer.testing import CliRunner

from graphtune.cli import app
from graphtune.cli.common import DEPRECATED_OPTIONS

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCKS = {"", "bash", "sh", "shell", "console"}
PARSE_ONLY = "#:"
FENCE = re.compile(r"^\s*```(\w*)")
INLINE = re.compile(r"`(graphtune [^`]+)`")
CLI = typer.main.get_command(app)
TOP_LEVEL = set(CLI.commands)


@dataclass(frozen=True)
class DocCommand:
    where: str  # README.md:27
    argv: tuple[str, ...]  # after "graphtune"
    runs: bool
    inline: bool = False  # named in the prose: maybe a fragment (`graphtune traces`, `graphtune init`)

    def __str__(self) -> str:
        return f"{self.where}: graphtune {shlex.join(self.argv)}"


def split_comment(line: str) -> tuple[str, str]:
    """``code  # comment`` -> (code, comment), as the shell reads it: a ``#`` that starts a word, unquoted."""
    quote = None
    for position, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (position == 0 or line[position - 1].isspace()):
            return line[:position].rstrip(), line[position:]
    return line.rstrip(), ""


def commands_of(page: Path) -> list[DocCommand]:
    name = page.relative_to(ROOT).as_posix()
    found: list[DocCommand] = []
    block: str | None = None  # the language of the fenced block we are in
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        fence = FENCE.match(line)
        if fence:
            block = None if block is not None else fence.group(1)
            continue
        if block is None:
            found += [DocCommand(f"{name}:{number}", tuple(words[1:]), runs=False, inline=True)
                      for words in map(shlex.split, INLINE.findall(line))
                      if words[1] in TOP_LEVEL or words[1].startswith("-")]  # not a quoted log line
            continue
        if block not in SHELL_BLOCKS:
            continue
        code, comment = split_comment(line.strip())
        transcript = code.startswith("$ ")
        code = code.removeprefix("$ ")
        if code.split(" ", 1)[0] != "graphtune":
            continue
        found.append(DocCommand(f"{name}:{number}", tuple(shlex.split(code)[1:]),
                                runs=not transcript and not comment.startswith(PARSE_ONLY)))
    return found


ALL = [command for page in PAGES for command in commands_of(page)]


def parse(argv: tuple[str, ...], fragment: bool = False) -> None:
    """Parse like the CLI does, without running anything: UsageError for an unknown command or option,
    and, unless ``fragment``, for a missing or extra argument or a value of the wrong type."""
    command, path, args = CLI, ["graphtune"], list(argv)
    while getattr(command, "commands", None) and args and not args[0].startswith("-"):
        path.append(args.pop(0))
        if path[-1] not in command.commands:
            raise UsageError(f"no such command: {' '.join(path)}")
        command = command.commands[path[-1]]
    if fragment:  # prose names a command and some of its options, placeholders for the rest
        known = {"--help", *(name for param in command.params for name in param.opts)}
        unknown = [arg for arg in args if arg.startswith("-") and arg.split("=", 1)[0] not in known]
        if unknown:
            raise UsageError(f"no such option of {' '.join(path)}: {', '.join(unknown)}")
        return
    try:
        command.make_context(" ".join(path), args)
    except (typer.Exit, SystemExit):  # --version and --help print and stop: they parsed
        pass


def test_the_docs_show_commands():
    pages = {command.where.split(":")[0] for command in ALL}
    assert {"README.md", "docs/cli.md"} <= pages, pages
    assert any(command.runs for command in ALL)


@pytest.mark.parametrize("command", ALL, ids=str)
def test_a_doc_command_parses_against_the_cli(command):
    old = sorted(set(command.argv) & set(DEPRECATED_OPTIONS))
    assert not old, f"{command}: use {', '.join(DEPRECATED_OPTIONS[name] for name in old)} (the old spelling is deprecated)"
    try:
        parse(command.argv, fragment=command.inline)
    except UsageError as exc:
        pytest.fail(f"{command}: {exc.format_message()}")


MY_APP = '''
from typing import TypedDict

from langgraph.graph import END, START, StateGraph


class State(TypedDict, total=False):
    question: str
    answer: str


DEFAULT = {"answer": {"prefix": "A: ", "max_words": 40}}


def build_graph(config: dict = DEFAULT):
    """The README's example factory: a config dict in, a compiled graph out."""
    prefix = config["answer"]["prefix"]
    graph = StateGraph(State)
    graph.add_node("answer", lambda state: {"answer": prefix + state["question"]})
    graph.add_edge(START, "answer")
    graph.add_edge("answer", END)
    return graph.compile()
'''


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """A scratch project directory with the README's ``my_app/graph.py`` and ``config.yaml``, its own
    database, and no model, trace source or exporter from the environment."""
    (tmp_path / "my_app").mkdir()
    (tmp_path / "my_app" / "graph.py").write_text(MY_APP)
    (tmp_path / "config.yaml").write_text("answer: {prefix: 'A: ', max_words: 40}\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("GRAPHTUNE_DATABASE_URL", f"sqlite:///{tmp_path}/graphtune.db")
    for name in ("GRAPHTUNE_TRACES_URL", "GRAPHTUNE_MODEL", "OPENAI_BASE_URL", "OPENAI_API_KEY",
                 "LANGFUSE_PUBLIC_KEY", "LANGFUSE_SECRET_KEY", "GRAPHTUNE_OTLP_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    yield tmp_path
    for module in ("graph", "my_app", "my_app.graph"):  # imported by file path: the next page has its own
        sys.modules.pop(module, None)


@pytest.mark.parametrize("page", [page for page in PAGES if any(c.runs for c in commands_of(page))],
                         ids=lambda page: page.relative_to(ROOT).as_posix())
def test_a_pages_commands_run_on_a_scratch_database(page, workspace):
    failed = []
    for command in (c for c in commands_of(page) if c.runs):
        done = CliRunner().invoke(app, list(command.argv))
        if done.exit_code != 0:
            failed.append(f"{command}\n  exit {done.exit_code}: {(done.output or repr(done.exception)).strip()[-600:]}")
    assert not failed, ("these commands fail as shown; fix them, or end the line with a '#: why' comment "
                        "if they cannot run in a test (a server, a long tune):\n" + "\n".join(failed))
