"""End-to-end harness: the real teuthology 1.3.0 commands, run as subprocesses against the MAAS
simulator, the paddles lock server double and one real sshd per machine.

What is real: every line of teuthology that runs (stock, from the venv), HTTP to the simulator
and to the lock server, teuthology's own SSH logins (paramiko) to a real OpenSSH server that
accepts exactly the key MAAS put into the node's user_data, and teuthology reading
`/etc/os-release` and `uname -m` through it.

What is adapted, and why (both are about the network, not about provisioning):

1. Name resolution. In a lab `smithi001.<lab_domain>` resolves to the node and sshd listens on
   port 22; here every "node" is 127.0.0.1:<its own port>. teuthology runs
   `ssh-keyscan -T 1 <fqdn>`, which reads no ssh_config, so a PATH shim named `ssh-keyscan`
   looks the FQDN up in the fleet's ssh_config and runs the real /usr/bin/ssh-keyscan against
   127.0.0.1 on that port. It stands in for lab DNS and nothing else.
2. The SSH port. teuthology.orchestra.connection.connect() takes HostName, User and
   IdentityFile from `ssh_config_path` but ignores `Port` (teuthology 1.3.0; proposed upstream
   fix in docs/teuthology-integration.md). A test-only `sitecustomize` on the subprocess's
   PYTHONPATH wraps that one function to pass the configured port to paramiko; the login,
   authentication and commands are otherwise teuthology's.

Two modes, the same scenarios:
- "activation": stock teuthology + our .pth activation hook (what a lab gets from
  `pip install teuthology-maas`);
- "in-tree": the hook turned off (TEUTHOLOGY_MAAS_ACTIVATE=0) and a copy of teuthology whose
  provision/maas.py is the module shown in docs/in-tree-patch.md, first on PYTHONPATH.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from teuthology_maas.testing.lockserver import LockServer

REPO = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
LAB_DOMAIN = "e2e.test"
MACHINE_TYPE = "smithi"
MODES = ("activation", "in-tree")
# Simulated seconds per real second: a 600 s MAAS deployment takes well under a second.
TIME_FACTOR = 2000.0
COMMAND_TIMEOUT = 180.0

_SITECUSTOMIZE = '''\
"""TEST-ONLY (teuthology-maas e2e harness): make teuthology's SSH connect honour `Port` from
its ssh_config_path. teuthology 1.3.0 reads HostName, User and IdentityFile from that file but
not Port; the e2e "nodes" are sshd on 127.0.0.1:<port>. Nothing else is changed."""
import sys

_TARGET = "teuthology.orchestra.connection"


def _port_for(host):
    from teuthology.config import config
    import os
    import paramiko

    path = os.path.expanduser(config.ssh_config_path or "~/.ssh/config")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        ssh_config = paramiko.SSHConfig()
        ssh_config.parse(f)
    port = ssh_config.lookup(host).get("port")
    return int(port) if port else None


def _patch(module):
    original = module.connect

    def connect(user_at_host, host_key=None, keep_alive=False, timeout=60, _SSHClient=None,
                _create_key=None, retry=True, key_filename=None):
        port = _port_for(user_at_host.rsplit("@", 1)[-1])
        if port and _SSHClient is None:
            import paramiko

            class PortClient(paramiko.SSHClient):
                def connect(self, hostname, *args, **kwargs):
                    kwargs["port"] = port
                    return super().connect(hostname, *args, **kwargs)

            _SSHClient = PortClient
        return original(user_at_host, host_key=host_key, keep_alive=keep_alive,
                        timeout=timeout, _SSHClient=_SSHClient, _create_key=_create_key,
                        retry=retry, key_filename=key_filename)

    module.connect = connect


class _Loader:
    def __init__(self, wrapped):
        self._wrapped = wrapped

    def create_module(self, spec):
        return self._wrapped.create_module(spec)

    def exec_module(self, module):
        self._wrapped.exec_module(module)
        _patch(module)

    def __getattr__(self, name):
        return getattr(self._wrapped, name)


class _Finder:
    def find_spec(self, fullname, path, target=None):
        if fullname != _TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(fullname, path, target)
            if spec is not None:
                spec.loader = _Loader(spec.loader)
                return spec
        return None


sys.meta_path.insert(0, _Finder())
'''

_KEYSCAN_SHIM = '''\
#!{python} -I
"""TEST-ONLY stand-in for lab DNS (teuthology-maas e2e harness): resolve the host teuthology
scans through the fleet's ssh_config (HostName, Port), then run the real ssh-keyscan."""
import os
import sys

import paramiko

args = sys.argv[1:]
host = args[-1] if args else ""
options = paramiko.SSHConfig()
with open(os.environ["TEUTHOLOGY_MAAS_E2E_SSH_CONFIG"]) as f:
    options.parse(f)
found = options.lookup(host)
argv = ["/usr/bin/ssh-keyscan", *args[:-1]]
if found.get("port"):
    argv += ["-p", found["port"]]
argv.append(found.get("hostname", host))
os.execv(argv[0], argv)
'''


@dataclass
class Finished:
    """A teuthology command that ran to completion."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return (f"$ {' '.join(self.argv)}\nexit {self.returncode}\n--- stdout\n{self.stdout}"
                f"\n--- stderr\n{self.stderr[-6000:]}")


@dataclass
class TeuthologyLab:
    """One scenario's world: simulator, sshd fleet, lock server double and teuthology config."""

    mode: str
    root: Path
    maas: Any  # the maas_sim_factory handle (.sim, .api_url, .key_for ...)
    fleet: Any  # teuthology_maas.testing.sshd.SSHDFleet
    paddles: LockServer
    lock_url: str
    config_path: Path
    env: dict[str, str]
    hostnames: list[str] = field(default_factory=list)

    @property
    def sim(self) -> Any:
        return self.maas.sim

    def fqdn(self, hostname: str) -> str:
        return f"{hostname}.{LAB_DOMAIN}"

    def machine(self, hostname: str) -> dict[str, Any]:
        return dict(self.sim.machine(hostname))

    def status(self, hostname: str) -> str:
        return str(self.machine(hostname)["status_name"])

    def teuthology_config(self) -> dict[str, Any]:
        return dict(yaml.safe_load(self.config_path.read_text()))

    def update_maas_config(self, **changes: Any) -> None:
        document = self.teuthology_config()
        document["maas"].update(changes)
        self.config_path.write_text(yaml.safe_dump(document))

    def run(self, command: str, *args: str, timeout: float = COMMAND_TIMEOUT) -> Finished:
        """Run a teuthology console script of the venv (e.g. "teuthology-lock")."""
        argv = [str(VENV_BIN / command), *args]
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=self.root, check=False)
        return Finished(argv, done.returncode, done.stdout, done.stderr)

    def python(self, code: str, timeout: float = COMMAND_TIMEOUT) -> Finished:
        """Run Python code in teuthology's environment (for library-level teuthology calls)."""
        argv = [str(VENV_BIN / "python"), "-c", code]
        done = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                              timeout=timeout, cwd=self.root, check=False)
        return Finished(argv, done.returncode, done.stdout, done.stderr)

    def lock_in_paddles(self, hostname: str, owner: str, description: str) -> None:
        node = self.paddles.node(self.fqdn(hostname))
        assert not node["locked"], node
        self.paddles.add_node(self.fqdn(hostname), MACHINE_TYPE, locked=True, locked_by=owner,
                              description=description)

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
        """Wait (bounded) for the simulator to get somewhere; the clock is scaled."""
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                states = {h: self.status(h) for h in self.hostnames}
                raise AssertionError(f"timed out waiting for {what}; MAAS shows {states}")
            time.sleep(0.05)


def read_in_tree_module(doc: Path = REPO / "docs" / "in-tree-patch.md") -> str:
    """The in-tree teuthology/provision/maas.py, exactly as docs/in-tree-patch.md shows it."""
    text = doc.read_text(encoding="utf-8")
    marker = text.index("<!-- in-tree maas.py")
    match = re.search(r"```python\n(.*?)```", text[marker:], re.S)
    assert match, f"{doc}: no python block after the in-tree marker"
    return match.group(1)


@pytest.fixture(scope="session")
def e2e_support(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The session's support files: the test-only sitecustomize, the ssh-keyscan shim, and a
    copy of teuthology patched as docs/in-tree-patch.md says."""
    root = tmp_path_factory.mktemp("e2e-support")
    site = root / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(_SITECUSTOMIZE)
    shims = root / "bin"
    shims.mkdir()
    keyscan = shims / "ssh-keyscan"
    keyscan.write_text(_KEYSCAN_SHIM.format(python=sys.executable))
    keyscan.chmod(0o755)
    # find_spec locates the package without importing it: importing teuthology would
    # monkey-patch this pytest process with gevent.
    spec = importlib.util.find_spec("teuthology")
    assert spec is not None and spec.submodule_search_locations, "teuthology is not installed"
    in_tree = root / "in-tree"
    shutil.copytree(Path(next(iter(spec.submodule_search_locations))), in_tree / "teuthology",
                    ignore=shutil.ignore_patterns("__pycache__", "test"))
    (in_tree / "teuthology" / "provision" / "maas.py").write_text(read_in_tree_module())
    return {"site": site, "bin": shims, "in_tree": in_tree}


def _machines(hostnames: list[str], ports: Mapping[str, int]) -> list[dict[str, Any]]:
    return [
        {"hostname": h, "tags": [MACHINE_TYPE], "pool": MACHINE_TYPE, "ssh_port": ports[h]}
        for h in hostnames
    ]


@pytest.fixture
def teuthology_lab(
    tmp_path: Path,
    e2e_support: dict[str, Path],
    maas_sim_factory: Callable[..., Any],
    sshd_fleet: Callable[..., Any],
) -> Iterator[Callable[..., TeuthologyLab]]:
    """`teuthology_lab(mode, machines=4, **maas_overrides) -> TeuthologyLab`."""
    from teuthology_maas.simulator import ScaledClock

    servers: list[Any] = []

    def build(mode: str, machines: int = 4, **maas_overrides: Any) -> TeuthologyLab:
        assert mode in MODES, mode
        hostnames = [f"{MACHINE_TYPE}{i:03d}" for i in range(1, machines + 1)]
        ssh_root = tmp_path / "ssh-root"
        fleet = sshd_fleet(hostnames, ssh_root)
        ports = {h: fleet.port_of(h) for h in hostnames}
        maas = maas_sim_factory(
            inventory_dict={"machines": _machines(hostnames, ports)},
            clock=ScaledClock(TIME_FACTOR),
            ssh_root=ssh_root,
        )
        paddles = LockServer(
            {"name": f"{h}.{LAB_DOMAIN}", "machine_type": MACHINE_TYPE} for h in hostnames
        )
        handle = paddles.serve()
        servers.append(handle)
        home = tmp_path / "home"
        home.mkdir(exist_ok=True)
        maas_section = {
            "api_url": maas.api_url,
            "api_key": maas.api_key,
            "machine_types": [MACHINE_TYPE],
            "poll_interval": 0.2,
            "poll_min_interval": 0.05,
            "ssh_timeout": 30,
            "ssh_keys": [fleet.public_key],
            "erase": "quick",
            **maas_overrides,
        }
        document = {
            "lab_domain": LAB_DOMAIN,
            "lock_server": handle.url,
            "results_server": handle.url,
            "archive_base": str(tmp_path / "archive"),
            "reserve_machines": 0,
            "verify_host_keys": False,
            # teuthology's own SSH settings; the adapter falls back to them for its SSH check
            "ssh_key": str(fleet.private_key_path),
            "ssh_config_path": str(fleet.ssh_config_path),
            "maas": maas_section,
        }
        config_path = tmp_path / "teuthology.yaml"
        config_path.write_text(yaml.safe_dump(document))
        pythonpath = [str(e2e_support["site"])]
        env = {
            key: value for key, value in os.environ.items()
            if not key.startswith(("PYTHON", "TEUTHOLOGY", "PYTEST", "COV_"))
        }
        env.update(
            HOME=str(home),
            TEUTHOLOGY_CONFIG=str(config_path),
            TEUTHOLOGY_MAAS_E2E_SSH_CONFIG=str(fleet.ssh_config_path),
            PATH=os.pathsep.join([str(e2e_support["bin"]), str(VENV_BIN), "/usr/bin", "/bin"]),
            PYTHONUNBUFFERED="1",
        )
        if mode == "in-tree":
            env["TEUTHOLOGY_MAAS_ACTIVATE"] = "0"
            pythonpath.append(str(e2e_support["in_tree"]))
        env["PYTHONPATH"] = os.pathsep.join(pythonpath)
        return TeuthologyLab(mode, tmp_path, maas, fleet, paddles, handle.url.rstrip("/"),
                             config_path, env, hostnames)

    yield build
    for handle in servers:
        handle.stop()


def in_tree_module_in_use(lab: TeuthologyLab) -> str:
    """Which module serves MAAS for teuthology in this lab's processes (for mode checks)."""
    done = lab.python(
        "import teuthology.provision.maas as m, sys; "
        "print(m.__file__, m.MAAS.__module__, "
        "'hook' if hasattr(m, '__teuthology_maas__') else 'no-hook')"
    )
    assert done.returncode == 0, done
    return done.stdout.strip()
