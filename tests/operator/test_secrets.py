"""The secret key never appears in logs, events or status — on success, on errors, anywhere."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from scp_emulator.server import EmulatorServer
from scp_testenv import eventually
from tests.operator.conftest import running_operator
from tests.operator.kube import condition, create, delete, obj

pytestmark = pytest.mark.operator

SECRET = "S3CRET-never-print-me-7f3a"
WRONG = "WRONG-S3CRET-also-never-9b1c"


async def test_secret_key_never_leaks_on_any_path(
    k8s: Any,
    emulator: EmulatorServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    posted: list[dict[str, Any]],
) -> None:
    caplog.set_level(logging.DEBUG)
    emulator.state.set_credential(access_key="LEAKTEST", secret_key=SECRET)
    ok = emulator.state.add_server(name="ok").id
    locked = emulator.state.add_server(name="locked", locked=True).id
    down = emulator.state.add_server(name="down").id
    emulator.state.add_fault(method="DELETE", path_regex=down, kind="reset", times=None)
    async with running_operator(
        monkeypatch, emulator, SCP_ACCESS_KEY="LEAKTEST", SCP_SECRET_KEY=SECRET
    ):
        for name, sid in (("ok", ok), ("locked", locked), ("down", down)):
            await create(k8s, name, sid)
            await delete(k8s, name)
        await eventually(lambda: obj(k8s, "ok") is None, what="202 path")
        await eventually(lambda: condition(k8s, "locked", "Deleting"), what="409 path")
        await eventually(
            lambda: (condition(k8s, "down", "Deleting") or {}).get("reason") == "ScpUnavailable",
            what="connection reset path",
        )
    # and the 401 path, with a wrong secret
    bad = emulator.state.add_server(name="bad").id
    async with running_operator(
        monkeypatch, emulator, SCP_ACCESS_KEY="LEAKTEST", SCP_SECRET_KEY=WRONG
    ):
        await create(k8s, "bad", bad)
        await delete(k8s, "bad")
        await eventually(
            lambda: (condition(k8s, "bad", "Deleting") or {}).get("reason") == "Unauthorized",
            what="401 path",
        )
    logs = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    statuses = json.dumps([obj(k8s, n) for n in ("locked", "down", "bad")])
    events = json.dumps(posted)
    assert logs
    assert events != "[]"
    for secret in (SECRET, WRONG):
        assert secret not in logs
        assert secret not in statuses
        assert secret not in events
