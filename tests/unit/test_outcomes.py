"""SCP answers become typed outcomes, whatever the body holds."""

import pytest

from scp_operator.scp import outcomes
from scp_operator.scp.outcomes import Kind


@pytest.mark.parametrize(
    ("method", "status", "kind"),
    [
        ("DELETE", 202, Kind.ACCEPTED),
        ("DELETE", 404, Kind.GONE),
        ("DELETE", 409, Kind.CONFLICT),
        ("DELETE", 401, Kind.UNAUTHORIZED),
        ("DELETE", 403, Kind.FORBIDDEN),
        ("DELETE", 429, Kind.THROTTLED),
        ("DELETE", 500, Kind.UNAVAILABLE),
        ("DELETE", 503, Kind.UNAVAILABLE),
        ("DELETE", 408, Kind.UNAVAILABLE),
        ("DELETE", 200, Kind.REJECTED),
        ("DELETE", 204, Kind.REJECTED),
        ("DELETE", 301, Kind.REJECTED),
        ("DELETE", 400, Kind.REJECTED),
        ("GET", 200, Kind.FOUND),
        ("GET", 202, Kind.REJECTED),
    ],
)
def test_status_codes_map_to_kinds(method: str, status: int, kind: Kind) -> None:
    assert outcomes.classify(status, method=method) is kind


def test_scp_error_detail_is_kept() -> None:
    o = outcomes.from_response(
        method="DELETE",
        status=409,
        headers={},
        content=b'{"errors":[{"status":409,"detail":"Cannot terminate due to associated '
        b'resources"}]}',
    )
    assert o.kind is Kind.CONFLICT
    assert o.detail == "Cannot terminate due to associated resources"
    assert o.describe() == "409 Conflict: Cannot terminate due to associated resources"


def test_detail_as_list_and_validation_list_shapes() -> None:
    o = outcomes.from_response(
        method="DELETE", status=401, headers={}, content=b'{"errors":[{"detail":["a","b"]}]}'
    )
    assert o.detail == "a; b"
    o = outcomes.from_response(
        method="GET",
        status=400,
        headers={},
        content=b'[{"loc":["path","server_id"],"msg":"bad uuid","type":"x"}]',
    )
    assert o.detail == "path.server_id: bad uuid"


@pytest.mark.parametrize(
    "content", [b"<html><body>502 Bad Gateway</body></html>", b"\xff\xfe garbage", b"{nope"]
)
def test_non_json_bodies_never_break_and_never_leak_markup(content: bytes) -> None:
    o = outcomes.from_response(method="DELETE", status=502, headers={}, content=content)
    assert o.kind is Kind.UNAVAILABLE
    assert o.detail == "the answer was not JSON"


def test_long_details_are_shortened() -> None:
    o = outcomes.from_response(
        method="DELETE", status=409, headers={}, content=b'{"message":"' + b"x" * 5000 + b'"}'
    )
    assert o.detail is not None
    assert len(o.detail) <= outcomes.MAX_DETAIL


def test_get_200_without_json_object_is_rejected_not_found() -> None:
    o = outcomes.from_response(method="GET", status=200, headers={}, content=b"[]")
    assert o.kind is Kind.REJECTED


@pytest.mark.parametrize(
    ("value", "expected"),
    [("7", 7.0), ("99999", 3600.0), (None, None), ("soon", None), ("", None)],
)
def test_retry_after_seconds(value: str | None, expected: float | None) -> None:
    assert outcomes.parse_retry_after(value) == expected


def test_retry_after_http_date() -> None:
    value = "Wed, 21 Oct 2015 07:28:10 GMT"
    import email.utils

    now = email.utils.parsedate_to_datetime(value).timestamp() - 12
    assert outcomes.parse_retry_after(value, now=now) == pytest.approx(12.0)
    o = outcomes.from_response(
        method="DELETE", status=429, headers={"retry-after": "3"}, content=b""
    )
    assert o.kind is Kind.THROTTLED
    assert o.retry_after == 3.0
