"""The fault proxy itself: each action does what the fault matrix relies on.

The upstream here is a tiny counting HTTP server so the proxy is tested on its own; the
matrix (tests/test_fault_matrix*.py) puts it in front of the MAAS simulator.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from teuthology_maas.testing.faultproxy import FaultProxy, ProxyError


class _Upstream(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[tuple[str, str, bytes]] = []
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/MAAS/api/2.0/"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Upstream

    def log_message(self, format: str, *args: object) -> None:
        pass

    def _answer(self, body: bytes) -> None:
        with self.server.lock:
            self.server.seen.append((self.command, self.path, body))
        if "chunked" in self.path:
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Retry-After", "7")
            self.end_headers()
            for piece in (b"hello ", b"chunked ", b"world"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
            return
        payload = b"echo:" + self.command.encode() + b":" + body
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:
        self._answer(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", "0"))
        self._answer(self.rfile.read(length))


@pytest.fixture
def upstream() -> Iterator[_Upstream]:
    server = _Upstream()
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def proxy(upstream: _Upstream) -> Iterator[FaultProxy]:
    with FaultProxy.for_url(upstream.url) as running:
        yield running


def test_forwards_requests_and_keeps_the_client_connection_alive(upstream, proxy):
    url = proxy.url_for(upstream.url)
    with requests.Session() as session:
        first = session.get(url + "machines/", timeout=5)
        second = session.post(url + "machines/?op=allocate", data={"name": "n1"}, timeout=5)
    assert first.status_code == 200 and first.text == "echo:GET:"
    assert second.text == "echo:POST:name=n1"
    assert [(m, p) for m, p, _ in upstream.seen] == [
        ("GET", "/MAAS/api/2.0/machines/"),
        ("POST", "/MAAS/api/2.0/machines/?op=allocate"),
    ]
    assert [(r.action, r.op) for r in proxy.log] == [("forward", None), ("forward", "allocate")]


def test_chunked_upstream_answers_are_passed_on_whole_with_their_headers(upstream, proxy):
    answer = requests.get(proxy.url_for(upstream.url) + "chunked/", timeout=5)
    assert answer.text == "hello chunked world"
    assert answer.headers["Retry-After"] == "7"


def test_reset_before_forwarding_never_reaches_upstream(upstream, proxy):
    proxy.add("reset_before", method="POST", op="deploy")
    url = proxy.url_for(upstream.url) + "machines/abc/?op=deploy"
    with pytest.raises(requests.ConnectionError):
        requests.post(url, data={"distro_series": "jammy"}, timeout=5)
    assert upstream.seen == []
    assert proxy.records(op="deploy")[0].forwarded is False


def test_reset_after_forwarding_means_upstream_applied_it(upstream, proxy):
    proxy.add("reset_after", method="POST", op="deploy")
    url = proxy.url_for(upstream.url) + "machines/abc/?op=deploy"
    with pytest.raises(requests.ConnectionError):
        requests.post(url, data={"distro_series": "jammy"}, timeout=5)
    assert [(m, b) for m, _, b in upstream.seen] == [("POST", b"distro_series=jammy")]
    assert proxy.records(op="deploy")[0].forwarded is True


def test_close_after_forwarding_is_a_clean_disconnect_without_an_answer(upstream, proxy):
    proxy.add("close_after", op="release")
    with pytest.raises(requests.ConnectionError):
        requests.post(proxy.url_for(upstream.url) + "m/x/?op=release", timeout=5)
    assert len(upstream.seen) == 1


def test_rules_fire_only_the_given_number_of_times_and_only_on_a_match(upstream, proxy):
    rule = proxy.add("reset_before", method="POST", op="release", times=2)
    url = proxy.url_for(upstream.url)
    assert requests.get(url + "machines/?op=release", timeout=5).ok  # GET: no match
    assert requests.post(url + "m/x/?op=abort", timeout=5).ok  # other op: no match
    for _ in range(2):
        with pytest.raises(requests.ConnectionError):
            requests.post(url + "m/x/?op=release", timeout=5)
    assert requests.post(url + "m/x/?op=release", timeout=5).ok
    assert rule.hits == 2
    assert [r.action for r in proxy.log].count("reset_before") == 2


def test_a_slow_answer_beyond_the_client_timeout_was_still_applied(upstream, proxy):
    proxy.add("delay_after", op="deploy", delay=2.0)
    with pytest.raises(requests.ReadTimeout):
        requests.post(proxy.url_for(upstream.url) + "m/x/?op=deploy", timeout=0.3)
    assert len(upstream.seen) == 1


def test_a_gateway_error_after_forwarding_hides_that_upstream_applied_it(upstream, proxy):
    proxy.add("gateway_after", op="deploy", status=504)
    answer = requests.post(proxy.url_for(upstream.url) + "m/x/?op=deploy", timeout=5)
    assert answer.status_code == 504
    assert "upstream answered 200" in answer.text
    assert len(upstream.seen) == 1
    assert [(r.action, r.status) for r in proxy.log] == [("gateway_after", 504)]


def test_a_short_delay_before_forwarding_still_answers(upstream, proxy):
    proxy.add("delay_before", delay=0.05)
    assert requests.get(proxy.url_for(upstream.url), timeout=5).text == "echo:GET:"


def test_hang_never_forwards(upstream, proxy):
    proxy.add("hang", path="/machines/")
    with pytest.raises(requests.ReadTimeout):
        requests.get(proxy.url_for(upstream.url) + "machines/", timeout=0.3)
    assert upstream.seen == []


def test_an_outage_refuses_connections_and_recovery_reuses_the_port(upstream, proxy):
    url = proxy.url_for(upstream.url)
    port = proxy.port
    with proxy.outage():
        with pytest.raises(requests.ConnectionError) as refused:
            requests.get(url, timeout=5)
        assert "refused" in str(refused.value).lower()
    assert proxy.port == port
    assert requests.get(url, timeout=5).ok


def test_probabilistic_rules_are_reproducible_with_a_seed(upstream):
    outcomes = []
    for _ in range(2):
        with FaultProxy.for_url(upstream.url, seed=7) as proxy:
            proxy.add("reset_before", times=None, probability=0.5)
            url = proxy.url_for(upstream.url)
            run = []
            for _ in range(20):
                try:
                    run.append(requests.get(url, timeout=5).ok)
                except requests.ConnectionError:
                    run.append(False)
            outcomes.append(run)
    assert outcomes[0] == outcomes[1]
    assert 3 <= outcomes[0].count(False) <= 17


def test_clear_removes_pending_rules(upstream, proxy):
    proxy.add("reset_before", times=None)
    proxy.clear()
    assert requests.get(proxy.url_for(upstream.url), timeout=5).ok


@pytest.mark.parametrize("host", ["10.0.0.1", "8.8.8.8", "192.168.1.10"])
def test_only_loopback_addresses_are_accepted(host):
    with pytest.raises(ProxyError, match="not a loopback address"):
        FaultProxy(host, 80)
    with pytest.raises(ProxyError, match="not a loopback address"):
        FaultProxy("127.0.0.1", 80, listen_host=host)


def test_unknown_actions_and_negative_delays_are_refused(proxy):
    with pytest.raises(ProxyError, match="unknown proxy action 'explode'"):
        proxy.add("explode")  # type: ignore[arg-type]
    with pytest.raises(ProxyError, match="delay must be >= 0"):
        proxy.add("delay_before", delay=-1)
    with pytest.raises(ProxyError, match="probability must be within"):
        proxy.add("reset_before", probability=1.5)


def test_upstream_must_be_plain_http():
    with pytest.raises(ProxyError, match="plain http://"):
        FaultProxy.for_url("https://127.0.0.1:5240/MAAS/")
