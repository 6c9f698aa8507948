"""The SCP request signature, written out independently of the operator's own code.

The emulator checks signatures with its own few lines on purpose: if it imported the client's
signing function, a bug there would be mirrored here and every test would still pass.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

CLIENT_TYPE = "Openapi"
"""The literal that ends every signed string and fills the ``Scp-ClientType`` header."""


def compute_signature(
    *,
    secret_key: str,
    method: str,
    url: str,
    timestamp: str,
    access_key: str,
    account_id: str = "",
) -> str:
    """Return the Base64 HMAC-SHA256, keyed with the secret, of the plain concatenation.

    The signed string is ``METHOD + URL + TIMESTAMP + ACCESS_KEY + ACCOUNT_ID + "Openapi"``,
    where ``url`` is the full absolute URL exactly as the client sent it, query included.
    """
    message = f"{method.upper()}{url}{timestamp}{access_key}{account_id}{CLIENT_TYPE}"
    digest = hmac.new(secret_key.encode(), message.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signature_matches(expected: str, presented: str) -> bool:
    """Compare in constant time so the emulator does not model a timing oracle."""
    return hmac.compare_digest(expected.encode(), presented.encode())
