"""wide_rag's eval rows: questions over equipment manuals, each needing 1-4 facts from its corpus.

``python data.py`` writes ``dev.jsonl`` and ``test.jsonl`` beside this file, byte-identical on every
run. Dev and test are drawn from one distribution (one generator, interleaved ids).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEV_ROWS, TEST_ROWS = 180, 120

MACHINES = ["boiler", "chiller", "compressor", "conveyor", "dryer", "extruder", "furnace", "generator", "kiln",
            "mixer", "press", "pump", "separator", "turbine", "welder", "winch"]
PARTS = ["bearing", "belt", "breaker", "clutch", "damper", "filter", "gasket", "heater", "impeller", "nozzle",
         "relay", "seal", "sensor", "spindle", "valve", "rotor"]
CLAIMS = [("is torqued to", "newton metres"), ("is replaced every", "operating hours"), ("trips above", "degrees"),
          ("holds", "bar of pressure"), ("resets after", "seconds"), ("draws", "amperes at start"),
          ("is rated for", "kilograms"), ("is inspected every", "days"), ("runs at", "revolutions per minute"),
          ("tolerates", "millimetres of play")]
ASKS = ["What should a technician know before servicing the {m}?", "Summarise the {m} maintenance limits.",
        "Which settings matter for the {m} commissioning checklist?", "What does the {m} manual say about its parts?"]


def _row(rng: random.Random, rid: str) -> dict:
    machine = rng.choice(MACHINES)
    n_facts = rng.choices([1, 2, 3, 4], weights=[20, 35, 30, 15])[0]
    corpus = 100 * round(math.exp(rng.uniform(math.log(30_000), math.log(150_000))) / 100)
    facts = []
    for part in rng.sample(PARTS, n_facts):
        verb, unit = rng.choice(CLAIMS)
        code = f"{part[0].upper()}{rng.randint(100, 999)}"
        tokens = int(min(900, max(40, 180 * math.exp(0.5 * rng.gauss(0, 1)))))
        facts.append({"text": f"the {machine} {part} {code} {verb} {rng.randint(2, 950)} {unit}",
                      "offset": rng.randrange(0, corpus - tokens), "tokens": tokens})
    question = rng.choice(ASKS).format(m=machine)
    inputs = {"qid": rid, "question": question, "question_tokens": rng.randint(25, 120), "corpus_tokens": corpus,
              "facts": facts}
    answer = ". ".join(f["text"][0].upper() + f["text"][1:] for f in facts) + "."
    return {"id": rid, "inputs": inputs, "expected": {"facts": [f["text"] for f in facts], "answer": answer},
            "tags": [f"facts:{n_facts}"]}


def generate(seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Dev and test rows from one seeded stream, each row going to test with probability 0.4 until one
    split is full: both share a distribution."""
    rng = random.Random(f"wide_rag:{seed}")
    dev, test = [], []
    while len(dev) < DEV_ROWS or len(test) < TEST_ROWS:
        to_test = len(test) < TEST_ROWS and (len(dev) >= DEV_ROWS or rng.random() < TEST_ROWS / (DEV_ROWS + TEST_ROWS))
        split, rows = ("test", test) if to_test else ("dev", dev)
        rows.append(_row(rng, f"{split}-{len(rows):04d}"))
    return dev, test


def dumps(rows: list[dict]) -> str:
    """The JSONL text of rows (sorted keys, compact: the same bytes on every run)."""
    return "".join(json.dumps(r, sort_keys=True, separators=(",", ":")) + "\n" for r in rows)


def write(directory: Path = HERE, seed: int = 0) -> None:
    dev, test = generate(seed)
    for name, rows in (("dev", dev), ("test", test)):
        (directory / f"{name}.jsonl").write_bytes(dumps(rows).encode("utf-8"))


if __name__ == "__main__":
    write()
