"""Turning facts read at decision time into the decision table's inputs — pure functions.

Two questions decide whether a server may be deleted or an object released, and both are
answered here from facts the handler read right before deciding, never from a cache:

* **Who else names this server?** :func:`blocking_sharers` looks at the objects a field-selected
  LIST on the API server returned (``spec.serverId``, a CRD ``selectableField``) and keeps the
  ones that must keep the server alive.
* **Is a 404 evidence that the server is gone?** :func:`gone_doubt` compares where the server
  was last seen (recorded in ``status.server``) with where the 404 came from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from scp_operator.accounts import same_account
from scp_operator.constants import FINALIZER
from scp_operator.decision import Doubt
from scp_operator.model import DeletionPolicy, protection


def canonical_id(server_id: str) -> str:
    """SCP server ids are UUIDs: compared case-insensitively, sent in lower case."""
    return server_id.strip().lower()


def blocking_sharers(
    own_uid: str,
    server_id: str,
    listed: Iterable[Mapping[str, Any]],
    *,
    account_ref: str | None = None,
    account_id: str = "",
) -> tuple[str, ...]:
    """``namespace/name`` of every other object that keeps ``server_id`` alive.

    Only objects of the same SCP account count (one id in two accounts is two servers): the
    same ``accountRef``, or the same observed SCP account id (see
    :func:`scp_operator.accounts.same_account`). ``account_id`` is this object's account id as
    far as known (configured, else observed).

    Another object naming the server blocks its deletion unless it is itself on its way out
    with the same intent: terminating, policy ``Delete`` and not protected. A terminating object
    that no longer carries our finalizer has already let go of the server and blocks nothing.
    Ids are compared case-insensitively (and re-checked here: a field selector is exact, and a
    test double may ignore it).
    """
    wanted = canonical_id(server_id)
    found: set[str] = set()
    for item in listed:
        meta = item.get("metadata") or {}
        spec = item.get("spec") or {}
        if meta.get("uid") == own_uid:
            continue
        if canonical_id(str(spec.get("serverId") or "")) != wanted:
            continue
        seen = ((item.get("status") or {}).get("server") or {}).get("accountId")
        if not same_account(account_ref, account_id, spec.get("accountRef"), str(seen or "")):
            continue
        ref = f"{meta.get('namespace', '')}/{meta.get('name', '')}"
        if not meta.get("deletionTimestamp"):
            found.add(ref)  # live: it still needs the server
            continue
        if FINALIZER not in (meta.get("finalizers") or ()):
            continue  # already released: it no longer holds the server
        deletable = (
            spec.get("deletionPolicy", DeletionPolicy.DELETE.value) == DeletionPolicy.DELETE.value
            and not protection(meta.get("annotations")).protected
        )
        if not deletable:
            found.add(ref)  # terminating, but protected or keeping the server (Orphan)
    return tuple(sorted(found))


@dataclasses.dataclass(frozen=True)
class Where:
    """Where an answer about a server came from: the service's base URL and the SCP account."""

    endpoint: str
    account: str = ""


def gone_doubt(
    observed: Where | None,
    calling: Where,
    listed_accounts: tuple[str, ...] | None = None,
) -> Doubt | None:
    """Why a 404 from ``calling`` does not prove the server is gone, or None when it does.

    ``observed`` is where the server was last seen (None: never seen, nothing to contradict).
    The endpoint must match exactly; a changed ``spec.region``, ``SCP_REGION`` or
    ``SCP_ENDPOINT`` sends the question to a place that never had the server. The account must
    match too: ``calling.account`` is the configured ``SCP_ACCOUNT_ID`` when set; else
    ``listed_accounts`` (accounts of the servers the current key can list) must not show only
    other accounts, since a key of another account sees every server of this one as 404. A key
    that sees no server at all contradicts nothing (the last server of an account being deleted
    looks exactly like that), so only ``SCP_ACCOUNT_ID`` turns that case into proof.
    """
    if observed is None or not observed.endpoint:
        return None
    if observed.endpoint != calling.endpoint:
        return Doubt(
            "EndpointChanged",
            f"the server was last seen at {observed.endpoint} and this 404 came from "
            f"{calling.endpoint} (spec.region, SCP_REGION or SCP_ENDPOINT changed?); point the "
            "operator back at the server's endpoint",
        )
    if not observed.account:
        return None
    if calling.account:
        if calling.account == observed.account:
            return None
        return Doubt(
            "AccountChanged",
            f"the server belongs to SCP account {observed.account} and the operator now signs "
            f"for account {calling.account} (SCP_ACCOUNT_ID)",
        )
    if listed_accounts is None:
        return Doubt(
            "AccountUnproven",
            f"the server belongs to SCP account {observed.account} and the current key's "
            "account could not be checked; set SCP_ACCOUNT_ID to prove it",
        )
    if not listed_accounts or observed.account in listed_accounts:
        return None
    seen = ", ".join(sorted(set(listed_accounts)))
    return Doubt(
        "AccountChanged",
        f"the server belongs to SCP account {observed.account} while the current key sees "
        f"servers of {seen} (keys of another account?); set SCP_ACCOUNT_ID to prove the account",
    )
