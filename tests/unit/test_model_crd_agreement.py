"""The pydantic models and the CRD's schema agree field by field."""

import re
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from scp_operator import constants
from scp_operator.model import (
    REGION_PATTERN,
    UUID_PATTERN,
    Condition,
    DeletionPolicy,
    DeletionProgress,
    ServerObservation,
    VirtualServerSpec,
    VirtualServerStatus,
)
from tests.conftest import REPO

CRD_PATH = REPO / "crds" / f"{constants.CRD_NAME}.yaml"


@pytest.fixture(scope="module")
def crd() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(CRD_PATH.read_text())
    return data


@pytest.fixture(scope="module")
def schema(crd: dict[str, Any]) -> dict[str, Any]:
    (version,) = crd["spec"]["versions"]
    result: dict[str, Any] = version["schema"]["openAPIV3Schema"]
    return result


def aliases(model: type[BaseModel]) -> set[str]:
    return {f.alias or name for name, f in model.model_fields.items()}


def walk(node: dict[str, Any]) -> Any:
    yield node
    for child in (node.get("properties") or {}).values():
        yield from walk(child)
    if "items" in node:
        yield from walk(node["items"])


def test_names_match_the_design(crd: dict[str, Any]) -> None:
    assert crd["metadata"]["name"] == constants.CRD_NAME
    spec = crd["spec"]
    assert spec["group"] == constants.GROUP
    assert spec["names"]["kind"] == constants.KIND
    assert spec["names"]["plural"] == constants.PLURAL
    assert spec["names"]["shortNames"] == [constants.SHORT_NAME]
    assert spec["names"]["categories"] == [constants.CATEGORY]
    (version,) = spec["versions"]
    assert version["name"] == constants.VERSION
    assert version["subresources"] == {"status": {}}
    columns = [c["name"] for c in version["additionalPrinterColumns"]]
    assert columns == ["Server-ID", "Policy", "State", "Ready", "Reason", "Age", "Message"]
    wide = [c["name"] for c in version["additionalPrinterColumns"] if c.get("priority", 0) > 0]
    assert wide == ["Message"]  # only with -o wide: messages are long


@pytest.mark.parametrize(
    ("path", "model"),
    [
        (("spec",), VirtualServerSpec),
        (("status",), VirtualServerStatus),
        (("status", "server"), ServerObservation),
        (("status", "deletion"), DeletionProgress),
        (("status", "conditions", "[]"), Condition),
    ],
)
def test_fields_agree(
    schema: dict[str, Any], path: tuple[str, ...], model: type[BaseModel]
) -> None:
    node = schema
    for part in path:
        node = node["items"] if part == "[]" else node["properties"][part]
    assert set(node["properties"]) == aliases(model)
    required = {f.alias or n for n, f in model.model_fields.items() if f.is_required()}
    assert set(node.get("required", [])) == required


def test_spec_constraints_agree(schema: dict[str, Any]) -> None:
    spec = schema["properties"]["spec"]["properties"]
    assert spec["serverId"]["pattern"] == UUID_PATTERN
    assert spec["region"]["pattern"] == REGION_PATTERN
    assert spec["deletionPolicy"]["enum"] == [p.value for p in DeletionPolicy]
    assert spec["deletionPolicy"]["default"] == DeletionPolicy.DELETE.value
    assert VirtualServerSpec.model_fields["deletion_policy"].default is DeletionPolicy.DELETE
    rules = [v["rule"] for v in spec["serverId"]["x-kubernetes-validations"]]
    # immutable, and lower case only (the shared-server guard's field selector is exact); the
    # model reads any spelling of an older object in the same canonical lower case
    assert rules == ["self == oldSelf", "self == self.lowerAscii()"]
    upper = "2A9BE312-5D4B-4BC8-B2AE-35100FA9241F"
    assert VirtualServerSpec.model_validate({"serverId": upper}).server_id == upper.lower()
    assert schema["properties"]["spec"]["properties"]["serverId"]["pattern"] == UUID_PATTERN


def test_every_field_is_described_for_kubectl_explain(schema: dict[str, Any]) -> None:
    missing = [n for n in walk(schema["properties"]["spec"]) if not n.get("description")]
    missing += [n for n in walk(schema["properties"]["status"]) if not n.get("description")]
    assert not missing


def test_uuid_pattern_accepts_uuids_only() -> None:
    assert re.match(UUID_PATTERN, "2a9be312-5d4b-4bc8-b2ae-35100fa9241f")
    assert not re.match(UUID_PATTERN, "2a9be312-5d4b-4bc8-b2ae-35100fa9241")
    assert not re.match(UUID_PATTERN, "../../etc/passwd")


ACCOUNT_CRD_PATH = REPO / "crds" / "scpaccounts.virtualserver.scp.dev.yaml"


def test_the_account_model_and_crd_agree_field_by_field() -> None:
    from scp_operator import accounts

    crd = yaml.safe_load(ACCOUNT_CRD_PATH.read_text())
    assert crd["spec"]["scope"] == "Cluster"
    assert crd["spec"]["names"]["kind"] == accounts.KIND
    assert crd["spec"]["names"]["plural"] == accounts.GROUP_PLURAL
    (version,) = crd["spec"]["versions"]
    assert version["name"] == constants.VERSION
    spec = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    assert set(spec["properties"]) == aliases(accounts.AccountSpec)
    ref = spec["properties"]["credentialsSecretRef"]
    assert set(ref["properties"]) == aliases(accounts.SecretRef)
    for key, field in (("accessKeyKey", "access_key_key"), ("secretKeyKey", "secret_key_key")):
        assert ref["properties"][key]["default"] == accounts.SecretRef.model_fields[field].default
    selector = spec["properties"]["namespaceSelector"]
    assert set(selector["properties"]) == aliases(accounts.NamespaceSelector)
    requirement = selector["properties"]["matchExpressions"]["items"]
    assert set(requirement["properties"]) == aliases(accounts.Requirement)
    assert spec["properties"]["region"]["pattern"] == REGION_PATTERN
    assert (
        spec["properties"]["region"]["default"]
        == accounts.AccountSpec.model_fields["region"].default
    )


def test_account_ref_patterns_agree(schema: dict[str, Any]) -> None:
    from scp_operator import accounts

    node = schema["properties"]["spec"]["properties"]["accountRef"]
    assert node["pattern"] == accounts.NAME_PATTERN
    field = VirtualServerSpec.model_fields["account_ref"]
    assert any(getattr(m, "pattern", None) == accounts.NAME_PATTERN for m in field.metadata)
