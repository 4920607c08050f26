"""A MAAS 2.0 region API simulator: stateful, time-driven, with fault injection.

Public API (see docs/simulator.md):

    sim = Simulator(Inventory.generated(6, "smithi"), clock=ScaledClock(1000))
    with sim.serve() as server:
        server.api_url, sim.api_key("teuthology"), sim.machine("smithi001"), sim.faults.add(...)

It needs Werkzeug, which a plain `pip install teuthology-maas` (a teuthology worker) does not
pull: install `teuthology-maas[simulator]`. Importing it without says so (MissingExtra).
"""

from teuthology_maas.errors import MissingExtra

try:
    import werkzeug  # noqa: F401 - only asked whether it is there
except ModuleNotFoundError:
    raise MissingExtra(
        "the MAAS simulator needs Werkzeug, which is not installed; install the simulator "
        "extra: pip install 'teuthology-maas[simulator]'"
    ) from None

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
