"""`deploy -m TYPE`: pick a free machine of a type, as teuthology-lock --lock-many would see it
free: Ready in MAAS, owned by nobody, not locked, and (when the config names a lock server)
not locked in paddles either."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from teuthology_maas.cli._common import Context
from teuthology_maas.cli._inventory import check_types
from teuthology_maas.cli._paddles import paddles_nodes
from teuthology_maas.errors import ConfigError, NoMachineAvailable
from teuthology_maas.models import Machine, NodeStatus
from teuthology_maas.type_match import type_of

if TYPE_CHECKING:
    from teuthology_maas.config import MaasConfig
    from teuthology_maas.maas.client import MaasClient


def pick_free(ctx: Context, cfg: MaasConfig, client: MaasClient, kind: str) -> Machine:
    """The first free machine of type `kind` by hostname; NoMachineAvailable (saying what the
    type's machines are doing instead) when there is none, UsageError for an unknown type."""
    machines = client.list_machines()
    check_types([kind], machines, cfg.machine_types)
    of_type = sorted(
        (m for m in machines if type_of(m, [kind], cfg.type_match) == kind),
        key=lambda m: m.hostname,
    )
    free = [
        m for m in of_type if m.status == NodeStatus.READY and not m.owner and not m.locked
    ]
    held: list[str] = []
    try:
        locks = paddles_nodes(ctx, None, [kind])
    except ConfigError:  # no lock_server in the config: MAAS's view is all there is
        locks = {}
    for machine in list(free):
        node = locks.get(machine.hostname)
        if node is not None and node.locked:
            free.remove(machine)
            held.append(machine.hostname)
    if free:
        return free[0]
    busy = Counter(m.status_name for m in of_type if m.status != NodeStatus.READY)
    doing = [f"{n} {status}" for status, n in sorted(busy.items())]
    if held:
        doing.append(f"{len(held)} Ready but locked in paddles")
    owned = sum(1 for m in of_type if m.status == NodeStatus.READY and (m.owner or m.locked))
    if owned:
        doing.append(f"{owned} Ready but owned or locked in MAAS")
    raise NoMachineAvailable(
        f"no free {kind} machine: {len(of_type)} {kind} machine(s) visible to this API key"
        + (f" ({', '.join(doing)})" if doing else "")
    )
