"""The ticket_triage world as pure functions: its tickets, its CRM and its classifier model.

``graph.py`` (the LangGraph workflow) and ``replay.py`` (the same run as arithmetic) both call these,
so the replay cannot drift from the graph. Every draw is keyed (``_sim``) by the ticket or customer
and the config values that matter; the per-ticket draws are cached, since the suite replays each
ticket under thousands of configs.

The world, in short:

- a ticket is *clear* (its subject names the team's problem), *ambiguous* (its body also mentions
  another team's topic), *vague*, or a *follow-up* that only cites an earlier ticket by reference:
  its team is written in the customer's CRM history, and only a classifier that sees that history
  item can route it reliably;
- the CRM answers 30% of customers from its cache (~100 ms) and the rest slowly (median 560 ms, a
  long tail: 10% of them take over 1 s; overall median ~430 ms), and fails transiently (503) on 8%
  of calls; a retry soon after a 503 is more likely to fail again;
- the classifier (small or large model) answers a team and a confidence; more history items resolve
  deeper follow-ups but cost tokens and distract it on every other ticket; the second opinion
  (``escalate``) asks the same model again with a deliberate prompt: slower, dearer, usually right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

from .. import _sim

TEAMS = ("billing", "technical", "account", "shipping", "returns", "sales")
GENERAL_QUEUE = "general"
MAX_ATTEMPTS = 4  # crm.retries is at most 3

# Subject lines: clear ones name the team's problem, vague ones barely hint at it.
CLEAR_SUBJECTS = {
    "billing": ["Charged twice this month", "Invoice shows the wrong amount", "Card declined at renewal", "Need a VAT invoice"],
    "technical": ["App crashes on startup", "Sync stopped working", "Error 500 when exporting", "Login page keeps loading"],
    "account": ["Cannot reset my password", "Change the email on my account", "Two-factor codes not arriving", "Please merge my two accounts"],
    "shipping": ["Parcel stuck in transit", "Tracking number not working", "Delivered to the wrong address", "Package never arrived"],
    "returns": ["How do I return this item", "Return label not received", "Item arrived broken", "Exchange for a different size"],
    "sales": ["Quote for 50 seats", "Volume discount for our team", "Upgrade to the enterprise plan", "Talk to someone about pricing"],
}
VAGUE_SUBJECTS = {
    "billing": ["Question about my statement", "Something odd with my payment"],
    "technical": ["It does not work properly", "Weird behaviour since yesterday"],
    "account": ["Trouble getting in", "My profile details"],
    "shipping": ["Where is my stuff", "Still waiting"],
    "returns": ["Not happy with what I got", "Want my money back for the item"],
    "sales": ["Interested in more", "Looking at options for the company"],
}
# A second topic in the body that pulls an ambiguous ticket towards another team.
DECOY_SENTENCES = {
    "billing": "I also see an extra charge on my card.",
    "technical": "The website also showed an error page.",
    "account": "I had to reset my password to write this.",
    "shipping": "The courier also left a note I do not understand.",
    "returns": "I might send part of the order back.",
    "sales": "We are also thinking about buying more licences.",
}
FOLLOW_UP_SUBJECT = "Following up on {ref}"

_SUBJECT_INDEX = {s: ("clear", t) for t, subjects in CLEAR_SUBJECTS.items() for s in subjects}
_SUBJECT_INDEX.update({s: ("vague", t) for t, subjects in VAGUE_SUBJECTS.items() for s in subjects})

# The classifier: P(right first time) by ticket kind (a follow-up's when its cited ticket is shown);
# the second opinion's P(right); P lost per history item shown; confidence; latency and token use.
MODELS = {
    "small": dict(clear=0.92, ambiguous=0.48, vague=0.40, follow_up=0.82,
                  esc_clear=0.88, esc_ambiguous=0.66, esc_vague=0.60, esc_follow_up=0.85,
                  distraction=0.007, conf_right=0.78, conf_wrong=0.62, conf_sd=0.11,
                  base_ms=240.0, ms_per_token=0.06, esc_base_ms=650.0, esc_ms_per_token=0.10),
    "large": dict(clear=0.96, ambiguous=0.60, vague=0.52, follow_up=0.92,
                  esc_clear=0.90, esc_ambiguous=0.88, esc_vague=0.85, esc_follow_up=0.93,
                  distraction=0.004, conf_right=0.84, conf_wrong=0.55, conf_sd=0.09,
                  base_ms=620.0, ms_per_token=0.20, esc_base_ms=1500.0, esc_ms_per_token=0.35),
}
CONF_UNSURE = 0.40  # a follow-up whose cited ticket the model cannot see
PROMPT_TOKENS, ESC_PROMPT_TOKENS, TOKENS_PER_HISTORY_ITEM = 180, 420, 36
OUTPUT_TOKENS, ESC_OUTPUT_TOKENS = 20, 140

# The CRM: cached customers answer fast, the others slowly with a long tail; transient 503s.
CRM_HOT_SHARE, CRM_HOT_MS, CRM_HOT_SIGMA = 0.3, 100.0, 0.4
CRM_COLD_MS, CRM_COLD_SIGMA = 560.0, 0.45
CRM_FAIL, CRM_FAIL_MS = 0.08, 60.0


def model_name(size: str) -> str:
    """The name the classifier reports (and the spec prices)."""
    return f"triage-{size}"


# -- the CRM --------------------------------------------------------------------------------------


@lru_cache(maxsize=1 << 18)
def crm_record(customer_id: str) -> tuple[str, tuple[tuple[str, str], ...]]:
    """The customer's tier and ticket history (reference, team), most recent first: 4-50 items."""
    tier = _sim.pick(["free", "pro", "business"], customer_id, "tier")
    length = 4 + int(_sim.unit(customer_id, "history") * 47)
    history = tuple((f"TK-{customer_id[1:]}-{length - j:02d}", _sim.pick(list(TEAMS), customer_id, "history", j))
                    for j in range(length))
    return tier, history


@lru_cache(maxsize=1 << 18)
def _crm_draws(ticket_id: str, customer_id: str) -> tuple[tuple[float, float, float], ...]:
    """Per attempt: (latency ms if it answers, uniform for a transient failure, ms until the 503)."""
    hot = _sim.chance(CRM_HOT_SHARE, customer_id, "crm-hot")
    median, sigma = (CRM_HOT_MS, CRM_HOT_SIGMA) if hot else (CRM_COLD_MS, CRM_COLD_SIGMA)
    return tuple((_sim.lognormal_ms(median, sigma, ticket_id, "crm", k), _sim.unit(ticket_id, "crm-fail", k),
                  _sim.lognormal_ms(CRM_FAIL_MS, 0.3, ticket_id, "crm-503", k)) for k in range(MAX_ATTEMPTS))


def repeat_failure(backoff_s: float) -> float:
    """P(a retry fails again after a 503): the overload behind it passes within a few hundred ms."""
    return CRM_FAIL + 0.3 * math.exp(-backoff_s / 0.1)


@dataclass(frozen=True)
class CrmCall:
    ms: float  # simulated time of the whole call, retries and backoff included
    attempts: int
    error: str | None  # "TimeoutError" or "ConnectionError" when every attempt failed
    timeout_s: float

    def exception(self) -> Exception:
        if self.error == "TimeoutError":
            return TimeoutError(f"crm did not answer within {self.timeout_s:.2f} s")
        return ConnectionError("crm answered 503 Service Unavailable")

    @property
    def error_text(self) -> str | None:
        """The error as graphtune's runner records it."""
        if self.error is None:
            return None
        exc = self.exception()
        return f"{type(exc).__name__}: {exc}"


@lru_cache(maxsize=1 << 18)
def crm_call(ticket_id: str, customer_id: str, timeout_s: float, retries: int, backoff_s: float) -> CrmCall:
    """Fetch the customer with a per-attempt timeout, ``retries`` more attempts and a pause between them."""
    timeout_ms, backoff_ms = timeout_s * 1000.0, backoff_s * 1000.0
    total, failed_before, error = 0.0, False, None
    draws = _crm_draws(ticket_id, customer_id)
    attempts = min(retries, MAX_ATTEMPTS - 1) + 1
    for k in range(attempts):
        if k:
            total += backoff_ms
        latency, u_fail, fail_ms = draws[k]
        fails = u_fail < (repeat_failure(backoff_s) if failed_before else CRM_FAIL)
        if fails and fail_ms < timeout_ms:
            total, failed_before, error = total + fail_ms, True, "ConnectionError"
        elif fails or latency > timeout_ms:
            total, failed_before, error = total + timeout_ms, False, "TimeoutError"
        else:
            return CrmCall(total + latency, k + 1, None, timeout_s)
    return CrmCall(total, attempts, error, timeout_s)


# -- tickets --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Ticket:
    kind: str  # clear | ambiguous | vague | follow_up
    team: str  # the right team (a follow-up's: the team of the ticket it cites)
    decoy: str | None  # the other team an ambiguous ticket mentions
    depth: int  # a follow-up's cited ticket: its position in the history (0 = latest); else -1
    latest_team: str  # the team of the customer's latest ticket (a model's guess for a follow-up it cannot resolve)
    history_len: int
    tokens: int  # the ticket's own prompt tokens


@lru_cache(maxsize=1 << 16)
def ticket(customer_id: str, subject: str, body: str) -> Ticket:
    """What a ticket is, read from its text (the templates above) and the customer's CRM history."""
    _, history = crm_record(customer_id)
    tokens = (len(subject) + len(body)) // 4
    if subject in _SUBJECT_INDEX:
        kind, team = _SUBJECT_INDEX[subject]
        decoy = next((t for t, s in DECOY_SENTENCES.items() if s in body and t != team), None)
        if decoy is not None:
            kind = "ambiguous"
        return Ticket(kind, team, decoy, -1, history[0][1], len(history), tokens)
    refs = [ref for ref, _ in history]
    ref = subject.removeprefix(FOLLOW_UP_SUBJECT.format(ref=""))
    if ref not in refs:
        raise ValueError(f"ticket subject {subject!r} matches no template and cites no ticket of {customer_id}")
    depth = refs.index(ref)
    return Ticket("follow_up", history[depth][1], None, depth, history[0][1], len(history), tokens)


# -- the classifier -------------------------------------------------------------------------------


@lru_cache(maxsize=1 << 18)
def _model_draws(ticket_id: str, size: str) -> tuple[float, ...]:
    """(right first time?, confidence noise, latency noise, second opinion right?, its latency noise, wrong pick)."""
    return (_sim.unit(ticket_id, size, "classify"), _sim.normal(ticket_id, size, "confidence"),
            _sim.normal(ticket_id, size, "classify-ms"), _sim.unit(ticket_id, size, "escalate"),
            _sim.normal(ticket_id, size, "escalate-ms"), _sim.unit(ticket_id, size, "wrong"))


@dataclass(frozen=True)
class Answer:
    team: str
    confidence: float
    input_tokens: int
    output_tokens: int
    ms: float


def _wrong(t: Ticket, u: float) -> str:
    """The team a wrong answer names: an ambiguous ticket's decoy, else another team."""
    if t.decoy is not None:
        return t.decoy
    others = [team for team in TEAMS if team != t.team]
    return others[int(u * len(others))]


def _p_right(t: Ticket, m: dict, shown: int, prefix: str) -> float | None:
    """P(right) for a ticket given ``shown`` history items; None for a follow-up the model cannot resolve."""
    if t.kind == "follow_up" and t.depth >= shown:
        return None
    return max(0.0, m[prefix + t.kind] - m["distraction"] * shown)


@lru_cache(maxsize=1 << 18)
def classify(ticket_id: str, t: Ticket, size: str, shown: int) -> Answer:
    """The first answer: a team and a confidence from the ticket and ``shown`` history items."""
    m = MODELS[size]
    u, z_conf, z_ms, _, _, u_wrong = _model_draws(ticket_id, size)
    p = _p_right(t, m, shown, "")
    if p is None:  # it cannot see the cited ticket: it guesses the latest one's team, unsure
        team, mean = (t.latest_team if shown else _wrong(t, u_wrong)), CONF_UNSURE
    else:
        right = u < p
        team, mean = (t.team, m["conf_right"]) if right else (_wrong(t, u_wrong), m["conf_wrong"])
    confidence = round(min(0.99, max(0.05, mean + m["conf_sd"] * z_conf)), 2)
    tokens = PROMPT_TOKENS + t.tokens + TOKENS_PER_HISTORY_ITEM * shown
    ms = (m["base_ms"] + m["ms_per_token"] * tokens) * math.exp(0.25 * z_ms)
    return Answer(team, confidence, tokens, OUTPUT_TOKENS, ms)


@lru_cache(maxsize=1 << 18)
def escalate(ticket_id: str, t: Ticket, size: str, shown: int) -> Answer:
    """The second opinion: the same model and context with a deliberate prompt."""
    m = MODELS[size]
    _, _, _, u, z_ms, u_wrong = _model_draws(ticket_id, size)
    p = _p_right(t, m, shown, "esc_")
    if p is None:
        team = t.latest_team if shown else _wrong(t, u_wrong)
    else:
        team = t.team if u < p else _wrong(t, u_wrong)
    tokens = ESC_PROMPT_TOKENS + t.tokens + TOKENS_PER_HISTORY_ITEM * shown
    ms = (m["esc_base_ms"] + m["esc_ms_per_token"] * tokens) * math.exp(0.3 * z_ms)
    return Answer(team, 0.9, tokens, ESC_OUTPUT_TOKENS, ms)


def shown_items(config_classifier: dict, history_len: int) -> int:
    """History items the classifier's prompt carries."""
    return min(int(config_classifier["history_items"]), history_len) if config_classifier["use_history"] else 0


def route(confidence: float, threshold: float, low_confidence: str) -> str | None:
    """Where the router sends a classified ticket: None (keep the classifier's team), ``escalate`` or
    ``general_queue``."""
    if confidence >= threshold:
        return None
    return "escalate" if low_confidence == "escalate" else "general_queue"
