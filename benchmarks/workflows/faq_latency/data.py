"""The FAQ service's eval rows: customer questions (popular FAQ entries asked more often), labelled
with the entry's current fact and source. Dev and test are drawn from one stream, so they share a
distribution; ``python data.py`` writes ``dev.jsonl`` and ``test.jsonl`` beside this file, byte-identical
on every run."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

try:
    from .logic import DOCS
except ImportError:  # run as a script: import through the suite's package path
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from workflows.faq_latency.logic import DOCS

DEV_ROWS, TEST_ROWS = 300, 200
HERE = Path(__file__).resolve().parent


def generate(seed: int = 0) -> tuple[list[dict], list[dict]]:
    rng = random.Random(f"faq_latency:{seed}")
    popularity = [1.0 / (rank + 1) ** 0.7 for rank in range(len(DOCS))]
    docs = list(DOCS)
    rng.shuffle(docs)
    rows = []
    for n in range(DEV_ROWS + TEST_ROWS):
        split, number = ("dev", n + 1) if n < DEV_ROWS else ("test", n - DEV_ROWS + 1)
        doc = rng.choices(docs, weights=popularity)[0]
        row_id = f"{split}-{number:04d}"
        rows.append({
            "id": row_id,
            "inputs": {"request_id": row_id, "question": rng.choice(doc.questions)},
            "expected": {"answer": f"{doc.lead} {doc.fact}.", "facts": [doc.fact], "sources": [doc.id]},
            "tags": [doc.topic, doc.category],
        })
    return rows[:DEV_ROWS], rows[DEV_ROWS:]


def dumps(rows: list[dict]) -> str:
    return "".join(json.dumps(r, sort_keys=True) + "\n" for r in rows)


def write(rows: list[dict], path: Path) -> None:
    path.write_bytes(dumps(rows).encode("utf-8"))


if __name__ == "__main__":
    dev, test = generate()
    write(dev, HERE / "dev.jsonl")
    write(test, HERE / "test.jsonl")
    print(f"wrote {len(dev)} dev and {len(test)} test rows to {HERE}")
