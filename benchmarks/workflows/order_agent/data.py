"""The order agent's eval rows: customer questions about orders and products, with the right answer.

Dev and test come from one seeded generator with the same intent mix (stratified), so they share a
distribution. The expected
answer is every needed tool's true result (``logic.truth``). ``python data.py`` writes
``dev.jsonl`` and ``test.jsonl`` beside this file, byte-identical on every run.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):  # run as a script: import as the package the suite uses
    sys.path.insert(0, str(HERE.parent.parent))
    __package__ = "workflows.order_agent"

from . import logic  # noqa: E402

DEV_ROWS, TEST_ROWS = 200, 150
TEMPLATES = {  # each holds its intent's keyword (logic.INTENTS)
    "status": ["What's the status of order {o}?", "Can you check the status of my order {o}?"],
    "arrive": ["When will order {o} arrive?", "My order {o} hasn't come yet, when does it arrive?"],
    "stock": ["Is the {s} in stock?", "Do you have the {s} in stock again?"],
    "return": ["Can I return order {o} and get my money back?", "I want to return order {o}, am I eligible?"],
    "swap": ["Can I swap the {s} from order {o} for a new one, and when would it come?",
             "I'd like to swap the {s} in order {o}; how soon can it ship?"],
    "replacement": ["Order {o} came with a broken {s}: can I get a replacement or a refund, and how fast?",
                    "The {s} in order {o} is damaged. Replacement or refund, and when?"],
}
WEIGHTS = {"status": 0.15, "arrive": 0.2, "stock": 0.1, "return": 0.2, "swap": 0.15, "replacement": 0.2}
PRODUCTS = ["kettle", "desk lamp", "yoga mat", "backpack", "coffee grinder", "rain jacket", "blender", "office chair",
            "water bottle", "headphones", "cast-iron pan", "throw blanket"]
COLOURS = ["black", "white", "green", "blue", "grey", "red"]


def _row(rng: random.Random, row_id: str, intent: str) -> dict:
    order_id = f"A{rng.randrange(10000, 99999)}"
    sku = f"{rng.choice(COLOURS)} {rng.choice(PRODUCTS)}"
    question = rng.choice(TEMPLATES[intent]).format(o=order_id, s=sku)
    inputs = {"task_id": row_id, "question": question, "order_id": order_id, "sku": sku}
    assert logic.intent_of(question) == intent, question
    return {"id": row_id, "inputs": inputs, "expected": {"answer": logic.truth(inputs)}, "tags": [intent]}


def generate(seed: int = 0) -> tuple[list[dict], list[dict]]:
    rng = random.Random(f"order_agent:{seed}")
    splits, start = [], 0
    for size in (DEV_ROWS, TEST_ROWS):
        intents = _mix(size)
        rng.shuffle(intents)
        splits.append([_row(rng, f"oa-{start + i:04d}", intent) for i, intent in enumerate(intents)])
        start += size
    return splits[0], splits[1]


def _mix(size: int) -> list[str]:
    """The intents of a split in the shared proportions (stratified, so both splits mix tasks alike)."""
    counts = {k: int(w * size) for k, w in WEIGHTS.items()}
    for k in sorted(WEIGHTS, key=lambda k: -(WEIGHTS[k] * size % 1))[: size - sum(counts.values())]:
        counts[k] += 1
    return [k for k in WEIGHTS for _ in range(counts[k])]


def dump(rows: list[dict]) -> bytes:
    """A split's JSONL file, byte for byte."""
    return "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows).encode("utf-8")


def write(directory: Path = HERE) -> None:
    for name, rows in zip(("dev", "test"), generate()):
        (directory / f"{name}.jsonl").write_bytes(dump(rows))


if __name__ == "__main__":
    write()
