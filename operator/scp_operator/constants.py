"""Fixed names of the VirtualServer API, shared by the CRD, the handlers and the tests.

They live in one module because a typo in any of them (a finalizer name, an annotation key)
silently changes which objects the operator holds or releases.
"""

from typing import Final

GROUP: Final = "virtualserver.scp.dev"
VERSION: Final = "v1alpha1"
KIND: Final = "VirtualServer"
PLURAL: Final = "virtualservers"
SHORT_NAME: Final = "scpvs"
CATEGORY: Final = "scp"
CRD_NAME: Final = f"{PLURAL}.{GROUP}"
API_VERSION: Final = f"{GROUP}/{VERSION}"

#: The finalizer that holds a VirtualServer until its cloud server is gone (or let go).
FINALIZER: Final = f"{GROUP}/delete-server"
#: Prefix of our annotations (Kopf's progress and diff-base live in ``status.kopf``; older
#: versions kept them in annotations under this prefix).
ANNOTATION_PREFIX: Final = GROUP
#: ``"true"`` refuses deletion of the cloud server while set.
PROTECTION_ANNOTATION: Final = f"{GROUP}/deletion-protection"
#: ``"true"`` lets one object's deletion past the blast-radius limit.
BYPASS_ANNOTATION: Final = f"{GROUP}/bypass-deletion-budget"
