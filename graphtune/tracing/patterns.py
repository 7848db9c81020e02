"""The catalogue of secrets and personal identifiers that redaction masks.

Credentials come from detect-secrets (Yelp's maintained scanner): every regex-based plugin it ships
(AWS, Azure storage, GitHub, GitLab, Slack, Stripe, JWT, OpenAI, SendGrid, Twilio, PyPI, npm,
private keys, basic-auth URLs, ...), so a new plugin there is masked here after an upgrade. Its
entropy and keyword scanners and its public-IP rule are left out: they flag ordinary words, hashes
and version numbers. The rules below add what it lacks (Google Cloud keys and OAuth tokens, Azure AD
client secrets, Stripe test and restricted keys, the ``sk-``/``pk-`` keys of LLM providers and
Langfuse, bearer tokens, whole PEM blocks) and the personal identifiers: e-mail addresses, card
numbers that pass the Luhn check, IBANs whose check digits hold (python-stdnum validates both), and
phone numbers.

Each rule names its replacement. A credential match is widened to the end of its token, so a key
longer than the plugin's regex (Stripe's live keys are) is masked whole, not cut.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

from stdnum import iban as _iban
from stdnum import luhn as _luhn

API_KEY = "[API_KEY]"


@dataclass(frozen=True)
class Rule:
    """One pattern: what it masks with, an optional check of the matched text, and the group that
    holds the secret (0: the whole match)."""

    name: str
    pattern: re.Pattern[str]
    replacement: str
    valid: Callable[[str], bool] | None = None
    group: int = 0
    widen: bool = False  # extend a credential to the end of its token


# Characters a token (key, JWT) is made of: a match is widened over them.
_TOKEN_CHARS = re.compile(r"[A-Za-z0-9_\-.+/=~]*")
_EDGES = frozenset(" \t\r\n=:\"'")
_SKIPPED_PLUGINS = frozenset({"Base64HighEntropyString", "HexHighEntropyString", "KeywordDetector", "IPPublicDetector"})


def _digits(text: str) -> str:
    return "".join(ch for ch in text if ch.isdigit())


def _card_valid(text: str) -> bool:
    digits = _digits(text)
    return 13 <= len(digits) <= 19 and _luhn.is_valid(digits)


def _iban_valid(text: str) -> bool:
    return _iban.is_valid(text)


_OWN_SECRETS: list[Rule] = [
    Rule("pem private key", re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY(?: BLOCK)?-----|\Z)",
                                       re.S), "[PRIVATE_KEY]"),
    Rule("google api key", re.compile(r"\bAIza[0-9A-Za-z_-]{35}"), API_KEY, widen=True),
    Rule("google oauth token", re.compile(r"\bya29\.[0-9A-Za-z_-]{20,}"), API_KEY, widen=True),
    Rule("azure ad client secret", re.compile(r"\b[a-zA-Z0-9_~.-]{3}\dQ~[a-zA-Z0-9_~.-]{31,34}"), API_KEY, widen=True),
    Rule("azure connection string key", re.compile(r"(?i)\b(?:AccountKey|SharedAccessKey|SharedAccessSignature)=([^;\s\"']{16,})"),
         API_KEY, group=1),
    Rule("stripe key", re.compile(r"\b(?:sk|rk)_(?:live|test)_[0-9a-zA-Z]{10,}"), API_KEY, widen=True),
    # LLM providers and Langfuse: sk-..., sk-proj-..., sk-ant-..., pk-lf-..., rk-...
    Rule("provider key", re.compile(r"\b(?:sk|pk|rk)-(?:[A-Za-z]+-)*[A-Za-z0-9_-]{16,}"), API_KEY, widen=True),
    Rule("github token", re.compile(r"\b(?:gh[opusr]_[A-Za-z0-9_]{16,}|github_pat_[A-Za-z0-9_]{16,})"), API_KEY, widen=True),
    Rule("slack token", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{8,}"), API_KEY, widen=True),
    Rule("jwt", re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.?[A-Za-z0-9_\-+/=]*"), API_KEY, widen=True),
    Rule("bearer token", re.compile(r"(?i)\bbearer\s+([A-Za-z0-9._~+/-]{16,}=*)"), API_KEY, group=1),
]

# Personal identifiers, in order: e-mail first (its digits are not a phone), cards and IBANs before phones.
_IDENTIFIERS: list[Rule] = [
    Rule("email", re.compile(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"), "[EMAIL]"),
    Rule("card number", re.compile(r"(?<![\w.])\d(?:[ -]?\d){12,18}(?![\w]|\.\d)"), "[CARD]", valid=_card_valid),
    Rule("iban", re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]){11,30}\b"), "[IBAN]", valid=_iban_valid),
    # Phone numbers: international or grouped local numbers with at least 9 digits. Dates are matched
    # first and kept, so "2026-11-21 10:30" does not read as the number 2026112110.
    Rule("phone", re.compile(r"(?P<date>\b(?:\d{4}-\d{1,2}-\d{1,2}|\d{1,2}\.\d{1,2}\.\d{4})\b)"
                             r"|(?<![\w.])\+?\d[\d\s().-]{7,}\d(?!\w|\.\d)"), "[PHONE]",
         valid=lambda text: len(_digits(text)) >= 9),
]


@cache
def detect_secrets_rules() -> tuple[Rule, ...]:
    """Every regex of detect-secrets' regex-based plugins, as rules (loaded once)."""
    from detect_secrets.core.plugins.util import get_mapping_from_secret_type_to_class

    rules = []
    for plugin in sorted(get_mapping_from_secret_type_to_class().values(), key=lambda cls: cls.__name__):
        if plugin.__name__ in _SKIPPED_PLUGINS:
            continue
        for pattern in getattr(plugin, "denylist", ()) or ():
            # a plugin's capture group holds the secret itself (a password in a URL, a key after a keyword)
            rules.append(Rule(plugin.__name__, pattern, API_KEY, group=1 if pattern.groups else 0, widen=not pattern.groups))
    return tuple(rules)


@cache
def catalogue() -> tuple[Rule, ...]:
    """All rules in the order they apply: credentials, then personal identifiers."""
    return (*_OWN_SECRETS, *detect_secrets_rules(), *_IDENTIFIERS)


def mask(text: str, rules: tuple[Rule, ...] | None = None) -> str:
    """``text`` with every match of the catalogue replaced."""
    for rule in rules or catalogue():
        text = _apply(rule, text)
    return text


def _apply(rule: Rule, text: str) -> str:
    out: list[str] = []
    position = 0
    for match in rule.pattern.finditer(text):
        start, end = match.span(rule.group)
        if start < 0 or start < position:
            continue
        if rule.name == "phone" and match.group("date"):
            continue
        if not rule.group:  # some plugins' regexes take the separator around a key along
            while start < end and text[start] in _EDGES:
                start += 1
            while end > start and text[end - 1] in _EDGES:
                end -= 1
        found = text[start:end]
        if rule.valid is not None and not rule.valid(found):
            if rule.name == "iban" and (shorter := _valid_prefix(found)):
                end = start + len(shorter)
            else:
                continue
        if rule.widen:
            end = _TOKEN_CHARS.match(text, end).end()
        if found.startswith("[") and found.endswith("]"):
            continue  # an earlier rule's placeholder
        out += (text[position:start], rule.replacement)
        position = end
    if not out:
        return text
    out.append(text[position:])
    return "".join(out)


def _valid_prefix(candidate: str) -> str | None:
    """The longest prefix of an IBAN-looking match that is a valid IBAN (a match may run into the
    capitalised words after it)."""
    for cut in range(len(candidate) - 1, 14, -1):
        prefix = candidate[:cut].rstrip()
        if _iban.is_valid(prefix):
            return prefix
    return None
