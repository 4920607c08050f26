"""Fixtures for the reliability and security suites: the fault matrix, bad input, secrets.

`fault_lab` is a simulator with the fault proxy in front of it, a client whose retry waits run on
virtual time (a Retry-After of 10 s is honoured as 10 s of virtual time, a few milliseconds of
real time), and an audit of what a scenario did to every machine: nodes leaked (held by our
MAAS user when the scenario did not mean to keep them) and other users' nodes touched (any
state-changing call of ours on them, or any change of their state that their owner did not
make). The `matrix` fixture records one row per scenario; the table is printed at the end of
the pytest run.

SSH readiness: the matrix is about the MAAS API, so create()'s SSH check is replaced by
`verify_ssh_from_files`, which checks what a login would find: the simulator's per-node files
(authorized_keys holding our key, boot-finished, os-release) for a Deployed node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests._waiting import wait_until
from teuthology_maas.config import MaasConfig
from teuthology_maas.endpoint import forget_endpoints
from teuthology_maas.errors import MaasError
from teuthology_maas.maas.client import MaasClient
from teuthology_maas.maas.retry import RetryPolicy
from teuthology_maas.node.provisioner import MaasProvisioner
from teuthology_maas.simulator import Inventory, ScaledClock, Simulator
from teuthology_maas.testing.fast_timings import FAST_SCALE, FAST_TIMINGS
from teuthology_maas.testing.faultproxy import FaultProxy
from teuthology_maas.testing.simulated_ssh import probe_from_files, verify_ssh_from_files
from teuthology_maas.testing.virtual_time import VirtualTime

OUR_USER = "teuthology"
TEST_PUBLIC_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIB8ZbJnXcFCUXzM3Vq1rMZ8pQmRkCUnGmQ0dWq6bPc1H "
    "reliability@test"
)


# -- the matrix table ------------------------------------------------------------------------


@dataclass
class MatrixRow:
    scenario: str
    result: str = "not run"
    leaked: int | None = None
    touched_foreign: int | None = None
    cause: str = ""

    def note(self, audit: Audit, cause: str = "") -> None:
        self.leaked = len(audit.leaked)
        self.touched_foreign = len(audit.foreign_touched)
        if cause:
            self.cause = " ".join(cause.split())[:90]


_ROWS: list[MatrixRow] = []
_ROW_KEY = pytest.StashKey[MatrixRow]()


@pytest.fixture
def matrix(request: pytest.FixtureRequest) -> MatrixRow:
    """This scenario's row in the fault-matrix summary table."""
    callspec = getattr(request.node, "callspec", None)
    name = request.node.originalname.removeprefix("test_")
    row = MatrixRow(scenario=f"{name}[{callspec.id}]" if callspec else name)
    request.node.stash[_ROW_KEY] = row
    _ROWS.append(row)
    return row


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    row = item.stash.get(_ROW_KEY, None)
    if row is not None:
        if report.when == "call":
            row.result = "PASS" if report.passed else "FAIL"
        elif report.failed:
            row.result = f"ERROR ({report.when})"
    return report


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _ROWS:
        return
    headers = ("scenario", "result", "leaked", "touched-foreign", "cause named in the error")
    rows = [
        (
            r.scenario,
            r.result,
            "-" if r.leaked is None else str(r.leaked),
            "-" if r.touched_foreign is None else str(r.touched_foreign),
            r.cause,
        )
        for r in _ROWS
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(headers)]
    line = "  ".join(f"{{:<{w}}}" for w in widths)
    terminalreporter.section("fault matrix")
    terminalreporter.write_line(line.format(*headers))
    terminalreporter.write_line(line.format(*("-" * w for w in widths)))
    for row in rows:
        terminalreporter.write_line(line.format(*row))
    passed = sum(r.result == "PASS" for r in _ROWS)
    leaked = sum(r.leaked or 0 for r in _ROWS)
    touched = sum(r.touched_foreign or 0 for r in _ROWS)
    terminalreporter.write_line(
        f"{passed}/{len(_ROWS)} scenarios passed; nodes leaked: {leaked}; "
        f"other users' nodes touched: {touched}"
    )


# -- request log access ----------------------------------------------------------------------


def field_of(record: Any, name: str) -> Any:
    if isinstance(record, Mapping):
        return record.get(name)
    return getattr(record, name, None)


def state_changing(sim: Any, *, user: str | None = None) -> list[Any]:
    """Every POST/PUT/DELETE in the simulator's request log (optionally by one user)."""
    return [
        r
        for r in list(sim.request_log)
        if str(field_of(r, "method")).upper() in ("POST", "PUT", "DELETE")
        and (user is None or field_of(r, "user") == user)
    ]


def posts(
    sim: Any, op: str, *, system_id: str | None = None, status: int | None = None
) -> list[Any]:
    return [
        r
        for r in state_changing(sim)
        if field_of(r, "op") == op
        and (system_id is None or field_of(r, "system_id") == system_id)
        and (status is None or field_of(r, "status") == status)
    ]


def applied(lab: Lab, op: str, hostname: str) -> int:
    """How many `op` requests MAAS accepted (2xx) for `hostname`."""
    # allocate is addressed to machines/, not to the machine: every allocate counts.
    system_id = None if op == "allocate" else lab.sim.system_id(hostname)
    # A dropped answer (status None) is not counted here: the caller decides what it means.
    statuses = [field_of(r, "status") for r in posts(lab.sim, op, system_id=system_id)]
    return sum(1 for status in statuses if status is not None and status < 300)


def attempt(action: Callable[[], None]) -> MaasError | None:
    """The MaasError `action` raised, or None when it succeeded."""
    try:
        action()
    except MaasError as exc:
        return exc
    return None


# -- auditing a scenario ---------------------------------------------------------------------


@dataclass(frozen=True)
class NodeView:
    hostname: str
    system_id: str
    status: str
    owner: str | None
    locked: bool


def snapshot(sim: Any) -> dict[str, NodeView]:
    views: dict[str, NodeView] = {}
    for m in sim.machines():
        views[m["system_id"]] = NodeView(
            hostname=m["hostname"],
            system_id=m["system_id"],
            status=m["status_name"],
            owner=m.get("owner") or None,
            locked=bool(m.get("locked")),
        )
    return views


@dataclass
class Audit:
    leaked: list[str] = field(default_factory=list)
    foreign_touched: list[str] = field(default_factory=list)

    def assert_clean(self) -> None:
        assert not self.leaked, f"nodes leaked: {self.leaked}"
        assert not self.foreign_touched, f"other users' nodes touched: {self.foreign_touched}"


def audit(
    sim: Any,
    before: Mapping[str, NodeView],
    *,
    held: Iterable[str] = (),
    user: str = OUR_USER,
    foreign_actors: Iterable[str] = (),
) -> Audit:
    """Leaked: held by `user` at the end, not in `held` (hostnames it should keep).
    Foreign touched: a machine another user held (or had locked) before, on which `user`
    made a state-changing call, or whose state changed without its owner acting on it."""
    keep = set(held)
    after = snapshot(sim)
    result = Audit()
    for view in after.values():
        if view.owner == user and view.hostname not in keep:
            result.leaked.append(f"{view.hostname} ({view.status})")
    actors = set(foreign_actors)
    ours = state_changing(sim, user=user)
    for system_id, old in before.items():
        foreign = (old.owner is not None and old.owner != user) or (
            old.locked and old.owner != user
        )
        if not foreign:
            continue
        calls = [r for r in ours if field_of(r, "system_id") == system_id]
        new = after.get(system_id)
        changed = new is not None and (new.status, new.owner, new.locked) != (
            old.status,
            old.owner,
            old.locked,
        )
        if calls:
            ops = ", ".join(sorted({str(field_of(r, "op")) for r in calls}))
            result.foreign_touched.append(f"{old.hostname}: we sent {ops}")
        elif changed and old.owner not in actors:
            result.foreign_touched.append(f"{old.hostname}: {old.status} -> {new.status}")
    return result


# -- the lab -----------------------------------------------------------------------------------

# Real seconds: short enough that "stuck past the timeout" scenarios end quickly, long enough
# for a simulated deployment (0.15 s) on a loaded 2-core machine.
FAST_CONFIG: dict[str, Any] = {
    "deploy_timeout": 8.0,
    "release_timeout": 8.0,
    "abort_timeout": 5.0,
    "ssh_timeout": 5.0,
    "poll_interval": 0.05,
    "poll_min_interval": 0.01,
    "http_timeout": 2.0,
    "lookup_retries": 1,
}


def smithi_inventory(count: int = 6, **extra: Any) -> dict[str, Any]:
    machines = [
        {"hostname": f"smithi{i:03d}", "tags": ["smithi"], "pool": "smithi"}
        for i in range(1, count + 1)
    ]
    return {"machines": machines, "timings": dict(FAST_TIMINGS), **extra}


class Lab:
    """A simulator, a fault proxy in front of it, and clients that go through the proxy."""

    def __init__(self, sim: Any, server: Any, proxy: FaultProxy, ssh_root: Path) -> None:
        self.sim = sim
        self.server = server
        self.proxy = proxy
        self.ssh_root = ssh_root
        self.vtime = VirtualTime()
        self.url = proxy.url_for(server.url)
        self.clients: list[MaasClient] = []

    def key_for(self, username: str) -> str:
        return str(self.sim.api_key(username))

    def config(self, *, user: str = OUR_USER, direct: bool = False, **overrides: Any) -> MaasConfig:
        """A config for `user` through the proxy (or `direct`ly to the simulator)."""
        section: dict[str, Any] = {
            "api_url": self.server.url if direct else self.url,
            "api_key": self.key_for(user),
            "ssh_keys": [TEST_PUBLIC_KEY],
            "machine_types": ["smithi"],
            **FAST_CONFIG,
        }
        section.update(overrides)
        return MaasConfig.from_mapping(section)

    def client(self, config: MaasConfig | None = None, **retry: Any) -> MaasClient:
        """A client on virtual retry time: waits are recorded in `vtime.waits` in full."""
        cfg = config or self.config()
        policy = RetryPolicy(
            **{"max_attempts": 6, "max_total": 120.0, "backoff_initial": 1.0, **retry}
        )
        client = MaasClient(
            cfg.api_url,
            cfg.api_key,
            verify=cfg.verify,
            timeout=cfg.http_timeout,
            max_concurrent_actions=cfg.max_concurrent_actions,
            retry=policy,
            sleep=self.vtime.sleep,
            clock=self.vtime.now,
        )
        self.clients.append(client)
        return client

    def provisioner(
        self,
        hostname: str,
        os_type: str = "ubuntu",
        os_version: str = "22.04",
        *,
        config: MaasConfig | None = None,
        **retry: Any,
    ) -> MaasProvisioner:
        cfg = config or self.config()
        return MaasProvisioner(
            hostname, os_type, os_version, config=cfg, client=self.client(cfg, **retry)
        )

    def snapshot(self) -> dict[str, NodeView]:
        return snapshot(self.sim)

    def audit(self, before: Mapping[str, NodeView], **kwargs: Any) -> Audit:
        return audit(self.sim, before, **kwargs)

    def status(self, hostname: str) -> str:
        return str(self.sim.machine(hostname)["status_name"])

    def wait_for(self, predicate: Callable[[], bool], *, timeout: float = 20.0) -> None:
        """Wait (real time) until the simulator shows what `predicate` checks."""
        wait_until(
            predicate, timeout=timeout, failure="the simulator never reached the expected state"
        )

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.proxy.stop()
        self.server.stop()


@pytest.fixture
def fault_lab_factory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Callable[..., Lab]]:
    """`fault_lab_factory(inventory=None, *, clock=None, simulated_ssh=True)`: a simulator
    (default: 6 Ready smithi nodes, fast timings) behind a fault proxy."""
    labs: list[Lab] = []

    def build(
        inventory: Mapping[str, Any] | None = None,
        *,
        clock: Any = None,
        simulated_ssh: bool = True,
    ) -> Lab:
        ssh_root = tmp_path / f"ssh-root-{len(labs)}"
        ssh_root.mkdir()
        sim = Simulator(
            Inventory.from_mapping(inventory if inventory is not None else smithi_inventory()),
            clock=clock or ScaledClock(FAST_SCALE),
            ssh_root=ssh_root,
        )
        server = sim.serve()
        lab = Lab(sim, server, FaultProxy.for_url(server.url).start(), ssh_root)
        labs.append(lab)
        if simulated_ssh:
            monkeypatch.setattr(
                "teuthology_maas.node.provisioner.verify_ssh", verify_ssh_from_files(ssh_root)
            )
            monkeypatch.setattr(
                "teuthology_maas.node.provisioner.probe_ready", probe_from_files(ssh_root)
            )
        return lab

    yield build
    for lab in labs:
        lab.close()
    forget_endpoints()


@pytest.fixture
def fault_lab(fault_lab_factory: Callable[..., Lab]) -> Lab:
    """The default lab: 6 Ready smithi nodes behind a fault proxy."""
    return fault_lab_factory()


# -- TLS in front of the simulator -----------------------------------------------------------


@dataclass
class TLSFront:
    """The simulator served over HTTPS (the fault proxy terminating TLS) with a test CA."""

    lab: Lab
    proxy: FaultProxy
    url: str
    ca_path: Path
    other_ca_path: Path

    def config(self, **overrides: Any) -> MaasConfig:
        return self.lab.config(api_url=self.url, **overrides)


def _certificate_authority(name: str) -> tuple[Any, Any]:
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, key_cert_sign=True, crl_sign=True,
                content_commitment=False, key_encipherment=False, data_encipherment=False,
                key_agreement=False, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    return key, cert


def _server_certificate(ca_key: Any, ca_cert: Any, ip: str) -> tuple[bytes, bytes]:
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "maas.test")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("maas.test"), x509.IPAddress(ipaddress.ip_address(ip))]
            ),
            critical=False,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


@pytest.fixture
def tls_front(fault_lab: Lab, tmp_path: Path) -> Iterator[TLSFront]:
    """fault_lab's simulator behind an HTTPS endpoint whose certificate a test CA signed."""
    import ssl

    from cryptography.hazmat.primitives import serialization

    ca_key, ca_cert = _certificate_authority("teuthology-maas test CA")
    _, other_ca = _certificate_authority("some other CA")
    cert_pem, key_pem = _server_certificate(ca_key, ca_cert, "127.0.0.1")
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    (tls_dir / "server.pem").write_bytes(cert_pem)
    (tls_dir / "server.key").write_bytes(key_pem)
    ca_path = tls_dir / "ca.pem"
    ca_path.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    other_ca_path = tls_dir / "other-ca.pem"
    other_ca_path.write_bytes(other_ca.public_bytes(serialization.Encoding.PEM))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tls_dir / "server.pem", tls_dir / "server.key")
    proxy = FaultProxy.for_url(fault_lab.server.url, tls_context=context).start()
    try:
        yield TLSFront(
            fault_lab, proxy, proxy.url_for(fault_lab.server.url), ca_path, other_ca_path
        )
    finally:
        proxy.stop()
