"""userdata: template lookup, Jinja2 rendering, cloud-config validation and its error messages."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
import yaml

from teuthology_maas.config import MaasConfig
from teuthology_maas.errors import ConfigError, UserDataError
from teuthology_maas.node import userdata
from teuthology_maas.node.userdata import (
    find_template,
    render_user_data,
    shipped_template_dir,
    validate_cloud_config,
)

KEY_A = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGJ1aWxkZXJrZXlub3RyZWFsMDAwMDAwMDAwMDAwMDAw alice@ctl"
# A comment with YAML-significant characters: it must survive rendering unchanged.
KEY_B = 'ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 "ops": team #1 & co'


def make_config(tmp_path: Path, **maas: Any) -> MaasConfig:
    section = {"api_url": "http://127.0.0.1:5240/MAAS/", "api_key": "ck:tk:ts", **maas}
    section.setdefault("ssh_keys", [KEY_A, KEY_B])
    return MaasConfig.from_mapping(section, base_dir=tmp_path)


def render(cfg: MaasConfig, os_type: str = "ubuntu", os_version: str = "22.04") -> str:
    return render_user_data(
        cfg,
        hostname="smithi001",
        fqdn="smithi001.front.sepia.ceph.com",
        os_type=os_type,
        os_version=os_version,
    )


# ---- shipped templates --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("os_type", "os_version", "template"),
    [
        ("ubuntu", "20.04", "ubuntu-20.04.yaml"),
        ("ubuntu", "22.04", "ubuntu-22.04.yaml"),
        ("ubuntu", "jammy", "ubuntu-22.04.yaml"),
        ("ubuntu", "24.04", "ubuntu-24.04.yaml"),
        ("ubuntu", "18.04", "ubuntu.yaml"),
        ("centos", "9.stream", "centos-9.stream.yaml"),
        ("centos", "9", "centos-9.stream.yaml"),
        ("centos", "8.stream", "centos.yaml"),
        ("rocky", "9", "rocky-9.yaml"),
        ("rocky", "9.4", "rocky-9.yaml"),
        ("rhel", "9", "rhel-9.yaml"),
        ("rhel", "8", "rhel.yaml"),
        ("debian", "12", "default.yaml"),
        ("Ubuntu", " 24.04", "ubuntu-24.04.yaml"),
    ],
)
def test_shipped_template_choice(
    tmp_path: Path, os_type: str, os_version: str, template: str
) -> None:
    found = find_template(make_config(tmp_path), os_type, os_version)
    assert found == shipped_template_dir() / template


def test_shipped_templates_live_at_the_repository_top_in_a_source_tree() -> None:
    expected = Path(__file__).resolve().parent.parent / "user_data"
    assert shipped_template_dir() == expected
    assert (expected / "ubuntu-22.04.yaml").is_file()


def test_installed_wheel_layout_is_preferred(tmp_path: Path, monkeypatch) -> None:
    packaged = tmp_path / "site" / "teuthology_maas"
    (packaged / "user_data").mkdir(parents=True)
    monkeypatch.setattr(userdata.importlib.resources, "files", lambda package: packaged)
    assert shipped_template_dir() == packaged / "user_data"


def test_ubuntu_render_gives_keys_to_the_default_ubuntu_user(tmp_path: Path) -> None:
    text = render(make_config(tmp_path))
    assert text.startswith("#cloud-config\n")
    document = yaml.safe_load(text)
    assert document["hostname"] == "smithi001"
    assert document["fqdn"] == "smithi001.front.sepia.ceph.com"
    assert document["users"] == ["default"]
    assert document["ssh_authorized_keys"] == [KEY_A, KEY_B]
    assert document["package_upgrade"] is False
    assert "packages" not in document


def test_ubuntu_render_creates_another_login_user_when_configured(tmp_path: Path) -> None:
    document = yaml.safe_load(render(make_config(tmp_path, ssh_user="teuth")))
    default, teuth = document["users"]
    assert default == "default"
    assert teuth["name"] == "teuth"
    assert teuth["sudo"] == "ALL=(ALL) NOPASSWD:ALL"
    assert teuth["ssh_authorized_keys"] == [KEY_A, KEY_B]


@pytest.mark.parametrize(
    ("os_type", "os_version"),
    [("centos", "9.stream"), ("rocky", "9"), ("rhel", "9"), ("debian", "12")],
)
def test_non_ubuntu_render_creates_the_ubuntu_user_with_sudo(
    tmp_path: Path, os_type: str, os_version: str
) -> None:
    document = yaml.safe_load(render(make_config(tmp_path), os_type, os_version))
    users = document["users"]
    assert users[0] == "default"
    ubuntu = users[1]
    assert ubuntu["name"] == "ubuntu"
    assert ubuntu["sudo"] == "ALL=(ALL) NOPASSWD:ALL"
    assert ubuntu["lock_passwd"] is True
    assert ubuntu["ssh_authorized_keys"] == [KEY_A, KEY_B]
    assert document["ssh_pwauth"] is False


def test_extra_packages_from_user_data_vars(tmp_path: Path) -> None:
    cfg = make_config(tmp_path, user_data_vars={"extra_packages": ["fio", "nvme-cli"]})
    assert yaml.safe_load(render(cfg))["packages"] == ["fio", "nvme-cli"]


# ---- the user_data pattern ------------------------------------------------------------------


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_pattern_template_is_used_with_os_fields_substituted(tmp_path: Path) -> None:
    write(
        tmp_path / "ud" / "ubuntu-22.04.yaml",
        "#cloud-config\nruncmd:\n  - [echo, {{ lab | tojson }}, {{ os_version | tojson }}]\n",
    )
    cfg = make_config(
        tmp_path, user_data="ud/{os_type}-{os_version}.yaml", user_data_vars={"lab": "sepia"}
    )
    assert find_template(cfg, "ubuntu", "22.04") == tmp_path / "ud" / "ubuntu-22.04.yaml"
    assert yaml.safe_load(render(cfg))["runcmd"] == [["echo", "sepia", "22.04"]]


def test_pattern_falls_back_to_the_canonical_version_spelling(tmp_path: Path) -> None:
    template = write(tmp_path / "ud" / "rocky-9.yaml", "#cloud-config\n{}\n")
    cfg = make_config(tmp_path, user_data=str(tmp_path / "ud" / "{os_type}-{os_version}.yaml"))
    assert find_template(cfg, "rocky", "9.4") == template


def test_pattern_without_a_matching_file_is_an_error_naming_the_path(tmp_path: Path) -> None:
    write(tmp_path / "ud" / "ubuntu-22.04.yaml", "#cloud-config\n{}\n")
    cfg = make_config(tmp_path, user_data="ud/{os_type}-{os_version}.yaml")
    with pytest.raises(UserDataError) as caught:
        render(cfg, "centos", "9.stream")
    message = str(caught.value)
    assert str(tmp_path / "ud" / "centos-9.stream.yaml") in message
    assert "does not exist" in message
    assert caught.value.template == str(tmp_path / "ud" / "centos-9.stream.yaml")


def test_included_fragments_are_found_next_to_the_template(tmp_path: Path) -> None:
    write(tmp_path / "ud" / "_users.yaml", "users:\n  - default\n")
    write(
        tmp_path / "ud" / "ubuntu.yaml",
        "#cloud-config\n{% include '_users.yaml' %}\nhostname: {{ hostname }}\n",
    )
    cfg = make_config(tmp_path, user_data="ud/{os_type}.yaml")
    assert yaml.safe_load(render(cfg)) == {"users": ["default"], "hostname": "smithi001"}


# ---- broken templates: the template and the line are named ----------------------------------


def broken(tmp_path: Path, text: str | bytes, **maas: Any) -> UserDataError:
    template = write(tmp_path / "ud" / "ubuntu-22.04.yaml", text)
    cfg = make_config(tmp_path, user_data=str(template), **maas)
    with pytest.raises(UserDataError) as caught:
        render(cfg)
    assert caught.value.template == str(template)
    assert str(template) in str(caught.value)
    return caught.value


def test_jinja_syntax_error_names_the_line(tmp_path: Path) -> None:
    error = broken(tmp_path, "#cloud-config\nusers:\n  - default\nfqdn: {{ fqdn \n")
    assert error.line == 4
    assert "line 4" in str(error) and "syntax" in str(error).lower()


def test_undefined_variable_names_the_line_and_the_variable(tmp_path: Path) -> None:
    error = broken(tmp_path, "#cloud-config\n\n\nruncmd:\n  - [echo, {{ rack_id }}]\n")
    assert error.line == 5
    assert "rack_id" in str(error)
    assert "line 5" in str(error)
    assert "user_data_vars" in str(error)


def test_undefined_variable_inside_an_include_names_the_fragment(tmp_path: Path) -> None:
    fragment = write(tmp_path / "ud" / "_part.yaml", "a: 1\nb: {{ nope }}\n")
    template = write(tmp_path / "ud" / "ubuntu.yaml", "#cloud-config\n{% include '_part.yaml' %}\n")
    cfg = make_config(tmp_path, user_data=str(template))
    with pytest.raises(UserDataError) as caught:
        render(cfg)
    assert caught.value.template == str(fragment)
    assert caught.value.line == 2


def test_missing_include_is_named(tmp_path: Path) -> None:
    error = broken(tmp_path, "#cloud-config\n{% include 'gone.yaml' %}\n")
    assert "gone.yaml" in str(error)


def test_invalid_yaml_names_the_rendered_line(tmp_path: Path) -> None:
    error = broken(tmp_path, "#cloud-config\nusers:\n  - default\nbad: [unclosed\nok: 1\n")
    assert error.line is not None and error.line >= 4
    assert "not valid YAML" in str(error)
    assert f"line {error.line}" in str(error)


def test_tab_indentation_yaml_error_quotes_the_line(tmp_path: Path) -> None:
    error = broken(tmp_path, "#cloud-config\nusers:\n\t- default\n")
    assert error.line == 3
    assert "'- default'" in str(error)


def test_missing_header_is_refused(tmp_path: Path) -> None:
    error = broken(tmp_path, "users:\n  - default\n")
    assert error.line == 1
    assert "#cloud-config" in str(error)


def test_header_after_blank_line_is_refused(tmp_path: Path) -> None:
    error = broken(tmp_path, "{% if true %}\n\n{% endif %}#cloud-config\na: 1\n")
    assert error.line == 1


@pytest.mark.parametrize(
    ("body", "found"), [("- a\n- b\n", "list"), ("", "nothing"), ("hi\n", "str")]
)
def test_top_level_must_be_a_mapping(tmp_path: Path, body: str, found: str) -> None:
    error = broken(tmp_path, "#cloud-config\n" + body)
    assert "mapping" in str(error) and found in str(error)


def test_non_utf8_template_names_the_line(tmp_path: Path) -> None:
    error = broken(tmp_path, b"#cloud-config\nusers:\n  - caf\xe9\n")
    assert error.line == 3
    assert "UTF-8" in str(error)


def test_unreadable_template_is_a_clear_error(tmp_path: Path, monkeypatch) -> None:
    template = write(tmp_path / "ud" / "ubuntu-22.04.yaml", "#cloud-config\n{}\n")
    cfg = make_config(tmp_path, user_data=str(template))

    def denied(self: Path) -> bytes:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(UserDataError) as caught:
        render(cfg)
    assert "cannot read user_data template" in str(caught.value)
    assert "Permission denied" in str(caught.value)


def test_no_public_key_fails_before_rendering(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # no ~/.ssh/id_*.pub to fall back to
    cfg = MaasConfig.from_mapping(
        {"api_url": "http://127.0.0.1:5240/MAAS/", "api_key": "ck:tk:ts"}, base_dir=tmp_path
    )
    assert cfg.ssh_keys == ()
    with pytest.raises(UserDataError) as caught:
        render(cfg)
    assert "maas.ssh_keys" in str(caught.value)


def test_template_without_keys_renders_without_any(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    template = write(tmp_path / "plain.yaml", "#cloud-config\nhostname: {{ hostname }}\n")
    cfg = MaasConfig.from_mapping(
        {
            "api_url": "http://127.0.0.1:5240/MAAS/",
            "api_key": "ck:tk:ts",
            "user_data": str(template),
        },
        base_dir=tmp_path,
    )
    assert yaml.safe_load(render(cfg)) == {"hostname": "smithi001"}


def test_default_keys_come_from_the_control_node(tmp_path: Path, monkeypatch) -> None:
    home = tmp_path / "home"
    write(home / ".ssh" / "id_ed25519.pub", KEY_A + "\n")
    monkeypatch.setenv("HOME", str(home))
    cfg = MaasConfig.from_mapping(
        {"api_url": "http://127.0.0.1:5240/MAAS/", "api_key": "ck:tk:ts"}, base_dir=tmp_path
    )
    assert yaml.safe_load(render(cfg))["ssh_authorized_keys"] == [KEY_A]


def test_user_data_vars_may_not_redefine_per_deployment_values(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        render(make_config(tmp_path, user_data_vars={"hostname": "x", "rack": "r1"}))
    assert caught.value.key == "user_data_vars"
    assert "hostname" in str(caught.value)


def test_validate_returns_the_mapping() -> None:
    assert validate_cloud_config("#cloud-config\na: 1\n", template="t") == {"a": 1}


def test_encode_is_base64_of_utf8() -> None:
    from teuthology_maas.maas.wire import encode_user_data  # the one encoder (MaasClient's)

    text = "#cloud-config\nhostname: café\n"
    assert base64.b64decode(encode_user_data(text)).decode("utf-8") == text
    assert encode_user_data(text.encode()) == encode_user_data(text)
