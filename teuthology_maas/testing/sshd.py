"""Real OpenSSH servers on 127.0.0.1 standing in for deployed machines.

One `/usr/sbin/sshd -D` per simulated machine, each on its own loopback port with its own host
key, config and pid file, logging in the current user only. Its authorized_keys file is
`<ssh_root>/<hostname>/authorized_keys`, which the MAAS simulator fills from the deployed
user_data, so a login works exactly when the key injected through user_data is right. A
ForceCommand wrapper serves `<ssh_root>/<hostname>/os-release` for `/etc/os-release` (and
`/usr/lib/os-release`) and `<ssh_root>/<hostname>/boot-finished` for cloud-init's sentinel;
everything else runs on this host as is, or, for a fleet started with `sandbox=True`, inside
the node's own mount namespace (teuthology_maas.testing.node_command), so that a teuthology job's
commands never change the host.

The fleet writes an ssh_config that maps `<hostname>` and `<hostname>.<any domain>` to the
right port, user and key: point the library's `maas.ssh_config` at it. Servers are stopped by
`stop()`, by leaving the `with` block, or at interpreter exit at the latest.

Needs Debian's openssh-server (scripts/ensure-system-packages installs it).
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from teuthology_maas.testing.node_command import check_sandbox_supported, node_command
from teuthology_maas.testing.ports import LOOPBACK, free_port, loopback_listening
from teuthology_maas.testing.processes import descendants, die_with_parent, end_processes

__all__ = ["SSHD_PATH", "KeyPair", "MachineSSHD", "SSHDFleet", "free_port"]

SSHD_PATH = "/usr/sbin/sshd"
_PRIVSEP_DIR = Path("/run/sshd")  # compiled into Debian's sshd; needed when it runs as root

_running: set[MachineSSHD] = set()
_running_lock = threading.Lock()


def _stop_all_at_exit() -> None:
    with _running_lock:
        servers = list(_running)
    for server in servers:
        server.stop()


atexit.register(_stop_all_at_exit)


def _ssh_keygen(path: Path, comment: str) -> None:
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise RuntimeError("ssh-keygen not found: install openssh-client")
    subprocess.run(
        [keygen, "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )


@dataclass(frozen=True)
class KeyPair:
    """An ed25519 key pair on disk (no passphrase)."""

    private_key_path: Path
    public_key: str

    @classmethod
    def generate(cls, directory: Path, name: str = "id_ed25519") -> KeyPair:
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / name
        _ssh_keygen(path, f"teuthology-maas-test-{name}")
        public = path.with_name(path.name + ".pub").read_text(encoding="ascii").strip()
        return cls(path, public)


def _quote_config(value: str | Path) -> str:
    return '"' + str(value).replace('"', '\\"') + '"'


class MachineSSHD:
    """One sshd serving one simulated machine on 127.0.0.1:`port`."""

    def __init__(
        self, hostname: str, machine_dir: Path, workdir: Path, *, user: str,
        port: int | None = None, sandbox: bool = False,
    ) -> None:
        self.hostname = hostname
        self.machine_dir = Path(machine_dir)
        self.workdir = Path(workdir)
        self.user = user
        self.sandbox = sandbox
        self.port = port or free_port()
        self._fixed_port = port is not None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def log_path(self) -> Path:
        return self.workdir / "sshd.log"

    def _prepare(self) -> Path:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.machine_dir.mkdir(parents=True, exist_ok=True)
        host_key = self.workdir / "ssh_host_ed25519_key"
        if not host_key.exists():
            _ssh_keygen(host_key, f"host-key-{self.hostname}")
        wrapper = self.workdir / "node-command"
        wrapper.write_text(
            node_command(self.machine_dir, self.workdir, sandbox=self.sandbox), encoding="utf-8"
        )
        wrapper.chmod(0o755)
        config = self.workdir / "sshd_config"
        lines = {
            "ListenAddress": f"{LOOPBACK}:{self.port}",
            "HostKey": _quote_config(host_key),
            "PidFile": _quote_config(self.workdir / "sshd.pid"),
            "AuthorizedKeysFile": _quote_config(self.machine_dir / "authorized_keys"),
            "ForceCommand": _quote_config(wrapper),
            "AllowUsers": self.user,
            # The key files live in temp dirs whose modes sshd would otherwise refuse.
            "StrictModes": "no",
            "PermitRootLogin": "prohibit-password",
            "PubkeyAuthentication": "yes",
            "PasswordAuthentication": "no",
            "KbdInteractiveAuthentication": "no",
            "UsePAM": "no",
            "PrintMotd": "no",
            "PrintLastLog": "no",
            "X11Forwarding": "no",
            "AllowTcpForwarding": "no",
            "AllowAgentForwarding": "no",
            "MaxStartups": "100:30:200",
            "LogLevel": "INFO",
        }
        config.write_text(
            "".join(f"{key} {value}\n" for key, value in lines.items()), encoding="utf-8"
        )
        return config

    def start(self, *, timeout: float = 10.0) -> None:
        """Start sshd and return once it accepts TCP connections."""
        if self.running:
            return
        if not os.access(SSHD_PATH, os.X_OK):
            raise RuntimeError(
                f"{SSHD_PATH} not found: install Debian's openssh-server "
                "(run scripts/ensure-system-packages)"
            )
        if os.geteuid() == 0 and not _PRIVSEP_DIR.is_dir():
            _PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        for _attempt in range(5):
            config = self._prepare()
            with self.log_path.open("ab") as log:
                self._process = subprocess.Popen(
                    [SSHD_PATH, "-D", "-e", "-f", str(config)],
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,  # its own group: stop() also ends login sessions
                    preexec_fn=die_with_parent(),
                )
            with _running_lock:
                _running.add(self)
            if self._wait_listening(timeout):
                return
            self.stop()
            log_text = self.log_path.read_text(errors="replace")
            if "Address already in use" in log_text and not self._fixed_port:
                self.port = free_port()  # lost a race for the port: take another
                continue
            raise RuntimeError(
                f"sshd for {self.hostname} did not listen on {LOOPBACK}:{self.port} within "
                f"{timeout}s; its log ({self.log_path}):\n{log_text[-2000:]}"
            )
        raise RuntimeError(f"sshd for {self.hostname}: no free loopback port after 5 attempts")

    def _wait_listening(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                return False
            # read the socket table rather than connect: a probe connection would make sshd
            # fork a session that outlives a stop() right after start()
            state = loopback_listening(self.port)
            if state:
                return True
            if state is None:
                try:
                    with socket.create_connection((LOOPBACK, self.port), timeout=1.0):
                        return True
                except OSError:
                    pass
            time.sleep(0.02)
        return False

    def stop(self, *, timeout: float = 5.0) -> None:
        """Stop sshd and any sessions it spawned (each in a session of its own, so ended by
        PID, not by the process group). Idempotent."""
        process = self._process
        with _running_lock:
            _running.discard(self)
        if process is None:
            return
        self._process = None
        sessions = descendants(process.pid)
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=timeout)
        end_processes(sessions, grace=timeout)

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"MachineSSHD({self.hostname!r}, port={self.port}, {state})"


class SSHDFleet:
    """An sshd per hostname, one client key pair, one ssh_config file mapping them all."""

    def __init__(
        self,
        hostnames: Iterable[str],
        ssh_root: Path | str,
        *,
        workdir: Path | str | None = None,
        keypair: KeyPair | None = None,
        user: str | None = None,
        sandbox: bool = False,
    ) -> None:
        if sandbox:
            check_sandbox_supported()
        self.sandbox = sandbox
        self.ssh_root = Path(ssh_root)
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="teuthology-maas-sshd-"))
        self.keypair = keypair or KeyPair.generate(self.workdir / "client")
        self.user = user or getpass.getuser()
        self.servers: dict[str, MachineSSHD] = {}
        for hostname in hostnames:
            self._add_server(hostname)

    def _add_server(self, hostname: str) -> MachineSSHD:
        if hostname in self.servers:
            return self.servers[hostname]
        server = MachineSSHD(
            hostname, self.ssh_root / hostname, self.workdir / "machines" / hostname,
            user=self.user, sandbox=self.sandbox,
        )
        self.servers[hostname] = server
        return server

    @classmethod
    def started(
        cls,
        hostnames: Iterable[str],
        ssh_root: Path | str,
        *,
        workdir: Path | str | None = None,
        keypair: KeyPair | None = None,
        user: str | None = None,
        sandbox: bool = False,
    ) -> SSHDFleet:
        """A fleet whose servers all listen already (sandboxed: see testing.node_command)."""
        fleet = cls(hostnames, ssh_root, workdir=workdir, keypair=keypair, user=user,
                    sandbox=sandbox)
        try:
            fleet.start()
        except BaseException:  # any way out: stop the servers already started, then re-raise
            fleet.stop()
            raise
        return fleet

    # ---- what tests and the simulator need ----------------------------------------------

    @property
    def private_key_path(self) -> Path:
        return self.keypair.private_key_path

    @property
    def public_key(self) -> str:
        return self.keypair.public_key

    @property
    def ssh_config_path(self) -> Path:
        return self.workdir / "ssh_config"

    @property
    def hostnames(self) -> list[str]:
        return list(self.servers)

    def port_of(self, hostname: str) -> int:
        try:
            return self.servers[hostname].port
        except KeyError:
            raise KeyError(
                f"no sshd for {hostname!r} in this fleet (has: {', '.join(self.servers)})"
            ) from None

    def machine_dir(self, hostname: str) -> Path:
        return self.ssh_root / hostname

    # ---- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        for server in self.servers.values():
            server.start()
        self.write_ssh_config()

    def add(self, hostname: str) -> int:
        """Start an sshd for one more machine; returns its port."""
        server = self._add_server(hostname)
        server.start()
        self.write_ssh_config()
        return server.port

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> SSHDFleet:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def write_ssh_config(self) -> Path:
        blocks = ["# Written by teuthology_maas.testing.sshd: each machine is a loopback sshd.\n"]
        for hostname, server in self.servers.items():
            blocks.append(
                f"Host {hostname} {hostname}.*\n"
                f"    HostName {LOOPBACK}\n"
                f"    Port {server.port}\n"
                f"    User {self.user}\n"
                f"    IdentityFile {_quote_config(self.private_key_path)}\n"
                "    IdentitiesOnly yes\n"
                "    StrictHostKeyChecking no\n"
                "    UserKnownHostsFile /dev/null\n"
                "    LogLevel ERROR\n"
            )
        self.ssh_config_path.write_text("\n".join(blocks), encoding="utf-8")
        return self.ssh_config_path

    # ---- stand-ins for what the simulator writes on deploy (for tests without it) ------------

    def install_key(self, hostname: str, public_key: str | None = None) -> None:
        directory = self.machine_dir(hostname)
        directory.mkdir(parents=True, exist_ok=True)
        key = public_key if public_key is not None else self.public_key
        (directory / "authorized_keys").write_text(key.strip() + "\n", encoding="utf-8")

    def write_os_release(self, hostname: str, fields: Mapping[str, str]) -> None:
        directory = self.machine_dir(hostname)
        directory.mkdir(parents=True, exist_ok=True)
        text = "".join(f'{key}="{value}"\n' for key, value in fields.items())
        (directory / "os-release").write_text(text, encoding="utf-8")

    def mark_boot_finished(self, hostname: str) -> None:
        directory = self.machine_dir(hostname)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "boot-finished").write_text("finished\n", encoding="utf-8")

    def __repr__(self) -> str:
        ports = ", ".join(f"{h}:{s.port}" for h, s in self.servers.items())
        return f"SSHDFleet({ports})"
