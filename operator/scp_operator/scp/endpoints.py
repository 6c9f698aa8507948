"""Where the virtualserver service lives, and how to build URLs the gateway accepts.

SCP's gateway rejects a malformed URL (a ``//`` in the path, for instance) with the same 401
``[HMAC] HMAC valid fail`` as a wrong key, which is a miserable thing to debug; so every URL the
operator sends is built here, from a base without a trailing slash and quoted path segments.
"""

from __future__ import annotations

from urllib.parse import quote, urlencode, urlsplit

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


def normalise_base(base: str) -> str:
    """Validate an explicit base URL and strip trailing slashes."""
    parts = urlsplit(base.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise EndpointError(f"endpoint {base!r} must be an absolute http(s) URL")
    if parts.query or parts.fragment:
        raise EndpointError(f"endpoint {base!r} must not carry a query or fragment")
    path = "/".join(segment for segment in parts.path.split("/") if segment)
    return f"{parts.scheme}://{parts.netloc}" + (f"/{path}" if path else "")


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
