"""Where the virtualserver service lives, and how to build URLs the gateway accepts.

SCP's gateway rejects a malformed URL (a ``//`` in the path, for instance) with the same 401
``[HMAC] HMAC valid fail`` as a wrong key, which is a miserable thing to debug; so every URL the
operator sends is built here, from a base without a trailing slash and quoted path segments.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from urllib.parse import quote, urlencode, urlsplit

import httpx
import idna

ENVIRONMENTS: dict[str, tuple[str, ...]] = {
    "s": ("kr-west1", "kr-east1"),
    "g": ("kr-south1", "kr-south2", "kr-south3"),
    "e": ("kr-west1", "kr-east1"),
}


class EndpointError(ValueError):
    """The endpoint settings cannot name a valid service URL."""


def service_url(*, region: str, environment: str, override: str | None = None) -> str:
    """Base URL of the regional virtualserver service, without a trailing slash.

    ``override`` (``SCP_ENDPOINT``) wins over region and environment: tests, private endpoints and
    proxies need it.
    """
    if override:
        return normalise_base(override)
    if environment not in ENVIRONMENTS:
        known = ", ".join(sorted(ENVIRONMENTS))
        raise EndpointError(f"unknown SCP environment {environment!r} (known: {known})")
    if region not in ENVIRONMENTS[environment]:
        known = ", ".join(ENVIRONMENTS[environment])
        raise EndpointError(
            f"region {region!r} does not exist in SCP environment {environment!r} (known: {known})"
        )
    return f"https://virtualserver.{region}.{environment}.samsungsdscloud.com"


@functools.lru_cache(maxsize=256)
def normalise_base(base: str) -> str:
    """Validate an explicit base URL and return it in the exact form httpx will send.

    The signature covers the URL as sent, and httpx rewrites some spellings before sending
    (``SCP.Example.com`` to lower case, ``:443`` on https dropped, ``bücher.example`` to
    punycode, spaces in the path percent-encoded). Signing the spelling the user typed would then
    fail every call with "URL changed after signing", so the base is rendered by httpx itself,
    once, and every URL is built on that rendering. Trailing and doubled slashes are removed
    (the gateway answers ``//`` with a signature error).

    Plain ``http://`` is accepted only for this machine (the emulator, a local proxy): anywhere
    else keys' signatures and server data would travel unencrypted, and "TLS is never off" is a
    promise of the operator. A user name or password in the URL is refused (and never echoed):
    keys belong in the credentials settings.

    Cached: it is pure, and every request's URL is built on it two or three times (a profile of
    the drain put 3 % of the operator's CPU here). A refusal raises each time; only answers are
    kept.
    """
    text = base.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        raise EndpointError(f"endpoint {base!r} is not a valid URL") from None
    if "@" in parts.netloc:
        raise EndpointError(
            "endpoint must not carry a user name or password; "
            "keys belong in SCP_ACCESS_KEY/SCP_SECRET_KEY or SCP_CREDENTIALS_DIR"
        )
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.netloc:
        raise EndpointError(f"endpoint {base!r} must be an absolute http(s) URL")
    if parts.query or parts.fragment:
        raise EndpointError(f"endpoint {base!r} must not carry a query or fragment")
    path = "/".join(segment for segment in parts.path.split("/") if segment)
    try:
        url = httpx.URL(f"{scheme}://{parts.netloc}" + (f"/{path}" if path else ""))
        host = url.raw_host.decode("ascii")
    except (httpx.InvalidURL, UnicodeError, ValueError) as exc:
        raise EndpointError(f"endpoint {base!r} is not a valid URL: {exc}") from None
    if not _valid_host(host):
        raise EndpointError(f"endpoint {base!r} does not name a valid host")
    if url.scheme == "http" and not _is_loopback(host):
        raise EndpointError(
            f"endpoint {base!r} uses plain http:// for a host that is not this machine; "
            "use https:// (http:// is allowed only for localhost, 127.0.0.0/8 and ::1)"
        )
    return str(url)


_LABELS = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")


def _valid_host(host: str) -> bool:
    """A DNS name (after IDNA) or an IP literal; httpx percent-encodes anything else."""
    if _ip(host) is not None:
        return True
    if not _LABELS.fullmatch(host):
        return False
    for label in host.split("."):
        if label.startswith("xn--"):
            try:
                idna.decode(label)
            except UnicodeError:  # idna.IDNAError is one
                return False
    return True


def _ip(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])  # an IPv6 zone id is not an address
    except ValueError:
        return None


def _is_loopback(host: str) -> bool:
    """``localhost``, ``127.0.0.0/8`` or ``::1``: traffic that never leaves the machine."""
    address = _ip(host)
    return host == "localhost" if address is None else address.is_loopback


def build_url(base: str, *segments: str, query: dict[str, str] | None = None) -> str:
    """Join a base and path segments with single slashes; keys of ``query`` are sorted.

    Each segment is percent-quoted on its own, so a server id can never smuggle a ``/`` or
    ``?`` into the path.
    """
    path = "/".join(quote(segment.strip("/"), safe="") for segment in segments if segment)
    url = f"{normalise_base(base)}/{path}"
    if query:
        url += "?" + urlencode(sorted(query.items()))
    return url
