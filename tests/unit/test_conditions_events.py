"""Conditions keep their order and transition times; warnings are not repeated."""

from typing import Any

import pytest

from scp_operator import conditions, events


def test_transition_time_moves_only_when_status_changes() -> None:
    c = conditions.set_condition(
        None, type="Deleting", status="True", reason="Conflict", message="m", generation=1, now="T1"
    )
    c = conditions.set_condition(
        c,
        type="Deleting",
        status="True",
        reason="Unauthorized",
        message="m2",
        generation=1,
        now="T2",
    )
    assert c[0]["lastTransitionTime"] == "T1"
    assert c[0]["reason"] == "Unauthorized"
    c = conditions.set_condition(
        c,
        type="Deleting",
        status="False",
        reason="DeleteAccepted",
        message="m3",
        generation=1,
        now="T3",
    )
    assert c[0]["lastTransitionTime"] == "T3"


def test_ready_comes_before_deleting_so_the_reason_column_shows_deletion() -> None:
    c = conditions.set_condition(
        None,
        type="Deleting",
        status="True",
        reason="Conflict",
        message="",
        generation=None,
        now="T",
    )
    c = conditions.set_condition(
        c, type="Ready", status="True", reason="ServerFound", message="", generation=None, now="T"
    )
    assert [x["type"] for x in c] == ["Ready", "Deleting"]
    assert "observedGeneration" not in c[0]


def test_repeated_warning_is_posted_once_per_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    posted: list[dict[str, Any]] = []
    monkeypatch.setattr(events.kopf, "event", lambda body, **kw: posted.append(kw))
    memo: dict[str, Any] = {}
    now = [100.0]

    def post(reason: str, message: str = "m") -> bool:
        return events.post(
            {},
            memo,
            warning=True,
            reason=reason,
            message=message,
            repeat_interval=900,
            clock=lambda: now[0],
        )

    assert post("Conflict")
    assert not post("Conflict")
    now[0] += 899
    assert not post("Conflict")
    now[0] += 2
    assert post("Conflict")
    assert post("Unauthorized")
    assert post("Unauthorized", "other message")
    assert [p["reason"] for p in posted] == ["Conflict", "Conflict", "Unauthorized", "Unauthorized"]
    assert posted[0]["type"] == "Warning"
