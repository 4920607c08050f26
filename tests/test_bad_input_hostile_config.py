"""The hostile-input suite, part two: configuration, where the secret may go, and the simulator.

A `maas:` section of any shape, the API key pasted where it does not belong, YAML alias bombs
and self-referencing structures in every kind of key, files that are not UTF-8, an api_url on
a cloud-metadata address, plain http, and a simulator asked to bind a name that only looks
like loopback. Each case asserts the typed error and what it names, bounded time and memory
where the input could blow either up (a child process reports its peak RSS), nothing sent
anywhere, and the secret nowhere: not in the message, the repr, or the CLI's output.
"""

from __future__ import annotations

import json
import logging
import socket
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
import yaml
from _maas_wire import FakeMaas

from tests._cli_support import run_cli
from teuthology_maas.config import MaasConfig
from teuthology_maas.errors import ConfigError
from teuthology_maas.maas import deadline as _deadline
from teuthology_maas.maas.client import MaasClient, RetryPolicy
from teuthology_maas.simulator import Simulator

SECRET = "Hst1leS3cretHst1leS3cretHst1leS3"  # shaped like MAAS's: 32 alphanumerics
KEY = f"HostileConsumerKey:HostileTokenKeyAB:{SECRET}"
URL = "http://maas.example.com:5240/MAAS/"
SLACK = 10.0


def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text and SECRET[:12] not in text


def write(tmp_path: Path, text: str, name: str = "teuthology.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


# -- any shape of maas:, the key anywhere ----------------------------------------------------

SHAPES = [
    pytest.param(f"maas:\n  - api_url: {URL}\n  - api_key: {KEY}\n", id="list-of-mappings"),
    pytest.param(f"maas:\n  - {KEY}\n", id="list-of-strings"),
    pytest.param(f"maas: {KEY}\n", id="the-key-as-the-section"),
    pytest.param(f"maas:\n  api_url: {URL}\n  api_key: [{KEY}]\n", id="key-in-a-list"),
    pytest.param(f"maas:\n  api_url: {URL}\n  api_key: {{k: {KEY}}}\n", id="key-in-a-mapping"),
    pytest.param(f"maas:\n  api_url: {URL}\n  api_key: {KEY}:extra\n", id="key-with-4-fields"),
    pytest.param(f"maas:\n  api_url: {URL}\n  api_key: {KEY} x\n", id="key-with-a-space"),
    pytest.param(f"maas:\n  api_url: {KEY}\n  api_key: {KEY}\n", id="key-as-api-url"),
    pytest.param(f"maas:\n  api_url: {URL}\n  api_key: {KEY}\n  erase: {KEY}\n", id="in-erase"),
    pytest.param(
        f"maas:\n  api_url: {URL}\n  api_key: {KEY}\n  erase: {SECRET}\n", id="secret-in-erase"
    ),
    pytest.param(
        f"maas:\n  api_url: {URL}\n  api_key: {KEY}\n  sentinel_file: {SECRET}\n",
        id="secret-in-sentinel-file",
    ),
    pytest.param(
        f"maas:\n  api_url: {URL}\n  api_key: {KEY}\n  max_concurrent_actions: [{SECRET}]\n",
        id="secret-in-a-number",
    ),
    pytest.param(
        f"maas:\n  maas:\n    api_url: {URL}\n    api_key: {KEY}\n", id="nested-maas-section"
    ),
]


@pytest.mark.parametrize("text", SHAPES)
def test_no_shape_of_maas_shows_the_secret(tmp_path, text):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        MaasConfig.from_yaml(path)
    assert_no_secret(str(caught.value), repr(caught.value))
    section = yaml.safe_load(text)["maas"]
    problem = MaasConfig.problem(section)
    assert problem is not None
    assert_no_secret(problem)
    result = run_cli("machines", config=path)
    assert result.code == 2, result.err
    assert "ConfigError" in result.err and "Traceback" not in result.err
    assert_no_secret(result.out, result.err)


# -- values too large or too deep to be settings ---------------------------------------------

BOMB = "\n".join(
    [
        'bomb_a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]',
        *(
            f"bomb_{b}: &{b} [{', '.join(['*' + a] * 9)}]"
            for a, b in zip("abcdefgh", "bcdefghi", strict=True)
        ),
    ]
)  # *i expands to 9**9 (387 million) strings; the document itself is a few hundred bytes
CHILD = """
import json, resource, sys, time
import yaml
from teuthology_maas.config import MaasConfig
from teuthology_maas.errors import ConfigError
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
started = time.monotonic()
out = {}
try:
    MaasConfig.from_yaml(sys.argv[1])
    out["accepted"] = True
except ConfigError as exc:
    out.update(key=exc.key, message=str(exc), repr=repr(exc))
with open(sys.argv[1], encoding="utf-8") as stream:
    out["problem"] = MaasConfig.problem(yaml.safe_load(stream)["maas"])
out["elapsed"] = time.monotonic() - started
out["growth_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
print(json.dumps(out))
"""


def run_child(path: Path) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


LARGE_VALUES = [
    pytest.param("machine_types", "*i", "more than 10000 items", id="bomb-machine-types"),
    pytest.param("api_url", "*i", "more than 10000 items", id="bomb-api-url"),
    pytest.param("image_map", "{ubuntu: *i}", "more than 10000 items", id="bomb-image-map"),
    pytest.param("user_data_vars", "{packages: *i}", "more than 10000 items", id="bomb-vars"),
    pytest.param("ssh_keys", "*i", "more than 10000 items", id="bomb-ssh-keys"),
    pytest.param("erase", "*i", "more than 10000 items", id="bomb-erase"),
    pytest.param("user_data_vars", "&r {r: *r}", "levels of nesting", id="self-reference"),
    pytest.param("machine_types", "[" * 40 + "]" * 40, "levels of nesting", id="40-deep"),
    pytest.param(
        "user_data_vars", "{big: " + "x" * (1024 * 1024 + 1) + "}", "a string of", id="1MiB-str"
    ),
]


@pytest.mark.parametrize(("key", "value", "fragment"), LARGE_VALUES)
def test_a_value_too_large_to_be_a_setting_is_refused_unexpanded(tmp_path, key, value, fragment):
    path = write(
        tmp_path, f"{BOMB}\nmaas:\n  api_url: {URL}\n  api_key: {KEY}\n  {key}: {value}\n"
    )
    result = run_child(path)
    assert "accepted" not in result
    assert result["key"] == key
    assert fragment in result["message"] and "alias bomb" in result["message"]
    assert len(result["message"]) < 600 and len(result["problem"]) < 600
    assert result["elapsed"] < SLACK
    assert result["growth_mb"] < 50, f"grew {result['growth_mb']:.0f} MB"
    assert_no_secret(result["message"], result["repr"], result["problem"])


def test_a_bomb_through_the_cli_is_one_short_line(tmp_path):
    path = write(tmp_path, f"{BOMB}\nmaas:\n  api_url: {URL}\n  api_key: {KEY}\n  erase: *i\n")
    done = subprocess.run(
        [sys.executable, "-m", "teuthology_maas.cli", "doctor", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode in (2, 3), done.stderr
    assert "Traceback" not in done.stderr and "MemoryError" not in done.stdout + done.stderr
    assert "alias bomb" in done.stdout + done.stderr
    assert len(done.stdout + done.stderr) < 5000
    assert_no_secret(done.stdout, done.stderr)


def test_too_many_keys_is_not_a_configuration(tmp_path):
    section = {"api_url": URL, "api_key": KEY, **{f"k{i}": i for i in range(500)}}
    with pytest.raises(ConfigError) as caught:
        MaasConfig.from_mapping(section)
    assert "a dict of 502 item(s)" in str(caught.value)


# -- files that are not UTF-8 ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "offset", "line"),
    [
        pytest.param(b"maas:\n  api_url: http://ma\xe9s:5240/\n", 26, 2, id="latin-1"),
        pytest.param("maas: {}\n".encode("utf-16"), 0, 1, id="utf-16"),
        pytest.param(b"# ok\n# ok\nmaas:\n  agent_name: \xff\xfe\n", 30, 4, id="binary"),
    ],
)
def test_a_config_file_that_is_not_utf8_names_the_file_and_byte(tmp_path, content, offset, line):
    assert content[offset] >= 0x80 or offset == 0  # the first byte that is not UTF-8
    path = tmp_path / "teuthology.yaml"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as caught:
        MaasConfig.from_yaml(path)
    message = str(caught.value)
    assert str(path) in message and "not UTF-8" in message
    assert f"offset {offset}" in message and f"line {line}" in message
    result = run_cli("machines", config=path)
    assert result.code == 2 and "Traceback" not in result.err


# -- where the signed requests may go --------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/", "metadata service address"),
        ("http://169.254.10.20:5240/MAAS/", "link-local"),
        ("http://[fe80::1]:5240/MAAS/", "link-local"),
        ("http://[fe80::1%25eth0]:5240/MAAS/", "link-local"),
        ("http://[::ffff:169.254.169.254]/", "metadata service address"),
        ("http://[fd00:ec2::254]/", "metadata service address"),
        ("http://100.100.100.200/", "metadata service address"),
        ("http://metadata.google.internal/computeMetadata/", "metadata service name"),
        ("https://METADATA.google.internal./", "metadata service name"),
        ("http://instance-data/latest/", "metadata service name"),
    ],
)
def test_api_url_on_a_metadata_or_link_local_address_is_refused(url, why):
    with pytest.raises(ConfigError) as caught:
        MaasConfig.from_mapping({"api_url": url, "api_key": KEY})
    assert caught.value.key == "api_url" and why in str(caught.value)
    with pytest.raises(ConfigError):
        MaasClient(url, KEY)


def test_a_name_that_resolves_to_a_forbidden_address_is_refused_on_connect(monkeypatch):
    # The address connected to is checked too: a lab name may resolve to the metadata service.
    # Loopback stands in for it here; nothing may be sent once the peer is known.
    fake = FakeMaas()
    monkeypatch.setattr(
        _deadline, "forbidden_address", lambda host: "a link-local address" * (host == "127.0.0.1")
    )
    try:
        with (
            MaasClient(fake.url, KEY, retry=RetryPolicy(max_attempts=1)) as client,
            pytest.raises(ConfigError) as caught,
        ):
            client.whoami()
        assert "resolved to 127.0.0.1, a link-local address" in str(caught.value)
        assert fake.requests == []
        assert caught.value.__context__ is None
    finally:
        fake.close()


def test_plain_http_to_another_host_warns_once_per_process(caplog):
    host = f"maas-{uuid.uuid4().hex[:8]}.example.com"
    with caplog.at_level(logging.WARNING, logger="teuthology_maas.maas.client"):
        for url in (f"http://{host}:5240/MAAS/", f"http://{host}:5240/MAAS/api/2.0/"):
            MaasClient(url, KEY).close()
        for url in ("http://127.0.0.1:5240/MAAS/", "http://localhost:5240/MAAS/",
                    f"https://{host}:5443/MAAS/"):
            MaasClient(url, KEY).close()
    warnings = [r.getMessage() for r in caplog.records if "clear text" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert host in warnings[0]
    assert_no_secret(*warnings)


# -- the simulator binds only loopback -------------------------------------------------------


def _resolving(monkeypatch, answers: dict[str, list[str]]) -> None:
    real = socket.getaddrinfo

    def fake(host, port, *args, **kwargs):
        if host in answers:
            return [
                (socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, port))
                for a in answers[host]
            ]
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)


@pytest.mark.parametrize(
    ("host", "addresses"),
    [
        ("127.attacker.example.com", ["203.0.113.9"]),
        ("localhost.attacker.example.com", ["127.0.0.1", "203.0.113.9"]),
        ("::1.example.com", ["2001:db8::1"]),
        ("0.0.0.0", None),
        ("::", None),
    ],
)
def test_the_simulator_binds_only_names_that_resolve_to_loopback(monkeypatch, host, addresses):
    if addresses is not None:
        _resolving(monkeypatch, {host: addresses})
    with pytest.raises(ValueError, match="loopback") as caught:
        Simulator().serve(host)
    if addresses is not None:
        assert next(a for a in addresses if not a.startswith("127.")) in str(caught.value)


def test_a_name_resolving_to_loopback_is_bound_by_address(monkeypatch):
    _resolving(monkeypatch, {"maas.test": ["127.0.0.1"]})
    with Simulator().serve("maas.test") as server:
        assert server.url.startswith("http://127.0.0.1:")


def test_a_busy_port_is_an_oserror_not_an_exit(tmp_path):
    with Simulator().serve() as first:
        with pytest.raises(OSError, match="in use") as caught:
            Simulator().serve("127.0.0.1", first.port)
        assert not isinstance(caught.value, SystemExit)
        result = run_cli("simulator", "--port", str(first.port))
    assert result.code == 2
    assert "in use" in result.err and "Traceback" not in result.err
