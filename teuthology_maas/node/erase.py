"""The one place that turns the configured erase mode into MAAS release parameters.

Every release the library makes (release(), create()'s clean-up, the CLI) goes through
`release_params()`, so an erase mode means the same thing everywhere.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from teuthology_maas.config import ERASE_MODES

# MAAS's built-in release script that erases disks (what erase/quick_erase/secure_erase run).
WIPE_DISKS_SCRIPT = "wipe-disks"
# A lab-provided MAAS release script for the Ceph-aware wipe. MAAS's quick erase (wipe-disks)
# runs wipefs and zeroes only the first and last 2 MiB of each disk, while BlueStore keeps copies
# of its label at 1, 10, 100 and 1000 GiB; a disk that still carries them can be mistaken for an
# OSD by the next job.
CEPH_WIPE_SCRIPT = "wipe-ceph-bluestore"
CEPH_LABEL_OFFSETS_GIB = (0, 1, 10, 100, 1000)


@dataclass(frozen=True)
class ReleaseParams:
    """Keyword arguments for `MaasClient.release` (sent as form fields)."""

    erase: bool = False
    quick_erase: bool = False
    secure_erase: bool = False
    scripts: tuple[str, ...] = ()
    script_params: Mapping[str, str] = field(default_factory=dict)

    @property
    def erases(self) -> bool:
        return self.erase or self.quick_erase or self.secure_erase or bool(self.scripts)


def release_params(mode: str) -> ReleaseParams:
    """MAAS release parameters for an erase mode (none, quick, full, secure, ceph)."""
    if mode == "none":
        return ReleaseParams()
    if mode == "quick":
        return ReleaseParams(erase=True, quick_erase=True)
    if mode == "full":
        return ReleaseParams(erase=True)
    if mode == "secure":
        return ReleaseParams(erase=True, secure_erase=True)
    if mode == "ceph":
        return ReleaseParams(
            erase=True,
            quick_erase=True,
            scripts=(WIPE_DISKS_SCRIPT, CEPH_WIPE_SCRIPT),
            script_params={
                f"{CEPH_WIPE_SCRIPT}_offsets_gib": ",".join(
                    str(offset) for offset in CEPH_LABEL_OFFSETS_GIB
                ),
            },
        )
    raise ValueError(f"unknown erase mode {mode!r}; expected one of {', '.join(ERASE_MODES)}")
