"""noisy_extract's eval rows: invoice uploads, some invoices uploaded more than once (each upload its own id).

``python data.py`` writes ``dev.jsonl`` and ``test.jsonl`` beside this file, byte-identical every run.
Dev and test draw different invoices from the same distribution.
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``workflows.noisy_extract`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    __package__ = "workflows.noisy_extract"

from . import logic  # noqa: E402

HERE = Path(__file__).resolve().parent
SIZES = {"dev": 200, "test": 150}
VENDORS = ["Acme Corp", "Brightline Logistics", "Cobalt Office Supply", "Delta Freight", "Evergreen Catering",
           "Fjord Analytics", "Granite Facilities", "Harbor Print Works", "Ironwood Legal", "Juniper Telecom",
           "Kestrel Security", "Lumen Cleaning", "Meridian Travel", "Northwind Traders", "Orchid Software",
           "Pinnacle Staffing", "Quarry Building Materials", "Redwood Consulting", "Silverline Couriers",
           "Tidewater Energy", "Umbra Design Studio", "Vantage Hardware", "Willow Medical Supply", "Zephyr Cloud"]
# Decks dealt without replacement (reshuffled when used up), so both splits hold these shares closely.
DECKS = {
    "source": ["digital"] * 9 + ["scan"] * 7 + ["photo"] * 4,
    "pages": [1] * 42 + [2] * 28 + [3] * 15 + [4] * 10 + [5] * 3 + [6] * 2,
    "layout": ["simple"] * 3 + ["multi_total"],
    "locale": ["en-US"] * 7 + ["en-GB"] * 6 + ["iso"] * 4 + ["long"] * 3,
    "repeats": [1] * 10 + [2] * 6 + [3] * 3 + [4] * 1,  # uploads per invoice
}


class Dealer:
    def __init__(self, rng: random.Random):
        self.rng, self.hands = rng, {name: [] for name in DECKS}

    def __call__(self, name: str):
        if not self.hands[name]:
            self.hands[name] = list(DECKS[name])
            self.rng.shuffle(self.hands[name])
        return self.hands[name].pop()


def _printed_date(rng: random.Random, locale: str) -> tuple[str, str]:
    """(how the due date is printed, the document's locale)."""
    year, month, day = 2024, rng.randint(1, 12), rng.randint(1, 28)
    if locale == "en-US":
        return f"{month:02d}/{day:02d}/{year}", "en-US"
    if locale == "en-GB":
        return f"{day:02d}/{month:02d}/{year}", "en-GB"
    if locale == "iso":
        return f"{year}-{month:02d}-{day:02d}", rng.choice(["en-US", "en-GB"])
    return f"{day} {logic.MONTHS[month - 1].title()} {year}", rng.choice(["en-US", "en-GB"])


def _invoice(rng: random.Random, deal: Dealer, number: int) -> dict:
    due, locale = _printed_date(rng, deal("locale"))
    subtotal = rng.randint(2_000, 900_000)  # cents
    total = subtotal + max(1, subtotal * rng.choice([5, 8, 10, 20]) // 100)
    return {"doc_id": f"inv-{number}", "pages": deal("pages"), "source": deal("source"), "layout": deal("layout"), "locale": locale,
            "vendor": rng.choice(VENDORS), "subtotal": f"{subtotal / 100:,.2f}", "total": f"{total / 100:,.2f}",
            "currency": rng.choice(["USD", "EUR", "GBP"]), "due": due}


def _rows(rng: random.Random, split: str, first_doc: int) -> list[dict]:
    uploads: list[dict] = []
    number, deal = first_doc, Dealer(rng)
    while len(uploads) < SIZES[split]:
        doc = _invoice(rng, deal, number)
        number += 1
        uploads += [doc] * deal("repeats")
    uploads = uploads[: SIZES[split]]
    rng.shuffle(uploads)
    rows = []
    for i, doc in enumerate(uploads, 1):
        f = logic.facts(doc)
        upload_id = f"{split}-{i:04d}"
        vendor, total, date = f.answer.split(" | ")
        rows.append({"id": upload_id, "inputs": {"upload_id": upload_id, "document": doc},
                     "expected": {"answer": f.answer, "facts": [vendor, total, date]},
                     "tags": [doc["source"], doc["layout"]]})
    return rows


def generate(seed: int = 0) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    return _rows(rng, "dev", 1000), _rows(rng, "test", 5000)


def write(directory: Path = HERE) -> None:
    for name, rows in zip(("dev", "test"), generate()):
        text = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        (directory / f"{name}.jsonl").write_text(text, encoding="utf-8")


if __name__ == "__main__":
    write()
