"""Bearer tokens and roles for the LangGraph server: what is accepted, and every refusal named."""

from __future__ import annotations

import pytest

from graphtune.graphs.access import (
    AUTH_OFF, AccessConfigError, AuthenticationError, Principal, load_policy, token_digest,
)

DANA = "dana-approver-token-0001"


def tokens_env(tmp_path, text: str, **extra) -> dict:
    path = tmp_path / "tokens.yaml"
    path.write_text(text)
    return {"GRAPHTUNE_AUTH_TOKENS_FILE": str(path), **extra}


def test_tokens_from_a_file_plain_or_hashed(tmp_path):
    policy = load_policy(tokens_env(tmp_path, f"""
tokens:
  - {{identity: dana, roles: [approver, operator], token: {DANA}}}
  - {{identity: olly, roles: [operator], token_sha256: {token_digest("olly-operator-token-01")}}}
"""))
    assert policy.mode == "tokens"
    assert policy.authenticate(f"Bearer {DANA}") == Principal("dana", ("approver", "operator"))
    assert policy.authenticate("bearer olly-operator-token-01") == Principal("olly", ("operator",))


def test_tokens_inline_in_the_environment():
    policy = load_policy({"GRAPHTUNE_AUTH": "tokens",
                          "GRAPHTUNE_AUTH_TOKENS": f'{{"tokens": [{{"identity": "dana", "roles": ["approver"], "token": "{DANA}"}}]}}'})
    assert policy.authenticate(f"Bearer {DANA}").identity == "dana"


@pytest.mark.parametrize(("header", "api_key", "problem"), [
    (None, None, "missing credentials: send 'Authorization: Bearer <token>' or 'X-Api-Key: <token>'"),
    ("", " ", "missing credentials"),
    (f"Basic {DANA}", None, "must be 'Bearer <token>'"),
    ("Bearer ", DANA, "must be 'Bearer <token>'"),  # a broken Authorization header is not saved by a key beside it
    ("Bearer not-a-known-token-at-all", DANA, "invalid bearer token"),
    (None, "not-a-known-token-at-all", "invalid X-Api-Key"),
])
def test_requests_without_a_valid_token_are_refused(tmp_path, header, api_key, problem):
    policy = load_policy(tokens_env(tmp_path, f"tokens: [{{identity: dana, roles: [approver], token: {DANA}}}]"))
    with pytest.raises(AuthenticationError, match=problem):
        policy.authenticate(header, api_key)


def test_an_api_key_header_authenticates_like_a_bearer_token(tmp_path):
    """Agent Chat UI and LangChain's JavaScript SDK send their key as ``X-Api-Key``."""
    policy = load_policy(tokens_env(tmp_path, f"tokens: [{{identity: dana, roles: [approver], token: {DANA}}}]"))
    assert policy.authenticate(None, DANA) == policy.authenticate(f"Bearer {DANA}") == Principal("dana", ("approver",))


def test_auth_off_is_explicit_or_the_unconfigured_default():
    for env in ({"GRAPHTUNE_AUTH": "off"}, {}):
        policy = load_policy(env)
        assert policy.mode == "off" and "graphtune auth is OFF" in policy.describe()
        principal = policy.authenticate(None)
        assert AUTH_OFF in principal.permissions and "approver" in principal.permissions


@pytest.mark.parametrize(("text", "problem"), [
    ("tokens: [", "not valid YAML or JSON"),
    ("tokens: []", "tokens: List should have at least 1 item"),
    (f"tokens: [{{identity: dana, roles: [admin], token: {DANA}}}]", "tokens.0.roles.0"),
    (f"tokens: [{{identity: dana, roles: [], token: {DANA}}}]", "tokens.0.roles"),
    ("tokens: [{identity: dana, roles: [approver], token: short}]", "tokens.0.token: String should have at least 16"),
    (f"tokens: [{{identity: dana, roles: [approver], token: {DANA}, token_sha256: {token_digest(DANA)}}}]",
     "exactly one of token, token_sha256"),
    ("tokens: [{identity: dana, roles: [approver], token_sha256: abc}]", "tokens.0.token_sha256"),
    (f"tokens: [{{identity: dana, roles: [approver], token: {DANA}}}, {{identity: sam, roles: [operator], token: {DANA}}}]",
     "'sam' and 'dana' share a token"),
])
def test_a_bad_token_file_is_an_error_naming_the_file_and_entry(tmp_path, text, problem):
    with pytest.raises(AccessConfigError, match="tokens.yaml") as error:
        load_policy(tokens_env(tmp_path, text))
    assert problem in str(error.value)


@pytest.mark.parametrize(("env", "problem"), [
    ({"GRAPHTUNE_AUTH": "tokens"}, "GRAPHTUNE_AUTH=tokens needs GRAPHTUNE_AUTH_TOKENS_FILE"),
    ({"GRAPHTUNE_AUTH": "tokens", "GRAPHTUNE_AUTH_TOKENS_FILE": "/nonexistent/tokens.yaml"},
     "/nonexistent/tokens.yaml: cannot read the token file"),
    ({"GRAPHTUNE_AUTH_TOKENS_FILE": "/nonexistent/tokens.yaml"}, "cannot read the token file"),  # no fallback to off
    ({"GRAPHTUNE_AUTH": "off", "GRAPHTUNE_AUTH_TOKENS_FILE": "/x.yaml"}, "GRAPHTUNE_AUTH=off but GRAPHTUNE_AUTH_TOKENS_FILE is set"),
    ({"GRAPHTUNE_AUTH": "maybe"}, "expected 'off' or 'tokens'"),
])
def test_auth_settings_never_fall_back_silently(env, problem):
    with pytest.raises(AccessConfigError, match=problem.replace("(", r"\(")):
        load_policy(env)
