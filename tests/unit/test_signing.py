"""The signature must match SCP's formula bit for bit."""

import base64
import hashlib
import hmac

from scp_operator.scp import signing

KAV_URL = (
    "https://virtualserver.kr-west1.e.samsungsdscloud.com"
    "/v1/servers/2a9be312-5d4b-4bc8-b2ae-35100fa9241f"
)


def test_known_answer_vector_from_scp_api_doc() -> None:
    signature = signing.sign(
        method="DELETE",
        url=KAV_URL,
        timestamp_ms="1605290625682",
        access_key="EXAMPLEACCESSKEY",
        secret_key="EXAMPLESECRETKEY",
    )
    assert signature == "dsaONfFpAbphNGPpDiSPk+Gb5DRFzV1RIy2Rs8kdLYY="


def test_method_is_upper_cased_and_account_id_is_signed() -> None:
    common = dict(url=KAV_URL, timestamp_ms="1", access_key="A", secret_key="S")
    assert signing.sign(method="delete", **common) == signing.sign(method="DELETE", **common)
    assert signing.sign(method="DELETE", account_id="acc", **common) != signing.sign(
        method="DELETE", **common
    )
    expected = base64.b64encode(
        hmac.new(b"S", f"DELETE{KAV_URL}1AaccOpenapi".encode(), hashlib.sha256).digest()
    ).decode()
    assert signing.sign(method="DELETE", account_id="acc", **common) == expected


def test_signed_headers_carry_every_scp_header_with_a_fresh_timestamp() -> None:
    headers = signing.signed_headers(
        method="DELETE",
        url=KAV_URL,
        access_key="A",
        secret_key="S",
        api_version="1.3",
        language="ko-KR",
        clock=lambda: 1605290625.682,
    )
    assert headers["Scp-Timestamp"] == "1605290625682"
    assert headers["Scp-ClientType"] == "Openapi"
    assert headers["Scp-Api-Version"] == "virtualserver 1.3"
    assert headers["Accept-Language"] == "ko-KR"
    assert headers["Scp-Accesskey"] == "A"
    assert "Scp-AccountId" not in headers
    later = signing.signed_headers(
        method="DELETE",
        url=KAV_URL,
        access_key="A",
        secret_key="S",
        api_version="1.3",
        language="ko-KR",
        clock=lambda: 1605290626.0,
    )
    assert later["Scp-Signature"] != headers["Scp-Signature"]


def test_secret_never_appears_in_headers() -> None:
    headers = signing.signed_headers(
        method="GET",
        url=KAV_URL,
        access_key="A",
        secret_key="TOPSECRET",
        account_id="x",
        api_version="1.3",
        language="en-US",
    )
    assert all("TOPSECRET" not in v for v in headers.values())
    assert headers["Scp-AccountId"] == "x"
