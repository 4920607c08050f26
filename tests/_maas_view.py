"""What an end-to-end test asks MAAS (the simulator) about its machines."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests._waiting import wait_until


class MaasView:
    """Mixed into a test lab that has `maas` (a maas_sim_factory handle) and `hostnames`."""

    maas: Any
    hostnames: list[str]

    @property
    def sim(self) -> Any:
        return self.maas.sim

    def machine(self, hostname: str) -> dict[str, Any]:
        return dict(self.sim.machine(hostname))

    def status(self, hostname: str) -> str:
        return str(self.machine(hostname)["status_name"])

    def statuses(self) -> dict[str, str]:
        return {h: self.status(h) for h in self.hostnames}

    def wait_for(self, predicate: Callable[[], Any], what: str, timeout: float = 60.0) -> Any:
        """Bounded wait for the simulator (or the lab) to get somewhere; returns what
        `predicate` returned."""
        return wait_until(
            predicate,
            timeout=timeout,
            failure=lambda: f"timed out waiting for {what}; MAAS shows {self.statuses()}",
            interval=0.05,
        )
