"""The file-backed stand-ins for SSH that the reliability tests and the benchmark use."""

from __future__ import annotations

from teuthology_maas.config import MaasConfig
from teuthology_maas.testing.simulated_ssh import probe_from_files

OURS = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOursOursOursOursOursOursOursOursOursOurs00 ours"
THEIRS = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAITheirsTheirsTheirsTheirsTheirsTheirs00 them"


def config(**extra) -> MaasConfig:
    return MaasConfig.from_mapping({"api_url": "http://maas.test:5240/MAAS/",
                                    "api_key": "a:b:c", "ssh_keys": [OURS], **extra})


def test_the_probe_answers_only_for_our_key_and_once_boot_has_finished(tmp_path):
    probe = probe_from_files(tmp_path)
    node = tmp_path / "n1"
    assert probe("n1.lab.test", config()) is False  # nothing there: not deployed
    node.mkdir()
    (node / "authorized_keys").write_text(THEIRS + "\n")
    (node / "boot-finished").write_text("done\n")
    assert probe("n1.lab.test", config()) is False  # someone else's deployment
    (node / "authorized_keys").write_text(OURS + "\n")
    (node / "boot-finished").unlink()
    assert probe("n1.lab.test", config()) is False  # ours, but cloud-init still runs
    assert probe("n1.lab.test", config(sentinel_file=None)) is True  # no sentinel asked for
    (node / "boot-finished").write_text("done\n")
    assert probe("n1.lab.test", config()) is True
