"""SCP answers become typed outcomes, whatever the body holds."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scp_operator.scp import outcomes
from scp_operator.scp.outcomes import Verdict


@pytest.mark.parametrize(
    ("method", "status", "kind"),
    [
        ("DELETE", 202, Verdict.ACCEPTED),
        ("DELETE", 404, Verdict.GONE),
        ("DELETE", 409, Verdict.CONFLICT),
        ("DELETE", 401, Verdict.UNAUTHORIZED),
        ("DELETE", 403, Verdict.FORBIDDEN),
        ("DELETE", 429, Verdict.THROTTLED),
        ("DELETE", 500, Verdict.UNAVAILABLE),
        ("DELETE", 503, Verdict.UNAVAILABLE),
        ("DELETE", 408, Verdict.UNAVAILABLE),
        ("DELETE", 200, Verdict.REJECTED),
        ("DELETE", 204, Verdict.REJECTED),
        ("DELETE", 301, Verdict.REJECTED),
        ("DELETE", 400, Verdict.REJECTED),
        ("GET", 200, Verdict.FOUND),
        ("GET", 202, Verdict.REJECTED),
    ],
)
def test_status_codes_map_to_kinds(method: str, status: int, kind: Verdict) -> None:
    assert outcomes.classify(status, method=method) is kind


def test_scp_error_detail_is_kept() -> None:
    o = outcomes.from_response(
        method="DELETE",
        status=409,
        headers={},
        content=b'{"errors":[{"status":409,"detail":"Cannot terminate due to associated '
        b'resources"}]}',
    )
    assert o.kind is Verdict.CONFLICT
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
    assert o.kind is Verdict.UNAVAILABLE
    assert o.detail == "the answer was not JSON"


def test_long_details_are_shortened() -> None:
    o = outcomes.from_response(
        method="DELETE", status=409, headers={}, content=b'{"message":"' + b"x" * 5000 + b'"}'
    )
    assert o.detail is not None
    assert len(o.detail) <= outcomes.MAX_DETAIL


def test_get_200_without_json_object_is_rejected_not_found() -> None:
    o = outcomes.from_response(method="GET", status=200, headers={}, content=b"[]")
    assert o.kind is Verdict.REJECTED


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
    assert o.kind is Verdict.THROTTLED
    assert o.retry_after == 3.0


@pytest.mark.parametrize(
    "value",
    [
        "²",  # superscript two: str.isdigit() is true, float() fails
        "\u0663",  # ARABIC-INDIC DIGIT THREE: float() would read it
        "\uff17",  # FULLWIDTH DIGIT SEVEN
        "1²",
        " ² ",
    ],
    ids=["superscript", "arabic-indic", "fullwidth", "digit-then-superscript", "padded"],
)
def test_retry_after_with_a_non_ascii_digit_is_ignored(value: str) -> None:
    """Only ASCII digits are delta-seconds (RFC 9110 DIGIT); anything else is no hint at all."""
    assert outcomes.parse_retry_after(value) is None


def test_a_202_with_a_superscript_retry_after_is_still_accepted() -> None:
    o = outcomes.from_response(
        method="DELETE", status=202, headers={"retry-after": "²"}, content=b""
    )
    assert o.kind is Verdict.ACCEPTED
    assert o.retry_after is None


def test_retry_after_never_raises_even_when_date_parsing_breaks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever the standard library's date parser does with a value, no exception escapes."""

    def broken(value: str) -> object:
        raise OverflowError("date value out of range")

    monkeypatch.setattr(outcomes.email.utils, "parsedate_to_datetime", broken)
    assert outcomes.parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None


def test_from_response_falls_back_to_the_status_when_reading_the_body_breaks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A bug in the body reader must not cost the status: a 202 stays an acceptance."""

    def broken(parsed: object, raw: bytes) -> str:
        raise RuntimeError("boom")

    monkeypatch.setattr(outcomes, "error_detail", broken)
    assert outcomes.from_response(
        method="DELETE", status=409, headers={"retry-after": "5"}, content=b"{}"
    ) == outcomes.Outcome(Verdict.CONFLICT, 409, None, 5.0)
    o = outcomes.from_response(method="GET", status=200, headers={}, content=b'{"id": "x"}')
    assert o.kind is Verdict.FOUND  # the body reader for FOUND does not use error_detail


def test_from_status_names_only_the_status() -> None:
    assert outcomes.from_status(method="DELETE", status=202).kind is Verdict.ACCEPTED
    assert outcomes.from_status(method="DELETE", status=404).kind is Verdict.GONE
    # a GET 200 without a readable body is no server we can observe
    assert outcomes.from_status(method="GET", status=200).kind is Verdict.REJECTED
    o = outcomes.from_status(
        method="DELETE", status=429, headers={"retry-after": "²"}, note="body unreadable"
    )
    assert (o.kind, o.retry_after, o.detail) == (Verdict.THROTTLED, None, "body unreadable")


header_names = st.sampled_from(["retry-after", "Retry-After", "content-type"]) | st.text()
header_values = (
    st.text()
    | st.text(alphabet=st.characters(categories=["Nd", "No"]), min_size=1, max_size=4)
    | st.from_regex(r"\A[0-9]{1,30}\Z")
)


@given(
    st.sampled_from(["DELETE", "GET"]),
    st.integers(min_value=100, max_value=599),
    st.dictionaries(header_names, header_values, max_size=4),
    st.binary(max_size=512) | st.sampled_from([b"[" * 10_000, b'{"errors":[{"detail":["x"]}]}']),
)
@settings(max_examples=300, deadline=None)
def test_from_response_never_raises_and_a_delete_202_is_always_accepted(
    method: str, status: int, headers: dict[str, str], content: bytes
) -> None:
    o = outcomes.from_response(method=method, status=status, content=content, headers=headers)
    assert o.status == status
    assert o.retry_after is None or 0.0 <= o.retry_after <= 3600.0
    accepted = outcomes.from_response(method="DELETE", status=202, content=content, headers=headers)
    assert accepted.kind is Verdict.ACCEPTED
