"""User ids are stored only as salted hashes.

The salt comes from ``GRAPHTUNE_HASH_SALT`` or is generated once and kept in the trace store's
metadata table, so the same user hashes the same way across processes and restarts, and
``graphtune traces delete-user`` can find a user's events from the plain id.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

SALT_ENV = "GRAPHTUNE_HASH_SALT"
SALT_META_KEY = "user_hash_salt"


def resolve_salt(store) -> str:
    """The salt from the environment, else the one kept in ``store`` (created on first use)."""
    env_salt = os.environ.get(SALT_ENV)
    if env_salt:
        return env_salt
    return store.get_or_create_meta(SALT_META_KEY, secrets.token_hex(16))


def hash_user_id(user_id: object, salt: str) -> str:
    return hmac.new(salt.encode(), str(user_id).encode(), hashlib.sha256).hexdigest()[:32]
