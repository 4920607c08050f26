"""Run one provisioner action on one machine with everything shown as it happens: MAAS's
status changes, the provisioner's decisions, its SSH wait and any MAAS trouble, then the
outcome in a sentence (and a JSON object with --json)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from teuthology_maas.cli._common import Context, ExitCode, exit_code_for
from teuthology_maas.cli._progress import Progress, format_elapsed
from teuthology_maas.cli._watch import MachineWatcher, library_log_as_notes, waits_shown
from teuthology_maas.errors import MaasError
from teuthology_maas.models import ABORTABLE, FREE, Machine
from teuthology_maas.node.quarantine import quarantine_text

if TYPE_CHECKING:
    from teuthology_maas.config import MaasConfig
    from teuthology_maas.maas.client import MaasClient
    from teuthology_maas.node.provisioner import MaasProvisioner


@dataclass(frozen=True)
class Verb:
    """How an action is named: `deploy` / `deploying ubuntu 22.04` / `deployed ubuntu
    22.04`; `idle` says why nothing was done when MAAS showed no change (None: it always
    acts)."""

    action: str
    doing: str
    done: str
    idle: Callable[[Machine], str | None] | None = None


def nothing_to_abort(machine: Machine) -> str | None:
    if machine.status in ABORTABLE:
        return None
    return f"nothing to abort ({machine.status_name})"


def nothing_to_release(machine: Machine) -> str | None:
    if quarantine_text(machine) is not None:
        return (f"quarantined (Broken in MAAS): nothing released; `teuthology-maas quarantine "
                f"release {machine.hostname}` after the repair")
    if machine.status in FREE:
        return f"already {machine.status_name}: nothing to release"
    return None


def run_action(
    ctx: Context,
    *,
    machine: Machine,
    watch_client: MaasClient,
    provisioner: MaasProvisioner,
    cfg: MaasConfig,
    verb: Verb,
    action: Callable[[MaasProvisioner], object],
) -> int:
    """Run `action` on the provisioner while MAAS's view of `machine` and the library's waits
    are shown; print the outcome and return the exit status."""
    # JSON owns stdout, so the live display goes to stderr as plain lines.
    stream = ctx.stderr if ctx.json else ctx.stdout
    live = ctx.is_tty and not ctx.json
    started = time.monotonic()
    error: MaasError | None = None
    label = machine.hostname
    with Progress(stream, label=label, live=live, colour=ctx.colour) as progress:
        progress.update(machine.status_name, machine.status_message)
        watcher = MachineWatcher(
            lambda: watch_client.get_machine(machine.system_id),
            progress,
            interval=max(0.05, min(cfg.poll_min_interval, 1.0)),
        )
        try:
            with (
                library_log_as_notes(progress),
                waits_shown(progress, hostname=label, api_url=cfg.api_url),
                watcher,
            ):
                try:
                    action(provisioner)
                except MaasError as exc:
                    error = exc
        except KeyboardInterrupt:
            took = format_elapsed(time.monotonic() - started)
            progress.finish(f"{label}: {verb.doing} interrupted after {took}")
            raise
        elapsed = time.monotonic() - started
        took = format_elapsed(elapsed)
        idle = verb.idle(machine) if verb.idle is not None and not progress.changed else None
        if error is not None:
            outcome = f"{verb.doing} failed after {took}"
        elif idle is not None:
            outcome = idle
        else:
            outcome = f"{verb.done} in {took}"
        progress.finish(f"{label}: {outcome}")
    final = _read_quietly(watch_client, machine.system_id)
    if ctx.json:
        payload: dict[str, Any] = {
            "ok": error is None,
            "action": verb.action,
            "outcome": outcome,
            "hostname": machine.hostname,
            "system_id": machine.system_id,
            "elapsed": round(elapsed, 3),
            "status": final.status_name if final else None,
            "status_message": final.status_message if final else None,
        }
        if error is not None:
            payload["error"] = type(error).__name__
            payload["message"] = str(error)
        ctx.emit_json(payload)
    if error is not None:
        if not ctx.json:
            ctx.err(f"teuthology-maas: {type(error).__name__}: {error}")
        return int(exit_code_for(error))
    return int(ExitCode.OK)


def _read_quietly(client: MaasClient, system_id: str) -> Machine | None:
    try:
        return client.get_machine(system_id)
    except MaasError:
        return None
