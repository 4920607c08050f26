"""MaasClient retry policy and typed errors, with `responses` and a manual clock: which
statuses and transport failures are retried, for which methods, and for how long."""

from __future__ import annotations

import http.client
import logging

import pytest
import requests
import responses
from _maas_wire import API_KEY, ROOT, SECRET, oauth_fields
from urllib3.exceptions import MaxRetryError, NewConnectionError, ProtocolError

from teuthology_maas.errors import (
    MaasAuthError,
    MaasBadRequest,
    MaasConflict,
    MaasError,
    MaasHTTPError,
    MaasNotFound,
    MaasOutcomeUnknown,
    MaasPermissionDenied,
    MaasServerError,
    MaasUnavailable,
    NoMachineAvailable,
)
from teuthology_maas.maas.client import MaasClient, RetryPolicy

MACHINE = {"system_id": "abc123", "hostname": "smithi001", "status": 9}
MACHINE_URL = ROOT + "machines/abc123/"


class ManualTime:
    """Sleep advances the clock instead of waiting; every sleep is recorded."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds

    def monotonic(self) -> float:
        return self.now


POLICY = RetryPolicy(
    max_attempts=4,
    max_total=60.0,
    backoff_initial=1.0,
    backoff_factor=2.0,
    backoff_max=8.0,
)


@pytest.fixture
def clock():
    return ManualTime()


@pytest.fixture
def client(clock):
    with MaasClient(ROOT, API_KEY, retry=POLICY, sleep=clock.sleep, clock=clock.monotonic) as c:
        yield c


@pytest.fixture
def maas():
    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        yield mock


def answers(maas, method, url, *replies):
    """Register replies served in order (the last one repeats)."""
    for reply in replies:
        if isinstance(reply, BaseException):
            maas.add(method, url, body=reply)
        else:
            status, body, headers = reply
            kwargs = {"json": body} if not isinstance(body, str) else {"body": body}
            maas.add(method, url, status=status, headers=headers or {}, **kwargs)


def ok(body=MACHINE):
    return (200, body, None)


def refused() -> requests.exceptions.ConnectionError:
    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111]")
    return requests.exceptions.ConnectionError(MaxRetryError(None, MACHINE_URL, reason))


def dropped() -> requests.exceptions.ConnectionError:
    return requests.exceptions.ConnectionError(
        ProtocolError("Connection aborted.", http.client.RemoteDisconnected("closed"))
    )


# ---- retried statuses ----------------------------------------------------------------------


def test_503_with_retry_after_is_retried_after_that_long(maas, client, clock):
    answers(maas, "GET", MACHINE_URL, (503, "No rack controllers", {"Retry-After": "10"}), ok())
    machine = client.get_machine("abc123")
    assert machine.system_id == "abc123"
    assert len(maas.calls) == 2
    assert clock.sleeps == [10.0]


@pytest.mark.parametrize(
    ("status", "headers"),
    [(503, {"Retry-After": "10"}), (503, None), (409, {"Retry-After": "5"}), (502, None)],
    ids=["503-retry-after", "503", "409-retry-after", "502"],
)
def test_a_post_that_may_have_been_applied_is_never_sent_again_by_the_client(
    maas, client, clock, status, headers
):
    """A proxy in front of MAAS may answer 503 (or MAAS a retryable 409) after the POST was
    applied: the client says the outcome is unknown, with what the answer said, and leaves
    it to the caller to re-read the machine before anything is sent again."""
    answers(maas, "POST", MACHINE_URL, (status, "No rack controllers", headers), ok())
    with pytest.raises(MaasOutcomeUnknown) as info:
        client.deploy("abc123", distro_series="jammy")
    assert len(maas.calls) == 1 and clock.sleeps == []
    error = info.value
    assert (error.op, error.http_status) == ("deploy", status)
    expected_wait = float(headers["Retry-After"]) if headers else None
    assert error.retry_after == expected_wait
    assert "outcome unknown" in str(error) and f"HTTP {status}" in str(error)


def test_503_without_retry_after_backs_off(maas, client, clock):
    answers(maas, "GET", MACHINE_URL, (503, "busy", None), (503, "busy", None), ok())
    client.get_machine("abc123")
    assert clock.sleeps == [1.0, 2.0]


def test_409_with_retry_after_is_a_db_conflict_and_retried(maas, client, clock):
    answers(maas, "GET", MACHINE_URL, (409, "<html>conflict</html>", {"Retry-After": "5"}), ok())
    client.get_machine("abc123")
    assert len(maas.calls) == 2
    assert clock.sleeps == [5.0]


def test_retry_after_as_an_http_date(maas, client, clock):
    answers(
        maas,
        "GET",
        MACHINE_URL,
        (503, "later", {"Retry-After": "Fri, 01 Jan 1999 00:00:00 GMT"}),  # already past
        ok(),
    )
    client.get_machine("abc123")
    assert clock.sleeps == [0.0]


def test_every_retry_is_signed_with_a_new_nonce(maas, client):
    answers(maas, "GET", MACHINE_URL, (503, "x", {"Retry-After": "1"}), ok())
    client.get_machine("abc123")
    nonces = [oauth_fields(c.request.headers["Authorization"])["oauth_nonce"] for c in maas.calls]
    timestamps = [
        oauth_fields(c.request.headers["Authorization"])["oauth_timestamp"] for c in maas.calls
    ]
    assert len(nonces) == 2 and nonces[0] != nonces[1]
    assert all(t.isdigit() for t in timestamps)


def test_attempts_are_bounded(maas, client, clock):
    answers(maas, "GET", MACHINE_URL, (503, "still down", {"Retry-After": "1"}))
    with pytest.raises(MaasUnavailable) as info:
        client.get_machine("abc123")
    assert len(maas.calls) == POLICY.max_attempts
    assert clock.sleeps == [1.0] * (POLICY.max_attempts - 1)
    error = info.value
    assert error.http_status == 503
    assert error.maas_message == "still down"
    assert "4 attempt(s)" in str(error) and "still down" in str(error)


def test_total_time_is_bounded_even_with_attempts_left(maas, client, clock):
    answers(maas, "GET", MACHINE_URL, (503, "down", {"Retry-After": "25"}))
    with pytest.raises(MaasUnavailable) as info:
        client.get_machine("abc123")
    # 25 s, then 50 s elapsed: a third wait of 25 s would cross the 60 s budget.
    assert clock.sleeps == [25.0, 25.0]
    assert len(maas.calls) == 3
    assert "Retry-After 25s" in str(info.value)


def test_a_retry_after_beyond_the_budget_ends_at_once(maas, client, clock):
    answers(maas, "GET", MACHINE_URL, (503, "down", {"Retry-After": "3600"}), ok())
    with pytest.raises(MaasUnavailable) as info:
        client.get_machine("abc123")
    # MAAS is never called back sooner than it asked, and 3600 s exceed the 60 s budget.
    assert clock.sleeps == []
    assert len(maas.calls) == 1
    assert "Retry-After 3600s" in str(info.value)


def test_no_retry_policy():
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)


# ---- final statuses ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "error_type"),
    [
        (400, "Unrecognised signature: method=POST op=None", MaasBadRequest),
        (401, "Authorization Error: 'Invalid access token: TokenKeyBBBBBBBBBB'", MaasAuthError),
        (403, "", MaasPermissionDenied),
        (404, "No Machine matches the given query.", MaasNotFound),
        (409, "Can't deploy a machine that is in the 'Deployed' state", MaasConflict),
        (500, "Unconfigured power type.", MaasServerError),
        (410, "The 1.0 API is no longer available.", MaasHTTPError),
    ],
)
def test_final_statuses_raise_typed_errors_with_maas_words_once(
    maas, client, clock, status, body, error_type
):
    answers(maas, "POST", MACHINE_URL, (status, body, {"Content-Type": "text/plain"}))
    with pytest.raises(error_type) as info:
        client.deploy("abc123", distro_series="jammy")
    assert type(info.value) is error_type
    assert len(maas.calls) == 1
    assert clock.sleeps == []
    error = info.value
    assert error.http_status == status
    assert error.system_id == "abc123"
    assert error.maas_message == body
    assert f"HTTP {status}" in str(error)
    assert "machines/abc123/?op=deploy" in str(error)
    if body:
        assert body in str(error)
    assert SECRET not in str(error) and SECRET not in repr(error)


def test_empty_403_explains_the_likely_causes(maas, client):
    answers(maas, "POST", MACHINE_URL, (403, "", None))
    with pytest.raises(MaasPermissionDenied) as info:
        client.release("abc123")
    assert "locked or owned by another user" in str(info.value)


def test_403_for_a_deactivated_user_is_an_auth_error(maas, client):
    answers(maas, "GET", ROOT + "users/", (403, "User is not allowed access to this API.", None))
    with pytest.raises(MaasAuthError):
        client.whoami()


def test_409_from_allocate_is_no_machine_available(maas, client, clock):
    message = "No available machine matches constraints: [('name', ['smithi001'])]"
    answers(maas, "POST", ROOT + "machines/", (409, message, None))
    with pytest.raises(NoMachineAvailable) as info:
        client.allocate(name="smithi001")
    assert info.value.maas_message == message
    assert isinstance(info.value, MaasConflict)
    assert len(maas.calls) == 1 and clock.sleeps == []


def test_400_field_errors_are_flattened(maas, client):
    body = {"distro_series": ["'foo' is not a valid distro_series."]}
    answers(maas, "POST", MACHINE_URL, (400, body, None))
    with pytest.raises(MaasBadRequest) as info:
        client.deploy("abc123", distro_series="foo")
    assert "distro_series: 'foo' is not a valid distro_series." in str(info.value)


def test_a_body_echoing_the_secret_is_redacted(maas, client):
    answers(maas, "GET", MACHINE_URL, (401, f"Invalid signature. Expected &{SECRET}", None))
    with pytest.raises(MaasAuthError) as info:
        client.get_machine("abc123")
    assert SECRET not in str(info.value)
    assert SECRET not in (info.value.maas_message or "")
    assert "<redacted>" in str(info.value)


def test_non_json_success_is_an_error(maas, client):
    maas.add("GET", MACHINE_URL, body="<html>proxy login</html>", content_type="text/html")
    with pytest.raises(Exception) as info:
        client.get_machine("abc123")
    assert "non-JSON" in str(info.value) and "text/html" in str(info.value)


def test_redirect_is_not_followed(maas, client):
    maas.add("GET", MACHINE_URL, status=302, headers={"Location": "http://elsewhere/"})
    with pytest.raises(MaasHTTPError) as info:
        client.get_machine("abc123")
    assert info.value.http_status == 302
    assert len(maas.calls) == 1


# ---- uncertain outcomes and transport failures ---------------------------------------------


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_errors_on_post_are_outcome_unknown_and_not_repeated(maas, client, status):
    answers(maas, "POST", MACHINE_URL, (status, "Gateway Timeout", None), ok())
    with pytest.raises(MaasOutcomeUnknown) as info:
        client.deploy("abc123", distro_series="jammy")
    assert info.value.op == "deploy"
    assert info.value.system_id == "abc123"
    assert len(maas.calls) == 1
    assert "re-read the machine" in str(info.value)


@pytest.mark.parametrize("status", [502, 504])
def test_gateway_errors_on_get_are_retried(maas, client, status):
    answers(maas, "GET", MACHINE_URL, (status, "Gateway Timeout", None), ok())
    assert client.get_machine("abc123").system_id == "abc123"
    assert len(maas.calls) == 2


@pytest.mark.parametrize(
    "failure",
    [dropped, lambda: requests.exceptions.ReadTimeout("read timed out")],
    ids=["dropped-after-send", "read-timeout"],
)
def test_post_whose_outcome_is_uncertain_is_not_repeated(maas, client, failure):
    answers(maas, "POST", ROOT + "machines/", failure(), ok())
    with pytest.raises(MaasOutcomeUnknown) as info:
        client.allocate(name="smithi001")
    assert info.value.op == "allocate"
    assert len(maas.calls) == 1


def test_post_refused_before_sending_is_retried(maas, client, clock):
    answers(maas, "POST", MACHINE_URL, refused(), ok())
    assert client.deploy("abc123", distro_series="jammy").system_id == "abc123"
    assert len(maas.calls) == 2
    assert clock.sleeps == [1.0]


def test_post_connect_timeout_is_retried(maas, client):
    answers(maas, "POST", MACHINE_URL, requests.exceptions.ConnectTimeout("connect"), ok())
    client.abort("abc123")
    assert len(maas.calls) == 2


@pytest.mark.parametrize(
    "failure",
    [dropped, refused, lambda: requests.exceptions.ReadTimeout("read timed out")],
    ids=["dropped", "refused", "read-timeout"],
)
def test_get_transport_failures_are_retried(maas, client, clock, failure):
    answers(maas, "GET", MACHINE_URL, failure(), failure(), ok())
    assert client.get_machine("abc123").system_id == "abc123"
    assert len(maas.calls) == 3
    assert clock.sleeps == [1.0, 2.0]


def test_unreachable_maas_gives_up_as_unavailable(maas, client, clock):
    answers(maas, "GET", MACHINE_URL, refused())
    with pytest.raises(MaasUnavailable) as info:
        client.get_machine("abc123")
    assert len(maas.calls) == POLICY.max_attempts
    assert clock.sleeps == [1.0, 2.0, 4.0]
    assert "unreachable" in str(info.value)


def test_tls_failure_is_not_retried(maas, client, clock):
    answers(maas, "GET", MACHINE_URL, requests.exceptions.SSLError("certificate verify failed"))
    with pytest.raises(MaasUnavailable) as info:
        client.get_machine("abc123")
    assert len(maas.calls) == 1 and clock.sleeps == []
    assert "verify" in str(info.value)


def test_a_truncated_answer_to_a_post_is_outcome_unknown(maas, client):
    answers(maas, "POST", MACHINE_URL, requests.exceptions.ChunkedEncodingError("truncated"))
    with pytest.raises(MaasOutcomeUnknown):
        client.release("abc123")
    assert len(maas.calls) == 1


def test_a_request_error_that_cannot_pass_is_final_not_uncertain(maas, client, clock):
    answers(maas, "POST", MACHINE_URL, requests.exceptions.InvalidHeader("bad header"))
    with pytest.raises(MaasError) as info:
        client.release("abc123")
    assert not isinstance(info.value, MaasOutcomeUnknown | MaasUnavailable)
    assert len(maas.calls) == 1 and clock.sleeps == []


def test_retries_are_logged_with_the_reason(maas, client, caplog):
    answers(maas, "GET", MACHINE_URL, (503, "No rack controllers", {"Retry-After": "2"}), ok())
    with caplog.at_level(logging.INFO, logger="teuthology_maas.maas.client"):
        client.get_machine("abc123")
    (record,) = [r for r in caplog.records if r.levelno == logging.INFO]
    assert record.getMessage() == (
        "MAAS GET machines/abc123/: HTTP 503 (Retry-After 2s); attempt 1 of 4, retrying in 2.0s"
    )


def test_redirect_message_points_at_api_url(maas, client):
    maas.add("GET", MACHINE_URL, status=301, headers={"Location": "https://maas.test/MAAS/"})
    with pytest.raises(MaasHTTPError) as info:
        client.get_machine("abc123")
    assert "redirected to https://maas.test/MAAS/" in str(info.value)
    assert "api_url" in str(info.value)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("5", 5.0),
        (" 2.5 ", 2.5),
        ("-3", 0.0),
        ("soon", None),
        ("", None),
        (None, None),
        ("Sat, 21 Nov 2026 05:00:30 GMT", 30.0),
    ],
)
def test_parse_retry_after(header, expected):
    from datetime import UTC, datetime

    from teuthology_maas.maas.retry import parse_retry_after

    now = datetime(2026, 11, 21, 5, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after(header, now=lambda: now) == expected


def test_action_cap_holds_its_size_and_each_lone_client_has_its_own():
    from teuthology_maas.maas.transport import action_cap

    cap = action_cap(3)
    held = [cap.acquire(blocking=False) for _ in range(4)]  # type: ignore[attr-defined]
    assert held == [True, True, True, False]
    with pytest.raises(ValueError, match="max_concurrent_actions must be >= 1, got 0"):
        action_cap(0)
    with pytest.raises(ValueError, match="max_concurrent_actions must be >= 1"):
        MaasClient(ROOT, API_KEY, max_concurrent_actions=0)
    # Sharing a cap is the Endpoint's business (tests/test_endpoint.py): clients made apart
    # cap themselves apart, unless they are handed one.
    first, second = MaasClient(ROOT, API_KEY), MaasClient(ROOT, API_KEY)
    assert first.action_cap is not second.action_cap
    assert MaasClient(ROOT, API_KEY, action_cap=cap).action_cap is cap


# ---- what a retry reports to whoever shows waits (teuthology_maas.waits) ---------------------


@pytest.fixture
def reports():
    from teuthology_maas import waits

    seen = []
    with waits.watching(seen.append):
        yield seen


def test_a_retried_503_is_reported_with_its_wait_then_the_recovery(maas, client, reports):
    from teuthology_maas.waits import Reason

    answers(maas, "GET", MACHINE_URL, (503, "No rack controllers", {"Retry-After": "10"}),
            (503, "No rack controllers", {"Retry-After": "10"}), ok())
    client.get_machine("abc123")
    assert [(r.what, r.reason, r.detail, r.attempt, r.retry_in, r.state) for r in reports] == [
        ("maas", Reason.BUSY, "HTTP 503 (Retry-After 10s)", 1, 10.0, "waiting"),
        ("maas", Reason.BUSY, "HTTP 503 (Retry-After 10s)", 2, 10.0, "waiting"),
        ("maas", "answering again", "", 3, None, "done"),
    ]
    assert {r.subject for r in reports} == {ROOT}
    assert reports[0].target == "GET machines/abc123/"


def test_an_unreachable_maas_is_reported_in_a_few_words(maas, client, reports):
    from teuthology_maas.waits import Reason

    reason = NewConnectionError(None, "Failed to establish a new connection: [Errno 111]")
    reason.__cause__ = ConnectionRefusedError(111, "Connection refused")
    refused_for_real = requests.exceptions.ConnectionError(
        MaxRetryError(None, MACHINE_URL, reason)
    )
    answers(maas, "GET", MACHINE_URL, refused_for_real, refused(), dropped(), ok())
    client.get_machine("abc123")
    assert [r.reason for r in reports] == [
        Reason.REFUSED, Reason.CANNOT_CONNECT, Reason.RESET, "answering again",
    ]


def test_a_call_that_needs_no_retry_reports_nothing(maas, client, reports):
    answers(maas, "GET", MACHINE_URL, ok())
    client.get_machine("abc123")
    assert reports == []
