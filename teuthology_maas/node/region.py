"""Which MAAS installation a node belongs to, when `maas: regions:` names several.

Known without asking MAAS (`MaasConfig.for_node`): the only region; the region of the node's
machine type when the caller knows it; the region whose machine type the hostname is made of
(`smithi001`). Otherwise every region is asked for the hostname (through its Endpoint's
coalesced lookups) and the one MAAS that has it is the node's. A region that cannot be asked
(down, wrong key) only matters when no other region has the node: its failure is then the
answer, naming the region.
"""

from __future__ import annotations

from teuthology_maas.config import MaasConfig
from teuthology_maas.endpoint import endpoint_for
from teuthology_maas.errors import (
    MaasAuthError,
    MaasError,
    MaasPermissionDenied,
    MaasUnavailable,
    MachineNotFound,
)

__all__ = ["node_region"]


def node_region(config: MaasConfig, hostname: str, machine_type: str | None = None) -> MaasConfig:
    """The config of the MAAS installation that provisions `hostname` (a short name)."""
    regions = config.region_configs
    if len(regions) == 1:
        return config
    known = config.for_node(hostname, machine_type)
    if known is not None:
        return known
    found: list[MaasConfig] = []
    failed: list[tuple[MaasConfig, MaasError]] = []
    for region in regions:
        try:
            if endpoint_for(region).lookup_hostname(hostname):
                found.append(region)
        except MaasError as exc:
            failed.append((region, exc))
    if len(found) == 1:
        return found[0]
    names = ", ".join(repr(r.region) for r in regions)
    if found:
        raise MachineNotFound(
            f"machine {hostname!r} is in more than one MAAS region: "
            f"{', '.join(repr(r.region) for r in found)}; expected it in one only (name its "
            "type's region, or remove the duplicate)",
            machine=hostname,
        )
    if failed:
        region, error = failed[0]
        kind = MaasAuthError if isinstance(error, MaasAuthError | MaasPermissionDenied) else (
            MaasUnavailable
        )
        raise kind(
            f"machine {hostname!r} was not found in the MAAS regions that answered, and "
            f"region {region.region!r} (types {', '.join(region.machine_types)}) could not be "
            f"asked: {error}",
            machine=hostname,
            http_status=error.http_status,
        ) from error
    raise MachineNotFound(
        f"no MAAS region has a machine with hostname {hostname!r} (asked regions {names}); "
        "check the name, or whether another MAAS user owns it",
        machine=hostname,
    )

