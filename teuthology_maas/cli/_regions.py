"""Running a command's work once per MAAS installation (`maas: regions:`).

Every command that looks at the fleet (doctor, machines, reconcile, inventory) does its work
per region with that region's config: `each_region(cfg, work)` calls `work(region_config)`
for each, and a region that cannot be talked to (down, its key refused, a timeout) fails only
its own machine types: its error is collected as a `RegionFailure` naming the region, its URL
and its types, and the other regions' results stand. The command reports the failures
(`report_failures`) and exits with `ExitCode.UNREACHABLE` (5) when there are any.

The flat form is one region: its errors propagate unchanged, as before regions existed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from teuthology_maas.cli._common import Context, error_payload
from teuthology_maas.errors import ConfigError, MaasError

if TYPE_CHECKING:
    from teuthology_maas.config import MaasConfig

__all__ = [
    "RegionFailure",
    "RegionResults",
    "each_region",
    "regions_for",
    "report_failures",
    "several_regions",
]


@dataclass(frozen=True)
class RegionFailure:
    """A region whose work failed: which one, where, which types it leaves unchecked."""

    region: str
    api_url: str
    machine_types: tuple[str, ...]
    error: MaasError

    def describe(self) -> str:
        kinds = ", ".join(self.machine_types) or "none"
        return (
            f"region {self.region!r} ({self.api_url}; machine types: {kinds}): "
            f"{type(self.error).__name__}: {self.error}"
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "region": self.region,
            "api_url": self.api_url,
            "machine_types": list(self.machine_types),
            **error_payload(self.error),
        }


@dataclass
class RegionResults[T]:
    """What each region's work returned, in config order, and the regions that failed."""

    done: list[tuple[MaasConfig, T]] = field(default_factory=list)
    failures: list[RegionFailure] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures


def several_regions(cfg: MaasConfig) -> bool:
    return len(cfg.region_configs) > 1


def regions_for(cfg: MaasConfig, wanted_types: Sequence[str] = ()) -> list[MaasConfig]:
    """The regions to visit: every one, or those provisioning a wanted type (a wanted type
    no region names, which MAAS may still know by tag or pool, means every region)."""
    regions = list(cfg.region_configs)
    if not wanted_types:
        return regions
    chosen = [r for r in regions if any(t in r.machine_types for t in wanted_types)]
    if any(cfg.for_type(t) is None for t in wanted_types):
        return regions
    return chosen


def each_region[T](
    cfg: MaasConfig,
    work: Callable[[MaasConfig], T],
    *,
    wanted_types: Sequence[str] = (),
) -> RegionResults[T]:
    """`work(region_config)` for each region to visit (see `regions_for`). With several
    regions a MaasError (other than a ConfigError) of one region becomes its RegionFailure;
    with one, it propagates."""
    results: RegionResults[T] = RegionResults()
    regions = regions_for(cfg, wanted_types)
    for region in regions:
        if not several_regions(cfg):
            results.done.append((region, work(region)))
            continue
        try:
            results.done.append((region, work(region)))
        except ConfigError:
            raise
        except MaasError as exc:
            results.failures.append(
                RegionFailure(region.region, region.api_url, region.machine_types, exc)
            )
    return results


def report_failures(ctx: Context, failures: Sequence[RegionFailure], *, what: str) -> None:
    """Say on stderr which regions failed and that `what` (their machines ...) is missing."""
    for failure in failures:
        ctx.err(f"teuthology-maas: {failure.describe()}; {what}")
