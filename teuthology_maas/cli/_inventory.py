"""Which configured machine_type a MAAS machine belongs to, as operators name them.

teuthology only knows machine types; MAAS knows tags, pools and hostnames. A lab marks a type
with a tag or a resource pool of the same name, or (Sepia style) names its nodes after it
(`smithi001`). The first of those that matches a configured type wins."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from teuthology_maas.models import Machine
from teuthology_maas.node.deploy_options import machine_type_of

__all__ = ["add_machine_type_option", "machine_type_of", "machines_by_type", "requested_types"]


def machines_by_type(
    machines: Sequence[Machine], machine_types: Sequence[str]
) -> dict[str, list[Machine]]:
    """Every configured type (even one with no machines), with its machines in MAAS order."""
    grouped: dict[str, list[Machine]] = {t: [] for t in machine_types}
    for machine in machines:
        kind = machine_type_of(machine, machine_types)
        if kind is not None:
            grouped[kind].append(machine)
    return grouped


def add_machine_type_option(parser: argparse.ArgumentParser, *, help: str) -> None:
    """`-m/--machine-type`, repeatable or comma-separated; read it with `requested_types`."""
    parser.add_argument("-m", "--machine-type", action="append", metavar="TYPE", help=help)


def requested_types(values: list[str] | None) -> list[str]:
    """The machine types named by `--machine-type` options, in order."""
    return [t.strip() for value in values or () for t in value.split(",") if t.strip()]
