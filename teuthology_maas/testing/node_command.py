"""What a loopback "node" runs for each SSH command: its sshd's ForceCommand.

The plain command serves the files a provisioner checks on a deployed node from the node's
directory (`<machine_dir>/os-release` for /etc/os-release and /usr/lib/os-release,
`<machine_dir>/boot-finished` for cloud-init's sentinel) and runs everything else on this host
as is. That is enough for teuthology-lock and the provisioner's own SSH checks.

Sandboxed (`sandbox=True`), a job's commands run as root but never change the host. A
teuthology job runs real commands on its nodes: it edits `/etc/sudoers`, creates
`/home/ubuntu/cephtest`, appends to `/etc/sysctl.conf`, sets `kernel.core_pattern`. When the
nodes are loopback sshd processes on the test machine (teuthology_maas.testing.sshd), every
such command would land on the host, and two nodes would share one test directory. So with
`sandbox=True` each SSH command of a node runs under `unshare --mount` with that node's own:

- `/etc`: an overlay whose lower layer is the host's /etc (read-only through it) and whose
  upper layer is the node's "disk"; `/etc/os-release` shows the deployed image's os-release;
- `/home` and `/run`: the node's own directories;
- `/run/.containerenv`: the marker teuthology reads (`Remote.is_container`) to skip what no
  mount namespace can isolate (`sysctl kernel.core_pattern`, rsyslog, ntp/chrony);
- `sudo`: first on PATH, a shim that runs the command as is (the session is root already
  and the host's sudo, if any, would read the host's policy).

The node's disk is `<machine_dir>/disk`. It is wiped whenever the machine's deployment changes
(cloud-init's `boot-finished`, which the MAAS simulator writes on every Deployed, differs), as
a real reimage gives a fresh root filesystem: a job's leftovers never reach the next job.

Needs root (mount namespaces and overlayfs) and util-linux's `unshare` and `flock`.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path

__all__ = ["BOOT_FINISHED", "OS_RELEASE", "SANDBOX_MARKER", "check_sandbox_supported",
           "node_command"]

OS_RELEASE = "/etc/os-release"
OS_RELEASE_FALLBACK = "/usr/lib/os-release"  # where os-release(5) says to look next
BOOT_FINISHED = "/var/lib/cloud/instance/boot-finished"
SANDBOX_MARKER = "/run/.containerenv"
_UNSHARE = "/usr/bin/unshare"
_FLOCK = "/usr/bin/flock"

SUDO_SHIM = """#!/bin/bash
# TEST-ONLY sudo of a sandboxed loopback node (teuthology_maas.testing.node_command): the SSH
# session already runs as root in the node's own mount namespace. Options are dropped,
# VAR=value arguments exported, the rest run as is.
while [ $# -gt 0 ]; do
    case "$1" in
        --) shift; break ;;
        -u|-g|-C|-h|-p|-r|-t|-U|-D|-T) shift 2 ;;
        -*) shift ;;
        *) break ;;
    esac
done
while [ $# -gt 0 ] && [[ "$1" =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; do
    export "$1"
    shift
done
[ $# -eq 0 ] && exit 0
exec "$@"
"""


def _enter_script(machine_dir: Path, shim_dir: Path) -> str:
    """Runs inside the new mount namespace: prepare the node's disk, mount, run the command."""
    disk = machine_dir / "disk"
    return f"""#!/bin/bash
# Inside a sandboxed node's mount namespace (teuthology_maas.testing.node_command).
set -eu
machine_dir={shlex.quote(str(machine_dir))}
disk={shlex.quote(str(disk))}
stamp() {{  # stamp VAR FILE: VAR = the file's first line (or "not-deployed"), no fork
    local line=not-deployed
    if [ -r "$2" ]; then IFS= read -r line < "$2" || true; fi
    printf -v "$1" '%s' "$line"
}}
stamp deployment "$machine_dir/boot-finished"
stamp prepared "$disk/.deployment"
if [ "$prepared" != "$deployment" ]; then
    exec 9>"$machine_dir/.disk.lock"
    {_FLOCK} 9
    stamp deployment "$machine_dir/boot-finished"
    stamp prepared "$disk/.deployment"
    if [ "$prepared" != "$deployment" ]; then
        # a new deployment: a fresh root filesystem, as a reimage gives
        rm -rf "$disk"
        mkdir -p "$disk/etc" "$disk/.etc-work" "$disk/home" "$disk/run"
        [ -e /etc/sudoers ] || printf 'root ALL=(ALL:ALL) NOPASSWD: ALL\\n' > "$disk/etc/sudoers"
        : > "$disk{SANDBOX_MARKER}"
        printf '%s\\n' "$deployment" > "$disk/.deployment"
    fi
    exec 9>&-
fi
mount -t overlay overlay -o "lowerdir=/etc,upperdir=$disk/etc,workdir=$disk/.etc-work" /etc
mount --bind "$disk/home" /home
mount --bind "$disk/run" /run
if [ -f "$machine_dir/os-release" ]; then
    mount --bind "$machine_dir/os-release" /etc/os-release
fi
export PATH={shlex.quote(str(shim_dir))}:"$PATH"
exec /bin/bash -c "$1"
"""


def check_sandbox_supported() -> None:
    """Raise RuntimeError naming what is missing when sandboxed nodes cannot run here."""
    if os.geteuid() != 0:
        raise RuntimeError("sandboxed loopback nodes need root (unshare --mount, overlayfs)")
    for tool in (_UNSHARE, _FLOCK):
        if not os.access(tool, os.X_OK):
            raise RuntimeError(f"sandboxed loopback nodes need {tool} (util-linux)")


def node_command(machine_dir: Path, workdir: Path, *, sandbox: bool = False) -> str:
    """The node's ForceCommand script (sandboxed: its helpers are written under `workdir`)."""
    directory = shlex.quote(str(machine_dir))
    run = _write_sandbox(machine_dir, workdir) if sandbox else 'exec /bin/bash -c "$command"\n'
    return f"""#!/bin/bash
# ForceCommand of a simulated machine: the files a provisioner checks on a deployed node are
# served from this machine's directory; any other command runs unchanged.
machine_dir={directory}
command=${{SSH_ORIGINAL_COMMAND-}}
if [ -z "$command" ]; then command="exec /bin/bash -l"; fi
command=${{command//"{OS_RELEASE}"/"$machine_dir/os-release"}}
command=${{command//"{OS_RELEASE_FALLBACK}"/"$machine_dir/os-release"}}
command=${{command//"{BOOT_FINISHED}"/"$machine_dir/boot-finished"}}
{run}"""


def _write_sandbox(machine_dir: Path, workdir: Path) -> str:
    """Write the node's sandbox helpers under `workdir`; return the line of the ForceCommand
    that runs `$command` inside the sandbox."""
    for path in (machine_dir, workdir):
        # overlayfs options are comma-separated, and its paths cannot hold ':'
        if any(c in str(path) for c in ",:"):
            raise ValueError(f"a sandboxed node's path cannot contain ',' or ':': {path}")
    shim_dir = workdir / "sandbox-bin"
    shim_dir.mkdir(parents=True, exist_ok=True)
    sudo = shim_dir / "sudo"
    sudo.write_text(SUDO_SHIM, encoding="utf-8")
    sudo.chmod(0o755)
    enter = workdir / "enter-sandbox"
    enter.write_text(_enter_script(machine_dir, shim_dir), encoding="utf-8")
    enter.chmod(0o755)
    return (f'exec {_UNSHARE} --mount --propagation private -- '
            f'{shlex.quote(str(enter))} "$command"\n')
