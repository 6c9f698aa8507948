"""Reading SCP's answers safely: bounded bodies, bounded inflation, bounded fields, TLS.

What comes back from SCP (or whatever answers in its place) is untrusted: a body is read up to
``MAX_BODY`` decoded bytes however it is compressed, a transport failure is named without
echoing the request (its headers carry the key id), and the fields kept from a server object
are bounded and stripped of control characters before they reach status, events or logs. Kept
apart from :mod:`scp_operator.scp.client`, which owns the request path (signing, deadline,
limiter, outcome).
"""

from __future__ import annotations

import ssl
import zlib
from pathlib import Path
from typing import Any

import httpx

MAX_BODY = 1_000_000
MAX_NAME = 255  # longest server name kept for status and messages
MAX_STATE = 64  # longest server state kept
MAX_VOLUMES = 64  # most volumes kept per server (status size stays bounded)
MAX_ID = 64  # longest volume id kept (SCP ids are 36-character UUIDs)


class UnreadableBody(Exception):
    """An answer's body cannot be read (unknown or broken encoding); its status still counts."""


async def read_capped(response: httpx.Response) -> bytes:
    """Read at most ``MAX_BODY`` decoded bytes: a huge error page must not eat the memory.

    The raw stream is read and inflated here, not by httpx: httpx inflates each compressed chunk
    whole before a caller sees it, so a small gzip bomb would become hundreds of MB before any
    cap applied. Here ``zlib`` is told the most it may produce, so no more than ``MAX_BODY + 1``
    decoded bytes ever exist. The client asks for ``identity``; gzip and deflate are still read
    when a server sends them anyway. Raises :class:`UnreadableBody` for any other encoding or a
    broken compressed stream (the status still counts).
    """
    if response.is_stream_consumed:
        # Already read in full and decoded by httpx (a response built with ``content=``, as
        # test doubles are): nothing raw is left to read, and nothing more to save.
        return response.content[:MAX_BODY]
    inflater = _inflater(response.headers.get("content-encoding", ""))
    chunks: list[bytes] = []
    budget = MAX_BODY + 1
    size = 0
    async for raw in response.aiter_raw():
        if inflater is None:
            chunks.append(raw)
            size += len(raw)
        else:
            size += inflater.feed(raw, budget - size, chunks)
        if size >= budget or (inflater is not None and inflater.eof):
            break
    return b"".join(chunks)[:MAX_BODY]


def _inflater(content_encoding: str) -> _Inflater | None:
    """The decoder for a ``Content-Encoding`` value: None for identity, else gzip or deflate."""
    codings = [c.strip().lower() for c in content_encoding.split(",")]
    codings = [c for c in codings if c not in ("", "identity")]
    if not codings:
        return None
    if len(codings) == 1 and codings[0] in ("gzip", "x-gzip", "deflate"):
        return _Inflater(codings[0])
    raise UnreadableBody("its body came in a Content-Encoding the operator does not read")


class _Inflater:
    """Incremental, bounded gzip/deflate decoding with ``zlib.decompressobj``.

    "deflate" is zlib-wrapped by the standard, but some servers send raw deflate: like httpx,
    fall back to raw when the first bytes are not a zlib header.
    """

    def __init__(self, coding: str) -> None:
        self._raw_fallback = coding == "deflate"
        wbits = zlib.MAX_WBITS if coding == "deflate" else zlib.MAX_WBITS | 16
        self._zlib = zlib.decompressobj(wbits)
        self._fed = False

    @property
    def eof(self) -> bool:
        """The compressed stream has ended; anything after it is ignored."""
        return self._zlib.eof

    def feed(self, data: bytes, limit: int, out: list[bytes]) -> int:
        """Inflate ``data`` into ``out``, at most ``limit`` bytes; returns how many were added."""
        added = 0
        while data and added < limit and not self._zlib.eof:
            try:
                piece = self._zlib.decompress(data, limit - added)
            except zlib.error:
                if not (self._raw_fallback and not self._fed):
                    raise UnreadableBody("its compressed body is broken") from None
                self._raw_fallback = False
                self._zlib = zlib.decompressobj(-zlib.MAX_WBITS)
                continue
            self._fed = True
            tail = self._zlib.unconsumed_tail
            if not piece and tail == data:  # no progress: never spin
                break
            out.append(piece)
            added += len(piece)
            data = tail
        return added


def transport_words(exc: httpx.HTTPError) -> str:
    """Name a transport failure without echoing request details (headers carry the key id)."""
    kinds: dict[type[Exception], str] = {
        httpx.ConnectTimeout: "connection timed out",
        httpx.ReadTimeout: "SCP did not answer in time",
        httpx.WriteTimeout: "sending to SCP timed out",
        httpx.PoolTimeout: "no free connection to SCP in time",
        httpx.ConnectError: "cannot connect to SCP",
        httpx.RemoteProtocolError: "SCP closed the connection",
        httpx.ReadError: "connection to SCP broke while reading",
    }
    for kind, words in kinds.items():
        if isinstance(exc, kind):
            return words
    return f"transport error ({type(exc).__name__})"


def ssl_context(ca_bundle: Path | None) -> ssl.SSLContext:
    """System trust plus an optional extra bundle. Verification is never switched off."""
    context = ssl.create_default_context()
    try:
        import certifi

        context.load_verify_locations(certifi.where())
    except ImportError:  # pragma: no cover - certifi comes with httpx
        pass
    if ca_bundle is not None:
        context.load_verify_locations(str(ca_bundle))
    return context


def describe_body(body: dict[str, Any] | None) -> dict[str, Any]:
    """The observation fields we keep from a server object.

    ``name`` and ``state`` come from SCP (or whatever answers in its place) and end up in the
    object's status, conditions, events and logs: they are bounded (a name of at most
    ``MAX_NAME`` characters, a state of at most ``MAX_STATE``, an ellipsis where cut) and ASCII
    control characters are removed, so a hostile answer can neither bloat the object (a body
    may hold 1 MB) nor forge lines in a log or terminal. Values of the wrong type are unknown
    (None).
    """
    body = body or {}
    locked = body.get("locked")
    return {
        "name": _bounded(body.get("name"), MAX_NAME),
        "state": _bounded(body.get("state"), MAX_STATE),
        "locked": locked if isinstance(locked, bool) else None,
    }


def describe_volumes(body: dict[str, Any] | None) -> list[dict[str, Any]] | None:
    """The server's block storage volumes: ``[{"id", "delete_on_termination"}]``, bounded.

    SCP terminates a volume with its server only where ``delete_on_termination`` is true
    (scp-api.md); the others outlive the server and are still billed, so the operator reports
    them after a deletion. None when the body has no readable ``volumes`` list (unknown, which
    is not the same as "no volumes"). A flag of the wrong type is unknown (None): such a volume
    is reported as possibly kept.
    """
    volumes = (body or {}).get("volumes")
    if not isinstance(volumes, list):
        return None
    kept: list[dict[str, Any]] = []
    for volume in volumes[:MAX_VOLUMES]:
        if not isinstance(volume, dict):
            continue
        volume_id = _bounded(volume.get("id"), MAX_ID)
        if not volume_id:
            continue
        flag = volume.get("delete_on_termination")
        kept.append(
            {"id": volume_id, "delete_on_termination": flag if isinstance(flag, bool) else None}
        )
    return kept


def created_by_auto_scaling(body: dict[str, Any] | None) -> bool:
    """Whether an Auto-Scaling Group created the server (its LB server group does not block a
    delete, scp-api.md)."""
    group = (body or {}).get("auto_scaling_group_id")
    return isinstance(group, str) and bool(group)


_CONTROL = dict.fromkeys([*range(0x20), 0x7F])  # str.translate table: delete ASCII controls


def _bounded(value: Any, limit: int) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.translate(_CONTROL)
    return text if len(text) <= limit else text[: limit - 1] + "…"
