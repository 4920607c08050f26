"""The hostile-input suite, part one: node names, OS names, SSH targets and templates.

Everything here comes from a job's YAML, paddles or an operator's command line. Each case
asserts the typed error and what it names, that nothing was sent to MAAS (the simulator's
request log) or that nothing that changes state was, that no command ran (a marker file a
successful injection would create), and that it was refused at once.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from tests._cli_support import run_cli, write_config
from tests.fixtures_reliability import state_changing
from tests.test_teuthology_activation import _NO_NETWORK_GUARD, run_python
from teuthology_maas.errors import ConfigError, InvalidNodeName, InvalidOSName, UserDataError
from teuthology_maas.node import ssh
from teuthology_maas.node.provisioner import MaasProvisioner
from teuthology_maas.node.userdata import find_template, render_template

QUICK = 2.0  # a refusal is immediate; this bound only catches a hang or a quadratic check

HOSTILE_NAMES = [
    pytest.param("smithi001.front.example.com;touch x", id="semicolon"),
    pytest.param("smithi001.$(id).example.com", id="command-substitution"),
    pytest.param("smithi001.`id`.example.com", id="backticks"),
    pytest.param("smithi001\nsmithi002", id="newline"),
    pytest.param("smithi001\x00", id="nul"),
    pytest.param("a" * 100_000, id="100k-characters"),
    pytest.param("ubuntu@smithi001.x:22 -oProxyCommand=touch${IFS}/tmp/x", id="proxycommand"),
    pytest.param("smithi001.front.example.com:22", id="port"),
    pytest.param("-oProxyCommand=touch", id="option"),
    pytest.param("smithi001 .example.com", id="space"),
    pytest.param("smithi001..example.com", id="empty-label"),
    pytest.param("-smithi001", id="leading-hyphen"),
    pytest.param("smithi001-.example.com", id="trailing-hyphen"),
    pytest.param("s" * 64 + ".example.com", id="label-of-64"),
    pytest.param(".".join(["abcdefgh"] * 30), id="hostname-of-269"),
    pytest.param("smi/thi001", id="slash"),
    pytest.param("smïthi001", id="non-ascii"),
    pytest.param("smithi001%0a.example.com", id="percent"),
    pytest.param("bad user@smithi001", id="user-with-space"),
    pytest.param("-l root@smithi001", id="user-option"),
    pytest.param("a@b@smithi001", id="two-ats-in-user"),
]


def _quickly(action):
    started = time.monotonic()
    try:
        action()
    finally:
        assert time.monotonic() - started < QUICK


# -- node names ----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_a_hostile_node_name_is_refused_before_maas_is_asked(fault_lab, name):
    with pytest.raises(InvalidNodeName) as caught:
        _quickly(
            lambda: MaasProvisioner(name, config=fault_lab.config(), client=fault_lab.client())
        )
    message = str(caught.value)
    assert "expected host, host.domain or user@host.domain" in message
    assert len(message) < 700, "the name is shown cut short"
    assert "\n" not in message and "\x00" not in message
    assert fault_lab.sim.request_log == []


@pytest.mark.parametrize("name", ["bad;name", "smithi001:22", "smithi001\nsmithi002"])
@pytest.mark.parametrize("command", ["deploy", "release", "abort", "events"])
def test_the_cli_refuses_a_hostile_name_before_the_first_request(
    tmp_path, maas_sim, command, name
):
    config = write_config(tmp_path, maas_sim)
    result = run_cli(command, "--", name, config=config)
    assert result.code == 2, result.err
    assert "InvalidNodeName" in result.err and "Traceback" not in result.err
    assert maas_sim.sim.request_log == []


def test_the_teuthology_adapter_refuses_hostile_names_and_versions_without_connecting(tmp_path):
    result = run_python(tmp_path, """
        import json
        from teuthology.config import config
        from teuthology_maas.teuthology import adapter
        config.load({"lab_domain": "lab.test", "maas": {
            "api_url": "http://127.0.0.1:9/MAAS/", "api_key": "ck:tk:secret",
            "machine_types": "smithi"}})
        out = []
        for name, version in [("smithi001;touch x", "22.04"), ("smithi001:22", "22.04"),
                              ("a" * 5000, "22.04"), ("smithi001", "../../../tmp/planted"),
                              ("smithi001", "22.04/.."), ("-oProxyCommand=x", "22.04")]:
            for action in ("create", "release"):
                try:
                    getattr(adapter.MAAS(name, "ubuntu", version), action)()
                except Exception as exc:
                    out.append(type(exc).__name__)
                else:
                    out.append("accepted")
        print(json.dumps({"errors": out, "connects": connects}))
    """, prelude=_NO_NETWORK_GUARD)
    assert result["errors"] == ["InvalidNodeName"] * 6 + ["InvalidOSName"] * 4 + [
        "InvalidNodeName"
    ] * 2
    assert result["connects"] == []


# -- SSH: nothing from a job reaches ssh as an option -------------------------------------------


@pytest.fixture
def proxy_lab_config(fault_lab, tmp_path):
    marker = tmp_path / "pwned"
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text("Host *\n    ProxyCommand ssh -W %h:%p jump.example.com\n")
    return fault_lab.config(ssh_config=str(ssh_config), lab_domain="front.example.com"), marker


def test_the_proxycommand_injection_of_the_issue_cannot_happen(fault_lab, proxy_lab_config):
    config, marker = proxy_lab_config
    name = f"ubuntu@smithi001.x:22 -oProxyCommand=touch${{IFS}}{marker}"
    with pytest.raises(InvalidNodeName):
        MaasProvisioner(name, config=config, client=fault_lab.client(config)).is_ready()
    with pytest.raises(InvalidNodeName):
        ssh.SSHTarget.resolve(name, config)
    assert not marker.exists()
    assert fault_lab.sim.request_log == []


def test_percent_h_in_a_lab_proxycommand_expands_to_the_hostname_only(proxy_lab_config):
    config, _ = proxy_lab_config
    target = ssh.SSHTarget.resolve("smithi001", config)
    assert target.proxy_command == "ssh -W smithi001.front.example.com:22 jump.example.com"


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("HostName -oProxyCommand=touch${IFS}/tmp/x", "HostName"),
        ("HostName smithi001;id", "HostName"),
        ("User -oProxyCommand=x", "user"),
        ("Port 0", "port"),
    ],
)
def test_an_ssh_config_mapping_to_an_option_is_refused(fault_lab, tmp_path, line, what):
    ssh_config = tmp_path / "ssh_config"
    ssh_config.write_text(f"Host smithi001.front.example.com\n    {line}\n")
    config = fault_lab.config(ssh_config=str(ssh_config), lab_domain="front.example.com")
    with pytest.raises(ConfigError) as caught:
        ssh.SSHTarget.resolve("smithi001", config)
    assert what in str(caught.value) and "option" in str(caught.value)


def test_an_ssh_user_that_is_an_option_is_refused(fault_lab):
    config = fault_lab.config(ssh_user="-oProxyCommand=x")
    with pytest.raises(ConfigError, match="not a login name"):
        ssh.SSHTarget.resolve("smithi001.front.example.com", config)


# -- OS names ------------------------------------------------------------------------------------

HOSTILE_OS = [
    pytest.param("ubuntu", "../../../../tmp/planted", id="traversal"),
    pytest.param("ubuntu", "22.04/../..", id="slash-dotdot"),
    pytest.param("ubuntu", "..", id="dotdot"),
    pytest.param("ubuntu", "22..04", id="inner-dotdot"),
    pytest.param("ubuntu", "ubuntu/22.04", id="slash"),
    pytest.param("ubuntu", "22.04\nfoo", id="newline"),
    pytest.param("ubuntu", "{os_type}", id="placeholder"),
    pytest.param("ubuntu", "9" * 1000, id="1000-characters"),
    pytest.param("ubuntu", "", id="empty"),
    pytest.param("ubuntu", "-22.04", id="leading-hyphen"),
    pytest.param("../etc", "passwd", id="type-traversal"),
    pytest.param("ubuntu;id", "22.04", id="type-semicolon"),
    pytest.param("", "22.04", id="type-empty"),
    pytest.param("ubuntu", "22.04 ", id="trailing-space-is-stripped"),
]


@pytest.mark.parametrize(("os_type", "os_version"), HOSTILE_OS)
def test_a_hostile_os_name_is_refused_before_a_path_or_maas(fault_lab, os_type, os_version):
    if os_version == "22.04 ":
        provisioner = MaasProvisioner(
            "smithi001", os_type, os_version, config=fault_lab.config(), client=fault_lab.client()
        )
        assert provisioner.os_version == "22.04"
        return
    with pytest.raises(InvalidOSName) as caught:
        _quickly(
            lambda: MaasProvisioner(
                "smithi001",
                os_type,
                os_version,
                config=fault_lab.config(),
                client=fault_lab.client(),
            )
        )
    assert "expected" in str(caught.value) and len(str(caught.value)) < 400
    assert fault_lab.sim.request_log == []


def test_the_planted_template_of_the_issue_is_never_rendered(fault_lab, tmp_path):
    # The issue's repro: a pattern with {os_version} as a path part, an OS-wide image_map
    # entry (so any version maps to an image), and a planted template with code in it.
    marker = tmp_path / "pwned"
    planted = tmp_path / "planted.yaml"
    planted.write_text(
        "#cloud-config\n{{ cycler.__init__.__globals__.os.system('touch " + str(marker) + "') }}\n"
    )
    templates = tmp_path / "templates" / "deep" / "er"
    (templates / "ubuntu").mkdir(parents=True)
    config = fault_lab.config(
        user_data=str(templates / "{os_type}" / "{os_version}.yaml"),
        image_map={"ubuntu": "ubuntu/jammy"},
    )
    version = os.path.relpath(planted.with_suffix(""), templates / "ubuntu")
    with pytest.raises(InvalidOSName):
        fault_lab.provisioner("smithi001", "ubuntu", version, config=config).create()
    with pytest.raises(InvalidOSName):
        find_template(config, "ubuntu", version)  # the same check where the path is made
    assert not marker.exists()
    assert fault_lab.sim.request_log == []


# -- templates: the sandbox, and paths that stay in their directory -----------------------------

SANDBOX_ESCAPES = [
    pytest.param("{{ cycler.__init__.__globals__.os.system('touch MARKER') }}", id="cycler"),
    pytest.param("{{ joiner.__init__.__globals__['os'].popen('touch MARKER') }}", id="joiner"),
    pytest.param("{{ lipsum.__globals__.os.system('touch MARKER') }}", id="lipsum"),
    pytest.param(
        "{% for c in ''.__class__.__mro__[1].__subclasses__() %}{% endfor %}", id="subclasses"
    ),
    pytest.param("{{ namespace.__init__.__globals__ }}", id="namespace-globals"),
    pytest.param("{{ (1).__class__.__base__.__subclasses__() }}", id="int-subclasses"),
]


@pytest.mark.parametrize("code", SANDBOX_ESCAPES)
def test_template_code_cannot_escape_the_sandbox(fault_lab, tmp_path, code):
    marker = tmp_path / "MARKER"
    template = tmp_path / "t.yaml"
    template.write_text("#cloud-config\nx: " + code.replace("MARKER", str(marker)) + "\n")
    config = fault_lab.config(user_data=str(template))
    with pytest.raises(UserDataError) as caught:
        fault_lab.provisioner("smithi001", config=config).create()
    assert "unsafe" in str(caught.value) and str(template) in str(caught.value)
    assert not marker.exists()
    assert state_changing(fault_lab.sim) == []


def test_an_include_outside_the_template_directory_is_refused(tmp_path):
    (tmp_path / "secret.yaml").write_text("password: hunter2\n")
    directory = tmp_path / "templates"
    directory.mkdir()
    (directory / "link.yaml").symlink_to(tmp_path / "secret.yaml")
    for include in ("../secret.yaml", "link.yaml", str(tmp_path / "secret.yaml")):
        template = directory / "t.yaml"
        template.write_text("#cloud-config\n{% include '" + include + "' %}\n")
        with pytest.raises(UserDataError, match="not found") as caught:
            render_template(template, {})
        assert "hunter2" not in str(caught.value)


def test_a_pattern_path_resolving_outside_its_directory_says_nothing_of_existence(
    fault_lab, tmp_path
):
    directory = tmp_path / "templates"
    directory.mkdir()
    (tmp_path / "exists.yaml").write_text("#cloud-config\n")
    pattern = str(directory / "{os_type}-{os_version}.yaml")
    messages = []
    for target in (tmp_path / "exists.yaml", tmp_path / "missing.yaml"):
        link = directory / "ubuntu-22.04.yaml"
        link.unlink(missing_ok=True)
        link.symlink_to(target)
        config = fault_lab.config(user_data=pattern)
        with pytest.raises(UserDataError) as caught:
            fault_lab.provisioner("smithi001", config=config).create()
        messages.append(str(caught.value))
    assert "resolves outside" in messages[0]
    assert messages[0] == messages[1], "the message differs with the target's existence"
    assert "exists.yaml" not in messages[0] and "missing.yaml" not in messages[0]
    assert state_changing(fault_lab.sim) == []


def test_templates_inside_the_directory_still_render_and_include(tmp_path):
    directory = tmp_path / "templates"
    (directory / "parts").mkdir(parents=True)
    (directory / "parts" / "users.yaml").write_text("users: [{{ name | tojson }}]\n")
    template = directory / "t.yaml"
    template.write_text("#cloud-config\n{% include 'parts/users.yaml' %}\n")
    assert render_template(template, {"name": "ubuntu"}) == '#cloud-config\nusers: ["ubuntu"]\n'
    assert Path(template).is_file()
