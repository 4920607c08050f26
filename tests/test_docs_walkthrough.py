"""The `simulator --with-nodes` walk-through of docs/simulator.md, run as written: the
simulator command of the first block, then every command of the second with the exit status
its comment announces (0 otherwise). Only the port (any free one), the time factor (faster)
and the working directory (a temporary one) differ from what a reader types."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from pathlib import Path

from tests.test_docs import DOCS, FENCE, text_of

MARKER = "<!-- walk-through: tests/test_docs_walkthrough.py"
DOC_WORKDIR = "/tmp/maas-lab"
VENV_BIN = Path(sys.executable).parent


def walkthrough_blocks() -> tuple[str, list[str]]:
    """The simulator command line and the commands of the second block."""
    markdown = text_of(DOCS / "simulator.md")
    start = markdown.index(MARKER)
    blocks = [m.group(0) for m in FENCE.finditer(markdown, start)][:2]
    assert len(blocks) == 2, "the walk-through lost its two command blocks"

    def lines(block: str) -> list[str]:
        body = block.split("\n", 1)[1].rsplit("\n", 1)[0]
        return [line for line in body.splitlines() if line.strip()]

    (simulator,) = lines(blocks[0])
    return simulator, lines(blocks[1])


def expected_exit(line: str) -> int:
    match = re.search(r"#\s*exit (\d+)", line)
    return int(match.group(1)) if match else 0


def test_the_walkthrough_runs_as_written(tmp_path: Path) -> None:
    simulator, commands = walkthrough_blocks()
    assert simulator.startswith("teuthology-maas simulator --with-nodes ")
    assert len(commands) >= 8
    workdir = tmp_path / "maas-lab"
    argv = shlex.split(simulator.replace(DOC_WORKDIR, str(workdir)))
    argv = [str(VENV_BIN / argv[0]), *argv[1:], "--port", "0", "--time-factor", "600",
            "--json"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEUTHOLOGY")}
    env["PATH"] = os.pathsep.join([str(VENV_BIN), env.get("PATH", "")])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline() or "{}")
        assert info.get("config") == str(workdir / "teuthology.yaml"), proc.stderr
        ran = []
        for line in commands:
            command = line.split(" #", 1)[0].strip().replace(DOC_WORKDIR, str(workdir))
            if command.startswith("export "):
                name, _, value = command[len("export "):].partition("=")
                env[name] = value
                continue
            if command.startswith("python "):
                command = shlex.quote(sys.executable) + command[len("python"):]
            done = subprocess.run(command, shell=True, env=env, capture_output=True, text=True,
                                  timeout=300)
            assert done.returncode == expected_exit(line), (
                f"$ {line}\nexit {done.returncode}\n{done.stdout}\n{done.stderr}"
            )
            ran.append((command, done.stdout))
        is_ready = next(out for cmd, out in ran if "is_ready" in cmd)
        assert is_ready.strip() == "True"
        os_release = next(out for cmd, out in ran if "/etc/os-release" in cmd)
        assert 'VERSION_ID="22.04"' in os_release
        assert any("1 leak released" in out for cmd, out in ran if "--apply" in cmd)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
