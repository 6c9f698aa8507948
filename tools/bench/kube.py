"""Kubernetes access for the benchmark, and the two ways of counting the operator's requests.

* :class:`Kube` — a lean ``aiohttp`` client with the admin token (many requests in parallel on
  kept-alive connections); it counts its own requests by verb and resource, so they can be
  subtracted from the API server's totals.
* :class:`Tracker` — one watch per namespace that records, with this machine's wall clock, when
  each object got its finalizer, its observed status, its ``deletionTimestamp``, and when it
  vanished. It can also react to events (the "minimum writes" client of the K8s-bound baseline).
* :class:`AuditLog` — the API server's audit log, written only for the operator's own identity:
  exact per-user request counts (``apiserver_request_total`` has no user label).
* :func:`request_totals` — ``apiserver_request_total`` from ``/metrics``, by verb and resource.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import datetime as dt
import json
import re
import ssl
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp

from scp_operator.constants import GROUP, PLURAL, VERSION

WRITE_VERBS = frozenset({"POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION", "APPLY"})
READ_VERBS = frozenset({"GET", "LIST", "WATCH"})
# Audit log verbs (lower case, Kubernetes' authorizer verbs) -> apiserver_request_total verbs.
AUDIT_VERBS = {
    "get": "GET",
    "list": "LIST",
    "watch": "WATCH",
    "create": "POST",
    "update": "PUT",
    "patch": "PATCH",
    "delete": "DELETE",
    "deletecollection": "DELETECOLLECTION",
}

Key = tuple[str, str]  # (verb as in apiserver_request_total, "resource[/subresource]")


def vs_path(namespace: str, name: str | None = None) -> str:
    """The URL path of the VirtualServers of a namespace (or of one of them)."""
    base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}"
    return f"{base}/{name}" if name else base


def parse_time(value: str) -> float:
    """An RFC 3339 timestamp (as the API server and the emulator write them) as epoch seconds."""
    return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


class KubeError(RuntimeError):
    """The API server answered a harness request with an unexpected status."""


class Kube:
    """Admin access to the API server with bounded parallelism; counts its own requests."""

    def __init__(self, server: str, token: str, ca_file: Path, concurrency: int = 32) -> None:
        self.server = server
        self._token = token
        self._ca_file = ca_file
        self._semaphore = asyncio.Semaphore(concurrency)
        self._concurrency = concurrency
        self._session: aiohttp.ClientSession | None = None
        self.own: collections.Counter[Key] = collections.Counter()

    async def __aenter__(self) -> Kube:
        context = ssl.create_default_context(cafile=str(self._ca_file))
        connector = aiohttp.TCPConnector(ssl=context, limit=self._concurrency + 16)
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"Authorization": f"Bearer {self._token}"},
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            raise RuntimeError("use Kube as 'async with'")
        return self._session

    def _count(self, verb: str, path: str) -> None:
        # apiserver_request_total labels a collection DELETE as DELETE.
        verb = "DELETE" if verb == "DELETECOLLECTION" else verb
        self.own[(verb, resource_of(path))] += 1

    async def call(
        self,
        verb: str,
        path: str,
        body: Any = None,
        *,
        content_type: str = "application/json",
        ok: tuple[int, ...] = (200, 201, 202),
        limit: float = 300.0,
    ) -> Any:
        """One request; ``verb`` as in ``apiserver_request_total`` (LIST, PATCH, ...)."""
        method = {"LIST": "GET", "DELETECOLLECTION": "DELETE"}.get(verb, verb)
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type} if data is not None else {}
        for attempt in range(30):
            async with self._semaphore:
                self._count(verb, path)
                async with self.session.request(
                    method,
                    self.server + path,
                    data=data,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=limit),
                ) as response:
                    text = await response.text()
                    status = response.status
                    retry_after = response.headers.get("Retry-After", "1")
            if status == 429 and attempt < 29:  # e.g. a new CRD's storage still initializing
                await asyncio.sleep(float(retry_after) if retry_after.isdigit() else 1.0)
                continue
            if status not in ok:
                raise KubeError(f"{verb} {path} answered {status}: {text[:300]}")
            return json.loads(text) if text else None
        raise AssertionError("unreachable")

    async def create_namespace(self, name: str) -> None:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}
        await self.call("POST", "/api/v1/namespaces", body)

    async def metrics_text(self) -> str:
        """The API server's ``/metrics`` (a non-resource URL: not in the per-resource counts)."""
        async with self.session.get(self.server + "/metrics") as response:
            response.raise_for_status()
            return await response.text()

    async def watch(
        self, path: str, resource_version: str, handle: Callable[[dict[str, Any]], None]
    ) -> None:
        """Stream watch events of ``path`` to ``handle`` until cancelled or the server ends it."""
        url = f"{self.server}{path}?watch=1&resourceVersion={resource_version}&timeoutSeconds=3600"
        self._count("WATCH", path)
        async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as response:
            if response.status != 200:
                raise KubeError(f"WATCH {path} answered {response.status}")
            buffer = b""
            async for chunk in response.content.iter_any():
                buffer += chunk
                while b"\n" in buffer:
                    line, buffer = buffer.split(b"\n", 1)
                    if line.strip():
                        handle(json.loads(line))


def resource_of(path: str) -> str:
    """``resource`` or ``resource/subresource`` of an API path, as the API server labels it."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if not parts or parts[0] not in ("api", "apis"):
        return ""
    rest = parts[2:] if parts[0] == "api" else parts[3:]  # drop api/v1 or apis/group/version
    if len(rest) >= 2 and rest[0] == "namespaces":
        if len(rest) == 2:
            return "namespaces"
        rest = rest[2:]
    if not rest:
        return ""
    return rest[0] + (f"/{rest[2]}" if len(rest) >= 3 else "")


@dataclasses.dataclass
class ObjectTimes:
    """What the harness saw of one object, in wall-clock epoch seconds (None: not yet)."""

    finalized: float | None = None  # first seen carrying the finalizer
    observed: float | None = None  # first seen with status.server (the operator read SCP)
    marked: float | None = None  # first seen with a deletionTimestamp
    gone: float | None = None  # DELETED event (or missing from a relist)


class Tracker:
    """Watches the VirtualServers of one namespace and keeps :class:`ObjectTimes` per name."""

    def __init__(
        self,
        kube: Kube,
        namespace: str,
        finalizer: str,
        on_event: Callable[[str, dict[str, Any]], None] | None = None,
    ) -> None:
        self.kube = kube
        self.namespace = namespace
        self.finalizer = finalizer
        self.on_event = on_event
        self.objects: dict[str, ObjectTimes] = {}
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()
        self._error: BaseException | None = None
        self._rv = ""

    async def start(self) -> None:
        listing = await self.kube.call("LIST", vs_path(self.namespace))
        for item in listing["items"]:
            self._see("ADDED", item)
        self._task = asyncio.create_task(self._run(listing["metadata"]["resourceVersion"]))

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self, resource_version: str) -> None:
        self._rv = resource_version
        try:
            while True:
                try:
                    await self.kube.watch(vs_path(self.namespace), self._rv, self._handle)
                except KubeError:
                    self._rv = await self._relist()
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # surfaced by wait()
            self._error = exc
            self._changed.set()

    def _handle(self, event: dict[str, Any]) -> None:
        obj = event.get("object") or {}
        if event.get("type") == "ERROR":  # e.g. 410 Gone: relist and watch again
            raise KubeError(f"watch error: {obj}")
        if event.get("type") == "BOOKMARK":
            return
        self._rv = obj.get("metadata", {}).get("resourceVersion", self._rv)
        self._see(str(event.get("type")), obj)

    async def _relist(self) -> str:
        listing = await self.kube.call("LIST", vs_path(self.namespace))
        present = {item["metadata"]["name"] for item in listing["items"]}
        now = time.time()
        for name, times in self.objects.items():
            if name not in present and times.gone is None:
                times.gone = now
        for item in listing["items"]:
            self._see("MODIFIED", item)
        return str(listing["metadata"]["resourceVersion"])

    def _see(self, kind: str, obj: dict[str, Any]) -> None:
        now = time.time()
        meta = obj.get("metadata") or {}
        name = meta.get("name")
        if not name:
            return
        times = self.objects.setdefault(name, ObjectTimes())
        if kind == "DELETED":
            times.gone = times.gone or now
        else:
            if times.finalized is None and self.finalizer in (meta.get("finalizers") or []):
                times.finalized = now
            if times.observed is None and (obj.get("status") or {}).get("server"):
                times.observed = now
            if times.marked is None and meta.get("deletionTimestamp"):
                times.marked = now
        if self.on_event is not None:
            self.on_event(kind, obj)
        self._changed.set()

    def count(self, field: str) -> int:
        return sum(1 for t in self.objects.values() if getattr(t, field) is not None)

    async def wait(self, predicate: Callable[[Tracker], bool], within: float, what: str) -> None:
        """Wait until ``predicate(self)`` holds; raise TimeoutError naming ``what``."""
        deadline = time.monotonic() + within
        while not predicate(self):
            if self._error is not None:
                raise self._error
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"timed out after {within:.0f}s waiting for {what}")
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), min(remaining, 1.0))


@dataclasses.dataclass(frozen=True)
class AuditRequest:
    """One request of the audited identity."""

    verb: str  # as in apiserver_request_total
    resource: str  # resource[/subresource]
    name: str
    code: int
    received: float  # epoch seconds (microsecond resolution)


class AuditLog:
    """Reads the API server's JSON-lines audit log (the policy logs only one user).

    Each request is counted once: a watch at ``ResponseStarted`` (so watches still open are
    counted), everything else at ``ResponseComplete``.
    """

    def __init__(self, path: Path, user: str) -> None:
        self.path = path
        self.user = user

    def offset(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def read(self, start: int = 0) -> list[AuditRequest]:
        if not self.path.exists():
            return []
        with self.path.open("rb") as f:
            f.seek(start)
            data = f.read()
        requests = []
        for raw in data.splitlines():
            try:
                event = json.loads(raw)
            except ValueError:
                continue  # a line still being written
            if (event.get("user") or {}).get("username") != self.user:
                continue
            verb = str(event.get("verb"))
            stage = event.get("stage")
            wanted = "ResponseStarted" if verb == "watch" else "ResponseComplete"
            if stage != wanted and stage != "Panic":
                continue
            ref = event.get("objectRef") or {}
            resource = ref.get("resource", "") + (
                f"/{ref['subresource']}" if ref.get("subresource") else ""
            )
            requests.append(
                AuditRequest(
                    verb=AUDIT_VERBS.get(verb, verb.upper()),
                    resource=resource or str(event.get("requestURI", "")),
                    name=str(ref.get("name", "")),
                    code=int((event.get("responseStatus") or {}).get("code", 0)),
                    received=parse_time(str(event["requestReceivedTimestamp"])),
                )
            )
        return requests

    async def wait_quiet(self, quiet: float = 2.0, within: float = 60.0) -> None:
        """Wait until the audited user has made no request for ``quiet`` seconds."""
        deadline = time.monotonic() + within
        size, since = self.offset(), time.monotonic()
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            now_size = self.offset()
            if now_size != size:
                size, since = now_size, time.monotonic()
            elif time.monotonic() - since >= quiet:
                return


_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


# Leases are heartbeats, not per-object work: the API server's own identity lease in
# kube-system, and the operator's single-instance Lease (renewed every third of its duration,
# whatever the number of objects). Both are left out of the per-object request counts.
INTERNAL_RESOURCES = frozenset({"leases"})


def request_totals(metrics_text: str) -> collections.Counter[Key]:
    """``apiserver_request_total`` by (verb, resource[/subresource]): resource requests only,
    without the API server's own lease heartbeats."""
    totals: collections.Counter[Key] = collections.Counter()
    for line in metrics_text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, _, value = line.rpartition("} ")
        labels = dict(_LABEL.findall(labels_text))
        resource = labels.get("resource", "")
        if not resource or resource in INTERNAL_RESOURCES:
            continue
        if labels.get("subresource"):
            resource += "/" + labels["subresource"]
        totals[(labels.get("verb", "?"), resource)] += int(float(value))
    return totals


def summarize(counts: Mapping[Key, int], per: int) -> dict[str, Any]:
    """Writes and reads (total and per object) with a breakdown like ``PATCH virtualservers``."""
    per = max(per, 1)
    writes = sum(n for (verb, _), n in counts.items() if verb in WRITE_VERBS)
    reads = sum(n for (verb, _), n in counts.items() if verb in READ_VERBS)
    return {
        "objects": per,
        "writes": writes,
        "reads": reads,
        "writes_per_object": round(writes / per, 3),
        "reads_per_object": round(reads / per, 3),
        "breakdown": {
            f"{verb} {resource}": n for (verb, resource), n in sorted(counts.items()) if n
        },
    }


def audit_counts(requests: list[AuditRequest]) -> collections.Counter[Key]:
    """The operator's requests by (verb, resource), heartbeats (:data:`INTERNAL_RESOURCES`) left
    out, as in :func:`request_totals`."""
    return collections.Counter(
        (r.verb, r.resource) for r in requests if r.resource.split("/")[0] not in INTERNAL_RESOURCES
    )
