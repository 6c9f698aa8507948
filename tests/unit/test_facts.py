"""After a 409: when the delete handler reads the server again, and what it concludes."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from scp_operator.handlers import facts
from scp_operator.model import VirtualServerSpec
from scp_operator.scp.outcomes import Outcome, Verdict

SID = "2a9be312-5d4b-4bc8-b2ae-35100fa9241f"
ENDPOINT = "https://virtualserver.kr-west1.e.samsungsdscloud.com"


class Client:
    """Answers GET with a server (or an outage) and counts the reads."""

    def __init__(self, body: dict[str, Any] | None) -> None:
        self.body, self.reads = body, 0

    async def get_server(self, server_id: str, region: str | None) -> Outcome:
        self.reads += 1
        if self.body is None:
            return Outcome(Verdict.UNAVAILABLE, 503)
        return Outcome(Verdict.FOUND, 200, body=self.body)


class Target:
    def __init__(self, client: Client) -> None:
        self.client = client


def blocker(client: Client, status: dict[str, Any], retry: int) -> Any:
    spec = VirtualServerSpec.model_validate({"serverId": SID})
    return asyncio.run(facts.blocker(Target(client), spec, status, retry, ENDPOINT))  # type: ignore[arg-type]


@pytest.mark.parametrize(("retry", "reads"), [(0, 1), (1, 0), (2, 0), (3, 0), (4, 1), (8, 1)])
def test_the_server_is_read_on_the_first_attempt_and_every_fourth(retry: int, reads: int) -> None:
    client = Client({"locked": True, "volumes": []})
    seen, locked, _ = blocker(client, {"server": {"locked": False}}, retry)
    assert client.reads == reads
    # read: the fresh answer wins; not read: the last observation speaks
    assert locked is bool(reads)
    assert (seen is not None) is bool(reads)


def test_an_unknown_lock_state_is_always_read() -> None:
    client = Client({"locked": False, "auto_scaling_group_id": "asg-1"})
    seen, locked, auto_scaling = blocker(client, {}, retry=3)
    assert client.reads == 1
    assert seen is not None
    assert seen.endpoint == ENDPOINT
    assert (locked, auto_scaling) == (False, True)


def test_a_failed_read_falls_back_to_the_last_observation_or_unknown() -> None:
    assert blocker(Client(None), {"server": {"locked": True}}, retry=0)[1:] == (True, False)
    assert blocker(Client(None), {}, retry=0)[1:] == (None, False)
