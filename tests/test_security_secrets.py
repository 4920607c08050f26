"""The API key's token secret never shows: not in any log record of any logger at DEBUG, not in
exception texts or tracebacks, not in reprs, not in `teuthology-maas` output, not in the
simulator's request log. user_data (which may carry secrets) is not logged at INFO or above.

Everything below runs real requests over loopback, with faults, so the error paths (401, 500,
reset connections, failed deployments) are exercised as well as the happy path.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import subprocess
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest
import yaml

from tests.fixtures_reliability import TEST_PUBLIC_KEY
from teuthology_maas import cli
from teuthology_maas.config import ApiKey, MaasConfig
from teuthology_maas.errors import ConfigError, MaasError
from teuthology_maas.maas.client import MaasClient


class _Everything(logging.Handler):
    """Formats every record (with its traceback) as a handler writing a log file would."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, self.format(record)))

    def text(self, minimum: int = logging.DEBUG) -> str:
        return "\n".join(line for level, line in self.lines if level >= minimum)


@pytest.fixture
def all_logs() -> Iterator[_Everything]:
    """Every logger at DEBUG into one handler on the root logger."""
    handler = _Everything()
    root = logging.getLogger()
    saved = {}
    for name, logger in list(logging.root.manager.loggerDict.items()):
        if isinstance(logger, logging.Logger):
            saved[name] = (logger.level, logger.disabled)
            logger.setLevel(logging.DEBUG)
            logger.disabled = False
    root_level = root.level
    root.setLevel(logging.DEBUG)
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(root_level)
        for name, (level, disabled) in saved.items():
            logger = logging.getLogger(name)
            logger.setLevel(level)
            logger.disabled = disabled


def _secret(lab, user: str = "teuthology") -> str:
    return lab.key_for(user).split(":")[2]


def _forms(secret: str) -> list[str]:
    """The shapes a secret takes on the wire: raw, URL-encoded, PLAINTEXT signature."""
    return [secret, quote(secret, safe=""), f"&{secret}", quote(f"&{secret}", safe="")]


def _assert_absent(secret: str, text: str, where: str) -> None:
    for form in _forms(secret):
        assert form not in text, f"the token secret appears in {where}"


def _explain(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)) + repr(exc) + str(exc)


def test_no_secret_anywhere_through_a_faulty_lifecycle(fault_lab, all_logs, capfd):
    lab = fault_lab
    secret = _secret(lab)
    lab.sim.faults.add("error", status=503, retry_after=1, op="allocate", times=1)
    lab.sim.faults.add("error", status=500, op="lock", times=1, body="injected lock failure")
    lab.proxy.add("reset_after", method="POST", op="deploy")
    lab.sim.faults.add("deploy_fail", machine="smithi003", reason="injected", times=1)
    errors: list[BaseException] = []

    provisioner = lab.provisioner("smithi001")
    try:
        provisioner.create()
    except MaasError as exc:
        errors.append(exc)
    lab.provisioner("smithi002").create()
    lab.provisioner("smithi002").release()
    try:
        lab.provisioner("smithi003").create()
    except MaasError as exc:
        errors.append(exc)

    assert len(errors) == 2, errors  # the 500 on lock and the failed deployment
    logs = all_logs.text()
    assert "oauth" in logs.lower(), "the signing libraries' DEBUG records were not captured"
    _assert_absent(secret, logs, "the DEBUG logs")
    for exc in errors:
        _assert_absent(secret, _explain(exc), f"{type(exc).__name__}")
    out, err = capfd.readouterr()
    _assert_absent(secret, out + err, "stdout/stderr")
    _assert_absent(secret, repr(list(lab.sim.request_log)), "the simulator's request log")
    for machine in lab.sim.machines():
        _assert_absent(secret, repr(machine), "MAAS's machine records")
        _assert_absent(secret, repr(lab.sim.events_for(machine["system_id"])), "MAAS events")


def test_a_rejected_key_does_not_leak_either_secret(fault_lab, all_logs):
    lab = fault_lab
    real = _secret(lab)
    consumer, token, _ = lab.key_for("teuthology").split(":")
    wrong = "WrongSecretWrongSecretWrongSecret"
    config = lab.config(api_key=f"{consumer}:{token}:{wrong}")

    with pytest.raises(MaasError) as caught:
        lab.provisioner("smithi001", config=config).create()

    assert "401" in str(caught.value) or "rejected" in str(caught.value)
    for secret in (real, wrong):
        _assert_absent(secret, _explain(caught.value), "the 401 error")
        _assert_absent(secret, all_logs.text(), "the logs of a 401")


@pytest.mark.parametrize(
    "shape",
    ["{c}:{t}:{s}:extra", "{c}::{s}", "{c}:{t} {s}", "{c}:{t}:{s}\n{s}"],
    ids=["four-fields", "empty-token", "space", "newline"],
)
def test_a_malformed_key_is_refused_without_quoting_its_secret(fault_lab, all_logs, shape):
    secret = "MalformedKeySecretValue0123456789"
    value = shape.format(c="consumer", t="token", s=secret)
    with pytest.raises(ConfigError) as caught:
        MaasConfig.from_mapping({"api_url": fault_lab.url, "api_key": value})
    _assert_absent(secret, _explain(caught.value), "the ConfigError")
    _assert_absent(secret, all_logs.text(), "the logs")


def test_reprs_and_strs_hold_no_secret(fault_lab):
    secret = _secret(fault_lab)
    config = fault_lab.config()
    client = fault_lab.client(config)
    provisioner = fault_lab.provisioner("smithi001", config=config)
    key = ApiKey.parse(fault_lab.key_for("teuthology"))
    for thing in (config, client, provisioner, key, config.api_key):
        _assert_absent(secret, repr(thing), f"repr({type(thing).__name__})")
        _assert_absent(secret, str(thing), f"str({type(thing).__name__})")
    _assert_absent(secret, repr(vars(provisioner)), "the provisioner's attributes")
    with MaasClient(config.api_url, config.api_key) as other:
        _assert_absent(secret, repr(other), "repr(MaasClient)")


def _cli_config(lab, tmp_path: Path, api_key: str | None = None) -> Path:
    path = tmp_path / "teuthology.yaml"
    section = {
        "api_url": lab.url,
        "api_key": api_key or lab.key_for("teuthology"),
        "machine_types": ["smithi"],
        "ssh_keys": [TEST_PUBLIC_KEY],
        "deploy_timeout": 20,
        "release_timeout": 20,
        "ssh_timeout": 2,
        "poll_interval": 0.05,
        "poll_min_interval": 0.01,
    }
    path.write_text(yaml.safe_dump({"lab_domain": "front.example", "maas": section}))
    return path


CLI_COMMANDS = [
    ["doctor"],
    ["machines"],
    ["--json", "machines"],
    ["deploy", "smithi004"],
    ["events", "smithi004"],
    ["--json", "events", "smithi004"],
    ["abort", "smithi004"],
    ["release", "smithi004"],
    ["release", "smithi999"],
    ["deploy", "smithi005", "--os-version", "99.99"],
]


def test_cli_output_holds_no_secret(fault_lab, tmp_path, all_logs):
    secret = _secret(fault_lab)
    config = _cli_config(fault_lab, tmp_path)
    outputs = []
    for command in CLI_COMMANDS:
        stdout, stderr = io.StringIO(), io.StringIO()
        code = cli.run(["--config", str(config), *command], stdout, stderr)
        outputs.append((command, code, stdout.getvalue() + stderr.getvalue()))
    assert any(code == 0 for _, code, _ in outputs), outputs
    assert any(code != 0 for _, code, _ in outputs), "the error paths were not exercised"
    for command, _, text in outputs:
        _assert_absent(secret, text, f"`teuthology-maas {' '.join(command)}`")
    _assert_absent(secret, all_logs.text(), "the logs of the CLI")


def test_cli_output_with_a_rejected_or_malformed_key_holds_no_secret(fault_lab, tmp_path):
    consumer, token, _ = fault_lab.key_for("teuthology").split(":")
    for secret, key in [
        (
            "RejectedSecretRejectedSecret0001",
            f"{consumer}:{token}:RejectedSecretRejectedSecret0001",
        ),
        (
            "MalformedSecretMalformedSecret01",
            f"{consumer}:{token}:MalformedSecretMalformedSecret01:x",
        ),
    ]:
        config = _cli_config(fault_lab, tmp_path, api_key=key)
        for command in (["doctor"], ["machines"], ["release", "smithi001"]):
            stdout, stderr = io.StringIO(), io.StringIO()
            code = cli.run(["--config", str(config), *command], stdout, stderr)
            assert code != 0
            _assert_absent(secret, stdout.getvalue() + stderr.getvalue(), f"{command}")


def test_the_installed_command_prints_no_secret(fault_lab, tmp_path):
    secret = _secret(fault_lab)
    config = _cli_config(fault_lab, tmp_path)
    command = Path(sys.executable).parent / "teuthology-maas"
    for args in (["doctor"], ["machines"], ["release", "smithi001"]):
        done = subprocess.run(
            [str(command), "--config", str(config), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "NO_COLOR": "1"},
            check=False,
        )
        _assert_absent(secret, done.stdout + done.stderr, f"teuthology-maas {args}")


def test_user_data_is_not_logged_at_info(fault_lab, all_logs, tmp_path):
    marker = "user-data-secret-7f3a9c"
    template = tmp_path / "t.yaml"
    template.write_text(
        "#cloud-config\n"
        "hostname: {{ hostname }}\n"
        "ssh_authorized_keys: {{ ssh_authorized_keys | tojson }}\n"
        "write_files:\n"
        "  - path: /etc/lab-token\n"
        "    content: {{ lab_token | tojson }}\n"
    )
    config = fault_lab.config(user_data=str(template), user_data_vars={"lab_token": marker})
    fault_lab.provisioner("smithi001", config=config).create()

    served = fault_lab.sim.user_data("smithi001") or b""
    assert marker.encode() in served, "the test template did not reach MAAS"
    info = all_logs.text(logging.INFO)
    assert marker not in info
    assert base64.b64encode(served).decode()[:40] not in info
    assert "write_files" not in info
