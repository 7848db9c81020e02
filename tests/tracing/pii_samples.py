"""Secrets and personal identifiers in the shapes real ones have (all fake; cards and IBANs pass
their checksums), shared by the redaction tests and the end-to-end privacy sweep."""

from __future__ import annotations

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAx4fQy7Kd2Wq9pRvT\nzZ8mN3bV6cX1yU5oI0pL2kJ7hG4fD9sA\n-----END RSA PRIVATE KEY-----"
AZURE_KEY = "Zm9vYmFyYmF6cXV4" * 5 + "Zm9vYmFyYg=="  # 88 base64 characters

# name -> (the secret, what it is masked with)
SAMPLES: dict[str, tuple[str, str]] = {
    "stripe_live": ("sk_live_51HqLyjWDarjtT1zdp7dcXYZabc123DEF456ghi789JKLmnoPQRstu", "[API_KEY]"),
    "stripe_restricted": ("rk_live_51HqLyjWDarjtT1zdp7dcQQabc123DEF456", "[API_KEY]"),
    "aws_access_key": ("AKIAIOSFODNN7EXAMPLE", "[API_KEY]"),
    "gcp_api_key": ("AIzaSyA-1234567890abcdefghijklmnopqrstu", "[API_KEY]"),
    "gcp_oauth": ("ya29.a0AfH6SMBx1234567890abcdefghijKLMN", "[API_KEY]"),
    "azure_storage": (f"AccountKey={AZURE_KEY}", "AccountKey=[API_KEY]"),
    "github_token": ("ghp_a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8", "[API_KEY]"),
    "github_pat": ("github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz", "[API_KEY]"),
    "slack_token": ("xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx", "[API_KEY]"),
    "openai_key": ("sk-proj-Abc123Def456Ghi789Jkl012Mno345", "[API_KEY]"),
    "jwt": ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "[API_KEY]"),
    "private_key": (PEM, "[PRIVATE_KEY]"),
    "card_spaced": ("4111 1111 1111 1111", "[CARD]"),
    "card_dashed": ("5500-0000-0000-0004", "[CARD]"),
    "card_plain": ("378282246310005", "[CARD]"),
    "iban_de": ("DE89 3704 0044 0532 0130 00", "[IBAN]"),
    "iban_gb": ("GB82WEST12345698765432", "[IBAN]"),
    "email": ("jane.doe+support@example-mail.com", "[EMAIL]"),
    "phone": ("+1 (415) 555-0134", "[PHONE]"),
}


def fragments(secret: str) -> list[str]:
    """Parts of a secret that must not survive either: its distinctive inner pieces."""
    compact = secret.replace(" ", "").replace("-", "")
    pieces = [compact[-10:], compact[4:14]] if len(compact) >= 16 else []
    return [secret, *(p for p in pieces if len(set(p)) >= 6)]  # "0000000000" would be found anywhere
