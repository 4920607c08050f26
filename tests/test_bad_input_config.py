"""Malformed `maas:` configuration: every key wrong in type, value or format.

Each case is a teuthology.yaml pointing at a live simulator; the provisioner is built the way
teuthology builds it (no config passed: $TEUTHOLOGY_CONFIG is read). The error must be a
ConfigError naming the key and what was expected, raised before a single request reaches
MAAS (the simulator's request log stays empty), and it never quotes an API key's secret.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from teuthology_maas.errors import ConfigError
from teuthology_maas.node.provisioner import MaasProvisioner

SECRET = "S3cretTokenSecretValue0123456789"
MISSING = object()


def _case(key: str, value: Any, *expected: str) -> Any:
    return pytest.param(key, value, expected, id=f"{key}={value!r}"[:60])


CASES = [
    # api_url: missing, wrong type, not http(s), no host, credentials, wrong API version, port
    _case("api_url", MISSING, "api_url is missing", "http://maas.example.com:5240/MAAS/"),
    _case("api_url", 5240, "api_url", "the MAAS URL"),
    _case("api_url", "ftp://127.0.0.1:5240/MAAS/", "api_url", "http:// or https://"),
    _case("api_url", "127.0.0.1:5240/MAAS/", "api_url", "http:// or https://"),
    _case("api_url", "file:///etc/passwd", "api_url", "http:// or https://"),
    _case("api_url", "http:///MAAS/", "api_url", "with a host"),
    _case("api_url", "http://admin:pw@127.0.0.1:5240/MAAS/", "api_url", "without user:password"),
    _case("api_url", "http://127.0.0.1:5240/MAAS/api/1.0/", "api_url", "version 2.0"),
    _case("api_url", "http://127.0.0.1:port/MAAS/", "api_url", "numeric port"),
    _case("api_url", "http://127.0.0.1:5240/MAAS/?x=1", "api_url", "without ?query"),
    # api_key: 2 or 4 parts, empty parts, whitespace, wrong type, missing
    _case("api_key", "consumer:token", "api_key", "three non-empty fields"),
    _case("api_key", f"consumer:token:{SECRET}:extra", "api_key", "three non-empty fields"),
    _case("api_key", f"consumer::{SECRET}", "api_key", "three non-empty fields"),
    _case("api_key", "consumer:token:", "api_key", "three non-empty fields"),
    _case("api_key", ":::", "api_key", "three non-empty fields"),
    _case("api_key", f"consumer:tok en:{SECRET}", "api_key", "three non-empty fields"),
    _case("api_key", f"consumer:token:{SECRET[:8]}\n{SECRET[8:]}", "api_key", "three non-empty"),
    _case("api_key", 12345, "api_key", "a string"),
    _case("api_key", MISSING, "api_key is missing", "consumer_key:token_key:token_secret"),
    # durations
    _case("timeout", "ten minutes", "timeout", "a number of seconds"),
    _case("timeout", -5, "timeout", "> 0"),
    _case("timeout", True, "timeout", "a number of seconds"),
    _case("deploy_timeout", [1800], "deploy_timeout", "a number of seconds"),
    _case("release_timeout", 0, "release_timeout", "> 0"),
    _case("abort_timeout", "nan", "abort_timeout", "a number of seconds"),
    _case("ssh_timeout", {"s": 1}, "ssh_timeout", "a number of seconds"),
    _case("http_timeout", -0.5, "http_timeout", "> 0"),
    _case("poll_min_interval", "fast", "poll_min_interval", "a number of seconds"),
    _case("poll_interval", "often", "poll_interval", "a number of seconds"),
    _case("poll_interval", 0.1, "poll_interval", ">= 0.5"),
    _case("ca_bundle", "/nonexistent/lab-ca.pem", "ca_bundle", "readable CA bundle"),
    _case("lab_domain", 42, "lab_domain", "a non-empty string"),
    _case("ssh_user", "  ", "ssh_user", "a non-empty string"),
    # TLS
    _case("verify", "/nonexistent/ca.pem", "verify", "readable CA bundle"),
    _case("verify", 1.5, "verify", "true, false, or the path of a CA bundle"),
    # behaviour switches
    _case("erase", "wipe-everything", "erase", "one of none, quick, full, secure, ceph"),
    _case("erase", 3, "erase", "one of none"),
    _case("lock_after_deploy", "perhaps", "lock_after_deploy", "true or false"),
    _case("lock_after_deploy", [True], "lock_after_deploy", "true or false"),
    _case("agent_name", "", "agent_name", "a non-empty string"),
    _case("agent_name", ["teuthology"], "agent_name", "a non-empty string"),
    _case("ssh_user", 42, "ssh_user", "a non-empty string"),
    _case("sentinel_file", "var/lib/cloud/boot-finished", "sentinel_file", "an absolute path"),
    _case("max_concurrent_actions", 0, "max_concurrent_actions", "an integer >= 1"),
    _case("max_concurrent_actions", "many", "max_concurrent_actions", "an integer >= 1"),
    _case("max_concurrent_actions", 2.5, "max_concurrent_actions", "an integer >= 1"),
    _case("lookup_retries", -1, "lookup_retries", "an integer >="),
    _case("machine_types", {"smithi": 1}, "machine_types", "a list of names"),
    _case("machine_types", [["smithi"]], "machine_types", "a list of names"),
    # templates and variables
    _case("user_data", "/nonexistent/user-data.yaml", "user_data", "readable cloud-init template"),
    _case("user_data", "{os_name}-{os_version}.yaml", "user_data", "unknown placeholder"),
    _case("user_data", "{os_type-{os_version}.yaml", "user_data", "balanced braces"),
    _case("user_data_vars", ["proxy", "http://x"], "user_data_vars", "a mapping"),
    _case("user_data_vars", {1: "x"}, "user_data_vars", "string keys"),
    # SSH
    _case("ssh_keys", "not-a-key-and-not-a-file", "ssh_keys", "public key", "not found"),
    _case("ssh_keys", [123], "ssh_keys", "a public key or a .pub file path"),
    _case("ssh_keys", {"key": "x"}, "ssh_keys", "a list of public keys"),
    _case("ssh_private_key", "/nonexistent/id_ed25519", "ssh_private_key", "a readable file"),
    _case("ssh_config", "/nonexistent/ssh_config", "ssh_config", "a readable file"),
    # image_map
    _case("image_map", "ubuntu/jammy", "image_map", "a mapping like"),
    _case("image_map", {"rocky 9": ""}, "image_map", "an image name"),
    _case("image_map", {"rocky": {"9": 9}}, "image_map", "an image name like rocky/9"),
]


def _write_config(
    tmp_path: Path, section: dict[str, Any], top: dict[str, Any] | None = None
) -> Path:
    path = tmp_path / "teuthology.yaml"
    path.write_text(yaml.safe_dump({**(top or {}), "maas": section}))
    return path


@pytest.fixture
def good_section(fault_lab) -> dict[str, Any]:
    return {
        "api_url": fault_lab.server.url,
        "api_key": fault_lab.key_for("teuthology"),
        "machine_types": ["smithi"],
        "ssh_keys": ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForConfigTests test"],
    }


def test_the_good_section_works_so_each_case_below_fails_for_its_own_key(
    fault_lab, good_section, tmp_path, monkeypatch
):
    monkeypatch.setenv("TEUTHOLOGY_CONFIG", str(_write_config(tmp_path, good_section)))
    provisioner = MaasProvisioner("smithi001")
    assert provisioner.machine().hostname == "smithi001"
    assert fault_lab.sim.request_log, "the control case must reach MAAS"


@pytest.mark.parametrize(("key", "value", "expected"), CASES)
def test_bad_config_is_refused_before_any_request(
    fault_lab, good_section, tmp_path, monkeypatch, key, value, expected
):
    section = dict(good_section)
    if value is MISSING:
        section.pop(key)
    else:
        section[key] = value
    monkeypatch.setenv("TEUTHOLOGY_CONFIG", str(_write_config(tmp_path, section)))

    with pytest.raises(ConfigError) as caught:
        MaasProvisioner("smithi001", "ubuntu", "22.04").create()

    message = str(caught.value)
    for fragment in expected:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert str(caught.value.key).startswith(key)
    assert SECRET not in message and SECRET not in repr(caught.value)
    assert SECRET[8:] not in message
    assert fault_lab.sim.request_log == [], "MAAS was called before the config was checked"
    assert fault_lab.status("smithi001") == "Ready"


def test_verify_false_with_a_ca_bundle_is_a_contradiction(
    fault_lab, good_section, tmp_path, monkeypatch
):
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")
    section = {**good_section, "verify": False, "ca_bundle": str(bundle)}
    monkeypatch.setenv("TEUTHOLOGY_CONFIG", str(_write_config(tmp_path, section)))
    with pytest.raises(ConfigError, match=r"ca_bundle.*contradict"):
        MaasProvisioner("smithi001")
    assert fault_lab.sim.request_log == []


def test_user_data_vars_may_not_redefine_per_deployment_variables(
    fault_lab, good_section, tmp_path, monkeypatch
):
    section = {**good_section, "user_data_vars": {"hostname": "evil"}}
    monkeypatch.setenv("TEUTHOLOGY_CONFIG", str(_write_config(tmp_path, section)))
    with pytest.raises(ConfigError, match="user_data_vars may not redefine hostname"):
        MaasProvisioner("smithi001").create()
    assert [r.method for r in fault_lab.sim.request_log if r.method != "GET"] == []
    assert fault_lab.status("smithi001") == "Ready"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("maas: [api_url: x\n", "not valid YAML"),
        ("- just\n- a list\n", "YAML mapping"),
        ("lab_domain: example.com\n", "no maas: section"),
        ("maas: [1, 2]\n", "a mapping of maas settings"),
    ],
    ids=["invalid-yaml", "top-level-list", "no-maas-section", "maas-not-a-mapping"],
)
def test_a_broken_config_file_is_refused_with_what_is_wrong(
    fault_lab, tmp_path, monkeypatch, content, expected
):
    path = tmp_path / "teuthology.yaml"
    path.write_text(content)
    monkeypatch.setenv("TEUTHOLOGY_CONFIG", str(path))
    with pytest.raises(ConfigError) as caught:
        MaasProvisioner("smithi001")
    assert expected in str(caught.value)
    assert fault_lab.sim.request_log == []


def test_an_unreadable_config_file_names_the_file(fault_lab, tmp_path, monkeypatch):
    monkeypatch.setenv("TEUTHOLOGY_CONFIG", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match=r"cannot read config file .*missing\.yaml"):
        MaasProvisioner("smithi001")
    assert fault_lab.sim.request_log == []
