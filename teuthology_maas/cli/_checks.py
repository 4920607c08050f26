"""What the doctor's checks share: the result of a check and what the checks learn as they go.

Each check returns CheckResult rows (OK / WARN / FAIL / SKIP) with a fix hint and never raises.
They run in order and later checks use what earlier ones learned, so an unreachable MAAS yields
one FAIL and SKIPs rather than a cascade of failures. The checks themselves live in
`_checks_maas` (configuration, API, key, version) and `_checks_lab` (machines, images,
templates, SSH key)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from teuthology_maas.models import Machine

if TYPE_CHECKING:
    from teuthology_maas.config import MaasConfig
    from teuthology_maas.maas.client import MaasClient

Verdict = Literal["OK", "WARN", "FAIL", "SKIP"]

# stands in for a missing SSH key when only the templates are being checked
PLACEHOLDER_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRvY3Rvci1wbGFjZWhvbGRlci1rZXktMDAwMDAwMDA= doctor"
)

# teuthology's own default when a job names no OS (teuthology/orchestra/opsys.py)
DEFAULT_OS: tuple[tuple[str, str], ...] = (("ubuntu", "22.04"),)
# Versions before 2.9 are not supported; up to 3.2 several list filters are single-valued.
MIN_SUPPORTED = (2, 9)
MIN_RECOMMENDED = (3, 3)


@dataclass(frozen=True)
class CheckResult:
    name: str
    verdict: Verdict
    detail: str
    hint: str = ""

    def as_json(self) -> dict[str, str]:
        return {"check": self.name, "status": self.verdict, "detail": self.detail,
                "hint": self.hint}


@dataclass
class DoctorState:
    """What the checks learn as they go."""

    config_path: str | None
    make_client: Callable[[MaasConfig], MaasClient]
    os_list: list[tuple[str, str]] = field(default_factory=list)
    cfg: MaasConfig | None = None
    client: MaasClient | None = None
    reachable: bool = False
    authenticated: bool = False
    version_info: Mapping[str, Any] | None = None
    machines: list[Machine] | None = None
    typed: dict[str, list[Machine]] = field(default_factory=dict)
