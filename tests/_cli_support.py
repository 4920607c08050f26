"""Helpers for the `teuthology-maas` command's tests: write a teuthology config file for a
simulator, and run the command in-process with captured output, or in a subprocess on a
pseudo-terminal."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from teuthology_maas.cli import run

# Anything a terminal would interpret: C0 controls except newline and tab, DEL, and ESC.
CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def write_config(
    directory: Path, handle: Any, *, top: dict[str, Any] | None = None, **maas: Any
) -> Path:
    """A teuthology.yaml whose maas: section points at the simulator `handle` as teuthology."""
    section: dict[str, Any] = {
        "api_url": handle.url,
        "api_key": handle.api_key,
        "machine_types": ["smithi"],
        "poll_interval": 0.1,
        "poll_min_interval": 0.02,
        "http_timeout": 10,
        "lookup_retries": 1,
    }
    section.update(maas)
    document = {"lab_domain": "front.example.com", **(top or {}), "maas": section}
    path = directory / "teuthology.yaml"
    path.write_text(yaml.safe_dump(document), encoding="utf-8")
    return path


def run_cli(*argv: str, config: Path | None = None) -> Result:
    out, err = io.StringIO(), io.StringIO()
    args = ([f"--config={config}"] if config else []) + list(argv)
    code = run(args, out, err)
    return Result(code, out.getvalue(), err.getvalue())


class PtyRun(NamedTuple):
    code: int
    screen: str  # what the terminal got
    stderr: str


def run_on_pty(argv: list[str], *, timeout: float = 60.0,
               env: dict[str, str] | None = None) -> PtyRun:
    """Run the command with a pseudo-terminal as stdout (stderr captured apart)."""
    import os
    import pty
    import select
    import subprocess
    import sys
    import tempfile

    master, slave = pty.openpty()
    environment = {k: v for k, v in os.environ.items() if k != "NO_COLOR"}
    environment.update(env or {})
    # A file, not a pipe: nobody reads stderr until the command has ended.
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen([sys.executable, "-m", "teuthology_maas.cli", *argv],
                                stdout=slave, stderr=errors, env=environment)
        os.close(slave)
        chunks = []
        try:
            while select.select([master], [], [], timeout)[0]:
                try:
                    data = os.read(master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not data:
                    break
                chunks.append(data)
        finally:
            os.close(master)
        code = proc.wait(timeout=timeout)
        errors.seek(0)
        return PtyRun(code, b"".join(chunks).decode(), errors.read().decode())
