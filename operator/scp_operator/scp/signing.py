"""SCP's request signature, as a pure function.

SCP signs ``METHOD + URL + TIMESTAMP + ACCESS_KEY + ACCOUNT_ID + "Openapi"`` with HMAC-SHA256 keyed
by the secret key and sends the standard Base64 of it. The URL is the exact absolute URL sent on
the wire, which is why URL building lives beside the signer (``endpoints.py``) and why the client
signs the URL object it actually sends, never a re-rendering of it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Callable

CLIENT_TYPE = "Openapi"


def sign(
    *,
    method: str,
    url: str,
    timestamp_ms: str,
    access_key: str,
    secret_key: str,
    account_id: str = "",
) -> str:
    """Return the ``Scp-Signature`` value for one request.

    Pure: the same inputs always give the same signature (see the known-answer test).
    """
    message = f"{method.upper()}{url}{timestamp_ms}{access_key}{account_id}{CLIENT_TYPE}"
    digest = hmac.new(secret_key.encode(), message.encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def signed_headers(
    *,
    method: str,
    url: str,
    access_key: str,
    secret_key: str,
    account_id: str = "",
    api_version: str,
    language: str,
    clock: Callable[[], float] = time.time,
) -> dict[str, str]:
    """All SCP headers for one attempt, with a fresh timestamp and signature."""
    timestamp_ms = str(int(clock() * 1000))
    headers = {
        "Scp-Accesskey": access_key,
        "Scp-Signature": sign(
            method=method,
            url=url,
            timestamp_ms=timestamp_ms,
            access_key=access_key,
            secret_key=secret_key,
            account_id=account_id,
        ),
        "Scp-Timestamp": timestamp_ms,
        "Scp-ClientType": CLIENT_TYPE,
        "Accept-Language": language,
        "Scp-Api-Version": f"virtualserver {api_version}",
    }
    if account_id:
        headers["Scp-AccountId"] = account_id
    return headers
