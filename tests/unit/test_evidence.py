"""Facts read at decision time, turned into the table's inputs (issue 9's defects 1, 3, 9, 13)."""

from __future__ import annotations

from typing import Any

import pytest

from scp_operator import scope
from scp_operator.constants import FINALIZER, PROTECTION_ANNOTATION
from scp_operator.decision import Action, Situation, decide
from scp_operator.evidence import Where, blocking_sharers, canonical_id, gone_doubt
from scp_operator.handlers.virtualservers import remove_finalizer_if_orphan
from scp_operator.model import VirtualServerSpec, protection
from scp_operator.scp.outcomes import Outcome, Verdict

SID = "2a9be312-5d4b-4bc8-b2ae-35100fa9241f"


def obj(
    uid: str,
    *,
    ns: str = "ns1",
    terminating: bool = False,
    finalizer: bool = True,
    policy: str | None = None,
    protect: str | None = None,
    server_id: str = SID,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"uid": uid, "namespace": ns, "name": uid}
    if terminating:
        meta["deletionTimestamp"] = "2026-12-03T00:00:00Z"
    if finalizer:
        meta["finalizers"] = [FINALIZER, "other.example/keep"]
    if protect is not None:
        meta["annotations"] = {PROTECTION_ANNOTATION: protect}
    spec: dict[str, Any] = {"serverId": server_id}
    if policy:
        spec["deletionPolicy"] = policy
    return {"metadata": meta, "spec": spec}


def test_a_terminating_protected_sharer_still_blocks() -> None:
    """Defect 1: A (protected) and B name one server; A is held terminating; B must not delete."""
    listed = [obj("a", terminating=True, protect="true"), obj("b", terminating=True)]
    assert blocking_sharers("b", SID, listed) == ("ns1/a",)


def test_a_terminating_orphan_sharer_blocks_and_a_terminating_delete_sharer_does_not() -> None:
    listed = [
        obj("orphan", terminating=True, policy="Orphan"),
        obj("going", terminating=True, policy="Delete"),
        obj("me", terminating=True),
    ]
    assert blocking_sharers("me", SID, listed) == ("ns1/orphan",)


def test_a_live_sharer_in_another_namespace_blocks_and_a_released_one_does_not() -> None:
    listed = [
        obj("live", ns="team-b"),
        obj("released", terminating=True, finalizer=False, protect="true"),
    ]
    assert blocking_sharers("me", SID, listed) == ("team-b/live",)


def test_sharers_are_matched_case_insensitively_and_other_servers_ignored() -> None:
    other = "3a9be312-5d4b-4bc8-b2ae-35100fa9241f"
    listed = [obj("upper", server_id=SID.upper()), obj("other", server_id=other)]
    assert blocking_sharers("me", SID, listed) == ("ns1/upper",)
    assert canonical_id(SID.upper()) == SID


def test_an_upper_case_server_id_is_read_in_canonical_lower_case() -> None:
    """Defect 3: an upper-case UUID was sent as written, and SCP may answer 404 for it."""
    assert VirtualServerSpec.model_validate({"serverId": SID.upper()}).server_id == SID


@pytest.mark.parametrize("value", ["yes", "1", "on", "TRUE", "Yes", " true ", "enabled", "ja"])
def test_every_protection_value_that_is_not_false_protects(value: str) -> None:
    """Defect 9: "yes", "1" and "on" silently protected nothing."""
    shield = protection({PROTECTION_ANNOTATION: value})
    assert shield.protected
    d = decide(Situation(SID, protected=shield.protected, protection_note=shield.note))
    assert d.action is Action.HOLD
    assert d.reason == "DeletionProtected"
    if value.strip().lower() not in ("true", "yes", "1", "on"):
        assert "not understood" in d.message


@pytest.mark.parametrize("value", ["false", "no", "0", "off", "", "False"])
def test_false_values_do_not_protect(value: str) -> None:
    assert not protection({PROTECTION_ANNOTATION: value}).protected
    assert not protection({}).protected
    assert not protection(None).protected


HERE = Where("https://virtualserver.kr-west1.e.samsungsdscloud.com", "")


def test_a_404_from_another_endpoint_is_not_evidence() -> None:
    """Defect 3: SCP_ENDPOINT/SCP_REGION changed, the new endpoint never had the server."""
    doubt = gone_doubt(
        Where("https://virtualserver.kr-east1.e.samsungsdscloud.com", "acc-1"), HERE, ("acc-1",)
    )
    assert doubt is not None
    assert doubt.reason == "EndpointChanged"
    assert "kr-east1" in doubt.message
    assert "kr-west1" in doubt.message
    d = decide(Situation(SID, outcome=Outcome(Verdict.GONE, 404), gone_doubt=doubt))
    assert d.action is Action.HOLD
    assert d.warning
    assert "Orphan" in d.message


def test_a_404_from_a_key_of_another_account_is_not_evidence() -> None:
    """Defect 3: a key of another account sees every server of this one as 404."""
    seen = Where(HERE.endpoint, "acc-1")
    other_key = gone_doubt(seen, HERE, ("acc-2",))
    assert other_key is not None
    assert other_key.reason == "AccountChanged"
    assert gone_doubt(seen, Where(HERE.endpoint, "acc-2"), None) is not None
    assert gone_doubt(seen, Where(HERE.endpoint, "acc-1"), None) is None
    assert gone_doubt(seen, HERE, ("acc-2", "acc-1")) is None
    assert gone_doubt(seen, HERE, ()) is None  # sees nothing: the account's last server
    unproven = gone_doubt(seen, HERE, None)
    assert unproven is not None
    assert "SCP_ACCOUNT_ID" in unproven.message


def test_a_404_for_a_server_never_seen_or_seen_here_is_evidence() -> None:
    assert gone_doubt(None, HERE) is None
    assert gone_doubt(Where(HERE.endpoint, ""), HERE) is None
    d = decide(Situation(SID, outcome=Outcome(Verdict.GONE, 404)))
    assert d.action is Action.RELEASE


def test_the_orphan_fast_path_keeps_the_finalizer_when_the_policy_was_reverted() -> None:
    """Defect 13: after a 422 Kopf re-applies the patch function to a fresh body; an ArgoCD
    self-heal may have set the policy back to Delete meanwhile."""
    reverted: dict[str, Any] = obj("a", terminating=True, policy="Delete")
    remove_finalizer_if_orphan(reverted)  # type: ignore[arg-type]
    assert FINALIZER in reverted["metadata"]["finalizers"]
    orphan: dict[str, Any] = obj("a", terminating=True, policy="Orphan")
    remove_finalizer_if_orphan(orphan)  # type: ignore[arg-type]
    assert orphan["metadata"]["finalizers"] == ["other.example/keep"]


def test_the_watched_namespaces_are_read_from_kopf_flags() -> None:
    args = ["--verbose", "--namespace=b", "-n", "a", "--namespace", "c", "--standalone"]
    assert scope.from_kopf_args(args, environ={}) == ("a", "b", "c")
    assert scope.from_kopf_args(["--all-namespaces"], environ={}) == ()


async def test_the_cascade_releases_an_object_with_a_legacy_policy_value() -> None:
    """Defect 9: one object with a policy the model does not know aborted the whole cascade."""
    from scp_operator import cascade

    released: list[str] = []

    class Crd:
        async def release(self, ns: str, name: str, finalizers: list[str], ours: str) -> bool:
            released.append(name)
            return True

    class Blocked:
        def released(self, uid: str) -> None:
            pass

    class FakeRuntime:
        crd = Crd()
        blocked = Blocked()

    sent: list[str] = []
    original = cascade._event
    cascade._event = lambda body, type_, reason, message: sent.append(reason)  # type: ignore[assignment]
    try:
        for item in (obj("legacy", policy="Retain"), obj("broken", server_id="not-a-uuid")):
            assert await cascade._release_one(FakeRuntime(), item)  # type: ignore[arg-type]
    finally:
        cascade._event = original  # type: ignore[assignment]
    assert released == ["legacy", "broken"]
    assert sent == ["CrdDeleted", "CrdDeleted"]


def test_the_cascade_keeps_to_the_namespaces_kopf_serves_even_with_patterns() -> None:
    assert scope.is_exact(["team-a", "team-b"])
    assert not scope.is_exact(["team-*"])
    assert scope.serves("team-a", ["team-*", "!team-x"])
    assert not scope.serves("team-x", ["team-*", "!team-x"])
    assert not scope.serves("other", ["team-*"])
    assert scope.serves("other", ["!team-x"])
    assert scope.serves("anything", [])
