"""The lock (requirements/*.txt, written by ``make lock``) pins every dependency pyproject.toml names, at
a version pyproject.toml allows, and the core lock is the full lock's core: a dependency added to
pyproject.toml without ``make lock`` fails here, not on a user's machine."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def pins(name: str) -> dict[str, str]:
    """``requirements/NAME.txt`` as {package: pinned version}."""
    found = {}
    for number, line in enumerate((ROOT / "requirements" / f"{name}.txt").read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        (spec,) = requirement.specifier
        assert spec.operator == "==", f"requirements/{name}.txt:{number}: {line!r} is not an exact pin"
        found[canonicalize_name(requirement.name)] = spec.version
    return found


def declared(*groups: str) -> list[Requirement]:
    """The requirements of the core (``core``) and of the named extras, the project's own extras left out."""
    lines = [line for group in groups
             for line in (PROJECT["dependencies"] if group == "core" else PROJECT["optional-dependencies"][group])]
    return [r for r in map(Requirement, lines) if canonicalize_name(r.name) != "graphtune"]


PROVIDER_EXTRAS = {"anthropic", "ollama"}  # a model provider's integration: the user's choice, outside [dev] and its lock


@pytest.mark.parametrize("lock, groups", [
    ("core", ("core",)),
    ("dev", ("core", *(set(PROJECT["optional-dependencies"]) - PROVIDER_EXTRAS))),
])
def test_the_lock_pins_every_declared_dependency_at_an_allowed_version(lock, groups):
    pinned = pins(lock)
    for requirement in declared(*groups):
        name = canonicalize_name(requirement.name)
        assert name in pinned, f"{requirement} (pyproject.toml) is not in requirements/{lock}.txt: run make lock"
        assert requirement.specifier.contains(pinned[name], prereleases=True), (
            f"requirements/{lock}.txt pins {name}=={pinned[name]}, outside pyproject.toml's {requirement}: run make lock")


def test_the_core_lock_is_the_full_locks_core():
    core, dev = pins("core"), pins("dev")
    assert {name: (version, dev.get(name)) for name, version in core.items() if dev.get(name) != version} == {}


def test_dev_includes_every_other_extra():
    dev = Requirement(next(r for r in PROJECT["optional-dependencies"]["dev"] if r.startswith("graphtune[")))
    assert dev.extras == set(PROJECT["optional-dependencies"]) - {"dev"} - PROVIDER_EXTRAS
