"""Two MAAS regions for the tests, in the two shapes a lab has them.

`ha_regions`: ONE MAAS served on two ports (two region controllers of one installation: one
database, so one state and one API key), each port behind its own fault proxy so a test can
take one region down (`region_a.refuse_connections()`) or drop a request there, and see which
region each request reached (`region_a.records()`).

`two_installations`: two separate simulators (two MAAS installations, each with its own
machines, users and keys): `sepia` has smithi001-002, `octo` mira001-002 and qa-box (tagged
mira), each machine
backed by a loopback sshd. `.section()` is the `maas:` section in the `regions:` form.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.fixtures_provisioner import Lab
from teuthology_maas.config import MaasConfig
from teuthology_maas.endpoint import forget_endpoints
from teuthology_maas.simulator import ServerHandle
from teuthology_maas.testing.faultproxy import FaultProxy

# Fast polling and short bounds: every wait in these tests is seconds at most.
QUICK = {
    "poll_interval": 0.1,
    "poll_min_interval": 0.02,
    "http_timeout": 5,
    "deploy_timeout": 20.0,
    "release_timeout": 20.0,
    "abort_timeout": 10.0,
    "ssh_timeout": 10.0,
    "lookup_retries": 1,
}


@dataclass
class HaRegions:
    """One simulated MAAS reachable through two region URLs, A and B."""

    lab: Lab
    second: ServerHandle  # the same simulator served on another port
    region_a: FaultProxy
    region_b: FaultProxy

    @property
    def url_a(self) -> str:
        return self.region_a.url_for(self.lab.handle.url)

    @property
    def url_b(self) -> str:
        return self.region_b.url_for(self.second.url)

    def config(self, **overrides: Any) -> MaasConfig:
        """The lab's config with `api_url: [A, B]`."""
        return self.lab.reconfigured(**{**QUICK, "api_url": [self.url_a, self.url_b],
                                        **overrides})  # fmt: skip

    def posts(self, proxy: FaultProxy, op: str) -> int:
        """How many POSTs of `op` reached the simulator through `proxy`."""
        return sum(1 for r in proxy.records(method="POST", op=op) if r.forwarded)


@pytest.fixture
def ha_regions(lab_factory: Callable[..., Lab]) -> Iterator[Callable[..., HaRegions]]:
    """`ha_regions(machines=..., timings=...)`: a lab (see `lab_factory`) behind two region
    URLs."""
    made: list[HaRegions] = []

    def make(**lab_options: Any) -> HaRegions:
        lab = lab_factory(**lab_options)
        second = ServerHandle(lab.sim)
        region_a = FaultProxy.for_url(lab.handle.url).start()
        region_b = FaultProxy.for_url(second.url).start()
        regions = HaRegions(lab, second, region_a, region_b)
        made.append(regions)
        return regions

    yield make
    forget_endpoints()
    for regions in made:
        regions.region_a.stop()
        regions.region_b.stop()
        regions.second.stop()


@dataclass
class TwoInstallations:
    """Two separate MAAS installations: `sepia` (smithi) and `octo` (mira)."""

    sepia: Lab
    octo: Lab
    keys: dict[str, str] = field(default_factory=dict)  # region -> API key to configure

    def region(self, name: str, **overrides: Any) -> dict[str, Any]:
        lab = self.sepia if name == "sepia" else self.octo
        return {
            "api_url": lab.handle.url,
            "api_key": self.keys.get(name, lab.handle.api_key),
            "machine_types": ["smithi" if name == "sepia" else "mira"],
            **lab._ssh_overrides(),
            **overrides,
        }

    def section(self, **top: Any) -> dict[str, Any]:
        """The `maas:` section, regions form."""
        return {
            **QUICK,
            "regions": {"sepia": self.region("sepia"), "octo": self.region("octo")},
            **top,
        }

    def config(self, **top: Any) -> MaasConfig:
        return MaasConfig.from_mapping(self.section(**top))


@pytest.fixture
def two_installations(lab_factory: Callable[..., Lab]) -> Iterator[TwoInstallations]:
    sepia = lab_factory([{"hostname": "smithi001"}, {"hostname": "smithi002"}])
    # qa-box: a mira whose name does not say so (found by asking each region)
    octo = lab_factory(
        [{"hostname": "mira001"}, {"hostname": "mira002"}, {"hostname": "qa-box", "tags": ["mira"]}]
    )
    yield TwoInstallations(sepia, octo)
    forget_endpoints()
