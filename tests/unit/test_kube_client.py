"""The operator's own Kubernetes calls (scp_operator.kube, kube_accounts, lease.KubeLeaseApi).

They run through the operator's real connection (scp_operator.kube_http: aiohttp), against a small
HTTP server on 127.0.0.1 that answers like the API server would (status codes, ``Status``
bodies, list pages, ``Date``): what is checked is how each answer becomes a fact or an error,
that no failure reads as "nothing there", the JSON-patch guard, the pool bound and the request
timeout. The same reads against a real kube-apiserver are the e2e tier's (test_authoritative,
test_crd_cascade, test_accounts, test_lease).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import kopf
import pytest
import yaml
from aiohttp import web
from aiohttp.test_utils import TestServer

from scp_operator import constants
from scp_operator.crd_state import CrdState
from scp_operator.kube import PAGE, CrdReader, KubeClient, KubeReadError, list_virtualservers
from scp_operator.kube_accounts import AccountReader, SecretProblem
from scp_operator.lease import Answer, KubeLeaseApi, LeaseConflict, LeaseError, LeaseWrite
from tests.conftest import REPO

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

VS = f"/apis/{constants.GROUP}/{constants.VERSION}/{constants.PLURAL}"
CRD = f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{constants.CRD_NAME}"
LEASE = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases"
SECRET = "/api/v1/namespaces/team-a/secrets/keys"
DATE = "Tue, 01 Jun 2027 10:00:00 GMT"


def status(code: int, message: str = "no") -> web.Response:
    """An error as the API server sends it: a ``Status`` object."""
    body = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code}
    return web.json_response({**body, "message": message}, status=code)


def item(name: str, *, namespace: str = "team-a", finalizers: tuple[str, ...] = ()) -> Any:
    meta = {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"}
    return {"metadata": {**meta, "finalizers": list(finalizers)}, "spec": {}}


class FakeApiServer:
    """Answers by (method, path); records every request; counts requests in flight."""

    def __init__(self) -> None:
        self.routes: dict[tuple[str, str], Handler] = {}
        self.seen: list[tuple[str, str, dict[str, str], str, str]] = []
        self.in_flight = 0
        self.most_in_flight = 0
        self.stop = asyncio.Event()  # set at teardown: handlers that hang return then
        self.url = ""

    def on(self, method: str, path: str, answer: Handler | web.Response | Any) -> None:
        """Answer ``method path`` with a handler, a response, or an object as JSON (200)."""
        if callable(answer):
            self.routes[(method, path)] = answer
            return
        response = answer if isinstance(answer, web.Response) else None
        body = None if response is not None else answer

        async def fixed(_request: web.Request) -> web.StreamResponse:
            if response is not None:
                return web.Response(
                    status=response.status, body=response.body, headers=response.headers
                )
            return web.json_response(body)

        self.routes[(method, path)] = fixed

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.text()
        self.seen.append(
            (request.method, request.path, dict(request.query), body, request.content_type)
        )
        handler = self.routes.get((request.method, request.path))
        if handler is None:
            return status(404, "not found")
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1

    def requests(self, method: str, path: str) -> list[tuple[dict[str, str], str, str]]:
        return [(q, b, ct) for m, p, q, b, ct in self.seen if (m, p) == (method, path)]


@pytest.fixture
async def api() -> AsyncIterator[FakeApiServer]:
    fake = FakeApiServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", fake.handle)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    fake.url = str(server.make_url("")).rstrip("/")
    yield fake
    fake.stop.set()
    await server.close()


def kube_for(url: str, connections: int = 8) -> KubeClient:
    """A client of ``url`` (what in-cluster or kubeconfig loading would produce)."""

    async def login() -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url)

    return KubeClient(connections=connections, login=login)


@pytest.fixture
async def kube(api: FakeApiServer) -> AsyncIterator[KubeClient]:
    client = kube_for(api.url)
    yield client
    await client.aclose()


def crd_object(*, terminating: bool = False) -> Any:
    """The project's own CRD as the API server returns it."""
    crd = yaml.safe_load((REPO / "crds" / f"{constants.CRD_NAME}.yaml").read_text())
    crd = {**crd, "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition"}
    crd["metadata"] = {**crd["metadata"], "uid": "crd-uid", "resourceVersion": "7"}
    if terminating:
        crd["metadata"]["deletionTimestamp"] = "2027-06-01T10:00:00Z"
    return crd


# ---- the CRD's state ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "state"),
    [
        (crd_object(), CrdState.PRESENT),
        (crd_object(terminating=True), CrdState.TERMINATING),
        (status(404), CrdState.GONE),
        (status(403), CrdState.UNKNOWN),
        (status(500), CrdState.UNKNOWN),
        (web.Response(text="<html>a proxy</html>", content_type="text/html"), CrdState.UNKNOWN),
    ],
)
async def test_the_crd_state_comes_from_the_answer_and_a_failure_is_unknown(
    api: FakeApiServer, kube: KubeClient, answer: Any, state: CrdState
) -> None:
    api.on("GET", CRD, copy.deepcopy(answer) if isinstance(answer, dict) else answer)
    assert await CrdReader(kube).state() is state


async def test_the_crd_is_read_as_metadata_only(api: FakeApiServer, kube: KubeClient) -> None:
    """Its state is in its metadata; the schema would be tens of kB per batched read."""
    accepts: list[str] = []

    async def partial(request: web.Request) -> web.StreamResponse:
        accepts.append(request.headers.get("Accept", ""))
        meta = {"name": constants.CRD_NAME, "deletionTimestamp": "2027-06-01T10:00:00Z"}
        return web.json_response({"kind": "PartialObjectMetadata", "metadata": meta})

    api.on("GET", CRD, partial)
    assert await CrdReader(kube).state() is CrdState.TERMINATING
    assert accepts == [
        "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1,application/json"
    ]


async def test_an_api_server_that_cannot_be_reached_is_unknown_and_an_error() -> None:
    kube = kube_for("http://127.0.0.1:9")  # nothing listens there
    try:
        assert await CrdReader(kube).state() is CrdState.UNKNOWN
        with pytest.raises(KubeReadError, match="LIST virtualservers failed"):
            await CrdReader(kube).naming("abc")
        with pytest.raises(KubeReadError):
            await CrdReader(kube).holding()
        with pytest.raises(KubeReadError):
            await AccountReader(kube).account("a")
    finally:
        await kube.aclose()


async def test_a_configuration_that_cannot_be_loaded_is_unknown_and_an_error() -> None:
    async def no_config() -> kopf.ConnectionInfo:
        raise RuntimeError("no kubeconfig")

    kube = KubeClient(login=no_config)
    assert await CrdReader(kube).state() is CrdState.UNKNOWN
    with pytest.raises(KubeReadError, match="failed: RuntimeError"):
        await CrdReader(kube).naming("abc")
    assert not await CrdReader(kube).release("team-a", "vs", ["ours"], "ours")


async def test_after_close_every_read_fails_instead_of_reopening(
    api: FakeApiServer, kube: KubeClient
) -> None:
    api.on("GET", CRD, crd_object())
    assert await CrdReader(kube).state() is CrdState.PRESENT
    await kube.aclose()
    assert await CrdReader(kube).state() is CrdState.UNKNOWN
    with pytest.raises(KubeReadError, match="closed"):
        await AccountReader(kube).account("a")
    assert len(api.requests("GET", CRD)) == 1


# ---- the objects naming a server ------------------------------------------------------------


async def test_naming_asks_in_both_spellings_and_merges_by_uid(
    api: FakeApiServer, kube: KubeClient
) -> None:
    async def by_selector(request: web.Request) -> web.StreamResponse:
        selector = request.query["fieldSelector"]
        found = {"spec.serverId=abc": [item("lower"), item("both")], "spec.serverId=ABC": []}
        found["spec.serverId=ABC"] = [item("both"), item("upper", namespace="team-b")]
        return web.json_response({"items": found[selector], "metadata": {}})

    api.on("GET", VS, by_selector)
    names = sorted(i["metadata"]["name"] for i in await CrdReader(kube).naming("aBc"))
    assert names == ["both", "lower", "upper"]
    assert sorted(q["fieldSelector"] for q, _, _ in api.requests("GET", VS)) == [
        "spec.serverId=ABC",
        "spec.serverId=abc",
    ]


async def test_naming_without_the_selectable_field_says_to_apply_the_crd(
    api: FakeApiServer, kube: KubeClient
) -> None:
    api.on("GET", VS, status(400, 'field label not supported: "spec.serverId"'))
    with pytest.raises(KubeReadError, match=r"no selectable field spec\.serverId"):
        await CrdReader(kube).naming("abc")


@pytest.mark.parametrize("code", [403, 404, 500])
async def test_naming_that_fails_is_an_error_never_an_empty_list(
    api: FakeApiServer, kube: KubeClient, code: int
) -> None:
    api.on("GET", VS, status(code, "a body that must not show"))
    with pytest.raises(KubeReadError) as raised:
        await CrdReader(kube).naming("abc")
    assert str(raised.value) == f"LIST virtualservers answered HTTP {code}"


# ---- the cascade's paged LIST and its guarded release ----------------------------------------


def pages(*contents: list[Any], fail_at: int | None = None) -> Handler:
    """A paged LIST: page ``n`` is asked for with ``continue=t<n>``."""

    async def page(request: web.Request) -> web.StreamResponse:
        n = int(request.query.get("continue", "t0")[1:])
        if n == fail_at:
            return status(500)
        token = f"t{n + 1}" if n + 1 < len(contents) else ""
        return web.json_response({"items": contents[n], "metadata": {"continue": token}})

    return page


async def test_holding_reads_every_page_and_keeps_our_finalizers(
    api: FakeApiServer, kube: KubeClient
) -> None:
    ours = (constants.FINALIZER,)
    api.on(
        "GET",
        VS,
        pages([item("a", finalizers=ours), item("b")], [item("c", finalizers=("x", *ours))]),
    )
    held = await CrdReader(kube).holding()
    assert [i["metadata"]["name"] for i in held] == ["a", "c"]
    queries = [q for q, _, _ in api.requests("GET", VS)]
    assert [q.get("continue") for q in queries] == [None, "t1"]
    assert {q["limit"] for q in queries} == {str(PAGE)}


async def test_holding_in_namespaces_lists_each_and_a_gone_crd_holds_nothing(
    api: FakeApiServer, kube: KubeClient
) -> None:
    ours = (constants.FINALIZER,)
    path = f"/apis/{constants.GROUP}/{constants.VERSION}/namespaces/team-a/{constants.PLURAL}"
    api.on("GET", path, pages([item("a", finalizers=ours)]))
    # team-b: no route, so 404 (the CRD went away meanwhile)
    held = await CrdReader(kube).holding(["team-a", "team-b"])
    assert [i["metadata"]["name"] for i in held] == ["a"]


async def test_a_page_that_fails_fails_the_whole_listing(
    api: FakeApiServer, kube: KubeClient
) -> None:
    ours = (constants.FINALIZER,)
    api.on("GET", VS, pages([item("a", finalizers=ours)], [item("b", finalizers=ours)], fail_at=1))
    with pytest.raises(KubeReadError, match="HTTP 500"):
        await CrdReader(kube).holding()


async def test_release_patches_guarded_by_the_finalizers_and_retries_when_they_changed(
    api: FakeApiServer, kube: KubeClient
) -> None:
    ours = constants.FINALIZER
    path = f"/apis/{constants.GROUP}/{constants.VERSION}/namespaces/team-a/{constants.PLURAL}"
    answers = [status(422, "test operation failed"), web.json_response(item("vs"))]

    async def patch(_request: web.Request) -> web.StreamResponse:
        return answers.pop(0)

    api.on("PATCH", f"{path}/vs", patch)
    api.on("GET", path, {"items": [item("vs", finalizers=("other", ours))], "metadata": {}})
    assert await CrdReader(kube).release("team-a", "vs", [ours], ours)
    patches = api.requests("PATCH", f"{path}/vs")
    assert {content_type for _, _, content_type in patches} == {"application/json-patch+json"}
    assert [json.loads(body) for _, body, _ in patches] == [
        [
            {"op": "test", "path": "/metadata/finalizers", "value": [ours]},
            {"op": "replace", "path": "/metadata/finalizers", "value": []},
        ],
        [
            {"op": "test", "path": "/metadata/finalizers", "value": ["other", ours]},
            {"op": "replace", "path": "/metadata/finalizers", "value": ["other"]},
        ],
    ]
    assert api.requests("GET", path)[0][0]["fieldSelector"] == "metadata.name=vs"


@pytest.mark.parametrize(("code", "released"), [(404, True), (403, False), (500, False)])
async def test_release_answers(
    api: FakeApiServer, kube: KubeClient, code: int, released: bool
) -> None:
    path = f"/apis/{constants.GROUP}/{constants.VERSION}/namespaces/team-a/{constants.PLURAL}"
    api.on("PATCH", f"{path}/vs", status(code))
    ours = constants.FINALIZER
    assert await CrdReader(kube).release("team-a", "vs", [ours], ours) is released


# ---- accounts and Secrets ---------------------------------------------------------------------


def secret(**data: str) -> Any:
    encoded = {k: base64.b64encode(v.encode()).decode() for k, v in data.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "keys"}, "data": encoded}


async def test_secret_keys_are_read_and_never_logged(
    api: FakeApiServer, kube: KubeClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # what `kopf run --debug` does to the root logger
    api.on("GET", SECRET, secret(ak="ACCESS-4242", sk="SECRET-4242"))
    keys = await AccountReader(kube).secret_keys("team-a", "keys", "ak", "sk")
    assert (keys.access_key, keys.secret_key) == ("ACCESS-4242", "SECRET-4242")
    encoded = base64.b64encode(b"SECRET-4242").decode()
    assert "SECRET-4242" not in caplog.text
    assert encoded not in caplog.text


@pytest.mark.parametrize(
    ("code", "reason"), [(404, "SecretNotFound"), (403, "SecretForbidden"), (500, None)]
)
async def test_a_secret_that_cannot_be_read_says_why(
    api: FakeApiServer, kube: KubeClient, code: int, reason: str | None
) -> None:
    api.on("GET", SECRET, status(code, "SECRET-4242"))
    with pytest.raises((SecretProblem, KubeReadError)) as raised:
        await AccountReader(kube).secret_keys("team-a", "keys", "ak", "sk")
    if reason is None:
        assert isinstance(raised.value, KubeReadError)
        assert str(raised.value) == "GET Secret team-a/keys answered HTTP 500"
    else:
        assert isinstance(raised.value, SecretProblem)
        assert raised.value.reason == reason
    assert "SECRET-4242" not in str(raised.value)


async def test_account_reads_tell_missing_from_unreadable(
    api: FakeApiServer, kube: KubeClient
) -> None:
    accounts = f"/apis/{constants.GROUP}/{constants.VERSION}/scpaccounts"
    reader = AccountReader(kube)
    assert await reader.account("nope") is None  # 404: it does not exist
    assert await reader.accounts() == []  # 404: no CRD, no accounts
    api.on("GET", f"{accounts}/a", {"metadata": {"name": "a"}, "spec": {}})
    assert (await reader.account("a") or {})["metadata"]["name"] == "a"
    api.on("GET", f"{accounts}/b", status(403))
    with pytest.raises(KubeReadError, match="GET scpaccounts/b answered HTTP 403"):
        await reader.account("b")
    api.on("GET", accounts, status(500))
    with pytest.raises(KubeReadError, match="LIST scpaccounts answered HTTP 500"):
        await reader.accounts()


async def test_account_status_is_written_as_a_merge_patch_and_a_gone_account_is_no_error(
    api: FakeApiServer, kube: KubeClient
) -> None:
    path = f"/apis/{constants.GROUP}/{constants.VERSION}/scpaccounts/a/status"
    api.on("PATCH", path, {"metadata": {"name": "a"}})
    reader = AccountReader(kube)
    await reader.write_status("a", {"objects": 2})
    [(_, body, content_type)] = api.requests("PATCH", path)
    assert content_type == "application/merge-patch+json"
    assert json.loads(body) == {"status": {"objects": 2}}
    await reader.write_status("gone", {"objects": 0})  # 404: deleted meanwhile


async def test_users_are_counted_over_every_page(api: FakeApiServer, kube: KubeClient) -> None:
    api.on("GET", VS, pages([item("a"), item("b")], [item("c")]))
    assert await AccountReader(kube).users("acct") == 3
    assert {q["fieldSelector"] for q, _, _ in api.requests("GET", VS)} == {"spec.accountRef=acct"}


async def test_namespace_labels_and_a_missing_namespace(
    api: FakeApiServer, kube: KubeClient
) -> None:
    body = {"metadata": {"name": "team-a", "labels": {"scp": "yes"}}}
    api.on("GET", "/api/v1/namespaces/team-a", body)
    reader = AccountReader(kube)
    assert await reader.namespace_labels("team-a") == {"scp": "yes"}
    assert await reader.namespace_labels("team-b") is None
    api.on("GET", "/api/v1/namespaces", {"items": [body], "metadata": {}})
    assert await reader.namespaces("scp=yes") == {"team-a": {"scp": "yes"}}
    assert api.requests("GET", "/api/v1/namespaces")[0][0]["labelSelector"] == "scp=yes"


# ---- the pool ---------------------------------------------------------------------------------


async def test_no_more_requests_are_in_flight_than_the_pool_allows(api: FakeApiServer) -> None:
    async def slow(_request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.05)
        return web.json_response({"metadata": {"name": "a"}})

    api.on("GET", f"/apis/{constants.GROUP}/{constants.VERSION}/scpaccounts/a", slow)
    kube = kube_for(api.url, connections=2)
    try:
        reader = AccountReader(kube)
        found = await asyncio.gather(*(reader.account("a") for _ in range(8)))
    finally:
        await kube.aclose()
    assert all(f is not None for f in found)
    assert api.most_in_flight == 2


async def test_waiting_for_a_free_connection_does_not_count_against_the_timeout(
    api: FakeApiServer,
) -> None:
    """Four reads queue behind one connection for longer than the timeout; none fails."""

    async def slow(_request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(0.4)
        return web.json_response({"metadata": {"name": "a"}})

    api.on("GET", f"/apis/{constants.GROUP}/{constants.VERSION}/scpaccounts/a", slow)
    kube = kube_for(api.url, connections=1)
    try:
        reader = AccountReader(kube, timeout=1.0)
        found = await asyncio.gather(*(reader.account("a") for _ in range(4)))
    finally:
        await kube.aclose()
    assert all(f is not None for f in found)


async def test_a_request_that_hangs_ends_at_its_timeout_as_an_error(api: FakeApiServer) -> None:
    async def hang(_request: web.Request) -> web.StreamResponse:
        await api.stop.wait()
        return status(500)

    api.on("GET", f"/apis/{constants.GROUP}/{constants.VERSION}/scpaccounts/a", hang)
    kube = kube_for(api.url)
    try:
        with pytest.raises(KubeReadError, match="failed: TimeoutError"):
            await AccountReader(kube, timeout=0.2).account("a")
    finally:
        await kube.aclose()


# ---- the uninstall check ----------------------------------------------------------------------


async def test_list_virtualservers_names_every_object_and_a_missing_crd_means_none(
    api: FakeApiServer,
) -> None:
    assert await list_virtualservers((), kube_for(api.url)) == []  # 404: no CRD
    api.on("GET", VS, pages([item("b", namespace="x")], [item("a", namespace="y")]))
    assert await list_virtualservers((), kube_for(api.url)) == ["x/b", "y/a"]
    api.on("GET", VS, status(403))
    with pytest.raises(KubeReadError, match="HTTP 403"):
        await list_virtualservers((), kube_for(api.url))


# ---- the Lease --------------------------------------------------------------------------------


def lease_write(version: str | None) -> LeaseWrite:
    return LeaseWrite(
        namespace="kube-system",
        name="scp-operator",
        resource_version=version,
        holder="me/1/abc",
        duration=15,
        acquire_time=1_800_000_000.0,
        renew_time=1_800_000_000.0,
        transitions=0,
    )


def lease_answer(request_body: str) -> web.Response:
    obj = json.loads(request_body)
    obj["metadata"]["resourceVersion"] = "8"
    return web.json_response(obj, headers={"Date": DATE})


async def test_the_lease_is_created_with_micro_times_and_answers_with_its_date(
    api: FakeApiServer,
) -> None:
    async def create(request: web.Request) -> web.StreamResponse:
        return lease_answer(await request.text())

    api.on("POST", LEASE, create)
    leases = KubeLeaseApi(timeout=5.0, client=kube_for(api.url))
    try:
        assert await leases.read("kube-system", "scp-operator") is None  # 404: none yet
        answer = await leases.create(lease_write(None))
    finally:
        await leases.aclose()
    assert isinstance(answer, Answer)
    assert answer.date == DATE
    assert answer.obj["metadata"]["resourceVersion"] == "8"
    sent = json.loads(api.requests("POST", LEASE)[0][1])
    assert sent["spec"]["holderIdentity"] == "me/1/abc"
    # the API server requires MicroTime's six-digit fraction, even for a whole second
    assert sent["spec"]["renewTime"].startswith("2027-01-15T08:00:00.000001")
    assert "resourceVersion" not in sent["metadata"]


@pytest.mark.parametrize(("code", "error"), [(409, LeaseConflict), (403, LeaseError)])
async def test_a_refused_lease_write_carries_its_status_and_message(
    api: FakeApiServer, code: int, error: type[LeaseError]
) -> None:
    api.on("PUT", f"{LEASE}/scp-operator", status(code, "the object has been modified"))
    leases = KubeLeaseApi(timeout=5.0, client=kube_for(api.url))
    try:
        with pytest.raises(error) as raised:
            await leases.replace(lease_write("7"))
    finally:
        await leases.aclose()
    assert type(raised.value) is error
    assert raised.value.status == code
    assert raised.value.message == f"HTTP {code}: the object has been modified"
    sent = json.loads(api.requests("PUT", f"{LEASE}/scp-operator")[0][1])
    assert sent["metadata"]["resourceVersion"] == "7"


async def test_a_lease_request_without_an_answer_is_an_error_without_a_status(
    api: FakeApiServer,
) -> None:
    async def hang(_request: web.Request) -> web.StreamResponse:
        await api.stop.wait()
        return status(500)

    api.on("GET", f"{LEASE}/scp-operator", hang)
    leases = KubeLeaseApi(timeout=0.2, client=kube_for(api.url))
    try:
        with pytest.raises(LeaseError) as raised:
            await leases.read("kube-system", "scp-operator")
    finally:
        await leases.aclose()
    assert raised.value.status is None


# ---- the runtime's close path -----------------------------------------------------------------


async def test_closing_the_runtime_closes_the_one_client_both_readers_share() -> None:
    from scp_operator import runtime
    from scp_operator.settings import OperatorSettings, ScpSettings, Settings

    built = runtime.build(Settings(ScpSettings(access_key="a", secret_key="b"), OperatorSettings()))
    assert built.crd.client is built.kube
    await built.aclose()
    assert await built.crd.state() is CrdState.UNKNOWN
    with pytest.raises(KubeReadError, match="closed"):
        await built.account_reader.account("a")
