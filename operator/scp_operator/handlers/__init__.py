"""Kopf's entry module: ``kopf run --module scp_operator.handlers`` (see ``scp_operator.cli``).

Importing this package imports each handler module, which registers its handlers with Kopf:

- :mod:`.startup`: every Kopf option with its reason, the settings, the Lease, the runtime
  (startup and cleanup hooks);
- :mod:`.login`: Kopf's login, over a connection pool of bounded size;
- :mod:`.observation`: read a server for ``Ready`` at creation, on resume and on spec changes;
- :mod:`.resync`: the periodic re-read of every object, one loop per process (not a handler);
- :mod:`.virtualservers`: the Orphan fast path, delete a server
  (with :mod:`.facts`, the reads each deletion decision rests on);
- :mod:`.crd`: the CRD cascade;
- :mod:`.accounts`: an ScpAccount changed;
- :mod:`.probes`: what the liveness endpoint reports (SCP's last answer, the keys' state).

Status and events are written by :mod:`scp_operator.reporting`, decisions made by
:mod:`scp_operator.decision`; nothing here decides or writes by itself.
"""

from scp_operator.handlers.accounts import on_account_change
from scp_operator.handlers.crd import release_on_crd_deletion
from scp_operator.handlers.login import bounded_session
from scp_operator.handlers.observation import observe
from scp_operator.handlers.probes import credentials_probe, scp_probe
from scp_operator.handlers.startup import close, configure
from scp_operator.handlers.virtualservers import (
    delete_server,
    release_orphans,
    remove_finalizer_if_orphan,
)

__all__ = [
    "bounded_session",
    "close",
    "configure",
    "credentials_probe",
    "delete_server",
    "observe",
    "on_account_change",
    "release_on_crd_deletion",
    "release_orphans",
    "remove_finalizer_if_orphan",
    "scp_probe",
]
