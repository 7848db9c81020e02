"""noisy_extract's decisions: the OCR pass, each extraction attempt and the validator.

Pure functions of the upload id, the document and the config values that matter (model, prompt
style, dpi; the attempt number). graph.py and replay.py both call them, so they cannot drift. The
irrelevant knobs (temperature, logging, telemetry, queue priority, language hint) appear nowhere here.

Why the outcome is noisy: whether an attempt comes out right is a draw keyed by the upload id (the
same invoice uploaded twice gets two independent draws) and by the model/prompt/dpi, so two configs
are judged on independent draws, as two real model deployments would be.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache

from .. import _sim

MODELS = ("docllm-mini", "docllm-std", "docllm-pro")
STYLES = ("plain", "schema", "few_shot")
MAX_ATTEMPTS = 5  # validate_retries is at most 4

OCR_DEADLINE_MS = 3000.0  # the OCR service gives up on a document after this
OCR_PAGE_MS = 35.0  # per page at 150 dpi; grows with the pixel count (dpi squared)
VALIDATE_MS = 2.0
FEEDBACK_TOKENS = 60  # the validator's complaint, sent back with the failed output on a retry

# P(the OCR misreads a digit of the total): floor + below-300 slope + above-300 slope. Scans and
# photos are ~300 dpi originals: rasterising finer adds no detail but amplifies their noise.
GARBLE = {"digital": (0.0, 0.02, 0.0), "scan": (0.02, 0.16, 0.10), "photo": (0.06, 0.30, 0.22)}

# P(right fields | a valid output) on (simple, multi_total) layouts: several totals confuse weaker models.
ACCURACY = {
    ("docllm-mini", "plain"): (0.90, 0.58), ("docllm-mini", "schema"): (0.91, 0.60), ("docllm-mini", "few_shot"): (0.92, 0.62),
    ("docllm-std", "plain"): (0.95, 0.80), ("docllm-std", "schema"): (0.96, 0.83), ("docllm-std", "few_shot"): (0.97, 0.88),
    ("docllm-pro", "plain"): (0.97, 0.88), ("docllm-pro", "schema"): (0.98, 0.91), ("docllm-pro", "few_shot"): (0.99, 0.94),
}
INVALID = {"plain": 0.20, "schema": 0.08, "few_shot": 0.10}  # P(an attempt fails validation) ...
INVALID_X = {"docllm-mini": 1.5, "docllm-std": 1.0, "docllm-pro": 0.5}  # ... times the model's factor
LOCALE_BLIND = 0.15  # the plain prompt reads day-first numeric dates month-first: P(right) x this
PROMPT_TOKENS = {"plain": 90, "schema": 260, "few_shot": 1100}
OUTPUT_OVERHEAD = {"plain": 12, "schema": 30, "few_shot": 16}
SPEED = {"docllm-mini": (150.0, 0.05, 8.0), "docllm-std": (250.0, 0.10, 15.0), "docllm-pro": (400.0, 0.20, 25.0)}  # ms, per in, per out

VALID = re.compile(r"^[^|]+ \| \d+\.\d{2} [A-Z]{3} \| \d{4}-\d{2}-\d{2}$")
MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
          "november", "december")
CONFUSED = str.maketrans("0123456789", "8778965134")  # the digit OCR mistakes each digit for
DOC_FIELDS = ("doc_id", "pages", "source", "layout", "locale", "vendor", "subtotal", "total", "currency", "due")


def valid(text: str) -> bool:
    """The validator: ``vendor | 1234.50 EUR | 2024-03-05``."""
    return VALID.match(text) is not None


def iso_date(printed: str, locale: str, month_first: bool = False) -> str:
    """The printed due date as YYYY-MM-DD; ``month_first`` reads numeric dates the US way whatever the locale."""
    if "/" in printed:
        a, b, year = printed.split("/")
        day, month = (b, a) if month_first or locale == "en-US" else (a, b)
        return f"{year}-{int(month):02d}-{int(day):02d}"
    if "-" in printed:
        return printed
    day, month, year = printed.split()
    return f"{year}-{MONTHS.index(month.lower()) + 1:02d}-{int(day):02d}"


def amount(printed: str) -> str:
    return printed.replace(",", "")


@dataclass(frozen=True)
class Facts:
    """What a document's extraction can come out as, and what it costs to send."""

    answer: str  # the right answer
    misread: str  # the total with one digit misread by the OCR
    subtotal: str  # the subtotal taken for the total
    swapped: str  # the due date read month-first
    ambiguous: bool  # a day-first numeric date the plain prompt gets wrong
    hard: bool  # several totals on the page
    pages: int
    source: str
    tokens: int  # the OCR text sent to the model


@lru_cache(maxsize=4096)
def _facts(doc_id, pages, source, layout, locale, vendor, subtotal, total, currency, due) -> Facts:
    date = iso_date(due, locale)
    day_first = due.split("/") if locale == "en-GB" and "/" in due else None
    ambiguous = bool(day_first) and int(day_first[0]) <= 12 and day_first[0] != day_first[1]
    total = amount(total)
    whole, cents = total.split(".")
    misread_total = f"{whole[:-1]}{whole[-1].translate(CONFUSED)}.{cents}"
    line = "{} | {} {} | {}".format
    return Facts(answer=line(vendor, total, currency, date), misread=line(vendor, misread_total, currency, date),
                 subtotal=line(vendor, amount(subtotal), currency, date),
                 swapped=line(vendor, total, currency, iso_date(due, locale, month_first=True) if ambiguous else date),
                 ambiguous=ambiguous, hard=layout == "multi_total", pages=pages, source=source,
                 tokens=120 + 330 * pages)


def facts(doc: dict) -> Facts:
    return _facts(*(doc[k] for k in DOC_FIELDS))


@dataclass(frozen=True)
class Ocr:
    ms: float  # simulated time (the deadline when it timed out)
    timed_out: bool
    misread: bool


class OcrTimeout(Exception):
    """The OCR service gave up on a document (not the builtin TimeoutError: graphtune's runner reads
    that as its own per-example timeout and would replace the message)."""


def ocr_timeout(dpi: int) -> OcrTimeout:
    return OcrTimeout(f"ocr did not answer within {OCR_DEADLINE_MS / 1000:.2f} s at {dpi} dpi")


@lru_cache(maxsize=65536)
def read_pages(upload_id: str, f: Facts, dpi: int) -> Ocr:
    ms = f.pages * OCR_PAGE_MS * (dpi / 150) ** 2 * math.exp(0.1 * _sim.normal(upload_id, dpi, "ocr_ms"))
    if ms > OCR_DEADLINE_MS:
        return Ocr(ms=OCR_DEADLINE_MS, timed_out=True, misread=False)
    floor, low, high = GARBLE[f.source]
    p = floor + low * max(0, 300 - dpi) / 150 + high * max(0, dpi - 300) / 300
    return Ocr(ms=ms, timed_out=False, misread=_sim.chance(p, upload_id, dpi, "misread"))


def ocr(upload_id: str, doc: dict, dpi: int) -> Ocr:
    return read_pages(upload_id, facts(doc), dpi)


@dataclass(frozen=True)
class Attempt:
    text: str
    valid: bool
    input_tokens: int
    output_tokens: int
    ms: float


@lru_cache(maxsize=65536)
def attempts(upload_id: str, f: Facts, model: str, style: str, dpi: int) -> tuple[Attempt, ...]:
    """Every attempt a run could make, in order; a retry resends the conversation so far."""
    misread = read_pages(upload_id, f, dpi).misread
    read = f.misread if misread else f.answer
    p_invalid = INVALID[style] * INVALID_X[model]
    easy, hard = ACCURACY[(model, style)]
    p_right = (hard if f.hard else easy) * (LOCALE_BLIND if style == "plain" and f.ambiguous else 1.0)
    base_ms, in_ms, out_ms = SPEED[model]
    prompt = PROMPT_TOKENS[style] + f.tokens
    out = []
    for k in range(MAX_ATTEMPTS):
        u = _sim.unit(upload_id, model, style, dpi, k)
        if u < p_invalid:
            text = read.rsplit(" | ", 1)[0]  # the due date left out
        elif (u - p_invalid) / (1 - p_invalid) < p_right:
            text = read
        else:
            text = f.swapped if style == "plain" and f.ambiguous else f.subtotal
        out_tokens = OUTPUT_OVERHEAD[style] + len(text) // 4
        ms = _sim.lognormal_ms(base_ms + prompt * in_ms + out_tokens * out_ms, 0.25, upload_id, model, style, dpi, k, "ms")
        out.append(Attempt(text=text, valid=valid(text), input_tokens=prompt, output_tokens=out_tokens, ms=ms))
        prompt += out_tokens + FEEDBACK_TOKENS
    return tuple(out)


def attempt(upload_id: str, doc: dict, model: str, style: str, dpi: int, k: int) -> Attempt:
    """The ``k``-th extraction attempt (0-based)."""
    return attempts(upload_id, facts(doc), model, style, dpi)[k]
