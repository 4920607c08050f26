"""`Simulator`: one simulated MAAS region (users, machines, images, clock, faults)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from teuthology_maas.models import NodeStatus
from teuthology_maas.simulator._interface_ops import InterfaceOps
from teuthology_maas.simulator._machine_ops import MachineOps
from teuthology_maas.simulator._misc_api import DEFAULT_CONFIG
from teuthology_maas.simulator._records import MachineRecord
from teuthology_maas.simulator._routes import build_resources
from teuthology_maas.simulator.app import MaasApp, RequestRecord
from teuthology_maas.simulator.auth import OAuthVerifier
from teuthology_maas.simulator.clock import Clock, ManualClock, ScaledClock
from teuthology_maas.simulator.faults import FaultSet, fault_from_mapping
from teuthology_maas.simulator.inventory import (
    Inventory,
    InventoryError,
    MachineSpec,
    UserSpec,
    _machine_spec,
    generate_api_key,
)
from teuthology_maas.simulator.server import ServerHandle
from teuthology_maas.simulator.ssh_backing import SshBacking
from teuthology_maas.simulator.state import StateMachine

# The behaviour faults that can strike a transition a machine starts in.
_RESUMED_FAULTS: dict[NodeStatus, frozenset[str]] = {
    NodeStatus.DEPLOYING: frozenset({"deploy_fail", "deploy_stuck", "deploy_revert"}),
    NodeStatus.RELEASING: frozenset({"release_stuck", "release_fail"}),
    NodeStatus.DISK_ERASING: frozenset({"release_stuck", "release_fail", "erase_fail"}),
}


class Simulator:
    """A MAAS 2.0 region API double. Serve it with `serve()`; drive time with its clock."""

    def __init__(
        self,
        inventory: Inventory | None = None,
        *,
        clock: Clock | None = None,
        ssh_root: str | Path | None = None,
    ) -> None:
        self.inventory = inventory or Inventory.from_mapping({})
        self.clock: Clock = clock or ScaledClock(1.0)
        self.users: dict[str, UserSpec] = {u.username: u for u in self.inventory.users}
        self.verifier = OAuthVerifier(self.inventory.users)
        self.faults = FaultSet(self.inventory.seed)
        for index, raw in enumerate(self.inventory.faults):
            try:
                self.faults.add(fault_from_mapping(raw))
            except (TypeError, ValueError) as exc:
                raise InventoryError(f"faults[{index}]: {exc}") from None
        self.ssh_root = Path(ssh_root) if ssh_root is not None else None
        self.ssh = SshBacking(self.ssh_root) if self.ssh_root is not None else None
        self.state = StateMachine(
            clock=self.clock,
            timings=self.inventory.timings,
            images=self.inventory.images,
            ssh=self.ssh,
            config={**DEFAULT_CONFIG, **self.inventory.config},
            release_scripts=self.inventory.release_scripts,
            maas_version=self.inventory.maas_version,
            seed=self.inventory.seed,
        )
        for spec in self.inventory.machines:
            self.state.add(spec)
        self.ops = MachineOps(self.state, self.faults, self.users)
        self.interface_ops = InterfaceOps(self.ops)
        for record in list(self.state.machines.values()):
            self._resume(record)
        self.request_log: list[RequestRecord] = []
        self._seq = itertools.count(1)
        self.app = MaasApp(self, build_resources(self))
        if isinstance(self.clock, ManualClock):
            self.clock.subscribe(self.settle)

    # -- serving --------------------------------------------------------------------------

    def serve(self, host: str = "127.0.0.1", port: int = 0) -> ServerHandle:
        """Start a threaded HTTP server in the background (loopback only)."""
        return ServerHandle(self, host, port)

    def settle(self) -> None:
        """Apply every transition that is due on the clock."""
        self.state.settle()

    def real_seconds_to_next(self, longest: float) -> float:
        """How long (real seconds, at most `longest`) until the next scheduled transition is
        due, for a clock that runs by itself (`ScaledClock`); `longest` for any other."""
        due = self.state.next_due()
        if due is None or not isinstance(self.clock, ScaledClock):
            return longest
        return max(0.0, min(longest, (due - self.clock.now()) / self.clock.factor))

    # -- users ----------------------------------------------------------------------------

    def api_key(self, username: str) -> str:
        try:
            return self.users[username].api_key
        except KeyError:
            raise KeyError(
                f"no simulated MAAS user {username!r}; known users: {sorted(self.users)}"
            ) from None

    def add_user(
        self, username: str, *, is_superuser: bool = False, api_key: str | None = None
    ) -> str:
        if username in self.users:
            raise ValueError(f"user {username!r} already exists")
        user = UserSpec(
            username, api_key or generate_api_key(), is_superuser, f"{username}@example.com"
        )
        self.users[username] = user
        self.verifier.add_user(user)
        return user.api_key

    # -- machines -------------------------------------------------------------------------

    def add_machine(self, hostname: str, **fields: Any) -> dict[str, Any]:
        """Add a machine (same keys as an inventory entry); returns its JSON."""
        spec: MachineSpec = _machine_spec(
            {"hostname": hostname, **fields}, len(self.state.machines)
        )
        if spec.owner is not None and spec.owner not in self.users:
            raise InventoryError(f"owner {spec.owner!r} is not a known user: {sorted(self.users)}")
        with self.state.lock:
            record = self.state.add(spec)
            self._resume(record)
            return self.state.render(record)

    def _resume(self, record: MachineRecord) -> None:
        """A machine that starts mid-transition carries on from now, faults included."""
        kinds = _RESUMED_FAULTS.get(record.status)
        if kinds is None:
            return
        fault = self.faults.behaviour(kinds, machine_names=record.names(), user=record.owner)
        self.state.resume(record, fault)

    def machine(self, ident: str) -> dict[str, Any]:
        """The machine's JSON as an admin sees it (by hostname, FQDN or system_id)."""
        with self.state.lock:
            self.state.settle()
            return self.state.render(self.state.find(ident))

    def machines(self) -> list[dict[str, Any]]:
        with self.state.lock:
            self.state.settle()
            return [self.state.render(m) for m in self.state.machines.values()]

    def boot(self, ident: str) -> dict[str, Any]:
        """Power on, as an operator at the console would, a machine MAAS cannot power
        (power_type manual) that waits in Deploying, Disk erasing or Releasing; the
        transition then runs on the clock from now. ValueError if it waits for nothing."""
        with self.state.lock:
            self.state.settle()
            record = self.state.find(ident)
            self.state.boot(record)
            return self.state.render(record)

    def system_id(self, hostname: str) -> str:
        return self.state.find(hostname).system_id

    def update_machine(self, ident: str, **fields: Any) -> dict[str, Any]:
        """Force fields (status, owner, locked, power_state, tags ...) as an operator would."""
        from teuthology_maas.simulator.inventory import parse_status

        with self.state.lock:
            record = self.state.find(ident)
            for name, value in fields.items():
                if name == "status":
                    self.state.supersede(record)
                    self.state.set_status(record, parse_status(value, "status"), self.clock.now())
                elif hasattr(record, name) and not name.startswith("_"):
                    setattr(record, name, value)
                else:
                    raise AttributeError(f"machines have no field {name!r}")
            self.state.catalog.add(record)
            return self.state.render(record)

    def events_for(self, ident: str) -> list[dict[str, Any]]:
        """Every event of one machine, newest first, in the API's JSON shape (+ level)."""
        with self.state.lock:
            self.state.settle()
            record = self.state.find(ident)
            return [e.to_json() for e in self.state.events.for_node(record.system_id)]

    def user_data(self, ident: str) -> bytes | None:
        """The user_data as MAAS would serve it to cloud-init (base64 decoded when canonical)."""
        with self.state.lock:
            return self.state.served_user_data(self.state.find(ident))

    def stored_user_data(self, ident: str) -> bytes | None:
        """The user_data exactly as the deploy request sent it."""
        with self.state.lock:
            return self.state.find(ident).user_data

    def next_seq(self) -> int:
        """The next number in the order requests are applied (RequestRecord.seq)."""
        return next(self._seq)

    def requests(self, *, op: str | None = None, method: str | None = None) -> list[RequestRecord]:
        """The request log, optionally filtered."""
        return [
            r
            for r in list(self.request_log)
            if (op is None or r.op == op) and (method is None or r.method == method)
        ]

    def __repr__(self) -> str:
        return f"Simulator(machines={len(self.state.machines)}, clock={self.clock!r})"
