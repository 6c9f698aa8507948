"""The few Kubernetes reads the operator makes itself (Kopf does the rest).

Only one: the VirtualServer CRD, read right before every DELETE. When a CRD is deleted, the API
server deletes every object of it; those deletions must not delete cloud servers (the owner
removed a type, not a fleet), so the handler has to know — authoritatively, not from a watch
that may lag — whether the CRD is going.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from scp_operator.constants import CRD_NAME
from scp_operator.decision import CrdState

logger = logging.getLogger(__name__)


class CrdReader:
    """Reads the CRD's state with the official ``kubernetes`` client, in a worker thread."""

    def __init__(self, timeout: float = 10.0) -> None:
        self._timeout = timeout
        self._api: Any = None
        self._lock = threading.Lock()

    def _client(self) -> Any:
        with self._lock:
            if self._api is None:
                import kubernetes  # heavy; imported when first needed

                config = kubernetes.client.Configuration()
                try:
                    kubernetes.config.load_incluster_config(  # type: ignore[no-untyped-call]
                        client_configuration=config
                    )
                except kubernetes.config.ConfigException:
                    kubernetes.config.load_kube_config(  # type: ignore[no-untyped-call]
                        client_configuration=config
                    )
                api_client = kubernetes.client.ApiClient(config)
                self._api = kubernetes.client.ApiextensionsV1Api(api_client)
            return self._api

    def _read(self) -> CrdState:
        from kubernetes.client.exceptions import ApiException

        try:
            crd = self._client().read_custom_resource_definition(
                CRD_NAME, _request_timeout=self._timeout
            )
        except ApiException as exc:
            if exc.status == 404:
                return CrdState.GONE
            logger.warning("Cannot read CRD %s: HTTP %s", CRD_NAME, exc.status)
            return CrdState.UNKNOWN
        except Exception as exc:  # any failure means "unknown", which holds the object
            logger.warning("Cannot read CRD %s: %s", CRD_NAME, type(exc).__name__)
            return CrdState.UNKNOWN
        return CrdState.TERMINATING if crd.metadata.deletion_timestamp else CrdState.PRESENT

    async def state(self) -> CrdState:
        """The CRD's state now."""
        return await asyncio.to_thread(self._read)
