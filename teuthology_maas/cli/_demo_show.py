"""What both demos show while they run: timestamped lines, MAAS's status changes as an
operator watching MAAS would see them, and MAAS's view of the machines at the end."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from teuthology_maas.cli._common import Context

REPO = Path(__file__).resolve().parents[2]
LAB_DOMAIN = "demo.test"


class Printer:
    """Serialises output from the watcher thread and the command reader."""

    def __init__(self, ctx: Context) -> None:
        self._ctx = ctx
        self._lock = threading.Lock()
        self._started = time.monotonic()

    def __call__(self, text: str) -> None:
        with self._lock:
            self._ctx.out(f"[{time.monotonic() - self._started:5.1f}s] {text}")


class MaasWatcher:
    """Prints every status change MAAS shows, as an operator watching MAAS would see it."""

    def __init__(self, sim: Any, say: Printer) -> None:
        self._sim = sim
        self._say = say
        self._seen = {m["hostname"]: m["status_name"] for m in sim.machines()}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="demo-maas-watch", daemon=True)

    def __enter__(self) -> MaasWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._poll()

    def _loop(self) -> None:
        while not self._stop.wait(0.2):
            self._poll()

    def _poll(self) -> None:
        for machine in self._sim.machines():
            name, status = machine["hostname"], machine["status_name"]
            if self._seen.get(name) != status:
                owner = f" (owner {machine['owner']})" if machine.get("owner") else ""
                self._say(f"MAAS  {name}: {self._seen.get(name)} -> {status}{owner}")
                self._seen[name] = status


def maas_table(sim: Any, hostnames: list[str]) -> list[str]:
    rows = [("HOSTNAME", "STATUS", "OWNER", "OS")]
    for name in hostnames:
        m = sim.machine(name)
        os_name = f"{m.get('osystem')}/{m.get('distro_series')}" if m.get("distro_series") else ""
        rows.append((name, m["status_name"], m.get("owner") or "-", os_name or "-"))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    return ["  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
            for row in rows]
