"""Simulator step times for runs that want many whole deployments in little real time.

At FAST_SCALE simulated seconds per real second, a deployment (FAST_TIMINGS["deploying"]) takes
about 0.15 s of real time while every asynchronous step still keeps the order and relative
length it has in MAAS. Used by the provisioner and reliability fixtures and by bench/soak.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

# Simulated seconds per asynchronous step (keys of simulator.Timings).
FAST_TIMINGS: Mapping[str, float] = MappingProxyType(
    {
        "deploying": 30.0,
        "releasing": 6.0,
        "disk_erasing": 12.0,
        "disk_erasing_quick": 8.0,
        "disk_erasing_secure": 10.0,
        "aborting": 4.0,
        "power": 1.0,
        "bmc_failure": 6.0,
    }
)
FAST_SCALE = 200.0
