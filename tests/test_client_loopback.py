"""MaasClient over real HTTP on loopback: a tiny stdlib server plays MAAS and misbehaves on
cue (drops the connection after reading a request, answers too late, counts concurrency)."""

from __future__ import annotations

import base64
import threading
import time

import pytest
from _maas_wire import API_KEY, SECRET, FakeMaas, form_parts, oauth_fields

from teuthology_maas.config import MaasConfig
from teuthology_maas.endpoint import endpoint_for, forget_endpoints
from teuthology_maas.errors import MaasOutcomeUnknown, MaasUnavailable
from teuthology_maas.maas.client import MaasClient, RetryPolicy
from teuthology_maas.maas.transport import action_cap
from teuthology_maas.testing.sshd import free_port

FAST = RetryPolicy(max_attempts=3, max_total=5.0, backoff_initial=0.01, backoff_max=0.02)


@pytest.fixture
def fake():
    server = FakeMaas()
    yield server
    server.close()


def test_a_deploy_as_the_server_receives_it(fake):
    with MaasClient(fake.url, API_KEY, retry=FAST) as client:
        client.deploy("abc123", distro_series="ubuntu/jammy", user_data="#cloud-config\n")
    (request,) = fake.requests
    assert request["method"] == "POST"
    assert request["path"] == "/MAAS/api/2.0/machines/abc123/"
    assert request["query"] == [("op", "deploy")]
    auth = oauth_fields(request["headers"]["Authorization"])
    assert auth["oauth_signature"] == "&" + SECRET
    assert auth["oauth_signature_method"] == "PLAINTEXT"
    fields = {
        name: value
        for name, value, _ in form_parts(request["headers"]["Content-Type"], request["body"])
    }
    assert fields["distro_series"] == "ubuntu/jammy"
    assert base64.b64decode(fields["user_data"]) == b"#cloud-config\n"


def test_connections_are_reused(fake):
    with MaasClient(fake.url, API_KEY, retry=FAST) as client:
        for _ in range(5):
            client.get_machine("abc123")
    assert len(fake.requests) == 5
    # Every request on one keep-alive connection: the server saw one client port.
    assert len({request["peer"] for request in fake.requests}) == 1


def test_connection_refused_is_retried_then_unavailable():
    port = free_port()
    sleeps: list[float] = []
    with MaasClient(
        f"http://127.0.0.1:{port}/MAAS/", API_KEY, retry=FAST, sleep=sleeps.append
    ) as client:
        with pytest.raises(MaasUnavailable) as info:
            client.get_machine("abc123")
        assert len(sleeps) == FAST.max_attempts - 1
        with pytest.raises(MaasUnavailable):
            client.release("abc123")  # refused before sending: safe to retry, still down
    assert f"127.0.0.1:{port}" in str(info.value)
    assert len(sleeps) == 2 * (FAST.max_attempts - 1)


def test_post_dropped_after_the_server_read_it_is_outcome_unknown(fake):
    fake.behaviour = lambda method, path, op: ("drop",)
    with (
        MaasClient(fake.url, API_KEY, retry=FAST) as client,
        pytest.raises(MaasOutcomeUnknown) as info,
    ):
        client.allocate(name="n1")
    assert info.value.op == "allocate"
    assert len(fake.requests) == 1  # never repeated


def test_get_dropped_is_retried(fake):
    answers = iter([("drop",), ("json", 200, {"system_id": "abc123", "status": 4})])
    fake.behaviour = lambda method, path, op: next(answers)
    with MaasClient(fake.url, API_KEY, retry=FAST) as client:
        assert client.get_machine("abc123").status.name == "READY"
    assert len(fake.requests) == 2


def test_post_read_timeout_is_outcome_unknown_and_get_read_timeout_is_retried(fake):
    late = ("late", 1.0, 200, {"system_id": "abc123", "status": 9})
    answers = iter([late, late, ("json", 200, {"system_id": "abc123", "status": 6})])
    fake.behaviour = lambda method, path, op: next(answers)
    with MaasClient(fake.url, API_KEY, retry=FAST, timeout=0.2) as client:
        with pytest.raises(MaasOutcomeUnknown) as info:
            client.deploy("abc123", distro_series="jammy")
        assert info.value.op == "deploy"
        assert client.get_machine("abc123").status.name == "DEPLOYED"
    assert [r["method"] for r in fake.requests] == ["POST", "GET", "GET"]


def _abort_from_threads(clients: list[MaasClient], count: int) -> list[BaseException]:
    errors: list[BaseException] = []

    def act(client: MaasClient) -> None:
        try:
            client.abort("abc123")
        except BaseException as exc:  # surfaced by the caller's assertion
            errors.append(exc)

    threads = [
        threading.Thread(target=act, args=(clients[i % len(clients)],)) for i in range(count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_state_changing_calls_are_capped_per_endpoint_across_its_users(fake):
    fake.hold = 0.05
    config = MaasConfig.from_mapping(
        {"api_url": fake.url, "api_key": API_KEY, "max_concurrent_actions": 2}
    )
    forget_endpoints()
    try:
        # Every user of the MAAS (one provisioner per node) gets the process's one Endpoint.
        users = [endpoint_for(config).client for _ in range(4)]
        errors = _abort_from_threads(users, 8)
        assert len({id(client) for client in users}) == 1
        assert endpoint_for(config).client.max_concurrent_actions == 2
    finally:
        endpoint_for(config).close()
        forget_endpoints()
    assert errors == []
    assert len(fake.requests) == 8
    assert 1 <= fake.max_in_flight <= 2


def test_clients_handed_one_cap_share_it(fake):
    fake.hold = 0.05
    cap = action_cap(2)
    clients = [MaasClient(fake.url, API_KEY, retry=FAST, action_cap=cap) for _ in range(2)]
    errors = _abort_from_threads(clients, 8)
    for client in clients:
        client.close()
    assert errors == []
    assert len(fake.requests) == 8
    assert fake.max_in_flight <= 2


def test_reads_are_not_capped(fake):
    barrier = threading.Barrier(4, timeout=5)

    def behaviour(method, path, op):
        barrier.wait()  # only passes if four GETs are in flight at once
        return ("json", 200, {"system_id": "abc123", "status": 4})

    fake.behaviour = behaviour
    results: list[object] = []
    with MaasClient(fake.url, API_KEY, retry=FAST, max_concurrent_actions=1) as client:
        threads = [
            threading.Thread(target=lambda: results.append(client.get_machine("abc123")))
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert len(results) == 4


def test_short_deadlines_leave_a_keep_alive_connection_alone(fake):
    # Each request arms a deadline; a finished request's deadline never cuts the connection
    # that carries the next one.
    with MaasClient(fake.url, API_KEY, retry=FAST, deadline=0.2) as client:
        for _ in range(5):
            assert client.get_machine("abc123").system_id == "abc123"
            time.sleep(0.25)  # past the previous request's deadline
    assert len(fake.requests) == 5
    assert len({request["peer"] for request in fake.requests}) == 1
