"""`maas: regions:`: machine types served by separate MAAS installations, each with its own
URL(s), API key and settings.

```yaml
maas:
  erase: quick                  # every key beside regions: is each region's default
  regions:
    sepia:
      api_url: [http://maas-a:5240/MAAS/, http://maas-b:5240/MAAS/]   # HA regions of one MAAS
      api_key: ...
      machine_types: [smithi]
    octo:
      api_url: https://maas.octo:5443/MAAS/
      api_key: ...
      machine_types: [mira]
      erase: none               # this installation's own setting
```

This module reads the form and checks what belongs to it (region names, each region's keys,
one region per machine type); each region's settings are validated by the `build` callback
(`MaasConfig`'s own parsing), whose errors are prefixed with the region's name. The flat form
(`api_url` at the top of `maas:`) is one region, named `default`. No network access here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Protocol

from teuthology_maas import config_values as values
from teuthology_maas.errors import ConfigError
from teuthology_maas.redact import excerpt
from teuthology_maas.suggest import did_you_mean

__all__ = [
    "DEFAULT_REGION",
    "PER_REGION_ONLY",
    "hostname_type",
    "parse_regions",
    "region_of",
]

DEFAULT_REGION = "default"
# Keys that name one MAAS installation: set in each region, never shared at the top.
PER_REGION_ONLY = ("api_url", "api_key", "machine_types")
# Keys that make no sense inside a region (the hook's switch; regions do not nest).
NOT_IN_A_REGION = frozenset({"activate", "regions"})
MAX_REGIONS = 64
_REGION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")
_TRAILING_DIGITS = re.compile(r"\d+$")


class _Region(Protocol):
    @property
    def machine_types(self) -> tuple[str, ...]: ...


def parse_regions[R: _Region](
    section: Mapping[str, Any],
    *,
    known_keys: Collection[str],
    build: Callable[[Mapping[str, Any], str, Sequence[str]], R],
) -> list[tuple[str, R]]:
    """Every region of `section["regions"]`, in the order written, each built by
    `build(merged section, region name, every region's machine types)` from the keys at the
    top of `section` overridden by its own."""
    raw = section.get("regions")
    if not isinstance(raw, Mapping) or not raw:
        raise values.fail(
            "regions",
            values.shape(raw) if raw is not None else values.Shown("null"),
            "a mapping of region name -> {api_url, api_key, machine_types, ...}",
        )
    if len(raw) > MAX_REGIONS:
        raise values.fail("regions", values.shape(raw), f"at most {MAX_REGIONS} regions")
    for key in PER_REGION_ONLY:
        if section.get(key) not in (None, "", [], ()):
            raise ConfigError(
                f"maas: {key}: set at the top of maas: and regions: is used too; expected "
                f"{key} under each region (maas.regions.<name>.{key}): every region is its "
                "own MAAS installation",
                key=key,
            )
    defaults = {k: v for k, v in section.items() if k not in NOT_IN_A_REGION}
    region_keys = sorted(str(k) for k in known_keys if k not in NOT_IN_A_REGION)
    entries = {_region_name(name): _region_entry(name, entry, region_keys)
               for name, entry in raw.items()}  # fmt: skip
    all_types = _types_by_region(entries)
    regions: list[tuple[str, R]] = []
    for name, entry in entries.items():
        merged = {**defaults, **entry}
        try:
            regions.append((name, build(merged, name, all_types)))
        except ConfigError as exc:
            raise in_region(name, exc) from None
    return regions


def in_region(name: str, exc: ConfigError) -> ConfigError:
    """`exc` (about one key of a region's settings) saying which region it is about."""
    text = str(exc)
    text = text[len("maas: ") :] if text.startswith("maas: ") else text
    key = f"regions.{name}" + (f".{exc.key}" if exc.key and exc.key != "maas" else "")
    return ConfigError(f"maas: regions.{name}: {text}", key=key)


def _region_name(name: Any) -> str:
    if not isinstance(name, str) or not _REGION_NAME.fullmatch(name):
        raise values.fail(
            "regions",
            values.Shown(f"a region named {excerpt(name, 60)}"),
            "region names of letters, digits, '-', '_' and '.' (at most 63 characters)",
        )
    return name


def _region_entry(name: str, entry: Any, region_keys: Sequence[str]) -> dict[str, Any]:
    where = f"regions.{name}"
    if not isinstance(entry, Mapping):
        raise values.fail(
            where, values.shape(entry), "a mapping with api_url, api_key and machine_types"
        )
    for key in entry:
        if key not in region_keys:
            hint = did_you_mean(str(key)[:100], region_keys)
            raise ConfigError(
                f"maas: {where}: unknown key {excerpt(key, 60)}" + (f" ({hint})" if hint else "")
                + "; expected api_url, api_key, machine_types or another maas key "
                "(docs/configuration.md)",
                key=f"{where}.{str(key)[:100]}",
            )  # fmt: skip
    for required in PER_REGION_ONLY:
        if entry.get(required) in (None, "", [], ()):
            raise ConfigError(
                f"maas: {where}.{required} is missing or empty; expected "
                + {
                    "api_url": "this MAAS's URL, or a list of its region URLs",
                    "api_key": "this MAAS's API key consumer_key:token_key:token_secret",
                    "machine_types": "the machine types this MAAS provisions",
                }[required],
                key=f"{where}.{required}",
            )
    return dict(entry)


def _types_by_region(entries: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Every machine type of every region, checking that none is in two of them."""
    owner: dict[str, str] = {}
    for name, entry in entries.items():
        key = f"regions.{name}.machine_types"
        for kind in values.string_list(key, entry.get("machine_types")):
            if kind in owner:
                raise ConfigError(
                    f"maas: machine type {kind!r} is in two regions: {owner[kind]!r} and "
                    f"{name!r}; expected each machine type in one region only (a node is "
                    "provisioned by one MAAS)",
                    key=key,
                )
            owner[kind] = name
    return list(owner)


def hostname_type(hostname: str, machine_types: Collection[str]) -> str | None:
    """The configured type a Sepia-style hostname is made of (`smithi` for `smithi001`)."""
    prefix = _TRAILING_DIGITS.sub("", hostname).rstrip("-_")
    return prefix if prefix != hostname and prefix in machine_types else None


def region_of[R: _Region](
    regions: Sequence[R], hostname: str, machine_type: str | None = None
) -> R | None:
    """The region a node belongs to from what is known without asking MAAS: the only one;
    the one with `machine_type`; the one whose type the hostname is made of. None when
    MAAS has to be asked."""
    if len(regions) == 1:
        return regions[0]
    if machine_type is not None:
        for region in regions:
            if machine_type in region.machine_types:
                return region
    for region in regions:
        if hostname_type(hostname, region.machine_types):
            return region
    return None
