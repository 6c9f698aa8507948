"""URLs the gateway accepts: no ``//``, no trailing ``/``, quoted segments."""

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

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
    url = endpoints.build_url("https://h:1/base/", "/v1/", "servers", "a/b?c")
    assert url == "https://h:1/base/v1/servers/a%2Fb%3Fc"
    assert "//" not in url.removeprefix("https://")


def test_query_keys_are_sorted() -> None:
    assert endpoints.build_url("https://h", "v1", query={"marker": "m", "limit": "1"}) == (
        "https://h/v1?limit=1&marker=m"
    )


CANONICAL = [
    ("https://SCP.Example.com", "https://scp.example.com"),
    ("https://scp.example.com:443", "https://scp.example.com"),
    ("https://scp.example.com:443/", "https://scp.example.com"),
    ("http://127.0.0.1:80", "http://127.0.0.1"),
    ("https://bücher.example", "https://xn--bcher-kva.example"),
    ("https://BÜCHER.example:8443/Scp", "https://xn--bcher-kva.example:8443/Scp"),
    ("HTTPS://Proxy.Example:8443//scp//", "https://proxy.example:8443/scp"),
    ("https://h/a b/ü", "https://h/a%20b/%C3%BC"),
    ("http://[::1]:80/", "http://[::1]"),
    ("http://LOCALHOST:8484", "http://localhost:8484"),
]


@pytest.mark.parametrize(("base", "expected"), CANONICAL)
def test_a_base_is_rendered_exactly_as_httpx_will_send_it(base: str, expected: str) -> None:
    """Upper-case hosts, default ports and IDN hosts are rewritten by httpx before sending; the
    signed URL must already be that rewritten form, or every call fails its signature check."""
    assert endpoints.normalise_base(base) == expected
    url = endpoints.build_url(base, "v1", "servers", "2a9be312-5d4b-4bc8-b2ae-35100fa9241f")
    assert str(httpx.URL(url)) == url
    assert str(httpx.Request("DELETE", url).url) == url


@pytest.mark.parametrize(("base", "expected"), CANONICAL)
def test_normalising_a_base_twice_changes_nothing(base: str, expected: str) -> None:
    assert endpoints.normalise_base(endpoints.normalise_base(base)) == expected


hosts = st.sampled_from(
    ["virtualserver.kr-west1.e.samsungsdscloud.com", "bücher.example", "proxy.example", "h"]
)


@given(
    hosts,
    st.lists(st.booleans(), min_size=60, max_size=60),
    st.sampled_from(["", ":443", ":8443"]),
    st.sampled_from(["", "/", "//scp//", "/A b/"]),
    st.text(max_size=20),
)
def test_every_url_built_on_any_spelling_of_a_base_is_sent_unchanged(
    host: str, upper: list[bool], port: str, path: str, server_id: str
) -> None:
    host = "".join(c.upper() if up else c for c, up in zip(host, upper, strict=False))
    url = endpoints.build_url(f"https://{host}{port}{path}", "v1", "servers", server_id)
    if "/.." not in url and not url.endswith("/."):  # dot segments the client refuses to send
        assert str(httpx.Request("DELETE", url).url) == url


@pytest.mark.parametrize(
    "base",
    [
        "http://scp.example.com",
        "http://10.0.0.1:8080",
        "http://localhost.evil.example",
        "http://128.0.0.1",
        "http://[::2]:80",
        "HTTP://SCP.example.com",
    ],
)
def test_plain_http_is_refused_for_a_host_that_is_not_this_machine(base: str) -> None:
    """TLS is never off for a real endpoint: the keys' signatures would travel in clear text."""
    with pytest.raises(endpoints.EndpointError, match="https"):
        endpoints.normalise_base(base)


@pytest.mark.parametrize(
    "base",
    ["http://localhost:8484", "http://127.0.0.1:9", "http://127.1.2.3", "http://[::1]:8484"],
)
def test_plain_http_is_allowed_for_loopback_hosts(base: str) -> None:
    assert endpoints.normalise_base(base).startswith("http://")


def test_a_base_with_a_user_and_password_is_refused_without_echoing_them() -> None:
    with pytest.raises(endpoints.EndpointError, match="user") as info:
        endpoints.normalise_base("https://admin:TOPSECRET@scp.example.com")
    assert "TOPSECRET" not in str(info.value)


@pytest.mark.parametrize("bad", ["https://exa mple.com", "https://[::1", "https://xn--a.example"])
def test_a_base_httpx_cannot_parse_is_an_endpoint_error(bad: str) -> None:
    with pytest.raises(endpoints.EndpointError):
        endpoints.normalise_base(bad)


def test_a_refused_base_is_refused_every_time_and_an_answer_is_kept() -> None:
    """The normalisation is cached (every request's URL is built on it): only answers are kept,
    so a bad endpoint fails each call with its reason, never with a stale success."""
    endpoints.normalise_base.cache_clear()
    for _ in range(2):
        with pytest.raises(endpoints.EndpointError, match="must be an absolute"):
            endpoints.normalise_base("ftp://scp.example.com")
    assert endpoints.normalise_base("HTTPS://SCP.example.com:443/") == "https://scp.example.com"
    assert endpoints.normalise_base("HTTPS://SCP.example.com:443/") == "https://scp.example.com"
    info = endpoints.normalise_base.cache_info()
    assert (info.hits, info.currsize) == (1, 1)
