"""The API key's user name, asked once per Endpoint by many provisioners at once.

Teuthology starts one create() per node, all at the same moment. The first asks MAAS `whoami`;
the others wait for that answer, including when it is a failure (each would otherwise spend the
client's whole retry budget on the same outage, one after the other). Other endpoints
(another MAAS or key) never wait for it.
"""

from __future__ import annotations

import threading
import time

from teuthology_maas.endpoint import Endpoint
from teuthology_maas.errors import MaasError, MaasUnavailable


def whoami_records(lab) -> list:
    return [r for r in lab.proxy.records() if r.op == "whoami"]


def test_callers_waiting_for_a_failed_whoami_get_its_error_instead_of_asking_again(fault_lab):
    lab = fault_lab
    lab.proxy.add("hang", method="GET", op="whoami", times=None)
    endpoint = Endpoint(lab.client(lab.config(http_timeout=30.0), max_attempts=3))
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            endpoint.username()
        except BaseException as exc:
            errors.append(exc)

    first = threading.Thread(target=ask)
    first.start()
    lab.wait_for(lambda: bool(whoami_records(lab)))
    others = [threading.Thread(target=ask) for _ in range(4)]
    for thread in others:
        thread.start()
    time.sleep(0.3)  # let the others reach the wait; the hang holds until the outage below
    lab.proxy.refuse_connections()  # drops the hung whoami: MAAS is down
    for thread in [first, *others]:
        thread.join(30)
    lab.proxy.accept_connections()

    assert len(errors) == 5
    assert all(isinstance(exc, MaasUnavailable) for exc in errors), errors
    # One fetch: its 3 attempts waited twice. Five fetches in a row would have waited 10 times.
    assert len(lab.vtime.waits) == 2, lab.vtime.waits
    assert len(whoami_records(lab)) == 1
    # A later caller asks afresh, now that MAAS is back.
    lab.proxy.clear()
    assert endpoint.username() == "teuthology"


def test_a_hung_whoami_on_one_client_does_not_hold_up_another(fault_lab):
    lab = fault_lab
    lab.proxy.add("hang", method="GET", op="whoami", times=None)
    hung = Endpoint(lab.client(lab.config(http_timeout=30.0), max_attempts=1))
    other = Endpoint(lab.client(lab.config(direct=True)))
    outcome: list[object] = []

    def ask_hung() -> None:
        try:
            outcome.append(hung.username())
        except MaasError as exc:
            outcome.append(exc)

    asking = threading.Thread(target=ask_hung)
    asking.start()
    lab.wait_for(lambda: bool(whoami_records(lab)))

    assert other.username() == "teuthology"
    assert asking.is_alive(), "the other endpoint's whoami waited for the hung one"
    assert outcome == []

    lab.proxy.refuse_connections()
    asking.join(30)
    lab.proxy.accept_connections()
    assert len(outcome) == 1 and isinstance(outcome[0], MaasUnavailable)


def test_whoami_without_a_username_is_an_error_naming_it(fault_lab, monkeypatch):
    lab = fault_lab
    client = lab.client()
    monkeypatch.setattr(client, "whoami", lambda: {"is_superuser": False})
    try:
        Endpoint(client).username()
    except MaasError as exc:
        assert "whoami" in str(exc) and "username" in str(exc)
    else:
        raise AssertionError("a whoami without a username was accepted")
