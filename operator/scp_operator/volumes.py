"""Which block storage outlives a deleted server, in words for an event.

SCP terminates an attached volume with its server only where the volume's
``delete_on_termination`` flag is set (scp-api.md); every other volume stays, and is billed, after
the server is gone. Nobody looks at a deleted server's disks, so after SCP accepts a deletion the
operator names them in a ``VolumesRetained`` Warning event. The volumes are the ones SCP listed
in the last read of the server (``status.server.volumes``: at creation, every periodic re-read,
and every read the delete handler makes), not a read made for the event: one more SCP call per
deleted object would double a mass deletion's SCP traffic for a report.

Pure: no I/O, so every case is a unit test.
"""

from __future__ import annotations

from collections.abc import Sequence

from scp_operator.model import VolumeObservation

#: At most this many ids are named in one event; the rest are counted.
NAMED = 10


def retained(volumes: Sequence[VolumeObservation]) -> list[str]:
    """Ids of the volumes SCP keeps: flag false, or not given (kept unless SCP says otherwise)."""
    return [v.id for v in volumes if v.delete_on_termination is not True]


def report(server_id: str, volumes: Sequence[VolumeObservation] | None) -> tuple[str, str] | None:
    """``(reason, message)`` for the event after SCP accepted the deletion; None: nothing stays.

    ``volumes`` None means the server's volumes were never read: say that, rather than nothing,
    because silence would read as "nothing left behind".
    """
    if volumes is None:
        return (
            "VolumesUnknown",
            f"SCP accepted the deletion of server {server_id}, but its volumes were never read: "
            "check SCP for block storage left behind (volumes without delete_on_termination "
            "outlive the server and are still billed)",
        )
    kept = retained(volumes)
    if not kept:
        return None
    named = ", ".join(kept[:NAMED]) + (
        f" and {len(kept) - NAMED} more" if len(kept) > NAMED else ""
    )
    noun = "volume" if len(kept) == 1 else "volumes"
    return (
        "VolumesRetained",
        f"SCP accepted the deletion of server {server_id}; {len(kept)} block storage {noun} "
        f"without delete_on_termination stay in SCP and are still billed: {named}. Delete them "
        "in SCP if nobody needs them",
    )
