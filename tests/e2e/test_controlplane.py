"""Smoke tests of the e2e control plane itself: real versions, RBAC, namespaces, CRDs, helm."""

from __future__ import annotations

import json
import re
import urllib.error

import pytest

from scp_testenv import ControlPlane, KubectlFn
from scp_testenv.binaries import pinned_versions
from tests.e2e.conftest import OPERATOR_SA_NAMESPACE, OPERATOR_SA_USER, UNPRIVILEGED_USER

pytestmark = pytest.mark.e2e

RELEASE = re.compile(r"^v1\.\d+\.\d+$")

CRD = """
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.e2e.scp-operator.test
spec:
  group: e2e.scp-operator.test
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget, listKind: WidgetList}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [size]
              properties:
                size: {type: integer, minimum: 1}
"""


def test_apiserver_reports_the_pinned_release(control_plane: ControlPlane) -> None:
    version = control_plane.get_json("/version")
    assert RELEASE.match(version["gitVersion"]), version
    assert version["gitVersion"] == pinned_versions()["kubernetes"]
    assert (version["major"], version["minor"]) == tuple(version["gitVersion"][1:].split(".")[:2])
    assert version["gitTreeState"] == "clean"


def test_kubectl_reports_the_pinned_release(kubectl: KubectlFn) -> None:
    versions = json.loads(kubectl("version", "--output=json").stdout)
    assert versions["clientVersion"]["gitVersion"] == pinned_versions()["kubernetes"]
    assert versions["serverVersion"]["gitVersion"] == pinned_versions()["kubernetes"]


def test_rbac_denies_an_unprivileged_identity(control_plane: ControlPlane, namespace: str) -> None:
    denied = control_plane.kubectl(
        "get", "secrets", "-n", namespace, user=UNPRIVILEGED_USER, check=False
    )
    assert denied.returncode != 0
    assert "forbidden" in denied.stderr.lower()
    with pytest.raises(urllib.error.HTTPError) as raised:
        control_plane.get_json(f"/api/v1/namespaces/{namespace}/secrets", user=UNPRIVILEGED_USER)
    assert raised.value.code == 403
    whoami = json.loads(
        control_plane.kubectl("auth", "whoami", "-o", "json", user=UNPRIVILEGED_USER).stdout
    )
    assert whoami["status"]["userInfo"]["username"] == UNPRIVILEGED_USER
    assert "system:authenticated" in whoami["status"]["userInfo"]["groups"]


def test_rbac_allows_the_admin(kubectl: KubectlFn, namespace: str) -> None:
    kubectl("create", "secret", "generic", "s1", "-n", namespace, "--from-literal=k=v")
    names = kubectl("get", "secrets", "-n", namespace, "-o", "name").stdout.split()
    assert names == ["secret/s1"]


def test_rbac_binds_a_service_account_token_identity(kubectl: KubectlFn) -> None:
    """The static-token service-account identity is matched by ServiceAccount subjects."""
    ns = OPERATOR_SA_NAMESPACE
    if kubectl("get", "namespace", ns, check=False).returncode != 0:
        kubectl("create", "namespace", ns)
    assert (
        kubectl(
            "auth", "can-i", "list", "secrets", "-n", ns, user=OPERATOR_SA_USER, check=False
        ).stdout.strip()
        == "no"
    )
    kubectl("create", "role", "read-secrets", "-n", ns, "--verb=get,list", "--resource=secrets")
    kubectl(
        "create",
        "rolebinding",
        "read-secrets",
        "-n",
        ns,
        "--role=read-secrets",
        f"--serviceaccount={ns}:scp-operator",
    )
    assert (
        kubectl("auth", "can-i", "list", "secrets", "-n", ns, user=OPERATOR_SA_USER).stdout.strip()
        == "yes"
    )
    assert (
        kubectl(
            "auth", "can-i", "list", "secrets", "-n", "default", user=OPERATOR_SA_USER, check=False
        ).stdout.strip()
        == "no"
    )


def test_real_service_account_tokens_work(
    control_plane: ControlPlane, kubectl: KubectlFn, namespace: str
) -> None:
    """TokenRequest works (the API server signs tokens; no controller-manager needed)."""
    kubectl("create", "serviceaccount", "robot", "-n", namespace)
    token = kubectl("create", "token", "robot", "-n", namespace).stdout.strip()
    config = control_plane.kubeconfig_for_token(token, f"{namespace}-robot")
    whoami = json.loads(kubectl("auth", "whoami", "-o", "json", kubeconfig=config).stdout)
    assert whoami["status"]["userInfo"]["username"] == (f"system:serviceaccount:{namespace}:robot")
    denied = kubectl("get", "secrets", "-n", namespace, kubeconfig=config, check=False)
    assert "forbidden" in denied.stderr.lower()


def test_namespace_is_created_and_active(kubectl: KubectlFn, namespace: str) -> None:
    phase = kubectl("get", "namespace", namespace, "-o", "jsonpath={.status.phase}").stdout
    assert phase == "Active"


def test_crd_becomes_established_and_validates(kubectl: KubectlFn, namespace: str) -> None:
    kubectl("apply", "-f", "-", input=CRD)
    kubectl(
        "wait",
        "--for=condition=Established",
        "crd/widgets.e2e.scp-operator.test",
        "--timeout=60s",
    )
    widget = {
        "apiVersion": "e2e.scp-operator.test/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": namespace},
        "spec": {"size": 3},
    }
    kubectl("apply", "-f", "-", input=json.dumps(widget))
    got = json.loads(kubectl("get", "widget", "w1", "-n", namespace, "-o", "json").stdout)
    assert got["spec"] == {"size": 3}
    widget["metadata"]["name"] = "w2"  # type: ignore[index]
    widget["spec"] = {"size": 0}
    rejected = kubectl("apply", "-f", "-", input=json.dumps(widget), check=False)
    assert rejected.returncode != 0
    assert "spec.size" in rejected.stderr


def test_helm_reports_the_pinned_version_and_reaches_the_cluster(
    control_plane: ControlPlane,
) -> None:
    version = control_plane.helm("version", "--template={{.Version}}").stdout.strip()
    assert version == pinned_versions()["helm"]
    assert re.match(r"^v\d+\.\d+\.\d+$", version)
    assert control_plane.helm("list", "--all-namespaces", "--output=json").stdout.strip() == "[]"


def test_a_killed_component_restarts_on_the_same_port_with_its_data(
    control_plane: ControlPlane,
) -> None:
    """``kill``/``restart`` (what the fault suite uses), on a control plane of its own."""
    with ControlPlane(control_plane.binaries) as cp:
        cp.kubectl("create", "namespace", "kept")
        port, kubeconfig = cp.port, cp.kubeconfig.read_text()
        cp.kill("etcd")
        assert not cp.is_running("etcd")
        assert not cp.running
        cp.restart("etcd")
        cp.kill("kube-apiserver")
        assert cp.kubectl("get", "namespace", "kept", check=False, timeout=10).returncode != 0
        cp.ensure_running()
        assert cp.running
        assert (cp.port, cp.kubeconfig.read_text()) == (port, kubeconfig)
        assert cp.kubectl("get", "namespace", "kept", "-o", "name").stdout.strip() == (
            "namespace/kept"
        )
        with pytest.raises(ValueError, match="no component"):
            cp.kill("kubelet")  # type: ignore[arg-type]
