"""Eval datasets: JSONL rows of ``{id, inputs, expected, tags}``.

``expected`` may be missing: such rows (for example disliked production runs turned into rows by
``graphtune evals from-traces``) are run but not scored for quality until someone labels them.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError


class DatasetError(ValueError):
    """A dataset that cannot be used; the message names the file and row."""


class Example(BaseModel):
    model_config = ConfigDict(extra="allow")  # e.g. "observed" on rows taken from traces

    id: str = Field(min_length=1)
    inputs: dict[str, Any]
    expected: dict[str, Any] | None = None
    tags: list[str] = Field(default_factory=list)

    @property
    def labelled(self) -> bool:
        return bool(self.expected)


class Dataset(BaseModel):
    name: str
    path: str
    hash: str = Field(description="sha256 of the file's bytes: a changed row invalidates cached results")
    examples: list[Example]

    def select(self, *, limit: int | None = None, tags: list[str] | None = None) -> list[Example]:
        rows = [e for e in self.examples if not tags or set(tags) & set(e.tags)]
        return rows[:limit] if limit else rows


def load_dataset(path: str | Path, name: str | None = None) -> Dataset:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{path}: cannot read dataset: {exc.strerror or exc}") from None
    examples: list[Example] = []
    seen: dict[str, int] = {}
    for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DatasetError(f"{path}:{number}: not valid JSON ({exc.msg} at column {exc.colno})") from None
        if not isinstance(row, dict):
            raise DatasetError(f"{path}:{number}: expected a JSON object with id, inputs, expected, tags")
        try:
            example = Example.model_validate(row)
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or 'row'}: {_message(e)}" for e in exc.errors())
            raise DatasetError(f"{path}:{number} (id {row.get('id', '?')!r}): {problems}") from None
        if example.id in seen:
            raise DatasetError(f"{path}:{number}: duplicate id {example.id!r} (first on line {seen[example.id]})")
        seen[example.id] = number
        examples.append(example)
    if not examples:
        raise DatasetError(f"{path}: the dataset has no rows")
    return Dataset(name=name or path.stem, path=str(path), hash=hashlib.sha256(data).hexdigest(), examples=examples)


def _message(error: dict) -> str:
    if error["type"] == "missing":
        return "required field is missing"
    return error["msg"]
