"""Which teuthology machine type a MAAS machine belongs to: the `type_match` key.

teuthology knows machine types; MAAS knows tags, resource pools and hostnames. Without a rule
a type is found as it always was (node/deploy_options.machine_type_of): a tag of the type's
name, else a pool of that name, else a hostname made of the name and digits (`smithi001`).
`type_match` gives a type its own rule instead:

    type_match:
      smithi: {tag: smithi-hw}              # machines with this MAAS tag
      mira: {pool: mira-lab}                # machines in this resource pool
      gibba: {hostname: '^gibba[0-9]{3}$'}  # hostnames this regular expression matches

A rule with several keys needs all of them to match. Types are tried in the order of
`machine_types`; the first whose rule (or default) matches wins.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from teuthology_maas.errors import ConfigError
from teuthology_maas.models import Machine
from teuthology_maas.redact import excerpt
from teuthology_maas.suggest import did_you_mean

__all__ = ["RULE_KEYS", "TypeRule", "default_match", "parse_type_match", "type_of"]

RULE_KEYS = ("tag", "pool", "hostname")
_MAX_PATTERN = 200
_TRAILING_DIGITS = re.compile(r"\d+$")


@dataclass(frozen=True)
class TypeRule:
    """One type's rule; every key given must match."""

    tag: str | None = None
    pool: str | None = None
    hostname: re.Pattern[str] | None = None

    def matches(self, machine: Machine) -> bool:
        if self.tag is not None and self.tag not in machine.tag_names:
            return False
        if self.pool is not None and machine.pool != self.pool:
            return False
        return self.hostname is None or self.hostname.search(machine.hostname) is not None

    def describe(self) -> str:
        parts = [f"tag {self.tag!r}"] if self.tag is not None else []
        if self.pool is not None:
            parts.append(f"pool {self.pool!r}")
        if self.hostname is not None:
            parts.append(f"hostname matching {self.hostname.pattern!r}")
        return " and ".join(parts)


def default_match(machine: Machine, kind: str) -> int | None:
    """The rule used when a type has none, as a rank (lower wins; None: no match): a tag of
    the type's name (0), a pool of that name (1), a hostname of the name and digits (2)."""
    if kind in machine.tag_names:
        return 0
    if machine.pool == kind:
        return 1
    prefix = _TRAILING_DIGITS.sub("", machine.hostname).rstrip("-_")
    return 2 if prefix == kind else None


def type_of(
    machine: Machine, machine_types: Sequence[str], rules: Mapping[str, TypeRule]
) -> str | None:
    """The configured type `machine` belongs to: a type with a rule by that rule, the others
    by the default (tags before pools before hostnames, as it always was)."""
    for kind in machine_types:
        rule = rules.get(kind)
        if rule is not None and rule.matches(machine):
            return kind
    best: tuple[int, int] | None = None
    for index, kind in enumerate(machine_types):
        if kind in rules:
            continue
        rank = default_match(machine, kind)
        if rank is not None and (best is None or (rank, index) < best):
            best = (rank, index)
    return machine_types[best[1]] if best is not None else None


def parse_type_match(value: Any, machine_types: Sequence[str]) -> dict[str, TypeRule]:
    """Validate `type_match`: a mapping of configured machine types to rules."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ConfigError(
            f"maas.type_match must be a mapping of machine type to a rule such as "
            f"{{tag: NAME}}, {{pool: NAME}} or {{hostname: REGEX}}; got a value of type "
            f"{type(value).__name__}",
            key="type_match",
        )
    rules: dict[str, TypeRule] = {}
    for kind, spec in value.items():
        name = str(kind)
        if name not in machine_types:
            hint = did_you_mean(name[:100], machine_types)
            raise ConfigError(
                f"maas.type_match names machine type {excerpt(name, 60)}, which is not in "
                f"machine_types ({', '.join(machine_types) or 'empty'})"
                + (f"; {hint}" if hint else ""),
                key="type_match",
            )
        rules[name] = _rule(name, spec)
    return rules


def _rule(kind: str, spec: Any) -> TypeRule:
    where = f"maas.type_match.{kind}"
    if not isinstance(spec, Mapping) or not spec:
        raise ConfigError(
            f"{where} must be a mapping with one or more of {', '.join(RULE_KEYS)} "
            f"(e.g. {{tag: {kind}}}); got {excerpt(spec, 60)}",
            key="type_match",
        )
    unknown = [str(k) for k in spec if k not in RULE_KEYS]
    if unknown:
        hint = did_you_mean(unknown[0][:100], RULE_KEYS)
        raise ConfigError(
            f"{where}: unknown key {excerpt(unknown[0], 60)}; expected "
            f"{', '.join(RULE_KEYS)}" + (f" ({hint})" if hint else ""),
            key="type_match",
        )
    texts: dict[str, str] = {}
    for key in RULE_KEYS:
        if key not in spec:
            continue
        item = spec[key]
        if not isinstance(item, str) or not item.strip() or len(item) > _MAX_PATTERN:
            raise ConfigError(
                f"{where}.{key} must be a non-empty string of at most {_MAX_PATTERN} "
                f"characters; got {excerpt(item, 60)}",
                key="type_match",
            )
        texts[key] = item.strip()
    pattern = None
    if "hostname" in texts:
        try:
            pattern = re.compile(texts["hostname"])
        except re.error as exc:
            raise ConfigError(
                f"{where}.hostname is not a valid regular expression "
                f"({excerpt(texts['hostname'], 60)}: {exc})",
                key="type_match",
            ) from None
    return TypeRule(tag=texts.get("tag"), pool=texts.get("pool"), hostname=pattern)
