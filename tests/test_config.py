"""MaasConfig: defaults, normalisation and validation of every `maas:` key."""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import pytest
import yaml

from teuthology_maas.config import CONFIG_FIELDS, ApiKey, MaasConfig, normalize_api_url
from teuthology_maas.errors import ConfigError

SECRET = "S3cr3tT0kenSecretValue0123456789"
KEY = f"ConsumerKey0000001:TokenKey0000000001:{SECRET}"
PUBKEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOo0example0key0material0000000000000000 me@ctl"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path, monkeypatch):
    """No config test may read the developer's own ~/.ssh or ~/.teuthology.yaml."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("TEUTHOLOGY_CONFIG", raising=False)
    monkeypatch.setattr("teuthology_maas.config_values._warned", set())
    return home


def make(**keys):
    section = {"api_url": "http://maas.example.com:5240/MAAS/", "api_key": KEY}
    section.update(keys)
    return MaasConfig.from_mapping(section)


def error_for(**keys) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        make(**keys)
    return info.value


def test_defaults_of_every_optional_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = make()
    assert cfg.api_url == "http://maas.example.com:5240/MAAS/api/2.0/"
    assert cfg.api_key == ApiKey("ConsumerKey0000001", "TokenKey0000000001", SECRET)
    assert cfg.machine_types == ()
    assert (cfg.timeout, cfg.deploy_timeout, cfg.release_timeout) == (900, 1800, 1800)
    assert (cfg.abort_timeout, cfg.ssh_timeout, cfg.http_timeout) == (300, 600, 30)
    assert (cfg.poll_interval, cfg.poll_min_interval) == (10, 0.5)
    assert cfg.verify is True
    assert cfg.erase == "quick"
    assert cfg.agent_name == "teuthology-maas"
    assert cfg.user_data is None
    assert cfg.user_data_base == tmp_path
    assert cfg.user_data_vars == {}
    assert cfg.ssh_user == "ubuntu"
    assert cfg.ssh_keys == ()  # the isolated HOME has no ~/.ssh
    assert cfg.ssh_private_key is None and cfg.ssh_config is None
    assert cfg.image_map == {}
    assert cfg.lock_after_deploy is True
    assert cfg.sentinel_file == "/var/lib/cloud/instance/boot-finished"
    assert cfg.max_concurrent_actions == 16
    assert cfg.lookup_retries == 3
    assert cfg.lab_domain is None
    assert cfg.enabled is False


def test_a_section_without_optional_keys_gets_each_field_s_own_default():
    cfg = make()
    for spec in CONFIG_FIELDS:
        if spec.name in ("api_url", "api_key"):
            continue
        factory = spec.default_factory
        default = factory() if factory is not dataclasses.MISSING else spec.default
        assert getattr(cfg, spec.name) == default, spec.name
    # ... and a key whose field default is a literal is read the same when written out
    written = make(**{s.name: s.default for s in CONFIG_FIELDS
                      if isinstance(s.default, int | float | str) and s.name != "api_url"})
    assert written == cfg


def test_config_is_frozen():
    cfg = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.timeout = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    "given",
    [
        "http://maas:5240/MAAS",
        "http://maas:5240/MAAS/",
        "http://maas:5240/MAAS/api/2.0",
        "http://maas:5240/MAAS/api/2.0/",
        "http://maas:5240/MAAS//api/2.0//",
        "http://maas:5240//MAAS/",
        "  http://maas:5240/MAAS/  ",
    ],
)
def test_api_url_is_normalised_to_the_api_root(given):
    assert normalize_api_url(given) == "http://maas:5240/MAAS/api/2.0/"
    assert make(api_url=given).api_url == "http://maas:5240/MAAS/api/2.0/"


def test_api_url_at_the_server_root_and_https():
    assert normalize_api_url("https://maas.lab") == "https://maas.lab/api/2.0/"
    assert normalize_api_url("https://maas.lab/api/2.0/") == "https://maas.lab/api/2.0/"


@pytest.mark.parametrize(
    ("given", "expected_words"),
    [
        ("maas.example.com:5240/MAAS", "http:// or https:// URL"),
        ("ftp://maas/MAAS/", "http:// or https:// URL"),
        ("http:///MAAS/", "with a host"),
        ("http://maas/MAAS/api/1.0/", "API version 2.0"),
        ("http://maas/MAAS/?x=1", "without ?query"),
        ("http://maas:port/MAAS/", "numeric port"),
        ("", "the MAAS URL"),
        (42, "the MAAS URL"),
    ],
)
def test_bad_api_url_names_key_value_and_expectation(given, expected_words):
    error = error_for(api_url=given) if given != "" else None
    if error is None:  # an empty api_url counts as missing
        with pytest.raises(ConfigError) as info:
            make(api_url="")
        error = info.value
        assert "missing" in str(error)
    else:
        assert repr(given) in str(error)
    assert error.key == "api_url"
    assert expected_words in str(error)


def test_api_url_with_credentials_is_refused_without_echoing_them():
    error = error_for(api_url="http://admin:hunter2@maas/MAAS/")
    assert error.key == "api_url"
    assert "hunter2" not in str(error)


@pytest.mark.parametrize("missing", ["api_url", "api_key"])
def test_missing_required_key(missing):
    section = {"api_url": "http://maas/MAAS/", "api_key": KEY}
    del section[missing]
    with pytest.raises(ConfigError) as info:
        MaasConfig.from_mapping(section)
    assert info.value.key == missing
    assert "missing" in str(info.value)


@pytest.mark.parametrize(
    "bad_key",
    [
        f"only:{SECRET}",
        f"a:b:c:{SECRET}",
        f"ConsumerKey::{SECRET}",
        f"ConsumerKey:Token Key:{SECRET}",
        SECRET,
        f"ck:tk:{SECRET}:",
    ],
)
def test_malformed_api_key_is_refused_and_the_secret_not_shown(bad_key):
    error = error_for(api_key=bad_key)
    assert error.key == "api_key"
    assert "consumer_key:token_key:token_secret" in str(error)
    assert SECRET not in str(error) and SECRET not in repr(error)


def test_api_key_that_is_not_a_string():
    error = error_for(api_key=12345)
    assert error.key == "api_key" and "int" in str(error)


def test_api_key_repr_and_str_hide_the_secret():
    key = ApiKey.parse(KEY)
    assert (key.consumer_key, key.token_key, key.token_secret) == (
        "ConsumerKey0000001",
        "TokenKey0000000001",
        SECRET,
    )
    for text in (repr(key), str(key), repr(make()), str(make())):
        assert SECRET not in text
        assert "<redacted>" in text
    assert "ConsumerKey0000001" in repr(key)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["smithi", "mira"], ("smithi", "mira")),
        ("smithi, mira ,,", ("smithi", "mira")),
        ("smithi", ("smithi",)),
        ([" smithi ", "smithi"], ("smithi",)),
        (None, ()),
        ([], ()),
    ],
)
def test_machine_types_list_or_comma_string(given, expected):
    cfg = make(machine_types=given)
    assert cfg.machine_types == expected
    assert cfg.enabled is bool(expected)
    assert cfg.handles("smithi") is ("smithi" in expected)
    assert cfg.handles(None) is False


def test_machine_types_of_the_wrong_type():
    error = error_for(machine_types={"smithi": 1})
    assert error.key == "machine_types"
    assert "comma-separated" in str(error)


@pytest.mark.parametrize(
    "key",
    [
        "timeout",
        "deploy_timeout",
        "release_timeout",
        "abort_timeout",
        "ssh_timeout",
        "http_timeout",
        "poll_interval",
        "poll_min_interval",
    ],
)
@pytest.mark.parametrize("bad", [-1, 0, "soon", True, float("nan"), [5]])
def test_durations_must_be_positive_numbers(key, bad):
    error = error_for(**{key: bad})
    assert error.key == key
    assert "number of seconds" in str(error)


def test_durations_accept_numeric_strings_and_floats():
    cfg = make(timeout="1200", http_timeout=2.5)
    assert cfg.timeout == 1200.0 and cfg.http_timeout == 2.5


def test_deploy_timeout_defaults_to_the_larger_of_timeout_and_maas_own_bound():
    assert make(timeout=600).deploy_timeout == 1800
    assert make(timeout=3600).deploy_timeout == 3600
    assert make(timeout=3600, deploy_timeout=2400).deploy_timeout == 2400


def test_poll_interval_not_below_the_minimum_interval():
    error = error_for(poll_interval=0.1, poll_min_interval=0.5)
    assert error.key == "poll_interval"
    assert ">= 0.5" in str(error)
    assert make(poll_interval=0.2, poll_min_interval=0.1).poll_interval == 0.2


@pytest.mark.parametrize(
    ("key", "bad", "minimum"),
    [
        ("max_concurrent_actions", 0, 1),
        ("lookup_retries", -1, 0),
        ("max_concurrent_actions", "x", 1),
        ("max_concurrent_actions", 2.5, 1),
        ("lookup_retries", True, 0),
    ],
)
def test_integer_keys(key, bad, minimum):
    error = error_for(**{key: bad})
    assert error.key == key
    assert f"integer >= {minimum}" in str(error)
    assert make(**{key: "4"}).__getattribute__(key) == 4


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("none", "none"),
        ("quick", "quick"),
        ("FULL", "full"),
        ("secure", "secure"),
        ("ceph", "ceph"),
        (False, "none"),
        ("off", "none"),
        (True, "quick"),
        (None, "none"),
    ],
)
def test_erase_modes(given, expected):
    assert make(erase=given).erase == expected


def test_unknown_erase_mode():
    error = error_for(erase="fast")
    assert error.key == "erase"
    assert "'fast'" in str(error)
    assert "none, quick, full, secure, ceph" in str(error)


@pytest.mark.parametrize("key", ["agent_name", "ssh_user"])
def test_names_must_be_non_empty_strings(key):
    assert error_for(**{key: ""}).key == key
    assert error_for(**{key: 3}).key == key


@pytest.mark.parametrize(("given", "expected"), [(True, True), ("false", False), ("yes", True)])
def test_lock_after_deploy(given, expected):
    assert make(lock_after_deploy=given).lock_after_deploy is expected


def test_lock_after_deploy_not_a_boolean():
    error = error_for(lock_after_deploy="maybe")
    assert error.key == "lock_after_deploy" and "true or false" in str(error)


def test_sentinel_file_null_disables_and_relative_is_refused():
    assert make(sentinel_file=None).sentinel_file is None
    assert make(sentinel_file="").sentinel_file is None
    assert make(sentinel_file="/run/ready").sentinel_file == "/run/ready"
    error = error_for(sentinel_file="run/ready")
    assert error.key == "sentinel_file" and "absolute path" in str(error)


# ---- TLS -----------------------------------------------------------------------------------


def test_verify_false_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="teuthology_maas.config"):
        cfg = make(verify=False)
    assert cfg.verify is False
    assert any("NOT checked" in r.getMessage() for r in caplog.records)


def test_a_warning_is_given_once_per_process_not_per_node(caplog):
    with caplog.at_level(logging.WARNING, logger="teuthology_maas.config"):
        for _ in range(3):
            make(verify=False, timeuot=1)
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert any("NOT checked" in m for m in messages)
    assert any("timeuot" in m for m in messages)


def test_verify_true_does_not_warn(caplog):
    with caplog.at_level(logging.WARNING, logger="teuthology_maas.config"):
        make(verify=True)
    assert not caplog.records


def test_ca_bundle_path_is_resolved_against_the_config_directory(tmp_path):
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n")
    section = {"api_url": "https://maas/MAAS/", "api_key": KEY, "verify": "ca.pem"}
    cfg = MaasConfig.from_mapping(section, base_dir=tmp_path)
    assert cfg.verify == str(tmp_path / "ca.pem")
    assert cfg.ca_bundle == str(tmp_path / "ca.pem")
    alias = MaasConfig.from_mapping(
        {"api_url": "https://maas/MAAS/", "api_key": KEY, "ca_bundle": "ca.pem"}, base_dir=tmp_path
    )
    assert alias.verify == str(tmp_path / "ca.pem")


def test_missing_ca_bundle_names_the_key(tmp_path):
    error = error_for(ca_bundle=str(tmp_path / "nope.pem"))
    assert error.key == "ca_bundle"
    assert "nope.pem" in str(error)
    assert error_for(verify=str(tmp_path / "nope.pem")).key == "verify"


def test_ca_bundle_contradicting_verify_false(tmp_path):
    (tmp_path / "ca.pem").write_text("x")
    error = error_for(verify=False, ca_bundle=str(tmp_path / "ca.pem"))
    assert error.key == "ca_bundle" and "contradict" in str(error)


def test_verify_of_the_wrong_type():
    assert error_for(verify=3).key == "verify"
    assert make(verify="false").verify is False


# ---- user_data ---------------------------------------------------------------------------


def _teuthology_yaml(directory: Path, maas: dict, **top) -> Path:
    path = directory / "teuthology.yaml"
    document = {"maas": {"api_url": "http://maas/MAAS/", "api_key": KEY, **maas}, **top}
    path.write_text(yaml.safe_dump(document))
    return path


def test_user_data_relative_path_is_resolved_against_the_config_file(tmp_path, monkeypatch):
    conf_dir = tmp_path / "etc"
    (conf_dir / "ud").mkdir(parents=True)
    (conf_dir / "ud" / "ubuntu.yaml").write_text("#cloud-config\n")
    monkeypatch.chdir(tmp_path)  # somewhere the relative path does NOT exist
    cfg = MaasConfig.from_yaml(_teuthology_yaml(conf_dir, {"user_data": "ud/ubuntu.yaml"}))
    assert cfg.user_data == str(conf_dir / "ud" / "ubuntu.yaml")
    assert cfg.user_data_base == conf_dir


def test_user_data_relative_path_of_a_mapping_is_resolved_against_cwd(tmp_path, monkeypatch):
    (tmp_path / "user.yaml").write_text("#cloud-config\n")
    monkeypatch.chdir(tmp_path)
    assert make(user_data="user.yaml").user_data == str(tmp_path / "user.yaml")


def test_user_data_pattern_with_placeholders_is_not_checked_now(tmp_path):
    cfg = MaasConfig.from_yaml(
        _teuthology_yaml(tmp_path, {"user_data": "ud/{os_type}-{os_version}.yaml"})
    )
    assert cfg.user_data == str(tmp_path / "ud" / "{os_type}-{os_version}.yaml")
    assert cfg.user_data.format(os_type="ubuntu", os_version="22.04").endswith("ubuntu-22.04.yaml")


def test_user_data_file_that_does_not_exist(tmp_path):
    with pytest.raises(ConfigError) as info:
        MaasConfig.from_yaml(_teuthology_yaml(tmp_path, {"user_data": "missing.yaml"}))
    assert info.value.key == "user_data"
    assert "'missing.yaml'" in str(info.value)
    assert str(tmp_path / "missing.yaml") in str(info.value)


@pytest.mark.parametrize(
    ("pattern", "words"),
    [
        ("ud/{os_type}/{release}.yaml", "unknown placeholder(s): release"),
        ("ud/{os_type.yaml", "balanced braces"),
    ],
)
def test_user_data_pattern_with_bad_placeholders(pattern, words):
    error = error_for(user_data=pattern)
    assert error.key == "user_data" and words in str(error)


def test_user_data_empty_means_the_shipped_templates():
    assert make(user_data="").user_data is None
    assert make(user_data=None).user_data is None


def test_user_data_vars_must_be_a_mapping():
    assert make(user_data_vars={"proxy": "http://p:3128"}).user_data_vars == {
        "proxy": "http://p:3128"
    }
    assert error_for(user_data_vars=["a"]).key == "user_data_vars"


# ---- ssh -------------------------------------------------------------------------------


def test_ssh_keys_default_to_the_control_node_public_keys(_isolated_home):
    ssh = _isolated_home / ".ssh"
    ssh.mkdir()
    (ssh / "id_ed25519.pub").write_text(PUBKEY + "\n")
    (ssh / "id_rsa.pub").write_text("ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB other@ctl\n")
    (ssh / "known_hosts").write_text("ignored")
    assert make().ssh_keys == (PUBKEY, "ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB other@ctl")


def test_ssh_keys_inline_and_from_files(tmp_path):
    (tmp_path / "team.pub").write_text(f"# team keys\n{PUBKEY}\n\n")
    rsa = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQAB x@y"
    cfg = MaasConfig.from_mapping(
        {"api_url": "http://m/MAAS/", "api_key": KEY, "ssh_keys": [rsa, "team.pub"]},
        base_dir=tmp_path,
    )
    assert cfg.ssh_keys == (rsa, PUBKEY)
    assert make(ssh_keys=rsa).ssh_keys == (rsa,)


def test_ssh_keys_bad_entries(tmp_path):
    assert "not found" in str(error_for(ssh_keys=[str(tmp_path / "nope.pub")]))
    (tmp_path / "empty.pub").write_text("nothing here\n")
    error = error_for(ssh_keys=[str(tmp_path / "empty.pub")])
    assert error.key == "ssh_keys" and "holds no OpenSSH public key" in str(error)
    assert error_for(ssh_keys=[""]).key == "ssh_keys"
    assert error_for(ssh_keys={"a": 1}).key == "ssh_keys"


@pytest.mark.parametrize("key", ["ssh_private_key", "ssh_config"])
def test_ssh_files_must_exist_and_are_made_absolute(tmp_path, key):
    (tmp_path / "file").write_text("x")
    cfg = MaasConfig.from_mapping(
        {"api_url": "http://m/MAAS/", "api_key": KEY, key: "file"}, base_dir=tmp_path
    )
    assert getattr(cfg, key) == str(tmp_path / "file")
    error = error_for(**{key: str(tmp_path / "absent")})
    assert error.key == key and "does not exist" in str(error)


# ---- image_map ---------------------------------------------------------------------------


def test_image_map_flat_and_nested_with_numeric_yaml_keys():
    cfg = make(image_map={"rocky 9": "rocky/9", "centos": {9: "centos/centos9-stream"}})
    assert cfg.image_map == {"rocky 9": "rocky/9", "centos": {"9": "centos/centos9-stream"}}


@pytest.mark.parametrize(
    ("bad", "key"),
    [
        (["rocky/9"], "image_map"),
        ({"rocky": 9}, "image_map.rocky"),
        ({"rocky": {"9": ""}}, "image_map.rocky.9"),
    ],
)
def test_image_map_bad_shapes(bad, key):
    assert error_for(image_map=bad).key == key


# ---- sources -----------------------------------------------------------------------------


def test_from_yaml_reads_the_section_and_top_level_lab_domain(tmp_path):
    path = _teuthology_yaml(tmp_path, {"machine_types": "smithi"}, lab_domain="front.lab")
    cfg = MaasConfig.from_yaml(path)
    assert cfg.machine_types == ("smithi",)
    assert cfg.lab_domain == "front.lab"
    assert cfg.fqdn("smithi001") == "smithi001.front.lab"
    assert cfg.fqdn("smithi001.other") == "smithi001.other"
    assert cfg.source == str(path)


def test_from_yaml_accepts_a_file_holding_only_the_section(tmp_path):
    path = tmp_path / "maas.yaml"
    path.write_text(yaml.safe_dump({"api_url": "http://m/MAAS", "api_key": KEY}))
    assert MaasConfig.from_yaml(path).api_url == "http://m/MAAS/api/2.0/"


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("maas: [1, 2]\n", "a mapping of maas settings"),
        ("lab_domain: x\n", "no maas: section"),
        ("maas: {api_url: 'http://m/'\n", "not valid YAML"),
        ("- 1\n", "YAML mapping"),
    ],
)
def test_from_yaml_bad_documents(tmp_path, content, words):
    path = tmp_path / "t.yaml"
    path.write_text(content)
    with pytest.raises(ConfigError) as info:
        MaasConfig.from_yaml(path)
    assert info.value.key == "maas" and words in str(info.value)


def test_from_yaml_missing_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        MaasConfig.from_yaml(tmp_path / "absent.yaml")
    assert "cannot read config file" in str(info.value)


class FakeTeuthologyConfig:
    """Shaped like teuthology.config.TeuthologyConfig: attribute access and get()."""

    def __init__(self, conf: dict, yaml_path: str) -> None:
        self._conf = conf
        self.yaml_path = yaml_path

    def __getattr__(self, name):
        if name.startswith("_"):
            raise AttributeError(name)
        return self._conf.get(name)

    def get(self, key, default=None):
        return self._conf.get(key, default)


def test_from_teuthology_reads_maas_lab_domain_and_resolves_against_its_file(tmp_path):
    (tmp_path / "ud.yaml").write_text("#cloud-config\n")
    obj = FakeTeuthologyConfig(
        {
            "lab_domain": "front.lab",
            "maas": {
                "api_url": "http://m/MAAS",
                "api_key": KEY,
                "user_data": "ud.yaml",
                "machine_types": ["smithi"],
            },
        },
        str(tmp_path / ".teuthology.yaml"),
    )
    cfg = MaasConfig.from_teuthology(obj)
    assert cfg.lab_domain == "front.lab"
    assert cfg.user_data == str(tmp_path / "ud.yaml")
    assert cfg.machine_types == ("smithi",)
    # A plain dict works as well (teuthology's config.load({...}) in tests).
    assert MaasConfig.from_teuthology({"maas": {"api_url": "http://m/", "api_key": KEY}})


def test_from_teuthology_without_a_section():
    with pytest.raises(ConfigError) as info:
        MaasConfig.from_teuthology(FakeTeuthologyConfig({}, "/nowhere/.teuthology.yaml"))
    assert info.value.key == "maas"


def test_load_search_order(tmp_path, monkeypatch, _isolated_home):
    explicit = _teuthology_yaml(tmp_path, {"agent_name": "explicit"})
    env_dir = tmp_path / "env"
    env_dir.mkdir()
    env = _teuthology_yaml(env_dir, {"agent_name": "from-env"})
    (_isolated_home / ".teuthology.yaml").write_text(
        yaml.safe_dump({"maas": {"api_url": "http://m/", "api_key": KEY, "agent_name": "home"}})
    )
    assert MaasConfig.load(explicit).agent_name == "explicit"
    assert MaasConfig.load().agent_name == "home"
    monkeypatch.setenv("TEUTHOLOGY_CONFIG", str(env))
    assert MaasConfig.load().agent_name == "from-env"


def test_load_without_any_file(monkeypatch, _isolated_home):
    monkeypatch.setattr("teuthology_maas.config._CONFIG_SEARCH", ("~/.teuthology.yaml",))
    with pytest.raises(ConfigError) as info:
        MaasConfig.load()
    assert info.value.key == "maas" and "TEUTHOLOGY_CONFIG" in str(info.value)


def test_unknown_keys_are_ignored_with_a_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="teuthology_maas.config"):
        cfg = make(timeuot=5)
    assert cfg.timeout == 900
    assert any("timeuot" in r.getMessage() for r in caplog.records)


def test_activate_is_known_for_the_activation_hook(caplog):
    with caplog.at_level(logging.WARNING, logger="teuthology_maas.config"):
        make(activate=False, deploy_timeuot=5)
    warnings = [r.getMessage() for r in caplog.records]
    assert any("deploy_timeuot" in w for w in warnings)
    assert not any("activate" in w for w in warnings)


# ---- enabled / problem -------------------------------------------------------------------


def test_problem_and_usable_never_raise():
    good = {"api_url": "http://m/MAAS/", "api_key": KEY, "machine_types": "smithi"}
    assert MaasConfig.problem(good) is None and MaasConfig.usable(good)
    assert MaasConfig.problem(None) == "no maas: section"
    assert MaasConfig.problem({}) == "no maas: section"
    assert "not a mapping" in MaasConfig.problem(["x"])
    assert "machine_types" in MaasConfig.problem({**good, "machine_types": []})
    bad_key = {**good, "api_key": f"x:{SECRET}"}
    reason = MaasConfig.problem(bad_key)
    assert "api_key" in reason and SECRET not in reason
    assert not MaasConfig.usable(bad_key)
