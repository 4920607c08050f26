"""The API key's token secret never appears in log output (any level, any library logger),
exception texts or reprs, over a real HTTP call flow on loopback."""

from __future__ import annotations

import io
import logging
import traceback
from urllib.parse import quote

import pytest
import requests
from _maas_wire import FakeMaas

from teuthology_maas import redact as _redact
from teuthology_maas.config import MaasConfig
from teuthology_maas.errors import MaasAuthError, MaasError, MaasOutcomeUnknown
from teuthology_maas.maas.client import MaasClient, RetryPolicy

# A secret no other test uses, so nothing registered it before this module's client did.
LOG_SECRET = "L0gS3cretNeverPrintedAnywhere0042"
KEY = f"LogConsumerKey0001:LogTokenKey0000001:{LOG_SECRET}"
WATCHED = ["", "urllib3", "requests_oauthlib", "oauthlib", "requests", "teuthology_maas"]


@pytest.fixture
def debug_log():
    """Every record of every logger, at DEBUG, rendered with tracebacks."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    saved = {name: logging.getLogger(name).level for name in WATCHED}
    root = logging.getLogger()
    root.addHandler(handler)
    for name in WATCHED:
        logging.getLogger(name).setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    for name, level in saved.items():
        logging.getLogger(name).setLevel(level)


def assert_secret_absent(text: str) -> None:
    for form in {LOG_SECRET, quote(LOG_SECRET, safe=""), LOG_SECRET[:16]}:
        assert form not in text


def test_secret_absent_from_debug_logs_of_a_full_call_flow(debug_log):
    fake = FakeMaas()
    statuses = iter([503, 200, 200, 200, 401, 200])

    def behaviour(method, path, op):
        if op == "allocate":
            return ("drop",)
        status = next(statuses, 200)
        if status == 401:
            return ("json", 401, "Authorization Error: 'Invalid signature'")
        return ("json", status, {"system_id": "abc123", "hostname": "n1", "status": 9})

    fake.behaviour = behaviour
    retry = RetryPolicy(max_attempts=3, max_total=5, backoff_initial=0.01)
    try:
        cfg = MaasConfig.from_mapping({"api_url": fake.url, "api_key": KEY})
        with MaasClient.from_config(cfg, retry=retry) as client:
            client.get_machine("abc123")  # 503 then 200: a retry
            client.deploy("abc123", distro_series="jammy", user_data="#cloud-config\n")
            client.release("abc123", erase=True)
            with pytest.raises(MaasAuthError) as auth_error:
                client.get_machine("abc123")
            with pytest.raises(MaasOutcomeUnknown) as unknown:
                client.allocate(name="n1")
            logging.getLogger("teuthology_maas.test").error("failed", exc_info=unknown.value)
            texts = [repr(client), repr(cfg), str(cfg), repr(cfg.api_key), str(cfg.api_key)]
            for error in (auth_error.value, unknown.value):
                texts += [str(error), repr(error), error.maas_message or ""]
    finally:
        fake.close()
    output = debug_log.getvalue()
    # The capture really saw the libraries that handle the signed request ...
    assert "requests_oauthlib.oauth1_auth DEBUG Updated headers" in output
    assert "urllib3.connectionpool DEBUG" in output
    assert "teuthology_maas.maas.client DEBUG MAAS POST machines/abc123/?op=deploy -> 200" in output
    # ... and the Authorization header it logged carries the redacted signature.
    assert 'oauth_signature="%26<redacted>"' in output
    assert_secret_absent(output)
    for text in texts:
        assert_secret_absent(text)


def test_oauthlib_signature_debug_record_is_scrubbed(debug_log):
    MaasClient("http://127.0.0.1:9/MAAS/", KEY).close()
    # oauthlib logs the computed signature (for PLAINTEXT: `&` + secret) at DEBUG.
    logging.getLogger("oauthlib.oauth1.rfc5849").debug("Signature: %s", "&" + LOG_SECRET)
    logging.getLogger("requests_oauthlib.oauth1_auth").debug(
        "Updated headers: %s", {"Authorization": f'oauth_signature="%26{quote(LOG_SECRET)}"'}
    )
    output = debug_log.getvalue()
    assert "Signature: &<redacted>" in output
    assert_secret_absent(output)


def test_loggers_created_after_the_client_are_covered_when_a_secret_is_registered(debug_log):
    late = logging.getLogger("oauthlib.oauth1.rfc5849.endpoints.late_module_for_test")
    _redact.register_secret(LOG_SECRET)
    late.debug("base string %s", LOG_SECRET)
    assert_secret_absent(debug_log.getvalue())
    assert "base string <redacted>" in debug_log.getvalue()


def test_redact_replaces_every_registered_form():
    _redact.register_secret("Re+d/act=Me00")
    text = "a Re+d/act=Me00 b Re%2Bd%2Fact%3DMe00 c"
    assert _redact.redact(text) == "a <redacted> b <redacted> c"


def test_maas_error_repr_has_no_body_and_no_secret():
    error = MaasError("boom", machine="n1", http_status=500, maas_message=LOG_SECRET)
    assert LOG_SECRET not in repr(error)


def test_short_test_secrets_do_not_mangle_messages():
    _redact.register_secret("c")
    _redact.register_secret("ts")
    assert _redact.redact("No machine with system ID abc available.") == (
        "No machine with system ID abc available."
    )


@pytest.mark.parametrize("method", ["GET", "POST"])
def test_an_error_raised_from_a_transport_failure_chains_to_no_request(method):
    # requests' exceptions hold the prepared request, and so the signed Authorization header:
    # MaasUnavailable / MaasOutcomeUnknown must not reach them through __context__ either.
    with MaasClient(
        "http://127.0.0.1:9/MAAS/", KEY, retry=RetryPolicy(max_attempts=2, backoff_initial=0.01)
    ) as client, pytest.raises(MaasError) as caught:
        if method == "GET":
            client.whoami()
        else:
            client.deploy("abc123", distro_series="jammy")
    error = caught.value
    assert error.__context__ is None and error.__cause__ is None
    assert not any(
        isinstance(value, requests.PreparedRequest | requests.RequestException)
        for value in vars(error).values()
    )
    assert_secret_absent("".join(traceback.format_exception(error)))
