"""teuthology-maas: the Canonical MAAS provisioner for Ceph's teuthology.

Importing this package is cheap on purpose (it runs at every interpreter start-up through the
activation hook): public names are resolved lazily, on first use.
"""

from __future__ import annotations

import importlib

# Not `from typing import TYPE_CHECKING`: importing typing costs every interpreter start-up ~10 ms
# once the activation hook imports this package.
TYPE_CHECKING = False

__version__ = "0.1.0"

_EXPORTS = {
    "MaasProvisioner": "teuthology_maas.node.provisioner",
    "Endpoint": "teuthology_maas.endpoint",
    "endpoint_for": "teuthology_maas.endpoint",
    "MaasConfig": "teuthology_maas.config",
    "MaasClient": "teuthology_maas.maas.client",
    "Machine": "teuthology_maas.models",
    "NodeStatus": "teuthology_maas.models",
}

__all__ = [
    "Endpoint",
    "MaasClient",
    "MaasConfig",
    "MaasProvisioner",
    "Machine",
    "NodeStatus",
    "__version__",
    "endpoint_for",
]

if TYPE_CHECKING:
    from typing import Any

    from teuthology_maas.config import MaasConfig
    from teuthology_maas.endpoint import Endpoint, endpoint_for
    from teuthology_maas.maas.client import MaasClient
    from teuthology_maas.models import Machine, NodeStatus
    from teuthology_maas.node.provisioner import MaasProvisioner


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'teuthology_maas' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
