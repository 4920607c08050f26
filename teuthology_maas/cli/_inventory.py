"""Which configured machine_type a MAAS machine belongs to, as operators name them.

teuthology only knows machine types; MAAS knows tags, pools and hostnames. A lab marks a type
with a tag or a resource pool of the same name, or (Sepia style) names its nodes after it
(`smithi001`). The first of those that matches a configured type wins. The config's
`type_match` gives a type a rule of its own (teuthology_maas.type_match)."""

from __future__ import annotations

import argparse
from collections.abc import Mapping, Sequence

from teuthology_maas.cli._common import UsageError
from teuthology_maas.models import Machine
from teuthology_maas.node.deploy_options import hostname_prefix, machine_type_of
from teuthology_maas.suggest import did_you_mean
from teuthology_maas.type_match import TypeRule, type_of

__all__ = [
    "add_machine_type_option",
    "check_types",
    "machine_type_of",
    "machines_by_type",
    "requested_types",
    "type_names",
]


def machines_by_type(
    machines: Sequence[Machine],
    machine_types: Sequence[str],
    rules: Mapping[str, TypeRule] | None = None,
) -> dict[str, list[Machine]]:
    """Every configured type (even one with no machines), with its machines in MAAS order;
    `rules`: the config's type_match (a type without one: the rule above)."""
    grouped: dict[str, list[Machine]] = {t: [] for t in machine_types}
    for machine in machines:
        kind = type_of(machine, machine_types, rules or {})
        if kind is not None:
            grouped[kind].append(machine)
    return grouped


def add_machine_type_option(parser: argparse.ArgumentParser, *, help: str) -> None:
    """`-m/--machine-type`, repeatable or comma-separated; read it with `requested_types`."""
    parser.add_argument("-m", "--machine-type", action="append", metavar="TYPE", help=help)


def requested_types(values: list[str] | None) -> list[str]:
    """The machine types named by `--machine-type` options, in order."""
    return [t.strip() for value in values or () for t in value.split(",") if t.strip()]


def type_names(machines: Sequence[Machine], configured: Sequence[str]) -> list[str]:
    """Every name a machine type could go by here: the configured types, then the tags,
    pools and hostname prefixes MAAS shows."""
    names = dict.fromkeys(configured)
    for machine in machines:
        names.update(dict.fromkeys(machine.tag_names))
        if machine.pool:
            names[machine.pool] = None
        prefix = hostname_prefix(machine.hostname)
        if prefix and prefix != machine.hostname:
            names[prefix] = None
    return list(names)


def check_types(
    wanted: Sequence[str], machines: Sequence[Machine], configured: Sequence[str]
) -> None:
    """UsageError for a requested type that is not configured and that no machine MAAS shows
    belongs to (`-m smithy`), naming the nearest known type."""
    for kind in wanted:
        if kind in configured or any(machine_type_of(m, [kind]) == kind for m in machines):
            continue
        known = type_names(machines, configured)
        hint = did_you_mean(kind, known)
        raise UsageError(
            f"no machine type {kind!r}: it is not in maas.machine_types "
            f"({', '.join(configured) or 'empty'}) and no machine visible to this API key is "
            f"tagged, pooled or named that way" + (f"; {hint}" if hint else "")
        )
