"""One operator instance at a time, enforced by a ``coordination.k8s.io/v1`` Lease.

Why: the chart runs one replica without Kopf peering, but nothing stopped a
second instance — ``scp-operator run`` started by hand, or a second Helm release. Two instances
mean two blast-radius budgets, and a copy pointed at another SCP endpoint answers 404 for every
server and releases objects whose servers still exist. So an instance takes a Lease before it
handles anything, keeps renewing it, and gives it back when it stops; a second instance waits,
and says in its log which instance it waits for and why.

The rules, in the order they matter:

* **Scope.** Cluster-wide instances share the Lease ``<name>``. An instance that watches only some
  namespaces (Kopf's ``--namespace``) uses ``<name>-ns-<hash of its namespaces>``
  (:func:`effective_lease_name`), so instances serving different namespaces can coexist while two
  copies of the same one cannot. The Lease lives in one fixed namespace (``kube-system`` by
  default), so releases installed in different namespaces still meet there.
* **Taking it.** Only when it does not exist, is held by nobody, or has expired
  (:func:`is_expired`). Every write carries the ``resourceVersion`` that was read, so when two
  instances race, the API server lets one win and answers 409 to the other, which reads again.
* **Expiry, and clocks.** A Lease's ``renewTime`` is written by its holder's clock, and hosts
  disagree about the time. Two independent proofs count: the Lease has not changed for a whole
  ``leaseDurationSeconds`` as measured by this process's own monotonic clock while it watched
  (no clock comparison at all — what client-go's leader election does), or ``renewTime`` plus the
  duration plus a skew tolerance lies in the past. For the latter both sides use the API server's
  clock as estimated from its ``Date`` headers (:class:`ServerClock`), so a host whose clock is
  minutes off neither steals a live Lease nor writes times that make its own look stale.
* **Keeping it.** Renewed every third of the duration. The keeper gives up (calls ``on_lost``,
  which in the operator stops the process) when another holder shows up, when the Lease is
  deleted, or when renewals have failed for two thirds of the duration: the last third is the
  time the process has to stop before a waiting instance may take over. A renewal that is merely
  late (a busy event loop) but succeeds proves that nobody took over — a takeover would have
  changed the ``resourceVersion`` — so lateness alone never stops the operator.
* **Giving it back.** On a clean stop the holder clears ``holderIdentity`` (guarded by its
  ``resourceVersion``, so it never clears someone else's), and the next instance starts at once.
* **Shards** (docs/scaling.md). Each shard has its own Lease, ``<name>-shard-<i>-of-<n>``, so
  the shards run side by side while two processes of one shard never do. Its annotation
  ``virtualserver.scp.dev/shard-range`` records the uid-hash range the holder owns. A plan
  change (2 shards becoming 3) would run old and new processes with overlapping ranges for a
  while, so after taking its own Lease an instance waits (:meth:`LeaseKeeper.wait_alone`) while
  any live Lease of the same operator — the unsharded ``<name>`` counting as the whole range —
  holds an overlapping range, and says in its log which one. Its own Lease is renewed meanwhile.

Calls go through the operator's own Kubernetes connection (:mod:`scp_operator.kube_http`) on
the event loop, each with a request timeout (the renewal interval, at least 2 s), and a
renewal still unanswered at the deadline is cancelled.
The keeper has its own small :class:`~scp_operator.kube.KubeClient`, not the readers' one: a
renewal must never wait for a connection behind a burst of reads (a drain of a thousand
objects), or the Lease would be lost while the API server is healthy. Nothing here logs
credentials: only HTTP statuses and the API server's own messages.

Size: about 940 lines, of which a third is this docstring and the clock reasoning. It stays one
module because the rules above (scope, expiry by two independent proofs, renewal, loss, release)
only hold together: each state transition is checked against the others in
``tests/unit/test_lease.py``. The shard-plan wait (about 130 lines: a live Lease of another plan
overlapping this shard's range) judges other Leases with the same expiry rules, which is why it
was added here; moving it and those rules into a module of their own is the next split. The thin
Kubernetes adapter (:class:`KubeLeaseApi`) is the only
part that talks to the API server, through :class:`~scp_operator.kube.KubeClient`.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import email.utils
import hashlib
import json
import logging
import os
import secrets
import signal
import socket
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Protocol

from scp_operator import scope, sharding
from scp_operator.kube import KubeClient
from scp_operator.kube_http import path
from scp_operator.settings import OperatorSettings

logger = logging.getLogger(__name__)

#: The reason a waiting instance gives, verbatim in its log.
WHY_WAITING = (
    "another scp-operator instance holds it; this one waits until it stops or its lease expires"
)
#: A waiting instance repeats its explanation at most this often (seconds).
WAIT_LOG_INTERVAL = 30.0
#: ``Date`` headers have one-second resolution: a smaller apparent offset is no offset.
DATE_RESOLUTION = 1.0
#: Seconds a released Lease claims to last (what client-go writes on release).
RELEASED_DURATION = 1
#: The uid-hash range a shard's holder owns, on its Lease (``0x…-0x…``).
RANGE_ANNOTATION = "virtualserver.scp.dev/shard-range"
#: Why an instance waits for a Lease of another shard plan, verbatim in its log.
WHY_WAITING_FOR_PLAN = (
    "an instance of another shard plan still owns part of this shard's range (a plan change in "
    "progress?); this one waits until it stops or its lease expires"
)


# ---- names and identity ----------------------------------------------------------------------


def normalise_namespaces(patterns: Iterable[str]) -> list[str]:
    """Kopf namespace patterns as one sorted, de-duplicated list of comma-separated parts.

    ``--namespace=a,b`` and ``--namespace=b --namespace=a`` serve the same objects and must name
    the same Lease. Sorting also reorders Kopf's order-sensitive ``!`` exclusions; that can only
    make two different scopes share a Lease (one of them waits), never give one scope two.
    """
    parts = {p.strip() for pattern in patterns for p in pattern.split(",")}
    return sorted(p for p in parts if p)


def effective_lease_name(name: str, namespaces: Iterable[str]) -> str:
    """The Lease an instance takes: ``name`` cluster-wide, else ``name-ns-<10 hex>``.

    The suffix is the start of the SHA-256 of the normalised namespace list joined by commas; the
    Helm chart computes the same (``sortAlpha | join "," | sha256sum | trunc 10``) to grant
    ``get``/``update`` on exactly this name.
    """
    normalised = normalise_namespaces(namespaces)
    if not normalised:
        return name
    digest = hashlib.sha256(",".join(normalised).encode()).hexdigest()[:10]
    return f"{name}-ns-{digest}"


def watched_namespaces(
    argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None
) -> list[str]:
    """The namespace patterns ``kopf run`` was given in ``argv`` (empty: cluster-wide).

    Kopf does not tell startup handlers which namespaces it serves, so they are read from the
    command line with Kopf's own option parser (``-n``/``--namespace`` in all their spellings),
    plus Kopf's legacy ``KOPF_RUN_NAMESPACE`` variable. Everything before the ``run`` subcommand
    (``scp-operator``, ``python -m scp_operator``) is skipped.
    """
    argv = list(sys.argv if argv is None else argv)
    args = argv[argv.index("run", 1) + 1 :] if "run" in argv[1:] else []
    return list(scope.from_kopf_args(args, environ))


def make_identity(
    hostname: str | None = None, pid: int | None = None, token: str | None = None
) -> str:
    """``<hostname>/<pid>/<6 hex>``: the pod (its hostname), the process, and this start.

    The random part tells a restarted process (same pod, maybe the same pid) from the one before
    it, so a new process never mistakes the Lease of a killed predecessor for its own.
    """
    hostname = hostname if hostname is not None else socket.gethostname()
    pid = pid if pid is not None else os.getpid()
    token = token if token is not None else secrets.token_hex(3)
    return f"{hostname}/{pid}/{token}"


_identity: tuple[int, str] | None = None


def process_identity() -> str:
    """This process's identity (:func:`make_identity`), the same for every keeper it makes.

    Per process, not per keeper: a Lease that names this process is this process's, even when
    a retried startup hook builds a second keeper for it (re-made after a fork).
    """
    global _identity
    if _identity is None or _identity[0] != os.getpid():
        _identity = (os.getpid(), make_identity())
    return _identity[1]


def stop_process() -> None:
    """SIGTERM to this process: Kopf stops handling, runs its cleanup hooks, and exits.

    What the operator does when it loses its Lease: another instance may be about to handle the
    same objects, so this one must stop, and Kubernetes restarts the pod, which then waits.
    """
    os.kill(os.getpid(), signal.SIGTERM)


# ---- the Lease record, times and expiry ------------------------------------------------------


def parse_micro_time(value: object) -> float | None:
    """A Kubernetes ``MicroTime`` (RFC 3339) as seconds since the epoch; None if absent or bad."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def micro_time(epoch: float) -> datetime.datetime:
    """Seconds since the epoch as an aware UTC datetime, written with ``datetime.isoformat()``.

    ``isoformat()`` drops a zero fraction, but the API server
    parses ``MicroTime`` with a mandatory six-digit fraction; a whole second is nudged by 1 µs.
    """
    value = datetime.datetime.fromtimestamp(epoch, datetime.UTC)
    return value if value.microsecond else value.replace(microsecond=1)


@dataclasses.dataclass(frozen=True)
class LeaseRecord:
    """What a Lease says, as read from the API server."""

    namespace: str
    name: str
    holder: str
    duration: int | None
    renew_time: float | None
    acquire_time: float | None
    transitions: int
    resource_version: str
    shard_range: str | None = None  # the RANGE_ANNOTATION, when present

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @classmethod
    def from_object(cls, obj: Mapping[str, Any]) -> LeaseRecord:
        """From the Lease's JSON (``metadata`` and ``spec``)."""
        meta = obj.get("metadata") or {}
        spec = obj.get("spec") or {}
        duration = spec.get("leaseDurationSeconds")
        annotations = meta.get("annotations") or {}
        return cls(
            shard_range=annotations.get(RANGE_ANNOTATION),
            namespace=str(meta.get("namespace") or ""),
            name=str(meta.get("name") or ""),
            holder=str(spec.get("holderIdentity") or ""),
            duration=duration if isinstance(duration, int) and duration > 0 else None,
            renew_time=parse_micro_time(spec.get("renewTime")),
            acquire_time=parse_micro_time(spec.get("acquireTime")),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=str(meta.get("resourceVersion") or ""),
        )


def is_expired(
    record: LeaseRecord,
    *,
    server_now: float,
    unchanged_for: float,
    tolerance: float,
    default_duration: float,
) -> bool:
    """Whether ``record`` may be taken over.

    It may when nobody holds it, or when its holder has certainly stopped renewing:

    * ``unchanged_for`` — how long this process has watched the Lease without seeing it change
      (its own monotonic clock) — exceeds the Lease's duration: a skew-free proof; or
    * ``renewTime + duration + tolerance`` is before ``server_now`` (the API server's time, as
      estimated): lets a newcomer take over a Lease abandoned long ago without first watching it
      for a whole duration, while ``tolerance`` absorbs what remains of clock disagreement.

    A Lease without a duration is judged by ``default_duration`` (this instance's own); one
    without ``renewTime`` only by watching it.
    """
    if not record.holder:
        return True
    duration = float(record.duration) if record.duration else default_duration
    if unchanged_for > duration:
        return True
    if record.renew_time is None:
        return False
    return record.renew_time + duration + tolerance < server_now


def range_of(record: LeaseRecord, base: str) -> sharding.ShardRange | None:
    """The uid-hash range ``record``'s holder owns, if it is a Lease of the operator named
    ``base``; None for any other Lease. Without a readable annotation: the whole space (the
    unsharded Lease ``base``, or a shard Lease written by hand), since overlap must not be missed.
    """
    if record.name != base and not record.name.startswith(f"{base}-shard-"):
        return None
    try:
        return sharding.ShardRange.parse(record.shard_range or "")
    except sharding.PlanError:
        return sharding.WHOLE


def overlapping(
    records: Iterable[LeaseRecord], *, base: str, own: str, own_range: sharding.ShardRange
) -> list[LeaseRecord]:
    """The held Leases of operator ``base``, other than ``own``, whose range overlaps ours.

    Same-plan shards never overlap (the plan is validated), so what remains is another plan.
    """
    found = []
    for record in records:
        other = range_of(record, base)
        if record.name != own and record.holder and other is not None and other.overlaps(own_range):
            found.append(record)
    return found


def waiting_message(record: LeaseRecord, *, server_now: float, waited: float) -> str:
    """Why this instance does not start: which Lease, who holds it, and what happens next."""
    renewed = ""
    if record.renew_time is not None:
        age = max(0.0, server_now - record.renew_time)
        renewed = f", last renewed {age:.0f}s ago"
    duration = f", lease {record.duration}s" if record.duration else ""
    return (
        f"Lease {record.ref} is held by {record.holder}{renewed}{duration}: {WHY_WAITING} "
        f"(waiting for {waited:.0f}s)"
    )


def estimate_offset(date_header: str | None, sent: float, received: float) -> float | None:
    """The API server's clock minus ours, from one answer's ``Date`` header; None without one.

    ``Date`` is truncated to the second and was stamped somewhere between sending and
    receiving, so the best guess compares the middle of its second with the middle of the
    exchange (off by at most half a second plus half the round trip).
    """
    if not date_header:
        return None
    try:
        server = email.utils.parsedate_to_datetime(date_header)
    except (TypeError, ValueError, IndexError):
        return None
    if server.tzinfo is None:
        return None
    return server.timestamp() + DATE_RESOLUTION / 2 - (sent + received) / 2


class ServerClock:
    """Wall-clock time as the API server sees it, as far as its ``Date`` headers tell.

    Offsets within the headers' one-second resolution are taken as zero, so hosts with
    synchronised clocks use their own time unchanged.
    """

    def __init__(self, wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self.offset = 0.0

    def wall(self) -> float:
        """This host's own wall clock (seconds since the epoch)."""
        return self._wall()

    def observe(self, date_header: str | None, sent: float, received: float) -> None:
        """Learn from one answer; ``sent``/``received`` are this host's wall times."""
        estimate = estimate_offset(date_header, sent, received)
        if estimate is not None:
            self.offset = estimate if abs(estimate) > DATE_RESOLUTION else 0.0

    def now(self) -> float:
        """The API server's time now (seconds since the epoch), estimated."""
        return self._wall() + self.offset


# ---- the API ---------------------------------------------------------------------------------


class LeaseError(Exception):
    """A Lease request failed; ``status`` is the HTTP status (None: no answer)."""

    def __init__(self, status: int | None, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class LeaseConflict(LeaseError):
    """409: someone else wrote the Lease since it was read (or created it first)."""


@dataclasses.dataclass(frozen=True)
class LeaseWrite:
    """What the keeper writes: the whole spec, guarded by the version it read (none: create)."""

    namespace: str
    name: str
    resource_version: str | None
    holder: str
    duration: int
    acquire_time: float
    renew_time: float
    transitions: int
    annotations: Mapping[str, str] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Answer:
    """An object the API server returned, and its ``Date`` header."""

    obj: dict[str, Any]
    date: str | None


class LeaseApi(Protocol):
    """The three Lease calls the keeper makes, and closing the connection they use."""

    async def read(self, namespace: str, name: str) -> Answer | None:
        """The Lease, or None when it does not exist."""

    async def create(self, lease: LeaseWrite) -> Answer:
        """Create it; :class:`LeaseConflict` when it already exists."""

    async def replace(self, lease: LeaseWrite) -> Answer:
        """Replace it, guarded by ``lease.resource_version`` (:class:`LeaseConflict` if stale)."""

    async def list(self, namespace: str) -> Answer:
        """Every Lease of ``namespace`` (a ``LeaseList``: ``items``), to find other shard plans."""

    async def aclose(self) -> None:
        """Close the connection pool (the keeper is done)."""


def _status_message(body: object) -> str:
    """The ``message`` of a Kubernetes ``Status`` body, shortened (it never holds credentials)."""
    text = body.decode(errors="replace") if isinstance(body, bytes) else str(body or "")
    try:
        message = json.loads(text).get("message")
    except (ValueError, AttributeError):
        message = None
    return str(message or text)[:300]


#: The Lease's API group and version.
LEASES_API = "coordination.k8s.io/v1"


class KubeLeaseApi:
    """:class:`LeaseApi` over the operator's own Kubernetes connection (in-cluster or kubeconfig).

    Its own :class:`~scp_operator.kube.KubeClient` (see the module's docstring) of two
    connections: the keeper makes one request at a time; the second is headroom, never a queue.
    """

    def __init__(self, timeout: float, client: KubeClient | None = None) -> None:
        self._timeout = timeout
        self._kube = client if client is not None else KubeClient(connections=2)

    async def _call(
        self, method: str, namespace: str, name: str | None = None, body: Any = None
    ) -> Answer:
        url = path(LEASES_API, "leases", namespace=namespace, name=name)
        try:
            # The raw answer: its Date header teaches the server clock.
            reply = await self._kube.send(method, url, body=body, timeout=self._timeout)
        except Exception as exc:  # connection refused, timeout, bad kubeconfig: no answer
            raise LeaseError(None, f"{type(exc).__name__}: {str(exc)[:200]}") from None
        if not 200 <= reply.status <= 299:
            error = LeaseConflict if reply.status == 409 else LeaseError
            raise error(reply.status, f"HTTP {reply.status}: {_status_message(reply.body)}")
        try:
            return Answer(json.loads(reply.body), reply.date)
        except ValueError:
            raise LeaseError(None, f"HTTP {reply.status}: the answer is not JSON") from None

    async def aclose(self) -> None:
        await self._kube.aclose()

    async def read(self, namespace: str, name: str) -> Answer | None:
        try:
            return await self._call("GET", namespace, name)
        except LeaseError as exc:
            if exc.status == 404:
                return None
            raise

    async def create(self, lease: LeaseWrite) -> Answer:
        return await self._call("POST", lease.namespace, body=self._body(lease))

    async def replace(self, lease: LeaseWrite) -> Answer:
        return await self._call("PUT", lease.namespace, lease.name, self._body(lease))

    async def list(self, namespace: str) -> Answer:
        return await self._call("GET", namespace)

    @staticmethod
    def _body(lease: LeaseWrite) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": lease.name, "namespace": lease.namespace}
        if lease.resource_version:
            metadata["resourceVersion"] = lease.resource_version
        if lease.annotations:
            metadata["annotations"] = dict(lease.annotations)
        spec: dict[str, Any] = {
            "holderIdentity": lease.holder,
            "leaseDurationSeconds": lease.duration,
            "acquireTime": micro_time(lease.acquire_time).isoformat(),
            "renewTime": micro_time(lease.renew_time).isoformat(),
            "leaseTransitions": lease.transitions,
        }
        return {
            "apiVersion": LEASES_API,
            "kind": "Lease",
            "metadata": metadata,
            "spec": spec,
        }


# ---- the keeper ------------------------------------------------------------------------------


class LeaseKeeper:
    """Takes, renews and gives back one Lease for this process.

    ``acquire()`` returns once the Lease is held (waiting as long as it takes) and starts the
    renewal task; ``lost`` is set, and ``on_lost(reason)`` called once, when it can no longer
    be trusted; ``release()`` stops renewing and gives it back.
    """

    def __init__(
        self,
        *,
        namespace: str,
        name: str,
        duration: int,
        identity: str | None = None,
        api: LeaseApi | None = None,
        on_lost: Callable[[str], None] | None = None,
        clock: ServerClock | None = None,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        tolerance: float | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> None:
        self.namespace = namespace
        self.name = name
        self.annotations = dict(annotations or {})
        self.duration = duration
        self.identity = identity or process_identity()
        self.interval = duration / 3
        # Stop this long after the last successful renewal began: one interval before anyone
        # else may take over, so the process has that long to stop handling objects.
        self.deadline = duration - self.interval
        self.tolerance = float(duration) if tolerance is None else tolerance
        self._owns_api = api is None  # closed by release(); one passed in belongs to its caller
        self.api: LeaseApi = api or KubeLeaseApi(timeout=max(2.0, self.interval))
        self.clock = clock or ServerClock()
        self.lost = asyncio.Event()
        self.lost_reason: str | None = None
        self._on_lost = on_lost
        self._monotonic = monotonic
        self._sleep = sleep
        self._record: LeaseRecord | None = None
        self._last_renewed = 0.0  # monotonic time the last successful write was sent
        self._renewer: asyncio.Task[None] | None = None

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def held(self) -> bool:
        return self._record is not None and not self.lost.is_set()

    # -- requests, each teaching the server clock ----------------------------------------------

    async def _request(self, call: Callable[[], Awaitable[Answer | None]]) -> LeaseRecord | None:
        sent = self.clock.wall()
        answer = await call()
        if answer is None:
            return None
        self.clock.observe(answer.date, sent, self.clock.wall())
        return LeaseRecord.from_object(answer.obj)

    async def _read(self) -> LeaseRecord | None:
        return await self._request(lambda: self.api.read(self.namespace, self.name))

    async def _write(self, lease: LeaseWrite) -> LeaseRecord:
        if lease.resource_version is None:
            record = await self._request(lambda: self.api.create(lease))
        else:
            record = await self._request(lambda: self.api.replace(lease))
        if record is None:  # pragma: no cover - a write always answers with the object
            raise LeaseError(None, "the API server answered a write without the object")
        return record

    def _lease(
        self, previous: LeaseRecord | None, *, holder: str, duration: int | None = None
    ) -> LeaseWrite:
        """The Lease to write over ``previous`` (None: create it), by the API server's clock."""
        now = self.clock.now()
        if previous is None:
            version, transitions, acquired = None, 0, now
        else:
            version = previous.resource_version
            changed = bool(holder) and previous.holder != holder
            transitions = previous.transitions + (1 if changed else 0)
            acquired = now
            if not changed and previous.acquire_time is not None:
                acquired = previous.acquire_time
        return LeaseWrite(
            namespace=self.namespace,
            name=self.name,
            resource_version=version,
            holder=holder,
            duration=self.duration if duration is None else duration,
            acquire_time=acquired,
            renew_time=now,
            transitions=transitions,
            annotations=self.annotations,
        )

    # -- acquire -------------------------------------------------------------------------------

    async def acquire(self) -> None:
        """Hold the Lease, waiting while another live instance holds it; then keep renewing.

        Logs why it waits (at most every 30 s) and, for API errors (no permission, namespace
        missing, API server away), what failed; it keeps trying either way, since handling
        objects without the Lease is exactly what must not happen. Cancelled (the operator
        stops while it waits), it closes its connection pool on the way out.
        """
        try:
            await self._acquire()
        except BaseException:
            await self._close_api()
            raise

    async def _acquire(self) -> None:
        observed_version: str | None = None
        observed_at = began = self._monotonic()
        last_said = -float("inf")
        while True:
            try:
                record = await self._read()
                now = self._monotonic()
                if record is not None and record.resource_version != observed_version:
                    observed_version, observed_at = record.resource_version, now
                # Ours already means a write of ours landed though its answer was lost: write
                # again, so the renewal clock starts from a write whose time is known.
                if (
                    record is None
                    or record.holder == self.identity
                    or is_expired(
                        record,
                        server_now=self.clock.now(),
                        unchanged_for=now - observed_at,
                        tolerance=self.tolerance,
                        default_duration=self.duration,
                    )
                ):
                    won = await self._write(self._lease(record, holder=self.identity))
                    self._won(won, sent=now, previous=record)
                    return
                if now - last_said >= WAIT_LOG_INTERVAL:
                    last_said = now
                    message = waiting_message(
                        record, server_now=self.clock.now(), waited=now - began
                    )
                    logger.warning("%s", message)
            except LeaseConflict:
                continue  # someone else wrote first: read what they wrote
            except LeaseError as exc:
                now = self._monotonic()
                if now - last_said >= WAIT_LOG_INTERVAL:
                    last_said = now
                    logger.warning("%s", self._explain(exc))
            await self._sleep(self.interval)

    def _explain(self, exc: LeaseError) -> str:
        hint = {
            403: (
                f"the operator's identity needs get, create and update on leases "
                f"(coordination.k8s.io) in namespace {self.namespace}; the Helm chart grants them"
            ),
            404: (
                f"does namespace {self.namespace} exist? Set SCP_OPERATOR_LEASE_NAMESPACE "
                f"(chart: lease.namespace) to one that does"
            ),
        }.get(exc.status or 0, "retrying")
        return (
            f"Cannot take Lease {self.ref}: {exc.message} ({hint}). This instance handles "
            f"nothing until it holds the Lease."
        )

    def _won(self, record: LeaseRecord, *, sent: float, previous: LeaseRecord | None) -> None:
        self._record = record
        self._last_renewed = sent
        took_over = ""
        if previous is not None and previous.holder and previous.holder != self.identity:
            took_over = f", taken over from {previous.holder} (expired)"
        logger.info(
            "Lease %s acquired by %s (renewed every %.1fs)%s",
            self.ref,
            self.identity,
            self.interval,
            took_over,
        )
        self._renewer = asyncio.create_task(self._renew_forever(), name=f"lease {self.ref}")

    # -- other shard plans ---------------------------------------------------------------------

    async def wait_alone(self, base: str, own_range: sharding.ShardRange, *, strict: bool) -> None:
        """Return once no live Lease of operator ``base`` holds a range overlapping ``own_range``.

        Liveness is judged as for this instance's own Lease (:func:`is_expired`: unchanged for a
        whole duration while watched, or renewed long ago by the API server's clock). Logs what
        it waits for at most every 30 s. When the Leases cannot be listed, a ``strict`` (sharded)
        instance keeps trying, while an unsharded one, which needed no such permission before
        sharding existed, says so once and goes on. Returns at once when this Lease is lost.
        """
        seen: dict[str, tuple[str, float]] = {}  # name -> (resourceVersion, first seen at)
        began = self._monotonic()
        last_said = -float("inf")
        while not self.lost.is_set():
            try:
                answer = await self.api.list(self.namespace)
            except LeaseError as exc:
                if not strict:
                    logger.warning(
                        "Cannot list Leases in %s to check for other shard plans (%s); the "
                        "Helm chart grants list on leases",
                        self.namespace,
                        exc.message,
                    )
                    return
                records, error = [], exc.message
            else:
                records = [LeaseRecord.from_object(item) for item in answer.obj.get("items") or ()]
                error = ""
            now = self._monotonic()
            live = []
            for record in overlapping(records, base=base, own=self.name, own_range=own_range):
                version, since = seen.get(record.name, ("", now))
                if version != record.resource_version:
                    since = now
                seen[record.name] = (record.resource_version, since)
                if not is_expired(
                    record,
                    server_now=self.clock.now(),
                    unchanged_for=now - since,
                    tolerance=self.tolerance,
                    default_duration=self.duration,
                ):
                    live.append(record)
            if not live and not error:
                return
            if now - last_said >= WAIT_LOG_INTERVAL:
                last_said = now
                if error:
                    logger.warning(
                        "Cannot list Leases in %s to check for other shard plans: %s (the "
                        "operator needs list on leases there). This instance handles nothing "
                        "until it can.",
                        self.namespace,
                        error,
                    )
                for record in live:
                    logger.warning(
                        "Lease %s (uid hashes %s) is held by %s: %s (waiting for %.0fs)",
                        record.ref,
                        range_of(record, base),
                        record.holder,
                        WHY_WAITING_FOR_PLAN,
                        now - began,
                    )
            await self._sleep(self.interval)

    # -- renew ---------------------------------------------------------------------------------

    async def _renew_forever(self) -> None:
        """Renew every interval; retry failures every second; give up as the class says."""
        retry = min(1.0, self.interval)
        delay = self.interval
        while True:
            await self._sleep(delay)
            before = self._last_renewed
            reason = await self._renew_once()
            if reason is not None:
                self._lose(reason)
                return
            if self._last_renewed != before:  # renewed: next one an interval after this one
                delay = max(0.0, self._last_renewed + self.interval - self._monotonic())
                continue
            silent = self._monotonic() - self._last_renewed
            if silent > self.deadline:
                self._lose(
                    f"Lease {self.ref} not renewed for {silent:.1f}s; another instance may take "
                    f"it over {self.duration}s after the last renewal"
                )
                return
            delay = retry

    async def _renew_once(self) -> str | None:
        """One renewal; returns why the Lease is lost, or None (renewed, or worth retrying).

        A request still unanswered at the deadline is cancelled there (its connection closed),
        so a hanging API server cannot delay giving up past the deadline; a renewal
        that starts late (a stalled event loop) still gets a second to prove the Lease is ours.
        (``asyncio.wait``, not ``wait_for``: Python 3.11's ``wait_for`` can swallow a
        cancellation that arrives as the request completes, and ``release`` cancels this.)
        """
        assert self._record is not None
        sent = self._monotonic()
        remaining = self._last_renewed + self.deadline - sent
        write = asyncio.ensure_future(self._write(self._lease(self._record, holder=self.identity)))
        try:
            done, _ = await asyncio.wait({write}, timeout=max(remaining, min(1.0, self.interval)))
        except asyncio.CancelledError:
            write.cancel()
            raise
        try:
            if not done:
                write.cancel()
                logger.warning("Cannot renew Lease %s: no answer in time", self.ref)
                return None
            self._record = write.result()
            self._last_renewed = sent
            return None
        except LeaseConflict:
            return await self._check_after_conflict()
        except LeaseError as exc:
            if exc.status == 404:
                return f"Lease {self.ref} was deleted"
            logger.warning("Cannot renew Lease %s: %s", self.ref, exc.message)
            return None

    async def _check_after_conflict(self) -> str | None:
        """After a 409: None if the Lease is still ours (retried soon), else why it is lost."""
        try:
            record = await self._read()
        except LeaseError as exc:
            logger.warning("Cannot read Lease %s after a conflict: %s", self.ref, exc.message)
            return None
        if record is None:
            return f"Lease {self.ref} was deleted"
        if record.holder != self.identity:
            return f"Lease {self.ref} is now held by {record.holder or 'nobody'}"
        self._record = record
        return None

    def _lose(self, reason: str) -> None:
        if self.lost.is_set():
            return
        self.lost_reason = reason
        self.lost.set()
        logger.error("%s: this instance stops handling objects.", reason)
        if self._on_lost is not None:
            self._on_lost(reason)

    # -- release -------------------------------------------------------------------------------

    async def release(self) -> None:
        """Stop renewing and give the Lease back, unless it is no longer ours.

        Best effort: when the API server cannot be reached, the Lease simply expires. Closes the
        keeper's connection pool last.
        """
        try:
            await self._give_back()
        finally:
            await self._close_api()

    async def _close_api(self) -> None:
        if self._owns_api:
            await self.api.aclose()

    async def _give_back(self) -> None:
        if self._renewer is not None:
            self._renewer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewer
            self._renewer = None
        record, self._record = self._record, None
        if _keepers.get((self.namespace, self.name)) is self:
            del _keepers[(self.namespace, self.name)]
        if record is None or self.lost.is_set():
            return
        for _ in range(3):
            try:
                await self._write(self._lease(record, holder="", duration=RELEASED_DURATION))
                logger.info("Lease %s released", self.ref)
                return
            except LeaseConflict:
                try:
                    fresh = await self._read()
                except LeaseError:
                    break
                if fresh is None or fresh.holder != self.identity:
                    return  # not ours any more: nothing to give back
                record = fresh
            except LeaseError as exc:
                logger.warning("Cannot release Lease %s: %s", self.ref, exc.message)
                break
        logger.warning(
            "Lease %s not released: it expires %ss after its last renewal", self.ref, self.duration
        )


#: The keepers this process holds, by (namespace, name): see :func:`start`.
_keepers: dict[tuple[str, str], LeaseKeeper] = {}


async def start(
    settings: OperatorSettings,
    namespaces: Sequence[str],
    on_lost: Callable[[str], None] | None = None,
    *,
    api: LeaseApi | None = None,
) -> LeaseKeeper | None:
    """Hold this instance's Lease (waiting as long as needed); None when leases are disabled.

    ``on_lost`` defaults to :func:`stop_process`. ``namespaces`` are the Kopf namespace patterns
    this instance serves (``scope.watched()`` or :func:`watched_namespaces`), empty when it
    serves all of them. Called again in the same process (Kopf retries a startup hook that
    failed after this step), it returns the keeper already holding the Lease instead of making
    a second one that would wait for the first forever.
    """
    if not settings.lease_name:
        logger.warning(
            "SCP_OPERATOR_LEASE_NAME is empty: nothing stops a second operator instance "
            "(unsafe outside tests)"
        )
        return None
    shard = settings.shard
    base = effective_lease_name(settings.lease_name, namespaces)
    key = (settings.lease_namespace, base + shard.lease_suffix)
    held = _keepers.get(key)
    if held is not None and held.held:
        return held
    keeper = LeaseKeeper(
        namespace=key[0],
        name=key[1],
        duration=settings.lease_duration,
        api=api,
        on_lost=on_lost if on_lost is not None else (lambda _reason: stop_process()),
        annotations={RANGE_ANNOTATION: str(shard.range)},
    )
    await keeper.acquire()
    try:
        await keeper.wait_alone(base, shard.range, strict=shard.sharded)
    except BaseException:
        await keeper.release()
        raise
    _keepers[key] = keeper
    return keeper
