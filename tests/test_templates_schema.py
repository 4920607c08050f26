"""Every shipped user_data template, rendered with sample values, is valid cloud-config
according to Debian's cloud-init itself (`cloud-init schema --config-file`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from teuthology_maas.node.userdata import (
    render_template,
    shipped_template_dir,
    validate_cloud_config,
)

SHIPPED = sorted(shipped_template_dir().glob("*.yaml"))
KEYS = [
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ1aWxkZXJrZXlub3RyZWFsMDAwMDAwMDAwMDAwMDAw a@ctl",
    'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 "quoted": comment',
]
VARIANTS = {
    "ubuntu-user": {"ssh_user": "ubuntu"},
    "other-user-and-packages": {"ssh_user": "teuth", "extra_packages": ["fio", "jq"]},
}


def cloud_init_schema(path: Path) -> subprocess.CompletedProcess[str]:
    cloud_init = shutil.which("cloud-init")
    assert cloud_init, "cloud-init missing: run scripts/ensure-system-packages"
    return subprocess.run(
        [cloud_init, "schema", "--config-file", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_expected_templates_are_shipped() -> None:
    names = {path.name for path in SHIPPED}
    assert {
        "ubuntu-20.04.yaml",
        "ubuntu-22.04.yaml",
        "ubuntu-24.04.yaml",
        "ubuntu.yaml",
        "centos-9.stream.yaml",
        "centos.yaml",
        "rocky-9.yaml",
        "rocky.yaml",
        "rhel-9.yaml",
        "rhel.yaml",
        "default.yaml",
    } <= names


@pytest.mark.parametrize("variant", sorted(VARIANTS))
@pytest.mark.parametrize("template", SHIPPED, ids=lambda path: path.name)
def test_shipped_template_passes_cloud_init_schema(
    template: Path, variant: str, tmp_path: Path
) -> None:
    os_type, _, os_version = template.stem.partition("-")
    variables = {
        "hostname": "smithi001",
        "fqdn": "smithi001.front.sepia.ceph.com",
        "os_type": os_type,
        "os_version": os_version or "1",
        "ssh_authorized_keys": KEYS,
        **VARIANTS[variant],
    }
    text = render_template(template, variables)
    document = validate_cloud_config(text, template=str(template))
    rendered = tmp_path / template.name
    rendered.write_text(text, encoding="utf-8")
    result = cloud_init_schema(rendered)
    assert result.returncode == 0, f"{template.name}: {result.stdout}{result.stderr}\n{text}"
    assert "Valid cloud-config" in result.stdout
    # Nothing secret goes into user_data: only public keys.
    assert "PRIVATE KEY" not in text
    # The login user teuthology uses gets exactly our keys.
    users = [u for u in document.get("users", []) if isinstance(u, dict)]
    login = [u for u in users if u.get("name") == variables["ssh_user"]]
    keys = login[0]["ssh_authorized_keys"] if login else document["ssh_authorized_keys"]
    assert keys == KEYS
    if "extra_packages" in variables:
        assert document["packages"] == ["fio", "jq"]


def test_the_schema_check_rejects_bad_cloud_config(tmp_path: Path) -> None:
    # Proves the validator used above is live: the same call refuses a wrong type.
    bad = tmp_path / "bad.yaml"
    bad.write_text("#cloud-config\nusers: 5\n", encoding="utf-8")
    result = cloud_init_schema(bad)
    assert result.returncode != 0
    assert "users" in result.stdout + result.stderr
