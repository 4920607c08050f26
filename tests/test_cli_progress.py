"""The progress display: in place on a terminal (through a real pseudo-terminal), plain lines
without control characters anywhere else."""

from __future__ import annotations

import io
import os
import pty
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tests._cli_support import CONTROL_CHARS, run_on_pty, write_config
from teuthology_maas.cli._progress import Progress, format_elapsed
from teuthology_maas.cli._watch import MachineWatcher
from teuthology_maas.errors import MaasUnavailable
from teuthology_maas.models import Machine


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:  # EIO once the slave side is closed
            break
        if not data:
            break
        chunks.append(data)
    return b"".join(chunks).decode()


def test_format_elapsed() -> None:
    assert format_elapsed(0) == "0:00"
    assert format_elapsed(61.9) == "1:01"
    assert format_elapsed(3725) == "1:02:05"


def test_piped_progress_is_one_plain_line_per_change() -> None:
    clock = FakeClock()
    out = io.StringIO()
    with Progress(out, label="smithi001", live=False, clock=clock) as progress:
        progress.update("Ready")
        clock.now += 2
        progress.update("Deploying", "Deploying")
        progress.update("Deploying", "Deploying")  # a repeat is not a change
        clock.now += 40
        progress.update("Deploying", "Installing OS")
        clock.now += 330
        progress.update("Deployed", "Deployed")
        progress.note("smithi001: reachable over SSH")
        progress.finish("smithi001: deployed")
        progress.update("Ready")  # nothing is drawn after the outcome
    text = out.getvalue()
    assert not CONTROL_CHARS.search(text)
    assert text.splitlines() == [
        "[   0:00] smithi001: Ready",
        "[   0:02] smithi001: Deploying",
        "[   0:42] smithi001: Deploying (Installing OS)",
        "[   6:12] smithi001: Deployed",
        "[   6:12] smithi001: reachable over SSH",
        "smithi001: deployed",
    ]


def test_terminal_progress_updates_in_place_through_a_pty() -> None:
    master, slave = pty.openpty()
    clock = FakeClock()
    stream = os.fdopen(slave, "w", encoding="utf-8", newline="")
    ticked = threading.Event()

    class Ticking(FakeClock):
        def __call__(self) -> float:
            ticked.set()
            return clock.now

    with Progress(stream, label="smithi001", live=True, clock=Ticking(), refresh=0.01) as p:
        p.update("Deploying", "Deploying")
        clock.now += 5
        ticked.clear()
        assert ticked.wait(5)  # the ticker redraws the same line with the new elapsed time
        ticked.clear()
        assert ticked.wait(5)
        p.update("Deploying", "Installing OS")
        clock.now += 60
        p.update("Deployed")
        p.note("waiting for SSH")
        p.finish("smithi001: deployed")
    stream.close()
    text = read_all(master)
    os.close(master)
    # every redraw starts with carriage return + erase-line: the line is rewritten in place,
    # stamped with the time its phase began and ticking how long it has lasted so far
    assert "\r\x1b[2K[   0:00] smithi001: Deploying" in text
    assert "\r\x1b[2K[   0:00] smithi001: Deploying - 0:05 so far" in text
    assert "\r\x1b[2K[   0:00] smithi001: Deploying (Installing OS) - 0:05 so far" in text
    # the message change stayed on the same line; the status change started a new one
    lines = text.replace("\r\n", "\n").split("\n")
    deploying_lines = [line for line in lines if "Deploying" in line]
    assert len(deploying_lines) == 1
    assert deploying_lines[0].count("\r\x1b[2K") >= 3
    final_screen_lines = [line.rsplit("\r\x1b[2K", 1)[-1] for line in lines if line]
    assert final_screen_lines == [
        # a finished line says when its phase began, as a pipe would have shown it
        "[   0:00] smithi001: Deploying (Installing OS)",
        # the note took the status line's place and the status was drawn again below it
        "[   1:05] waiting for SSH",
        "[   1:05] smithi001: Deployed",
        "smithi001: deployed",
    ]


def _machine(status: int, name: str, message: str | None = None) -> Machine:
    return Machine.from_json(
        {"system_id": "abc123", "hostname": "smithi001", "status": status,
         "status_name": name, "status_message": message}
    )


def test_watcher_reports_changes_and_survives_read_errors() -> None:
    reads = iter([
        _machine(9, "Deploying", "Installing OS"),
        MaasUnavailable("blip"),
        _machine(6, "Deployed", "Deployed"),
    ])
    done = threading.Event()

    def read() -> Machine:
        value = next(reads, None)
        if value is None:
            done.set()
            return _machine(6, "Deployed", "Deployed")
        if isinstance(value, Exception):
            raise value
        return value

    out = io.StringIO()
    progress = Progress(out, label="smithi001", live=False)
    with progress, MachineWatcher(read, progress, interval=0.001):
        assert done.wait(5)
    lines = [line.split("] ", 1)[1] for line in out.getvalue().splitlines()]
    assert lines == ["smithi001: Deploying (Installing OS)", "smithi001: Deployed"]


# ---- the real command, in a subprocess, on a pseudo-terminal and on a pipe ----------------


def _deploy_args(config: Path) -> list[str]:
    return ["--config", str(config), "deploy", "smithi001", "--os-type", "ubuntu",
            "--os-version", "22.04"]


def _deploy_command(config: Path) -> list[str]:
    return [sys.executable, "-m", "teuthology_maas.cli", *_deploy_args(config)]


def _lab_config(lab: Any, directory: Path) -> Path:
    cfg = lab.config
    return write_config(
        directory, lab.handle,
        ssh_keys=list(cfg.ssh_keys), ssh_config=cfg.ssh_config,
        ssh_private_key=cfg.ssh_private_key, deploy_timeout=20, ssh_timeout=10,
    )


def test_deploy_on_a_terminal_updates_the_status_line_in_place(
    lab_factory: Any, tmp_path: Path
) -> None:
    # a slower deployment (60 simulated seconds at 200x: ~0.3 s) so the clock ticks visibly
    lab = lab_factory([{"hostname": "smithi001", "tags": ["smithi"]}],
                      timings={"deploying": 60.0})
    code, screen, stderr = run_on_pty(_deploy_args(_lab_config(lab, tmp_path)), timeout=30)
    assert code == 0, stderr
    assert lab.state("smithi001")["status_name"] == "Deployed"
    lines = screen.split("\r\n")
    deploying = [line for line in lines if "Deploying" in line]
    # the Deploying phase is ONE terminal line, redrawn (carriage return + erase line) as
    # MAAS's message changes and the elapsed time ticks
    assert len(deploying) == 1
    assert deploying[0].count("\r\x1b[2K") >= 2
    # colour on a terminal: Deployed in cyan
    assert "\x1b[36mDeployed\x1b[0m" in screen
    assert lines[-2].startswith("smithi001: deployed ubuntu 22.04 in ")


def test_deploy_on_a_pipe_prints_plain_lines(lab_factory: Any, tmp_path: Path) -> None:
    lab = lab_factory([{"hostname": "smithi001", "tags": ["smithi"]}])
    proc = subprocess.run(_deploy_command(_lab_config(lab, tmp_path)), capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert not CONTROL_CHARS.search(proc.stdout)
    lines = proc.stdout.splitlines()
    assert re.fullmatch(r"\[ +\d+:\d\d\] smithi001: Ready", lines[0])
    assert any(re.fullmatch(r"\[ +\d+:\d\d\] smithi001: Deployed", line) for line in lines)
    assert lines[-1].startswith("smithi001: deployed ubuntu 22.04 in ")


def test_ctrl_c_during_deploy_exits_130_and_leaves_nothing_deploying(
    lab_factory: Any, tmp_path: Path
) -> None:
    lab = lab_factory([{"hostname": "smithi001", "tags": ["smithi"]}], ssh=False,
                      timings={"deploying": 1e7})
    proc = subprocess.Popen(_deploy_command(_lab_config(lab, tmp_path)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if "Deploying" in line:
            break
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err
    # the provisioner cleaned up (and said so, as a note in the progress output)
    assert lab.state("smithi001")["status_name"] != "Deploying"
    assert "failed: interrupted (Ctrl-C)." in out  # the provisioner's account, in words
    assert "KeyboardInterrupt" not in out + err
    assert out.splitlines()[-1].startswith("smithi001: deploying ubuntu 22.04 interrupted after ")
    assert not CONTROL_CHARS.search(out)


# ---- waits and MAAS trouble (Progress level) -------------------------------------------------


def test_piped_waits_print_a_line_per_reason_not_per_attempt() -> None:
    clock = FakeClock()
    out = io.StringIO()
    with Progress(out, label="smithi001", live=False, clock=clock) as progress:
        progress.update("Deployed")
        clock.now += 1
        progress.waiting("ssh", "smithi001: waiting for SSH to n: connection refused",
                         detail="attempt 1")
        clock.now += 2
        progress.waiting("ssh", "smithi001: waiting for SSH to n: connection refused",
                         detail="attempt 2")  # the same reason: nothing new to log
        clock.now += 4
        progress.waiting("ssh", "smithi001: waiting for SSH to n: authentication refused")
        progress.update("Deployed", "Deployed")  # a message of the same status: no line
        clock.now += 3
        progress.trouble("MAAS at m not answering: connection refused", detail="attempt 1")
        progress.trouble("MAAS at m not answering: connection refused", detail="attempt 2")
        clock.now += 30
        progress.answered()
        progress.answered()  # nothing to end twice
        progress.finish("smithi001: deployed")
    assert out.getvalue().splitlines() == [
        "[   0:00] smithi001: Deployed",
        "[   0:01] smithi001: waiting for SSH to n: connection refused",
        "[   0:07] smithi001: waiting for SSH to n: authentication refused",
        "[   0:10] MAAS at m not answering: connection refused",
        "[   0:40] MAAS answers again after 0:30",
        "smithi001: deployed",
    ]


def test_terminal_trouble_line_sits_below_and_ends_saying_how_long() -> None:
    clock = FakeClock()
    out = io.StringIO()
    progress = Progress(out, label="smithi001", live=True, clock=clock)
    progress.update("Deploying", "Installing OS")
    clock.now += 5
    progress.trouble("MAAS at m busy: HTTP 503", detail="retrying in 10s")
    clock.now += 20
    progress.update("Deployed")  # the main line changes above the trouble line
    clock.now += 5
    progress.answered()
    progress.finish("smithi001: deployed")
    lines = [line.rsplit("\r\x1b[2K", 1)[-1] for line in out.getvalue().split("\n") if line]
    assert lines == [
        "[   0:00] smithi001: Deploying (Installing OS)",
        "[   0:05] MAAS at m busy: HTTP 503; MAAS answers again after 0:25",
        "[   0:25] smithi001: Deployed",
        "smithi001: deployed",
    ]
    assert "\r\x1b[2K[   0:05] MAAS at m busy: HTTP 503 - retrying in 10s" in out.getvalue()


def test_a_status_change_during_a_wait_is_said_above_the_waits_line() -> None:
    clock = FakeClock()
    out = io.StringIO()
    progress = Progress(out, label="smithi001", live=True, clock=clock)
    progress.update("Deploying")
    progress.waiting("ssh", "smithi001: waiting for SSH to n: connecting")
    clock.now += 2
    progress.update("Deployed")  # the watcher catching up with what the waiter already saw
    clock.now += 3
    progress.waiting("ssh", "smithi001: waiting for SSH to n: connection refused",
                     detail="attempt 2")
    progress.waiting("ssh", "smithi001: SSH to n: ready after 3 attempt(s)", ended=True)
    progress.finish("smithi001: deployed")
    lines = [line.rsplit("\r\x1b[2K", 1)[-1] for line in out.getvalue().split("\n") if line]
    assert lines == [
        "[   0:00] smithi001: Deploying",
        "[   0:02] smithi001: Deployed",
        # one line for the whole wait, stamped when it began
        "[   0:00] smithi001: SSH to n: ready after 3 attempt(s)",
        "smithi001: deployed",
    ]
