"""What a person sees during each wait of `deploy`, on a real pseudo-terminal (and on a pipe):
the SSH phase as its own line with the reason it is still waiting, a name that does not resolve
failing after the grace instead of the whole ssh_timeout, and MAAS trouble condensed into one
updating line."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests._cli_support import CONTROL_CHARS, run_on_pty, write_config
from tests.test_ssh_wait_reasons import refusing_port
from teuthology_maas.testing.sshd import KeyPair

SENTINEL = "/var/lib/cloud/instance/boot-finished"


def screen_lines(screen: str) -> list[str]:
    """What stays on the terminal: for each line, the last redraw of it."""
    return [line.rsplit("\r\x1b[2K", 1)[-1] for line in screen.split("\r\n") if line]


def redraws(screen: str, needle: str) -> list[str]:
    """The terminal lines (each with all its redraws) that end up showing `needle`: a line
    whose drawing was erased to write something else in its place does not count."""
    return [line for line in screen.split("\r\n")
            if needle in line.rsplit("\r\x1b[2K", 1)[-1]]


def deploy_on_pty(config: Path, *extra: str, timeout: float = 60) -> Any:
    return run_on_pty(["--config", str(config), "deploy", "smithi001", *extra], timeout=timeout,
                      env={"NO_COLOR": "1"})


def lab_config(lab: Any, directory: Path, **maas: Any) -> Path:
    cfg = lab.config
    section: dict[str, Any] = {
        "ssh_keys": list(cfg.ssh_keys), "deploy_timeout": 20, "ssh_timeout": 4,
        **({"ssh_config": cfg.ssh_config} if cfg.ssh_config else {}),
        **({"ssh_private_key": cfg.ssh_private_key} if cfg.ssh_private_key else {}),
        **maas,
    }
    return write_config(directory, lab.handle, **section)


def test_a_successful_deploy_shows_the_ssh_phase_as_its_own_line(
    lab_factory: Any, tmp_path: Path
) -> None:
    lab = lab_factory([{"hostname": "smithi001", "tags": ["smithi"]}])
    code, screen, stderr = deploy_on_pty(lab_config(lab, tmp_path, ssh_timeout=20))
    assert code == 0, stderr
    lines = screen_lines(screen)
    ssh_line = [line for line in lines if ": SSH to " in line]
    assert len(ssh_line) == 1, lines
    assert ssh_line[0].endswith("ready after 1 attempt(s)")
    assert "(127.0.0.1 port" in ssh_line[0]  # where it connected, from the ssh_config
    # the SSH line comes after Deployed and before the outcome
    deployed = next(i for i, line in enumerate(lines) if line.endswith("smithi001: Deployed"))
    assert deployed < lines.index(ssh_line[0]) < len(lines) - 1
    assert lines[-1].startswith("smithi001: deployed ubuntu 22.04 in ")


def test_a_name_that_does_not_resolve_fails_after_the_grace(
    lab_factory: Any, tmp_path: Path
) -> None:
    # no sshd and no ssh_config: the node's name is smithi001.front.example.com, which no DNS
    # knows; the grace (1 s) ends the wait long before ssh_timeout (120 s)
    lab = lab_factory([{"hostname": "smithi001", "tags": ["smithi"]}], ssh=False)
    config = lab_config(lab, tmp_path, ssh_timeout=120, ssh_resolve_grace=1, erase="none")
    started = time.monotonic()
    code, screen, stderr = deploy_on_pty(config)
    assert time.monotonic() - started < 60
    assert code == 1
    waiting = redraws(screen, "smithi001: SSH to ubuntu@smithi001.front.example.com")
    # one terminal line, redrawn in place, that says why it is still waiting
    assert len(waiting) == 1, screen.split("\r\n")
    assert "name does not resolve" in waiting[0]
    lines = screen_lines(screen)
    assert any(line.endswith("SSH to ubuntu@smithi001.front.example.com: gave up (name does "
                             "not resolve)") for line in lines)
    assert lines[-1].startswith("smithi001: deploying ubuntu 22.04 failed after ")
    assert "ssh_resolve_grace is 1s" in stderr and "lab_domain" in stderr
    assert lab.state("smithi001")["status_name"] == "Ready"  # cleaned up as before


def test_connection_refused_is_shown_with_the_attempts(lab_factory: Any, tmp_path: Path) -> None:
    lab = lab_factory([{"hostname": "smithi001", "tags": ["smithi"]}], ssh=False)
    ssh_config = tmp_path / "ssh_config"
    with refusing_port() as port:
        ssh_config.write_text(f"Host smithi001*\n    HostName 127.0.0.1\n    Port {port}\n")
        config = lab_config(lab, tmp_path, ssh_config=str(ssh_config), ssh_timeout=3,
                            erase="none")
        code, screen, stderr = deploy_on_pty(config)
    assert code == 1
    waiting = redraws(screen, "smithi001: SSH to ubuntu@smithi001.front.example.com")
    assert len(waiting) == 1, "\n".join(repr(w) for w in waiting)
    assert "connection refused - attempt 2" in waiting[0]  # the attempt count ticks on a tty
    assert "connection refused or unreachable" in stderr  # the error's own words


def test_a_key_the_node_does_not_have_is_shown_as_authentication_refused(
    lab_factory: Any, tmp_path: Path
) -> None:
    lab = lab_factory([{"hostname": "smithi001", "tags": ["smithi"]}])
    other = KeyPair.generate(tmp_path / "other-key")  # user_data injects this one instead
    config = lab_config(lab, tmp_path, ssh_keys=[other.public_key], ssh_timeout=3,
                        erase="none")
    code, screen, _stderr = deploy_on_pty(config)
    assert code == 1
    (waiting,) = redraws(screen, "smithi001: SSH to ")
    assert "waiting for SSH to" in waiting
    assert "authentication refused (our key is not on the node yet?) - attempt" in waiting


def test_a_node_still_booting_is_shown_waiting_for_cloud_init(
    lab_factory: Any, tmp_path: Path
) -> None:
    lab = lab_factory([{"hostname": "smithi001", "tags": ["smithi"]}])
    never = "/var/lib/cloud/instance/never-there"
    config = lab_config(lab, tmp_path, sentinel_file=never, ssh_timeout=3, erase="none")
    code, screen, _stderr = deploy_on_pty(config)
    assert code == 1
    waiting = redraws(screen, "smithi001: SSH to ")
    assert len(waiting) == 1
    assert f"waiting for cloud-init to finish ({never} not there yet)" in waiting[0]


# ---- MAAS trouble: one updating line, not a line per retry ---------------------------------


def _during_deploying(lab: Any, fault: dict[str, Any], seconds: float) -> threading.Thread:
    """Once the machine is Deploying, inject `fault` for `seconds`, then lift it."""

    def run() -> None:
        deadline = time.monotonic() + 30
        while lab.state("smithi001")["status_name"] != "Deploying":
            if time.monotonic() > deadline:
                return
            time.sleep(0.02)
        injected = lab.sim.faults.add(**fault)
        time.sleep(seconds)
        lab.sim.faults.remove(injected)

    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_a_busy_maas_is_one_updating_line_on_a_terminal(lab_factory: Any, tmp_path: Path) -> None:
    # 1000 simulated seconds at 200x: Deploying for ~5 s, during which MAAS answers every
    # GET with 503 Retry-After 1 for 3 s
    lab = lab_factory([{"hostname": "smithi001", "tags": ["smithi"]}],
                      timings={"deploying": 1000.0})
    injector = _during_deploying(
        lab, {"kind": "error", "status": 503, "retry_after": 1, "method": "GET"}, 3.0
    )
    code, screen, stderr = deploy_on_pty(lab_config(lab, tmp_path, ssh_timeout=20))
    injector.join()
    assert code == 0, stderr
    busy = redraws(screen, "busy: HTTP 503 (Retry-After 1s)")
    assert len(busy) == 1, busy  # several retries, one line
    assert "retrying in 1s" in busy[0]
    lines = screen_lines(screen)
    ended = [line for line in lines if "busy: HTTP 503" in line]
    assert len(ended) == 1 and "; MAAS answers again after " in ended[0]
    # no log records of the retries leaked onto the screen
    assert "attempt 1 of" not in screen and "will retry" not in screen
    assert lines[-1].startswith("smithi001: deployed ubuntu 22.04 in ")


def test_maas_dropping_connections_is_one_line_then_one_on_a_pipe(
    lab_factory: Any, tmp_path: Path
) -> None:
    lab = lab_factory([{"hostname": "smithi001", "tags": ["smithi"]}],
                      timings={"deploying": 1000.0})
    injector = _during_deploying(
        lab, {"kind": "drop", "when": "before", "method": "GET"}, 3.0
    )
    config = lab_config(lab, tmp_path, ssh_timeout=20)
    proc = subprocess.run(
        [sys.executable, "-m", "teuthology_maas.cli", "--config", str(config), "deploy",
         "smithi001"], capture_output=True, text=True, timeout=120,
    )
    injector.join()
    assert proc.returncode == 0, proc.stderr
    assert not CONTROL_CHARS.search(proc.stdout)
    lines = proc.stdout.splitlines()
    trouble = [line for line in lines if "not answering" in line]
    assert len(trouble) == 1, lines  # however many retries there were
    assert trouble[0].endswith("not answering: connection closed by the other side")
    assert any(line.split("] ", 1)[-1].startswith("MAAS answers again after ")
               for line in lines)
    assert "Traceback" not in proc.stdout + proc.stderr
