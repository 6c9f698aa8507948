"""URLs the gateway accepts: no ``//``, no trailing ``/``, quoted segments."""

import pytest

from scp_operator.scp import endpoints


def test_regional_url_from_region_and_environment() -> None:
    assert (
        endpoints.service_url(region="kr-west1", environment="e")
        == "https://virtualserver.kr-west1.e.samsungsdscloud.com"
    )
    assert endpoints.service_url(region="kr-south2", environment="g").startswith(
        "https://virtualserver.kr-south2.g."
    )


@pytest.mark.parametrize(("region", "env"), [("kr-south1", "e"), ("kr-west1", "x")])
def test_unknown_region_or_environment_is_refused(region: str, env: str) -> None:
    with pytest.raises(endpoints.EndpointError, match="known"):
        endpoints.service_url(region=region, environment=env)


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("http://127.0.0.1:8484/", "http://127.0.0.1:8484"),
        ("https://proxy.example//scp//", "https://proxy.example/scp"),
        ("https://h", "https://h"),
    ],
)
def test_override_wins_and_is_normalised(override: str, expected: str) -> None:
    assert endpoints.service_url(region="kr-west1", environment="e", override=override) == expected


@pytest.mark.parametrize("bad", ["ftp://x", "not a url", "http://h/?q=1", "/relative"])
def test_bad_override_is_refused(bad: str) -> None:
    with pytest.raises(endpoints.EndpointError):
        endpoints.normalise_base(bad)


def test_build_url_never_doubles_slashes_and_quotes_segments() -> None:
    url = endpoints.build_url("http://h:1/base/", "/v1/", "servers", "a/b?c")
    assert url == "http://h:1/base/v1/servers/a%2Fb%3Fc"
    assert "//" not in url.removeprefix("http://")


def test_query_keys_are_sorted() -> None:
    assert endpoints.build_url("http://h", "v1", query={"marker": "m", "limit": "1"}) == (
        "http://h/v1?limit=1&marker=m"
    )
