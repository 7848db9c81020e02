"""ticket_triage's eval rows: support tickets with the team that owns them.

``generate(seed)`` draws dev and test from the same distribution (keyed draws, so byte-identical on
every run): 40% clear tickets, 25% ambiguous ones (a second team's topic in the body), 12% vague
ones, 23% follow-ups that cite an earlier ticket of the customer, at a depth in the CRM history that
is 0-1 for 30% of them and uniform over 2-13 for the rest: half of them cite one of the latest
5 tickets, all of them one of the latest 14. ``python data.py`` writes ``dev.jsonl`` and ``test.jsonl`` here.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: import the package through benchmarks/
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from workflows import _sim
    from workflows.ticket_triage import logic
else:
    from .. import _sim
    from . import logic

HERE = Path(__file__).resolve().parent
SIZES = {"dev": 240, "test": 180}
KINDS = [("clear", 0.40), ("ambiguous", 0.25), ("vague", 0.12), ("follow_up", 0.23)]
NAMES = ["Ana", "Ben", "Chloe", "Dev", "Emil", "Fatima", "Gus", "Hana", "Ivan", "Jo"]
DETAILS = {
    "billing": ["my statement shows a payment I do not recognise.", "the amount on the last invoice is not what we agreed."],
    "technical": ["the app freezes after the latest update.", "nothing loads on the dashboard since this morning."],
    "account": ["I cannot get into my account any more.", "I need the login moved to my new work address."],
    "shipping": ["the order was shipped a week ago and has not moved since.", "the delivery went to my old address."],
    "returns": ["the item is not what I ordered and I want to send it back.", "I sent a parcel back and heard nothing."],
    "sales": ["we want to roll this out to the whole department.", "we need pricing for a larger plan before the quarter ends."],
}
VAGUE_DETAILS = ["can someone look into this?", "not sure who to ask about this.", "this has been going on for a while."]
FOLLOW_UP_BODY = "Hi, this is still not sorted. Can someone pick it up again?"


def _kind(*key) -> str:
    u, total = _sim.unit(*key), 0.0
    for kind, share in KINDS:
        total += share
        if u < total:
            return kind
    return KINDS[-1][0]


def _row(seed: int, split: str, index: int) -> dict:
    ticket_id = f"{split}-{index:03d}"
    key = (seed, ticket_id)
    kind, team = _kind(*key, "kind"), _sim.pick(list(logic.TEAMS), *key, "team")
    name = _sim.pick(NAMES, *key, "name")
    customer_id = f"C{10000 + int(_sim.unit(*key, 'customer') * 90000)}"
    if kind == "follow_up":  # cite a ticket at a depth the customer's history has
        u = _sim.unit(*key, "depth")
        depth = int(u / 0.3 * 2) if u < 0.3 else 2 + int((u - 0.3) / 0.7 * 12)
        attempt = 0
        while len(logic.crm_record(customer_id)[1]) <= depth:
            attempt += 1
            customer_id = f"C{10000 + int(_sim.unit(*key, 'customer', attempt) * 90000)}"
        ref, team = logic.crm_record(customer_id)[1][depth]
        subject, body = logic.FOLLOW_UP_SUBJECT.format(ref=ref), FOLLOW_UP_BODY
    elif kind == "vague":
        subject = _sim.pick(logic.VAGUE_SUBJECTS[team], *key, "subject")
        body = f"Hi, {_sim.pick(VAGUE_DETAILS, *key, 'detail')}"
    else:
        subject = _sim.pick(logic.CLEAR_SUBJECTS[team], *key, "subject")
        body = f"Hi, {_sim.pick(DETAILS[team], *key, 'detail')}"
        if kind == "ambiguous":
            decoy = _sim.pick([t for t in logic.TEAMS if t != team], *key, "decoy")
            body += " " + logic.DECOY_SENTENCES[decoy]
    body += f" Thanks, {name}"
    inputs = {"ticket_id": ticket_id, "customer_id": customer_id, "subject": subject, "body": body}
    return {"id": ticket_id, "inputs": inputs, "expected": {"answer": team}, "tags": [kind]}


def generate(seed: int = 0) -> tuple[list[dict], list[dict]]:
    """(dev rows, test rows), the same distribution, different tickets."""
    dev, test = ([_row(seed, split, i) for i in range(1, SIZES[split] + 1)] for split in ("dev", "test"))
    return dev, test


def dumps(rows: list[dict]) -> str:
    return "".join(json.dumps(row, sort_keys=True) + "\n" for row in rows)


if __name__ == "__main__":
    dev_rows, test_rows = generate()
    (HERE / "dev.jsonl").write_text(dumps(dev_rows), encoding="utf-8")
    (HERE / "test.jsonl").write_text(dumps(test_rows), encoding="utf-8")
    print(f"wrote {len(dev_rows)} dev and {len(test_rows)} test rows to {HERE}")
