"""A MAAS 2.0 region API simulator: stateful, time-driven, with fault injection.

Public API (see docs/simulator.md):

    sim = Simulator(Inventory.generated(6, "smithi"), clock=ScaledClock(1000))
    with sim.serve() as server:
        server.api_url, sim.api_key("teuthology"), sim.machine("smithi001"), sim.faults.add(...)
"""

from teuthology_maas.simulator.app import RequestRecord
from teuthology_maas.simulator.clock import Clock, ManualClock, ScaledClock
from teuthology_maas.simulator.core import Simulator
from teuthology_maas.simulator.faults import Fault, FaultSet
from teuthology_maas.simulator.inventory import Inventory, InventoryError, Timings
from teuthology_maas.simulator.server import ServerHandle

__all__ = [
    "Clock",
    "Fault",
    "FaultSet",
    "Inventory",
    "InventoryError",
    "ManualClock",
    "RequestRecord",
    "ScaledClock",
    "ServerHandle",
    "Simulator",
    "Timings",
]
