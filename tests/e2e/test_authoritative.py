"""Deletion decisions from authoritative facts (issue 9), end to end.

The operator runs as a real process against the session's kube-apiserver + etcd and talks to
the SCP emulator over real HTTP. Each test proves one rule of "decide from facts, not caches"
(docs/architecture.md, "Invariants"):

* a sharer that is itself terminating still blocks while it is protected;
* the shared-server guard asks the API server (a field-selected LIST) right before each DELETE,
  so an object created a moment before its predecessor is deleted (a Helm/ArgoCD rename) keeps
  the server;
* a 404 counts as "gone" only from the endpoint where the server was seen;
* a region the schema accepts but the configured environment lacks holds, and says so;
* in confirm mode, a deletion SCP accepted but that did not take is sent again.
"""

from __future__ import annotations

import asyncio
import functools
import json
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from scp_emulator.config import EmulatorConfig
from scp_emulator.testing import ThreadedEmulator
from scp_operator import constants
from scp_testenv import ControlPlane, KubectlError, wait_for
from scp_testenv.operator_process import OperatorProcess
from tests.e2e.operator_fixtures import FAST, Cluster

pytestmark = pytest.mark.e2e

Spawn = Callable[..., OperatorProcess]


def deletes(emu: ThreadedEmulator, sid: str) -> list[dict[str, Any]]:
    return emu.requests(method="DELETE", path_contains=sid)


def events_with(cluster: Cluster, name: str, reason: str) -> list[dict[str, Any]]:
    return [e for e in cluster.events(name) if e["reason"] == reason]


def held(cluster: Cluster) -> dict[str, str | None]:
    """Objects of the namespace still present, with their Deleting condition's message."""
    out = cluster.cp.kubectl("get", "scpvs", "-n", cluster.ns, "-o", "json").stdout
    return {
        o["metadata"]["name"]: next(
            (
                f"{c['reason']}: {c['message']}"
                for c in (o.get("status") or {}).get("conditions") or []
                if c["type"] == "Deleting"
            ),
            None,
        )
        for o in json.loads(out)["items"]
    }


def manifest(name: str, server_id: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": constants.API_VERSION,
        "kind": constants.KIND,
        "metadata": {"name": name},
        "spec": {"serverId": server_id, **spec},
    }


@pytest.fixture
def other_namespace(make_namespace: Callable[[str], str]) -> str:
    """A second namespace, for objects sharing a server across namespaces."""
    return make_namespace("other")


@pytest.fixture
def spawn(
    control_plane: ControlPlane, namespace: str, tmp_path: Path, crd: None
) -> Iterator[Spawn]:
    """Factory: ``spawn(env, namespaces=None)`` starts an operator with exactly ``env`` (plus
    FAST timings); all are stopped at teardown. Unlike ``make_operator`` it neither points the
    operator at the ``emulator`` fixture nor limits it to one namespace."""
    started: list[OperatorProcess] = []

    def start(env: dict[str, str], namespaces: list[str] | None = None) -> OperatorProcess:
        proc = OperatorProcess(
            kubeconfig=control_plane.kubeconfig,
            log_path=tmp_path / "operator.log",
            namespaces=namespaces or [namespace],
            env={**FAST, **env},
        )
        started.append(proc)
        proc.start()
        return proc

    yield start
    for proc in started:
        proc.stop()


# --- 1. a terminating protected sharer still blocks ---------------------------------------------


def test_a_terminating_protected_sharer_still_blocks_the_delete_across_namespaces(
    control_plane: ControlPlane,
    cluster: Cluster,
    other_namespace: str,
    emulator: ThreadedEmulator,
    spawn: Spawn,
) -> None:
    spawn(emulator.scp_env(), [cluster.ns, other_namespace])
    other = Cluster(control_plane, other_namespace)
    sid = emulator.seed(name="shared")["id"]
    cluster.create_vs("a", sid, annotations={constants.PROTECTION_ANNOTATION: "true"})
    other.create_vs("b", sid)
    wait_for(lambda: cluster.has_finalizer("a") and other.has_finalizer("b"), what="finalizers")

    cluster.delete("a")
    wait_for(lambda: cluster.reason("a") == "DeletionProtected", what="a held as protected")
    other.delete("b")
    wait_for(
        lambda: other.reason("b") == "ServerShared" or other.get("b") is None,
        what="b held as shared (or, wrongly, released)",
    )
    assert deletes(emulator, sid) == [], "b's deletion deleted the server a protected a names"
    assert other.get("b") is not None, "b was released while a protected sharer named its server"
    cond = other.condition("b", "Deleting")
    assert cond is not None
    # b's owner may not see a's namespace: the sharer is counted, not named (issue 11)
    assert "1 object in another namespace" in cond["message"], cond["message"]
    assert cluster.ns not in cond["message"], cond["message"]
    warnings = events_with(other, "b", "ServerShared")
    assert warnings
    assert warnings[0]["type"] == "Warning"
    assert cluster.ns not in warnings[0]["message"]
    time.sleep(3)  # several 1 s re-checks of both objects
    assert deletes(emulator, sid) == [], "a DELETE was sent while a protected sharer held it"
    assert emulator.server(sid)["state"] == "ACTIVE"  # type: ignore[index]
    assert other.reason("b") == "ServerShared"
    assert cluster.reason("a") == "DeletionProtected"

    control_plane.kubectl(
        "annotate", "scpvs", "a", "-n", cluster.ns, f"{constants.PROTECTION_ANNOTATION}-"
    )
    wait_for(
        lambda: cluster.get("a") is None and other.get("b") is None,
        within=45,
        what="both released once protection is removed",
    )
    statuses = [c["status"] for c in deletes(emulator, sid)]
    assert 1 <= len(statuses) <= 2, statuses
    assert set(statuses) <= {202, 404}, statuses
    assert 202 in statuses
    wait_for(lambda: emulator.server(sid) is None, what="the server gone from SCP")


# --- 2. the rename race: the guard asks the API server right before DELETE ----------------------


@pytest.fixture
def create_then_delete(control_plane: ControlPlane) -> Callable[[str, dict[str, Any], str], None]:
    """Create one object and delete another as admin, milliseconds apart (one client, already
    connected: closer than two kubectl processes can)."""

    async def pair(namespace: str, created: dict[str, Any], deleted: str) -> None:
        from scp_operator import kube_http

        async def login() -> Any:
            import kopf

            return kopf.ConnectionInfo(
                server=control_plane.server,
                ca_path=str(control_plane.ca_file),
                token=control_plane.admin_token,
            )

        conn = kube_http.Connection(login=login)
        collection = kube_http.path(
            f"{constants.GROUP}/{constants.VERSION}", constants.PLURAL, namespace=namespace
        )
        try:
            await conn.request("GET", collection, params={"limit": 1})  # connected first
            await conn.request("POST", collection, body=created)
            await conn.request("DELETE", f"{collection}/{deleted}")
        finally:
            await conn.aclose()

    def run(namespace: str, created: dict[str, Any], deleted: str) -> None:
        asyncio.run(pair(namespace, created, deleted))

    return run


def test_an_object_created_right_before_its_predecessor_is_deleted_keeps_the_server(
    control_plane: ControlPlane,
    cluster: Cluster,
    emulator: ThreadedEmulator,
    operator: OperatorProcess,
    create_then_delete: Callable[[str, dict[str, Any], str], None],
) -> None:
    rounds = 20
    sids = [emulator.seed(name=f"rename-{n}")["id"] for n in range(rounds)]
    cluster.apply(
        {
            "apiVersion": "v1",
            "kind": "List",
            "items": [manifest(f"old-{n}", sid) for n, sid in enumerate(sids)],
        }
    )
    for n in range(rounds):
        wait_for(functools.partial(cluster.has_finalizer, f"old-{n}"), what=f"old-{n} finalizer")

    for n, sid in enumerate(sids):  # Helm/ArgoCD rename: create the new name, prune the old one
        create_then_delete(cluster.ns, manifest(f"new-{n}", sid), f"old-{n}")
        time.sleep(0.2)

    for n in range(rounds):
        wait_for(
            lambda n=n: (
                cluster.reason(f"old-{n}") == "ServerShared" or cluster.get(f"old-{n}") is None
            ),
            what=f"old-{n} held as shared (or, wrongly, released)",
        )
    sent = [c for sid in sids for c in deletes(emulator, sid)]
    assert sent == [], f"DELETE sent while the new object named the server: {sent}"
    for n in range(rounds):
        cond = cluster.condition(f"old-{n}", "Deleting")
        assert cond is not None
        assert f"{cluster.ns}/new-{n}" in cond["message"], cond["message"]
    time.sleep(2)  # re-checks keep holding
    sent = [c for sid in sids for c in deletes(emulator, sid)]
    assert sent == [], f"DELETE sent while the new object named the server: {sent}"
    assert all(emulator.server(sid)["state"] == "ACTIVE" for sid in sids)  # type: ignore[index]
    for n in range(rounds):
        assert cluster.get(f"new-{n}") is not None
        assert cluster.has_finalizer(f"old-{n}")

    # the owner deletes the new objects too: now each server goes, once
    for n in range(rounds):
        wait_for(functools.partial(cluster.has_finalizer, f"new-{n}"), what=f"new-{n} finalizer")
    control_plane.kubectl("delete", "scpvs", "--all", "-n", cluster.ns, "--wait=false")
    try:
        wait_for(lambda: not held(cluster), within=45, what="every object released")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; still held: {held(cluster)}\n{operator.tail(60)}") from None
    for sid in sids:
        statuses = [c["status"] for c in deletes(emulator, sid)]
        assert 202 in statuses, (sid, statuses)
        assert len(statuses) <= 2, (sid, statuses)
        assert set(statuses) <= {202, 404}, (sid, statuses)
    wait_for(lambda: all(emulator.server(s) is None for s in sids), what="every server gone")


def test_the_api_server_rejects_a_server_id_not_in_lower_case(cluster: Cluster) -> None:
    upper = str(uuid.uuid4()).upper()
    with pytest.raises(KubectlError) as info:
        cluster.create_vs("upper", upper)
    assert "lower case" in info.value.stderr
    assert cluster.get("upper") is None
    cluster.create_vs("lower", upper.lower())  # the same id in its canonical spelling is fine
    assert cluster.get("lower") is not None


# --- 3. a 404 is evidence only from where the server was seen -----------------------------------


def test_a_404_from_another_endpoint_holds_until_the_operator_points_back(
    cluster: Cluster, emulator: ThreadedEmulator, spawn: Spawn
) -> None:
    sid = emulator.seed(name="seen-here")["id"]
    account = emulator.server(sid)["account_id"]  # type: ignore[index]
    first = spawn(emulator.scp_env())
    cluster.create_vs("moved", sid)
    wait_for(lambda: cluster.reason("moved", "Ready") == "ServerFound", what="observed")
    seen = cluster.get("moved")["status"]["server"]  # type: ignore[index]
    assert seen["endpoint"] == emulator.url
    assert seen["accountId"] == account
    first.stop()

    with ThreadedEmulator(EmulatorConfig(delete_delay=0.5)) as elsewhere:
        assert elsewhere.url != emulator.url
        second = spawn(elsewhere.scp_env())
        cluster.delete("moved")
        wait_for(lambda: cluster.reason("moved") == "EndpointChanged", what="EndpointChanged")
        cond = cluster.condition("moved", "Deleting")
        assert cond is not None
        assert emulator.url in cond["message"], cond["message"]
        assert elsewhere.url in cond["message"], cond["message"]
        assert [c["status"] for c in deletes(elsewhere, sid)][:1] == [404]
        assert events_with(cluster, "moved", "EndpointChanged")[0]["type"] == "Warning"
        assert cluster.has_finalizer("moved")
        assert deletes(emulator, sid) == []
        assert emulator.server(sid)["state"] == "ACTIVE"  # type: ignore[index]
        second.stop()

    spawn(emulator.scp_env())
    wait_for(lambda: cluster.get("moved") is None, what="released after pointing back")
    assert [c["status"] for c in deletes(emulator, sid)] == [202]
    assert (emulator.server(sid) or {}).get("state") in (None, "DELETING")


def test_a_404_from_where_the_server_was_seen_releases_even_for_the_accounts_last_server(
    cluster: Cluster, emulator: ThreadedEmulator, operator: OperatorProcess
) -> None:
    sid = emulator.seed(name="only-one")["id"]
    cluster.create_vs("only-one", sid)
    wait_for(lambda: cluster.reason("only-one", "Ready") == "ServerFound", what="observed")
    seen = cluster.get("only-one")["status"]["server"]  # type: ignore[index]
    assert seen["endpoint"] == emulator.url
    emulator.remove(sid)  # deleted in SCP's console meanwhile: the account has no server left
    cluster.delete("only-one")
    try:
        wait_for(lambda: cluster.get("only-one") is None, within=20, what="released on 404")
    except AssertionError as exc:
        raise AssertionError(f"{exc}; held: {held(cluster)}") from None
    assert [c["status"] for c in deletes(emulator, sid)] == [404]


def test_a_404_for_a_server_never_seen_still_releases(
    cluster: Cluster, emulator: ThreadedEmulator, operator: OperatorProcess
) -> None:
    sid = str(uuid.uuid4())
    cluster.create_vs("never-seen", sid)
    wait_for(lambda: cluster.reason("never-seen", "Ready") == "ServerNotFound", what="reported")
    status = cluster.get("never-seen")["status"]  # type: ignore[index]
    assert not (status.get("server") or {}).get("endpoint")
    cluster.delete("never-seen", wait=True)
    assert [c["status"] for c in deletes(emulator, sid)] == [404]


# --- 5. a region the schema accepts but the environment lacks -----------------------------------


def test_a_region_missing_from_the_environment_holds_and_sends_nothing(
    control_plane: ControlPlane, cluster: Cluster, emulator: ThreadedEmulator, spawn: Spawn
) -> None:
    # No SCP_ENDPOINT: the region picks the endpoint. Valid regions name real SCP hosts that do
    # not resolve here, so no object in this test names one, and the startup version check
    # (which would read the default region's host) is off.
    spawn(
        {
            "SCP_ACCESS_KEY": emulator.access_key,
            "SCP_SECRET_KEY": emulator.secret_key,
            "SCP_ENVIRONMENT": "e",
            "SCP_OPERATOR_CHECK_VERSIONS": "false",
            "SCP_OPERATOR_HTTP_TIMEOUT": "3",
        }
    )
    sid = emulator.seed(name="south")["id"]
    cluster.create_vs("south", sid, region="kr-south1")  # exists only in environment g
    wait_for(lambda: cluster.reason("south", "Ready") == "InvalidRegion", what="Ready says so")
    ready = cluster.condition("south", "Ready")
    assert ready is not None
    assert "kr-south1" in ready["message"]
    assert cluster.has_finalizer("south")

    cluster.delete("south")
    wait_for(lambda: cluster.reason("south") == "InvalidRegion", what="held: InvalidRegion")
    cond = cluster.condition("south", "Deleting")
    assert cond is not None
    assert "kr-south1" in cond["message"]
    assert "Orphan" in cond["message"]
    deleting = [
        e
        for e in events_with(cluster, "south", "InvalidRegion")
        if "nothing was sent" in e["message"]
    ]
    assert deleting
    assert deleting[0]["type"] == "Warning"
    time.sleep(3)  # retries (slow schedule: 1-2 s here) must not reach SCP either
    assert cluster.has_finalizer("south")
    assert emulator.requests() == []

    control_plane.kubectl(
        "patch",
        "scpvs",
        "south",
        "-n",
        cluster.ns,
        "--type=merge",
        "-p",
        json.dumps({"spec": {"deletionPolicy": "Orphan"}}),
    )
    wait_for(lambda: cluster.get("south") is None, within=20, what="released by Orphan")
    assert emulator.requests() == []


# --- 6. confirm mode: a deletion that did not take is sent again --------------------------------


def test_confirm_mode_deletes_again_when_an_accepted_deletion_did_not_take(
    cluster: Cluster, emulator: ThreadedEmulator, make_operator: Spawn
) -> None:
    emulator.set_config(delete_delay=None)  # accepted deletions stay DELETING until told
    make_operator(SCP_OPERATOR_CONFIRM_DELETION="true").start()
    sid = emulator.seed(name="sticky")["id"]
    cluster.create_vs("sticky", sid)
    wait_for(lambda: cluster.has_finalizer("sticky"), what="finalizer")

    cluster.delete("sticky")
    wait_for(lambda: cluster.reason("sticky") == "AwaitingConfirmation", what="awaiting")
    assert [c["status"] for c in deletes(emulator, sid)] == [202]
    assert emulator.server(sid)["state"] == "DELETING"  # type: ignore[index]

    emulator.patch(sid, state="ACTIVE")  # SCP accepted it, but the server is back
    wait_for(
        lambda: events_with(cluster, "sticky", "DeletionNotCompleted"),
        what="a DeletionNotCompleted event",
    )
    event = events_with(cluster, "sticky", "DeletionNotCompleted")[0]
    assert event["type"] == "Warning"
    assert "ACTIVE" in event["message"]
    try:
        wait_for(lambda: len(deletes(emulator, sid)) >= 2, within=20, what="a second DELETE")
    except AssertionError as exc:
        deletion = (cluster.get("sticky") or {}).get("status", {}).get("deletion")
        raise AssertionError(f"{exc}; status.deletion={deletion}") from None
    assert [c["status"] for c in deletes(emulator, sid)] == [202, 202]
    wait_for(lambda: cluster.reason("sticky") == "AwaitingConfirmation", what="awaiting again")
    assert cluster.has_finalizer("sticky")

    emulator.remove(sid)  # the second deletion finishes
    wait_for(lambda: cluster.get("sticky") is None, within=30, what="released on 404")
    assert [c["status"] for c in deletes(emulator, sid)] == [202, 202]
    gets = emulator.requests(method="GET", path_contains=sid)
    assert gets
    assert gets[-1]["status"] == 404


def test_the_crd_state_is_read_as_metadata_only(cluster: Cluster) -> None:
    """The batched CRD read during a mass deletion asks for ``PartialObjectMetadata``: the real
    API server answers without the schema, and the state still comes from it."""
    from scp_operator import kube, kube_http
    from scp_operator.crd_state import CrdState

    plane = cluster.cp

    async def login() -> Any:
        import kopf

        return kopf.ConnectionInfo(
            server=plane.server, ca_path=str(plane.ca_file), token=plane.admin_token
        )

    async def read() -> tuple[dict[str, Any], dict[str, Any], CrdState]:
        conn = kube_http.Connection(login=login)
        crd = kube_http.path(
            "apiextensions.k8s.io/v1", "customresourcedefinitions", name=constants.CRD_NAME
        )
        try:
            partial = await conn.request("GET", crd, accept=kube.METADATA_ONLY)
            whole = await conn.request("GET", crd)
            return partial, whole, await kube.CrdReader(conn).state()
        finally:
            await conn.aclose()

    partial, whole, state = asyncio.run(read())
    assert partial["kind"] == "PartialObjectMetadata"
    assert "spec" not in partial  # the schema stayed home
    assert "status" not in partial
    assert partial["metadata"]["uid"] == whole["metadata"]["uid"]
    assert len(json.dumps(partial)) < len(json.dumps(whole))
    assert state is CrdState.PRESENT
