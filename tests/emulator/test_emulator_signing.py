"""The emulator's signature check: the documented vector and each way a request can fail it."""

from __future__ import annotations

from typing import Any

import pytest

from scp_emulator.auth import HMAC_FAIL, TIMESTAMP_EXPIRED, AuthResult, authenticate
from scp_emulator.config import Credential
from scp_emulator.signing import compute_signature

from .emulator_helpers import SignHeaders

VECTOR_URL = (
    "https://virtualserver.kr-west1.e.samsungsdscloud.com"
    "/v1/servers/2a9be312-5d4b-4bc8-b2ae-35100fa9241f"
)
VECTOR_SIGNATURE = "dsaONfFpAbphNGPpDiSPk+Gb5DRFzV1RIy2Rs8kdLYY="
VECTOR_TIMESTAMP = "1605290625682"
VECTOR_CREDENTIAL = Credential(access_key="EXAMPLEACCESSKEY", secret_key="EXAMPLESECRETKEY")


def test_signature_reproduces_the_documented_known_answer_vector() -> None:
    signature = compute_signature(
        secret_key="EXAMPLESECRETKEY",
        method="DELETE",
        url=VECTOR_URL,
        timestamp=VECTOR_TIMESTAMP,
        access_key="EXAMPLEACCESSKEY",
    )
    assert signature == VECTOR_SIGNATURE


def test_test_side_signer_agrees_with_the_vector(sign: SignHeaders) -> None:
    headers = sign(
        "DELETE",
        VECTOR_URL,
        access_key="EXAMPLEACCESSKEY",
        secret_key="EXAMPLESECRETKEY",
        timestamp=VECTOR_TIMESTAMP,
    )
    assert headers["Scp-Signature"] == VECTOR_SIGNATURE


def _check(
    headers: dict[str, str],
    *,
    urls: list[str] | None = None,
    path: str = "/v1/servers/2a9be312-5d4b-4bc8-b2ae-35100fa9241f",
    now_ms: int = int(VECTOR_TIMESTAMP),
    **overrides: Any,
) -> AuthResult:
    return authenticate(
        method="DELETE",
        path=path,
        candidate_urls=urls or [VECTOR_URL],
        headers=headers,
        credentials={VECTOR_CREDENTIAL.access_key: VECTOR_CREDENTIAL},
        now_ms=now_ms,
        window_seconds=300,
        **overrides,
    )


def _vector_headers() -> dict[str, str]:
    return {
        "Scp-Accesskey": "EXAMPLEACCESSKEY",
        "Scp-Signature": VECTOR_SIGNATURE,
        "Scp-Timestamp": VECTOR_TIMESTAMP,
        "Scp-ClientType": "Openapi",
    }


def test_the_vector_request_is_accepted_within_the_window() -> None:
    result = _check(_vector_headers(), now_ms=int(VECTOR_TIMESTAMP) + 299_000)
    assert result.ok
    assert result.signature_valid
    assert result.url == VECTOR_URL


@pytest.mark.parametrize("skew_ms", [301_000, -301_000])
def test_a_valid_signature_outside_the_window_is_a_stale_timestamp(skew_ms: int) -> None:
    result = _check(_vector_headers(), now_ms=int(VECTOR_TIMESTAMP) + skew_ms)
    assert result.verdict == "stale-timestamp"
    assert result.detail == TIMESTAMP_EXPIRED
    assert result.signature_valid


def test_a_wrong_secret_is_a_bad_signature() -> None:
    headers = {**_vector_headers(), "Scp-Signature": "AAAA" + VECTOR_SIGNATURE[4:]}
    result = _check(headers)
    assert result.verdict == "bad-signature"
    assert result.detail == HMAC_FAIL
    assert not result.signature_valid


def test_an_unknown_access_key_is_reported_as_such() -> None:
    result = _check({**_vector_headers(), "Scp-Accesskey": "SOMEONEELSE"})
    assert result.verdict == "unknown-key"
    assert result.detail == HMAC_FAIL


@pytest.mark.parametrize(
    "broken",
    [
        {"Scp-ClientType": "Terraform"},
        {"Scp-Timestamp": "yesterday"},
        {"Scp-Signature": ""},
    ],
)
def test_malformed_signing_headers_fail_the_hmac_check(broken: dict[str, str]) -> None:
    result = _check({**_vector_headers(), **broken})
    assert result.verdict == "bad-signature"
    assert result.detail == HMAC_FAIL


def test_missing_headers_fail_the_hmac_check() -> None:
    result = _check({})
    assert result.verdict == "bad-signature"
    assert result.detail == HMAC_FAIL


def test_a_double_slash_in_the_path_fails_even_when_signed_correctly() -> None:
    url = "https://virtualserver.kr-west1.e.samsungsdscloud.com//v1/servers"
    headers = {
        **_vector_headers(),
        "Scp-Signature": compute_signature(
            secret_key="EXAMPLESECRETKEY",
            method="DELETE",
            url=url,
            timestamp=VECTOR_TIMESTAMP,
            access_key="EXAMPLEACCESSKEY",
        ),
    }
    result = _check(headers, urls=[url], path="//v1/servers")
    assert result.verdict == "bad-signature"


def test_any_candidate_url_may_match_so_a_proxy_base_url_works() -> None:
    result = _check(_vector_headers(), urls=["http://127.0.0.1:8484/v1/servers/x", VECTOR_URL])
    assert result.ok
    assert result.url == VECTOR_URL


def test_the_account_id_is_part_of_the_signed_string() -> None:
    signature = compute_signature(
        secret_key="EXAMPLESECRETKEY",
        method="DELETE",
        url=VECTOR_URL,
        timestamp=VECTOR_TIMESTAMP,
        access_key="EXAMPLEACCESSKEY",
        account_id="acc-1",
    )
    assert signature != VECTOR_SIGNATURE
    headers = {**_vector_headers(), "Scp-Signature": signature, "Scp-AccountId": "acc-1"}
    assert _check(headers).ok
    assert not _check({**headers, "Scp-AccountId": "acc-2"}).ok
