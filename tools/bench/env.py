"""The benchmark's world: a real control plane (with an audit log for the operator's identity),
the SCP emulator with an in-flight probe, and operator processes with their own token.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from scp_emulator.config import EmulatorConfig
from scp_emulator.requestlog import RequestLogEntry
from scp_emulator.state import EmulatorState
from scp_emulator.testing import ThreadedEmulator
from scp_operator import constants
from scp_operator.settings import OperatorSettings
from scp_testenv import ControlPlane, free_port
from scp_testenv.operator_process import OperatorProcess, OperatorProcessError
from tools.bench import REPO, plain_operator, procfs
from tools.bench.kube import AuditLog, Kube, vs_path

OPERATOR_USER = "scp-bench-operator"
#: Put first on the operators' PYTHONPATH: its sitecustomize reports the heap on SIGUSR1.
HEAP_HOOK = Path(__file__).parent / "heap"
# Only the operator's identity is audited: the harness's own requests cost the API server no
# audit writes, and every audit line is the operator's.
AUDIT_POLICY = f"""apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: ["RequestReceived"]
rules:
  - level: Metadata
    users: ["{OPERATOR_USER}"]
  - level: None
"""


class InFlightProbe:
    """Sees, at each request's arrival at the emulator, which earlier requests are unanswered.

    It wraps ``EmulatorState.log_request`` (called on arrival, before the latency is waited
    out; an entry's ``status`` is set just before its answer is sent), so it measures exactly
    "requests in flight" — overall (to compare with C) and per server (never more than one).
    Touch it only on the emulator's loop (``ThreadedEmulator.call``).
    """

    def __init__(self) -> None:
        self.max_in_flight = 0
        self.max_per_server: dict[str, int] = collections.defaultdict(int)
        self._pending: list[RequestLogEntry] = []

    def install(self, state: EmulatorState) -> None:
        original = state.log_request

        def log_request(**fields: Any) -> RequestLogEntry:
            self._pending = [e for e in self._pending if e.status is None]
            self.max_in_flight = max(self.max_in_flight, len(self._pending) + 1)
            server_id = fields.get("server_id")
            if server_id:
                same = sum(1 for e in self._pending if e.server_id == server_id)
                self.max_per_server[server_id] = max(self.max_per_server[server_id], same + 1)
            entry = original(**fields)
            self._pending.append(entry)
            return entry

        state.log_request = log_request  # type: ignore[method-assign]

    def reset(self) -> None:
        self.max_in_flight = 0
        self.max_per_server.clear()


class BenchOperator(OperatorProcess):
    """An operator process that remembers when it started and where the logs stood then."""

    started_at: float | None = None
    ready_at: float | None = None  # when start() returned (ready line seen, plus Kopf's 1 s)
    audit_offset: int = 0
    log_offset: int = 0
    rss: procfs.RssSampler | None = None  # when started with rss_every
    heap_file: Path | None = None  # where tools/bench/heap writes its reports (operators only)


class PlainOperator(BenchOperator):
    """The drain's baseline: ``kopf run --standalone`` on :mod:`tools.bench.plain_operator`.

    Same identity (so the audit log counts its requests too), same emulator, one namespace like
    the operator (with ``--all-namespaces`` it would also grab the objects other sections left
    behind, e.g. the blocked section's locked ones).
    """

    def spawn(self) -> None:
        kopf = Path(sys.executable).parent / "kopf"
        args = [str(kopf), "run", "--standalone", *self.extra_args]
        args += [f"--namespace={ns}" for ns in self.namespaces]
        args.append(plain_operator.__file__)
        base = {k: v for k, v in os.environ.items() if not k.startswith("SCP_")}
        # The module imports scp_operator (its signer): found as the harness finds it, also
        # without an editable install.
        path = str(REPO / "operator")
        env = {**base, "KUBECONFIG": str(self.kubeconfig), "PYTHONPATH": path, **self.env}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    def wait_ready(self, timeout: float = 60.0) -> None:
        """As the operator's, on the plain operator's own ready line."""
        assert self.proc is not None, "spawn() first"
        deadline = time.monotonic() + timeout
        while plain_operator.READY_LINE not in self.log():
            if self.proc.poll() is not None:
                raise OperatorProcessError(
                    f"plain operator exited {self.proc.returncode}:\n{self.tail()}"
                )
            if time.monotonic() > deadline:
                self.kill()
                raise OperatorProcessError(
                    f"plain operator not ready in {timeout}s:\n{self.tail()}"
                )
            time.sleep(0.1)
        time.sleep(1.0)  # as the operator: Kopf lists and watches after the startup handlers


@dataclasses.dataclass
class Options:
    """What every section shares."""

    latency_ms: float
    concurrency: int
    k8s_concurrency: int
    workdir: Path


class Bench:
    """Control plane + emulator + admin client; starts operators; keeps the work directory."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.workdir = options.workdir
        self.audit_log_path = self.workdir / "audit.log"
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(AUDIT_POLICY)
        self.cp = ControlPlane(
            workdir_parent=self.workdir,
            extra_apiserver_args=[
                f"--audit-policy-file={policy}",
                f"--audit-log-path={self.audit_log_path}",
                "--audit-log-format=json",
            ],
        )
        self.cp.add_token(OPERATOR_USER, ["system:masters"])
        self.emu = ThreadedEmulator(
            EmulatorConfig(delete_delay=0, request_log_limit=1_000_000), timeout=60.0
        )
        self.probe = InFlightProbe()
        self.audit = AuditLog(self.audit_log_path, OPERATOR_USER)
        self.kube: Kube | None = None
        self.operator_settings = sorted(OperatorSettings.model_fields)
        self._operators: list[BenchOperator] = []

    # ---- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.cp.start()
        crd = REPO / "crds" / f"{constants.CRD_NAME}.yaml"
        self.cp.kubectl("apply", "-f", str(crd))
        self.cp.kubectl(
            "wait", "--for=condition=Established", f"crd/{constants.CRD_NAME}", "--timeout=60s"
        )
        self.emu.start()
        self.emu.call(self.probe.install)
        self.set_latency(self.options.latency_ms)

    def stop(self) -> None:
        for proc in self._operators:
            proc.stop(grace=5)
        self.emu.stop()
        self.cp.stop()

    def client(self) -> Kube:
        self.kube = Kube(
            self.cp.server, self.cp.admin_token, self.cp.ca_file, self.options.k8s_concurrency
        )
        return self.kube

    @property
    def k(self) -> Kube:
        if self.kube is None:
            raise RuntimeError("no client")
        return self.kube

    def meter(self, *operators: OperatorProcess) -> procfs.LoadMeter:
        """A started CPU meter over the benchmark's processes: this one (harness + emulator
        thread), kube-apiserver, etcd and the given operator processes (one per shard)."""
        groups: dict[str, list[int]] = {"harness+emulator": [os.getpid()]}
        for pid in procfs.pids_mentioning(str(self.cp.workdir)):
            if pid == os.getpid():
                continue
            name = Path((Path("/proc") / str(pid) / "comm").read_text().strip()).name
            groups.setdefault("etcd" if name.startswith("etcd") else "kube-apiserver", []).append(
                pid
            )
        pids = [op.proc.pid for op in operators if op.proc is not None]
        if pids:
            groups["operator"] = pids
        return procfs.LoadMeter(groups).start()

    def connections(self, operator: OperatorProcess) -> dict[str, int]:
        """The operator's open TCP connections to the API server and to the emulator."""
        if operator.proc is None:
            return {}
        emulator_port = int(self.emu.url.rsplit(":", 1)[1])
        ports = {"kube-apiserver": self.cp.port, "scp": emulator_port}
        return procfs.tcp_connections(operator.proc.pid, ports)

    # ---- SCP emulator ----------------------------------------------------------------------

    def set_latency(self, ms: float) -> None:
        self.emu.call(lambda state: state.set_latency(ms))

    def seed(self, count: int, *, locked: bool = False, prefix: str = "bench") -> list[str]:
        """Create ``count`` servers in-process (the admin API is slow for thousands)."""
        ids: list[str] = []
        for start in range(0, count, 500):
            chunk = range(start, min(count, start + 500))

            def add(state: EmulatorState, chunk: range = chunk) -> list[str]:
                return [state.add_server(name=f"{prefix}-{i}", locked=locked).id for i in chunk]

            ids += self.emu.call(add)
        return ids

    def log_index(self) -> int:
        return self.emu.call(lambda state: len(state.requests))

    def log_since(self, index: int) -> list[RequestLogEntry]:
        return self.emu.call(lambda state: list(state.requests[index:]))

    def probe_reset(self) -> None:
        self.emu.call(lambda _: self.probe.reset())

    def probe_read(self) -> tuple[int, dict[str, int]]:
        return self.emu.call(lambda _: (self.probe.max_in_flight, dict(self.probe.max_per_server)))

    # ---- the operator ----------------------------------------------------------------------

    def operator_env(self, **extra: str) -> dict[str, str]:
        """The operator's settings; the limiter and metrics knobs only when this version has
        them (``OperatorSettings`` is asked, so the harness runs against older operators too).
        """
        fields = set(self.operator_settings)
        c = str(self.options.concurrency)
        env = {
            "SCP_ENDPOINT": self.emu.url,
            "SCP_ACCESS_KEY": self.emu.access_key,
            "SCP_SECRET_KEY": self.emu.secret_key,
            "SCP_OPERATOR_MAX_CONNECTIONS": c,  # so the pool is never the tighter limit
        }
        if "max_concurrent_requests" in fields:
            env["SCP_OPERATOR_MAX_CONCURRENT_REQUESTS"] = c
        if "max_requests_per_second" in fields:
            env["SCP_OPERATOR_MAX_REQUESTS_PER_SECOND"] = "0"
        if "metrics_port" in fields:
            env["SCP_OPERATOR_METRICS_PORT"] = str(free_port())
        env.update(extra)
        return env

    @property
    def supports_shards(self) -> bool:
        """Whether this operator version has ``SCP_OPERATOR_SHARDS``/``_SHARD_INDEX``."""
        return {"shards", "shard_index"} <= set(self.operator_settings)

    async def start_operator(
        self,
        namespace: str,
        tag: str,
        env: dict[str, str] | None = None,
        rss_every: float | None = None,
    ) -> BenchOperator:
        """One operator process (ready when this returns); ``rss_every``: sample its RSS from
        the moment it is spawned (``proc.rss``), imports and all. It reports its heap on
        SIGUSR1 (:meth:`heap`)."""
        heap_file = self.workdir / f"heap-{tag}.jsonl"
        python_path = os.pathsep.join(
            p for p in (str(HEAP_HOOK), os.environ.get("PYTHONPATH", "")) if p
        )
        proc = BenchOperator(
            kubeconfig=self.cp.kubeconfig_for(OPERATOR_USER),
            log_path=self.workdir / f"operator-{tag}.log",
            env={
                **self.operator_env(**(env or {})),
                "BENCH_HEAP_FILE": str(heap_file),
                "PYTHONPATH": python_path,
            },
            namespaces=[namespace],
        )
        proc.heap_file = heap_file
        return await self._start(proc, rss_every)

    async def heap(self, proc: BenchOperator, within: float = 10.0) -> dict[str, Any]:
        """Where the process's memory is (tools/bench/heap: pymalloc's arenas and the bytes in
        use in them, glibc's heap, RSS), asked with SIGUSR1; empty when it did not answer."""
        if proc.heap_file is None or proc.proc is None or proc.proc.poll() is not None:
            return {}
        before = proc.heap_file.read_text().count("\n") if proc.heap_file.exists() else 0
        proc.proc.send_signal(signal.SIGUSR1)
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            lines = proc.heap_file.read_text().splitlines() if proc.heap_file.exists() else []
            if len(lines) > before:
                report: dict[str, Any] = json.loads(lines[-1])
                report.pop("time", None)
                return report
        return {}

    async def start_shards(self, namespace: str, tag: str, shards: int) -> list[BenchOperator]:
        """``shards`` operator processes, shard i of ``shards`` each (all started at once, each
        with its own metrics port; each takes its own Lease). One shard: no shard settings, the
        operator as shipped."""
        if shards == 1:
            return [await self.start_operator(namespace, tag)]
        extra = [
            {"SCP_OPERATOR_SHARDS": str(shards), "SCP_OPERATOR_SHARD_INDEX": str(i)}
            for i in range(shards)
        ]
        return list(
            await asyncio.gather(
                *(
                    self.start_operator(namespace, f"{tag}-shard{i}", env)
                    for i, env in enumerate(extra)
                )
            )
        )

    async def start_plain(self, namespace: str, tag: str) -> BenchOperator:
        """The plain Kopf baseline (:mod:`tools.bench.plain_operator`) on one namespace."""
        proc = PlainOperator(
            kubeconfig=self.cp.kubeconfig_for(OPERATOR_USER),
            log_path=self.workdir / f"plain-{tag}.log",
            env={
                "SCP_ENDPOINT": self.emu.url,
                "SCP_ACCESS_KEY": self.emu.access_key,
                "SCP_SECRET_KEY": self.emu.secret_key,
                "SCP_BENCH_CONCURRENCY": str(self.options.concurrency),
            },
            namespaces=[namespace],
        )
        return await self._start(proc)

    async def _start(self, proc: BenchOperator, rss_every: float | None = None) -> BenchOperator:
        self._operators.append(proc)
        proc.audit_offset, proc.log_offset = self.audit.offset(), self.log_index()
        proc.started_at = time.time()
        await asyncio.to_thread(proc.spawn)
        if rss_every is not None and proc.proc is not None:
            proc.rss = procfs.RssSampler(proc.proc.pid, rss_every).start()
        await asyncio.to_thread(proc.wait_ready, 120.0)
        proc.ready_at = time.time()
        return proc

    async def stop_operator(self, proc: OperatorProcess) -> None:
        await asyncio.to_thread(proc.stop, 15.0)

    async def operator_metrics(self, proc: OperatorProcess) -> dict[str, float]:
        """The operator's own ``scp_operator_*`` samples (empty when it has no metrics port)."""
        port = proc.env.get("SCP_OPERATOR_METRICS_PORT")
        if not port or port == "0":
            return {}
        url = f"http://127.0.0.1:{port}/metrics"
        try:
            async with self.k.session.get(url, ssl=False) as response:
                text = await response.text()
        except OSError:
            return {}
        samples = {}
        for line in text.splitlines():
            if line.startswith("scp_operator_") and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                if "_bucket{" not in key:
                    samples[key] = float(value)
        return samples

    # ---- Kubernetes ------------------------------------------------------------------------

    async def namespace(self, kind: str) -> str:
        name = f"bench-{kind}-{secrets.token_hex(3)}"
        await self.k.create_namespace(name)
        return name

    async def create_objects(
        self, namespace: str, server_ids: list[str], *, finalizer: str | None = None, first: int = 0
    ) -> list[str]:
        """POST one VirtualServer per server id (in parallel); returns their names."""
        names = [f"vs-{first + i:05d}" for i in range(len(server_ids))]

        async def create(name: str, server_id: str) -> None:
            meta: dict[str, Any] = {"name": name}
            if finalizer:
                meta["finalizers"] = [finalizer]
            body = {
                "apiVersion": constants.API_VERSION,
                "kind": constants.KIND,
                "metadata": meta,
                "spec": {"serverId": server_id},
            }
            await self.k.call("POST", vs_path(namespace), body)

        await asyncio.gather(*(create(n, s) for n, s in zip(names, server_ids, strict=True)))
        return names

    async def delete_all(self, namespace: str) -> asyncio.Task[float]:
        """Start one DELETE on the collection (what a namespace deletion does); the task's
        result is the wall-clock time its answer arrived."""

        async def delete() -> float:
            await self.k.call("DELETECOLLECTION", vs_path(namespace))
            return time.time()

        task = asyncio.create_task(delete())
        await asyncio.sleep(0)
        return task


def random_server_ids(count: int) -> list[str]:
    return [str(uuid.uuid4()) for _ in range(count)]
