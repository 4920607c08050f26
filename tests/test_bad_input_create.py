"""Bad input that only shows at create() time: broken user_data templates, hostnames that match
zero or two machines, OS requests MAAS cannot serve. Each is refused with an error naming the
problem before MAAS is asked to change anything: the simulator's request log holds no POST and
the machine is still Ready and unowned.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fixtures_reliability import state_changing
from teuthology_maas.errors import (
    ConfigError,
    ImageNotAvailable,
    MaasError,
    MachineNotFound,
    UserDataError,
)
from teuthology_maas.node.provisioner import MaasProvisioner

GOOD_HEADER = "#cloud-config\n"


def _assert_untouched(lab, hostname: str = "smithi001") -> None:
    assert state_changing(lab.sim) == [], "MAAS was asked to change state"
    machine = lab.sim.machine(hostname)
    assert machine["status_name"] == "Ready"
    assert not machine.get("owner")


def _create_with_template(lab, tmp_path: Path, content: bytes | str, name: str = "t.yaml"):
    template = tmp_path / name
    if isinstance(content, str):
        template.write_text(content, encoding="utf-8")
    else:
        template.write_bytes(content)
    config = lab.config(user_data=str(template))
    with pytest.raises(MaasError) as caught:
        lab.provisioner("smithi001", config=config).create()
    return caught.value, template


TEMPLATE_CASES = [
    pytest.param(
        GOOD_HEADER + "hostname: {{ hostname }}\npackages: [{{ extra_packages }}]\n",
        UserDataError,
        ["undefined variable", "extra_packages", "line 3", "user_data_vars"],
        id="undefined-variable",
    ),
    pytest.param(
        GOOD_HEADER + "{% if hostname %}\nhostname: x\n",
        UserDataError,
        ["Jinja syntax error", "line"],
        id="jinja-syntax-error",
    ),
    pytest.param(
        GOOD_HEADER + "{% for k in ssh_authorized_keys %}\n  - {{ k }}\n{% endfor %}{{ 1 / 0 }}\n",
        UserDataError,
        ["division by zero"],
        id="error-while-rendering",
    ),
    pytest.param(
        GOOD_HEADER + "users: [unclosed\npackages:\n  - ceph\n",
        UserDataError,
        ["not valid YAML", "line"],
        id="invalid-yaml",
    ),
    pytest.param(
        GOOD_HEADER + "write_files:\n  - path: /a\n   content: x\n",
        UserDataError,
        ["not valid YAML", "line 4"],
        id="bad-indentation",
    ),
    pytest.param(
        "hostname: {{ hostname }}\n",
        UserDataError,
        ["'#cloud-config'", "line 1", "first line"],
        id="missing-cloud-config-header",
    ),
    pytest.param(
        "#!/bin/bash\necho hello\n",
        UserDataError,
        ["'#cloud-config'", "'#!/bin/bash'"],
        id="shell-script-instead-of-cloud-config",
    ),
    pytest.param(
        GOOD_HEADER + "- just\n- a list\n",
        UserDataError,
        ["must be a YAML mapping", "list"],
        id="top-level-list",
    ),
    pytest.param(
        GOOD_HEADER + "# only a comment\n",
        UserDataError,
        ["must be a YAML mapping", "nothing"],
        id="empty-document",
    ),
    pytest.param(
        GOOD_HEADER.encode() + b"hostname: caf\xe9\n",
        UserDataError,
        ["not UTF-8", "line 2", "0xe9"],
        id="latin-1-bytes",
    ),
    pytest.param(
        b"\xff\xfe#\x00c\x00l\x00o\x00u\x00d\x00",
        UserDataError,
        ["not UTF-8", "line 1"],
        id="utf-16-file",
    ),
    pytest.param(
        GOOD_HEADER + "{% include 'missing-part.yaml' %}\n",
        UserDataError,
        ["included template 'missing-part.yaml' not found"],
        id="missing-include",
    ),
]


@pytest.mark.parametrize(("content", "error", "fragments"), TEMPLATE_CASES)
def test_broken_templates_are_refused_before_any_post(
    fault_lab, tmp_path, content, error, fragments
):
    exc, template = _create_with_template(fault_lab, tmp_path, content)
    assert isinstance(exc, error), f"{type(exc).__name__}: {exc}"
    message = str(exc)
    assert str(template) in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    _assert_untouched(fault_lab)


def test_a_template_pattern_that_finds_no_file_for_this_os_lists_what_it_tried(fault_lab, tmp_path):
    (tmp_path / "ubuntu-20.04.yaml").write_text(GOOD_HEADER)
    config = fault_lab.config(user_data=str(tmp_path / "{os_type}-{os_version}.yaml"))
    with pytest.raises(UserDataError) as caught:
        fault_lab.provisioner("smithi001", "ubuntu", "22.04", config=config).create()
    assert "no user_data template for ubuntu 22.04" in str(caught.value)
    assert str(tmp_path / "ubuntu-22.04.yaml") in str(caught.value)
    _assert_untouched(fault_lab)


def test_a_template_that_is_not_a_readable_file_is_refused(fault_lab, tmp_path):
    # A directory where the template should be: unreadable as a template even for root.
    (tmp_path / "ubuntu-22.04.yaml").mkdir()
    config = fault_lab.config(user_data=str(tmp_path / "{os_type}-{os_version}.yaml"))
    with pytest.raises(UserDataError) as caught:
        fault_lab.provisioner("smithi001", config=config).create()
    assert str(tmp_path / "ubuntu-22.04.yaml") in str(caught.value)
    _assert_untouched(fault_lab)


def test_a_template_that_injects_keys_with_no_keys_configured_is_refused(fault_lab, tmp_path):
    template = tmp_path / "t.yaml"
    template.write_text(GOOD_HEADER + "ssh_authorized_keys: {{ ssh_authorized_keys | tojson }}\n")
    config = fault_lab.config(user_data=str(template), ssh_keys=[])
    with pytest.raises(UserDataError, match="no public key to inject"):
        fault_lab.provisioner("smithi001", config=config).create()
    _assert_untouched(fault_lab)


# -- hostnames ---------------------------------------------------------------------------------


def test_a_hostname_matching_no_machine_is_refused_naming_it(fault_lab):
    with pytest.raises(MachineNotFound) as caught:
        fault_lab.provisioner("smithi999").create()
    assert "no machine with hostname 'smithi999'" in str(caught.value)
    assert "teuthology" in str(caught.value)  # which MAAS user looked
    assert state_changing(fault_lab.sim) == []


def test_a_hostname_matching_two_machines_is_refused_listing_both(fault_lab):
    # MAAS itself keeps hostnames unique; an operator rename racing with our lookup (or a
    # region mid-migration) can still answer two machines for one name.
    fault_lab.sim.update_machine("smithi002", hostname="smithi001")
    with pytest.raises(MachineNotFound) as caught:
        fault_lab.provisioner("smithi001").create()
    message = str(caught.value)
    assert "2 MAAS machines have hostname 'smithi001'" in message
    assert "expected exactly one" in message
    assert message.count("smithi001") >= 3  # the name, and each machine described
    assert state_changing(fault_lab.sim) == []
    assert all(not m.get("owner") for m in fault_lab.sim.machines())


@pytest.mark.parametrize("name", ["", "   ", "ubuntu@", "@", "."])
def test_a_name_without_a_hostname_is_refused_before_maas_is_asked(fault_lab, name):
    with pytest.raises(MachineNotFound, match="no hostname in"):
        MaasProvisioner(name, config=fault_lab.config(), client=fault_lab.client())
    assert fault_lab.sim.request_log == []


# -- operating systems -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("os_type", "os_version", "fragments"),
    [
        ("windows", "2019", ["windows"]),
        ("ubuntu", "banana", ["banana"]),
        ("ubuntu", "", ["ubuntu"]),
    ],
)
def test_an_os_that_cannot_be_named_in_maas_is_refused(fault_lab, os_type, os_version, fragments):
    with pytest.raises((ImageNotAvailable, ConfigError, ValueError)) as caught:
        fault_lab.provisioner("smithi001", os_type, os_version).create()
    for fragment in fragments:
        assert fragment in str(caught.value)
    _assert_untouched(fault_lab)


def test_an_image_that_is_not_synced_is_refused_listing_what_is(fault_lab):
    with pytest.raises(ImageNotAvailable) as caught:
        fault_lab.provisioner("smithi001", "ubuntu", "18.04").create()
    message = str(caught.value)
    assert "bionic" in message
    assert "ubuntu/jammy" in message  # what is available instead
    _assert_untouched(fault_lab)
