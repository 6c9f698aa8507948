"""The gateway's HMAC check: from a request's headers and URL to a verdict.

Kept free of aiohttp so the rules read in one place and can be tested as a function. The order
is deliberate: an unknown key or a bad signature answers ``[HMAC] HMAC valid fail``; only a
correctly signed request with a stale timestamp answers ``[HMAC] Timestamp expired``. So that
detail means "your keys are right, your clock is wrong" — the distinction a client needs to
report clock skew. (How the real gateway orders these checks, and its window, are unknown.)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .config import Credential
from .requestlog import Verdict
from .signing import CLIENT_TYPE, compute_signature, signature_matches

HMAC_FAIL = "[HMAC] HMAC valid fail"
TIMESTAMP_EXPIRED = "[HMAC] Timestamp expired"

HEADER_ACCESS_KEY = "Scp-Accesskey"
HEADER_SIGNATURE = "Scp-Signature"
HEADER_TIMESTAMP = "Scp-Timestamp"
HEADER_CLIENT_TYPE = "Scp-ClientType"
HEADER_ACCOUNT_ID = "Scp-AccountId"
HEADER_API_VERSION = "Scp-Api-Version"


@dataclass(frozen=True)
class AuthResult:
    """Who sent a request and whether the gateway lets it through.

    ``verdict`` is ``ok`` or the reason for a 401; ``url`` is the candidate URL the signature
    matched (or the first candidate when none did), for the request log.
    """

    verdict: Verdict
    url: str
    credential: Credential | None = None
    signature_valid: bool = False
    detail: str | None = None

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"


def authenticate(
    *,
    method: str,
    path: str,
    candidate_urls: Iterable[str],
    headers: Mapping[str, str],
    credentials: Mapping[str, Credential],
    now_ms: int,
    window_seconds: float,
) -> AuthResult:
    """Check one request's signature and timestamp.

    ``candidate_urls`` are the absolute URLs the client may have signed (the one built from
    the Host header, and the configured public URL when behind a proxy). ``headers`` must be
    case-insensitive, as aiohttp's are.
    """
    urls = list(candidate_urls)
    first_url = urls[0] if urls else path
    access_key = headers.get(HEADER_ACCESS_KEY)
    signature = headers.get(HEADER_SIGNATURE)
    timestamp = headers.get(HEADER_TIMESTAMP)
    client_type = headers.get(HEADER_CLIENT_TYPE)
    account_id = headers.get(HEADER_ACCOUNT_ID, "")

    if not access_key:
        return AuthResult("bad-signature", first_url, detail=HMAC_FAIL)
    credential = credentials.get(access_key)
    if credential is None:
        return AuthResult("unknown-key", first_url, detail=HMAC_FAIL)
    if (
        not signature
        or not timestamp
        or not timestamp.isdigit()
        or client_type != CLIENT_TYPE
        or "//" in path
    ):
        return AuthResult("bad-signature", first_url, credential, detail=HMAC_FAIL)

    for url in urls:
        expected = compute_signature(
            secret_key=credential.secret_key,
            method=method,
            url=url,
            timestamp=timestamp,
            access_key=access_key,
            account_id=account_id,
        )
        if signature_matches(expected, signature):
            break
    else:
        return AuthResult("bad-signature", first_url, credential, detail=HMAC_FAIL)

    if abs(now_ms - int(timestamp)) > window_seconds * 1000:
        return AuthResult(
            "stale-timestamp", url, credential, signature_valid=True, detail=TIMESTAMP_EXPIRED
        )
    return AuthResult("ok", url, credential, signature_valid=True)
