"""Run the REAL teuthology commands against loopback stand-ins: a TEST/DEMO harness.

Used by the end-to-end tests and by `teuthology-maas demo`. A `TeuthologyLab` is a directory
holding a teuthology config (`lab_domain`, `lock_server`/`results_server` pointing at the
paddles double, `ssh_key`/`ssh_config_path` pointing at the loopback sshd fleet, and the
`maas:` section pointing at the simulator), a temporary HOME, and the environment the
teuthology subprocesses run with.

What is real in those subprocesses: all of teuthology (stock, from the venv), HTTP to MAAS and
paddles, and teuthology's SSH logins (paramiko) to a real sshd that accepts exactly the key
MAAS put into the node's user_data, reading `/etc/os-release` and `uname -m` through it.

What is adapted, both about the network and nothing else:

1. Name resolution. In a lab `<node>.<lab_domain>` resolves to the node and sshd listens on
   port 22; here each node is 127.0.0.1:<its own port>. teuthology runs
   `ssh-keyscan -T 1 <fqdn>`, which reads no ssh_config, so a PATH shim named `ssh-keyscan`
   looks the name up in the fleet's ssh_config (HostName, Port) and runs the real
   /usr/bin/ssh-keyscan there. It stands in for lab DNS.
2. The SSH port. teuthology.orchestra.connection.connect() takes HostName, User and
   IdentityFile from `ssh_config_path` but ignores `Port` (teuthology 1.3.0). A test-only
   `sitecustomize` on the subprocess's PYTHONPATH wraps that one function to pass the port to
   paramiko. (Proposed upstream fix: docs/teuthology-integration.md.)

Modes: "activation" (stock teuthology plus our .pth hook, as `pip install teuthology-maas`
gives a lab) and "in-tree" (hook off via TEUTHOLOGY_MAAS_ACTIVATE=0, and a copy of teuthology
whose provision/maas.py is the module of docs/in-tree-patch.md, first on PYTHONPATH).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from teuthology_maas.testing.processes import end_processes, marked_processes

MODES = ("activation", "in-tree")
VENV_BIN = Path(sys.executable).parent
KEYSCAN_CONFIG_ENV = "TEUTHOLOGY_MAAS_LAB_SSH_CONFIG"
# Set to the lab's root in every process the lab starts, and inherited by theirs (dispatcher,
# supervisors, jobs): how `processes()` finds them once they have detached.
LAB_MARKER_ENV = "TEUTHOLOGY_MAAS_LAB"

PORT_SITECUSTOMIZE = '''\
"""TEST-ONLY (teuthology_maas.testing.teuthology_lab): make teuthology's SSH connect honour
`Port` from its ssh_config_path. teuthology 1.3.0 reads HostName, User and IdentityFile from
that file but not Port; the lab's "nodes" are sshd on 127.0.0.1:<port>. Nothing else changes."""
import sys

_TARGET = "teuthology.orchestra.connection"


def _port_for(host):
    import os

    import paramiko
    from teuthology.config import config

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

            name = user_at_host.rsplit("@", 1)[-1]

            class PortClient(paramiko.SSHClient):
                def connect(self, hostname, *args, **kwargs):
                    kwargs["port"] = port
                    # teuthology registered the job's host key under the node's name;
                    # paramiko looks it up under "[HostName]:Port" for a non-22 port
                    known = self.get_host_keys()
                    for keytype, key in (known.lookup(name) or {}).items():
                        known.add(f"[{hostname}]:{port}", keytype, key)
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

KEYSCAN_SHIM = '''\
#!{python} -I
"""TEST-ONLY stand-in for lab DNS (teuthology_maas.testing.teuthology_lab): resolve the host
teuthology scans through the fleet's ssh_config (HostName, Port), then run the real
ssh-keyscan."""
import os
import sys

import paramiko

args = sys.argv[1:]
host = args[-1] if args else ""
options = paramiko.SSHConfig()
with open(os.environ["{env}"]) as f:
    options.parse(f)
found = options.lookup(host)
argv = ["/usr/bin/ssh-keyscan", *args[:-1]]
if found.get("port"):
    argv += ["-p", found["port"]]
argv.append(found.get("hostname", host))
os.execv(argv[0], argv)
'''

IN_TREE_MARKER = "<!-- in-tree maas.py"


def in_tree_module(doc: Path) -> str:
    """The in-tree teuthology/provision/maas.py, verbatim from docs/in-tree-patch.md."""
    text = doc.read_text(encoding="utf-8")
    start = text.index(IN_TREE_MARKER)
    block = text.index("```python\n", start) + len("```python\n")
    return text[block : text.index("```", block)]


@dataclass(frozen=True)
class Support:
    """Files shared by every lab of a session: sitecustomize dir, shim dir, in-tree copy."""

    site: Path
    bin: Path
    in_tree: Path | None

    @classmethod
    def write(cls, root: Path, *, in_tree_doc: Path | None = None) -> Support:
        site, shims = root / "site", root / "bin"
        site.mkdir(parents=True, exist_ok=True)
        shims.mkdir(parents=True, exist_ok=True)
        (site / "sitecustomize.py").write_text(PORT_SITECUSTOMIZE, encoding="utf-8")
        keyscan = shims / "ssh-keyscan"
        keyscan.write_text(KEYSCAN_SHIM.format(python=sys.executable, env=KEYSCAN_CONFIG_ENV),
                           encoding="utf-8")
        keyscan.chmod(0o755)
        in_tree = None
        if in_tree_doc is not None:
            in_tree = root / "in-tree"
            # find_spec locates teuthology without importing it (an import would put the
            # calling process under gevent).
            spec = importlib.util.find_spec("teuthology")
            if spec is None or not spec.submodule_search_locations:
                raise RuntimeError("teuthology is not installed in this environment")
            source = Path(next(iter(spec.submodule_search_locations)))
            shutil.copytree(source, in_tree / "teuthology", dirs_exist_ok=True,
                            ignore=shutil.ignore_patterns("__pycache__", "test"))
            (in_tree / "teuthology" / "provision" / "maas.py").write_text(
                in_tree_module(in_tree_doc), encoding="utf-8"
            )
        return cls(site, shims, in_tree)


@dataclass
class Finished:
    """A command that ran to completion."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def __str__(self) -> str:
        return (f"$ {' '.join(self.argv)}\nexit {self.returncode}\n--- stdout\n{self.stdout}"
                f"\n--- stderr (tail)\n{self.stderr[-8000:]}")


@dataclass
class TeuthologyLab:
    """A teuthology config + HOME + environment for running teuthology's commands."""

    root: Path
    config_path: Path
    env: dict[str, str]
    lab_domain: str

    @classmethod
    def create(
        cls,
        root: Path,
        support: Support,
        *,
        mode: str = "activation",
        lab_domain: str,
        lock_server: str,
        maas: Mapping[str, Any],
        ssh_key: Path | str,
        ssh_config: Path | str,
        extra: Mapping[str, Any] | None = None,
    ) -> TeuthologyLab:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
        home = root / "home"
        home.mkdir(parents=True, exist_ok=True)
        document: dict[str, Any] = {
            "lab_domain": lab_domain,
            # no trailing slash: teuthology builds f"{results_server}/runs/...", and paddles
            # behind gunicorn answers the resulting "//runs/" with 404
            "lock_server": lock_server.rstrip("/"),
            "results_server": lock_server.rstrip("/"),
            "archive_base": str(root / "archive"),
            "reserve_machines": 0,
            "verify_host_keys": False,
            # teuthology's own SSH settings; the adapter falls back to them for its SSH check
            "ssh_key": str(ssh_key),
            "ssh_config_path": str(ssh_config),
            "maas": dict(maas),
            **(extra or {}),
        }
        config_path = root / "teuthology.yaml"
        config_path.write_text(yaml.safe_dump(document), encoding="utf-8")
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("PYTHON", "TEUTHOLOGY", "PYTEST", "VIRTUAL_ENV"))}
        pythonpath = [str(support.site)]
        if mode == "in-tree":
            if support.in_tree is None:
                raise ValueError("in-tree mode needs Support.write(..., in_tree_doc=...)")
            env["TEUTHOLOGY_MAAS_ACTIVATE"] = "0"
            pythonpath.append(str(support.in_tree))
        env.update(
            HOME=str(home),
            TEUTHOLOGY_CONFIG=str(config_path),
            PYTHONPATH=os.pathsep.join(pythonpath),
            PYTHONUNBUFFERED="1",
            PATH=os.pathsep.join([str(support.bin), str(VENV_BIN), "/usr/bin", "/bin"]),
        )
        env[KEYSCAN_CONFIG_ENV] = str(ssh_config)
        env[LAB_MARKER_ENV] = str(root.resolve())
        return cls(root, config_path, env, lab_domain)

    def fqdn(self, hostname: str) -> str:
        return f"{hostname}.{self.lab_domain}"

    def config(self) -> dict[str, Any]:
        return dict(yaml.safe_load(self.config_path.read_text(encoding="utf-8")))

    def update_maas(self, **changes: Any) -> None:
        document = self.config()
        document["maas"].update(changes)
        self.config_path.write_text(yaml.safe_dump(document), encoding="utf-8")

    def argv(self, command: str, *args: str) -> list[str]:
        return [str(VENV_BIN / command), *args]

    def run(self, command: str, *args: str, timeout: float = 180.0) -> Finished:
        """Run one of the venv's console scripts (e.g. "teuthology-lock") to completion."""
        return self._run(self.argv(command, *args), timeout)

    def python(self, code: str, *, timeout: float = 180.0) -> Finished:
        """Run Python code in teuthology's environment (library-level teuthology calls)."""
        return self._run([str(VENV_BIN / "python"), "-c", code], timeout)

    def popen(self, argv: Sequence[str], *, stdout: int | IO[str] | None = subprocess.PIPE
              ) -> subprocess.Popen[str]:
        return subprocess.Popen(list(argv), env=self.env, cwd=self.root, stdout=stdout,
                                stderr=subprocess.STDOUT, text=True, bufsize=1)

    def processes(self) -> list[int]:
        """PIDs of the processes this lab started that still run, however detached."""
        return marked_processes(LAB_MARKER_ENV, self.env[LAB_MARKER_ENV])

    def end_processes(self, *, grace: float = 10.0) -> list[int]:
        """End every process of this lab, by PID (SIGTERM, then SIGKILL after `grace`);
        returns the PIDs it found."""
        found = self.processes()
        end_processes(found, grace=grace)
        return found

    def _run(self, argv: list[str], timeout: float) -> Finished:
        done = subprocess.run(argv, env=self.env, cwd=self.root, capture_output=True,
                              text=True, timeout=timeout, check=False)
        return Finished(argv, done.returncode, done.stdout, done.stderr)
