"""TLS: certificates are verified by default, a CA bundle can be configured, and verification
is off only when asked for, with a warning. The simulator is served over HTTPS by a TLS front
whose certificate (for 127.0.0.1) a throw-away test CA signed.
"""

from __future__ import annotations

import logging

import pytest
from urllib3.exceptions import InsecureRequestWarning

from teuthology_maas import config_values as _config_values
from teuthology_maas.config import MaasConfig
from teuthology_maas.errors import MaasError
from teuthology_maas.maas.client import MaasClient


def test_verification_is_on_by_default():
    config = MaasConfig.from_mapping(
        {"api_url": "https://maas.example.com:5443/MAAS/", "api_key": "a:b:c"}
    )
    assert config.verify is True
    with MaasClient.from_config(config) as client:
        assert client.session.verify is True


def test_an_untrusted_certificate_is_refused_by_default(tls_front):
    config = tls_front.config()
    with pytest.raises(MaasError) as caught:
        tls_front.lab.client(config, max_attempts=2).whoami()
    message = str(caught.value)
    assert "CERTIFICATE_VERIFY_FAILED" in message or "certificate verify failed" in message
    # The request never got through the TLS front to MAAS.
    assert tls_front.lab.sim.request_log == []


def test_a_certificate_from_another_ca_is_refused_with_a_bundle_configured(tls_front):
    config = tls_front.config(verify=str(tls_front.other_ca_path))
    with pytest.raises(MaasError, match=r"(?i)certificate verify failed"):
        tls_front.lab.client(config, max_attempts=2).whoami()
    assert tls_front.lab.sim.request_log == []


@pytest.mark.parametrize("key", ["verify", "ca_bundle"])
def test_the_configured_ca_bundle_is_trusted(tls_front, key, monkeypatch):
    # Lab hosts often export a system bundle; the configured one must still win.
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setenv("CURL_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    config = tls_front.config(**{key: str(tls_front.ca_path)})
    assert config.verify == str(tls_front.ca_path)
    assert tls_front.lab.client(config).whoami()["username"] == "teuthology"
    provisioner = tls_front.lab.provisioner("smithi001", config=config)
    provisioner.create()
    provisioner.release()
    assert tls_front.lab.status("smithi001") == "Ready"


def test_the_ca_bundle_is_checked_against_the_hostname(tls_front):
    """The certificate names 127.0.0.1 and maas.test; 'localhost' is neither."""
    url = tls_front.url.replace("127.0.0.1", "localhost")
    config = tls_front.lab.config(api_url=url, verify=str(tls_front.ca_path))
    with pytest.raises(MaasError, match=r"(?i)certificate|hostname"):
        tls_front.lab.client(config, max_attempts=2).whoami()


@pytest.fixture
def fresh_process_warnings(monkeypatch):
    """Configuration warnings are said once per process; start as a fresh process would."""
    monkeypatch.setattr(_config_values, "_warned", set())


def test_insecure_only_when_asked_and_then_with_a_warning(
    tls_front, caplog, fresh_process_warnings
):
    caplog.set_level(logging.WARNING)
    config = tls_front.config(verify=False)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert any("verify is false" in r.getMessage() and "NOT" in r.getMessage() for r in warnings)
    # And every unverified request is flagged as such, too.
    with pytest.warns(InsecureRequestWarning):
        assert tls_front.lab.client(config).whoami()["username"] == "teuthology"


@pytest.mark.parametrize("value", ["false", "no", "False"])
def test_insecure_spelled_as_a_string_also_warns(tls_front, caplog, value, fresh_process_warnings):
    caplog.set_level(logging.WARNING)
    config = tls_front.config(verify=value)
    assert config.verify is False
    assert any("NOT checked" in r.getMessage() for r in caplog.records)


def test_a_secure_config_does_not_warn(tls_front, caplog, fresh_process_warnings):
    caplog.set_level(logging.WARNING)
    tls_front.config(verify=str(tls_front.ca_path))
    tls_front.config()
    assert not [r for r in caplog.records if "verify" in r.getMessage()]
