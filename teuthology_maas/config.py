"""The `maas:` configuration section: read it, fill in defaults, validate every value.

Sources: a plain mapping, a teuthology YAML file, or teuthology's own config object. The four
upstream keys (`api_url`, `api_key`, `machine_types`, `timeout`, `user_data`) keep upstream's
meaning; everything else is an optional extension, so one file serves both code bases.
Relative paths are resolved against the directory of the config file (the current directory
for a mapping built in code, unless `base_dir` is given). No network access here.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from teuthology_maas import config_values as values
from teuthology_maas.api_key import ApiKey, register_key_secret
from teuthology_maas.api_url import normalize_api_url, normalize_api_urls
from teuthology_maas.config_regions import DEFAULT_REGION, parse_regions, region_of
from teuthology_maas.config_values import ERASE_MODES, EraseMode
from teuthology_maas.deploy_config import DeployConfig
from teuthology_maas.errors import ConfigError
from teuthology_maas.redact import excerpt
from teuthology_maas.suggest import did_you_mean
from teuthology_maas.type_match import TypeRule, parse_type_match

__all__ = [
    "DEFAULT_SENTINEL_FILE",
    "ERASE_MODES",
    "ApiKey",
    "EraseMode",
    "MaasConfig",
    "normalize_api_url",
]


DEFAULT_SENTINEL_FILE = "/var/lib/cloud/instance/boot-finished"
MAAS_DEPLOY_TIMEOUT = 1800.0  # MAAS's own node_timeout (30 minutes): never give up earlier
HTTP_DEADLINE = 120.0  # one whole request (see maas/transport.py)
MAX_RESPONSE_SIZE = 64 * 1024 * 1024  # one answer (see maas/answer.py for why)

# Keys of the section that are not MaasConfig fields of the same name: `ca_bundle` is folded
# into `verify`; `activate` is read by the activation hook (teuthology/activation.py, which
# must stay too light to import this module). Every other key is a MaasConfig field.
ACTIVATION_KEYS = frozenset({"activate"})
_NOT_FIELDS = frozenset({"ca_bundle"}) | ACTIVATION_KEYS
# Field metadata of a MaasConfig field that is bookkeeping, not a key a user writes.
_BOOKKEEPING = {"key": False}

_CONFIG_SEARCH = ("~/.teuthology.yaml", "/etc/teuthology.yaml")
_MAX_SECTION_KEYS = 200  # the known keys are ~30: more is not a configuration


@dataclass(frozen=True)
class MaasConfig:
    """The validated `maas:` section. Build it with `from_mapping`, `from_yaml`,
    `from_teuthology` or `load`; docs/configuration.md describes every key."""

    api_url: str
    api_key: ApiKey
    machine_types: tuple[str, ...] = ()
    timeout: float = 900.0
    deploy_timeout: float = MAAS_DEPLOY_TIMEOUT
    release_timeout: float = 1800.0
    abort_timeout: float = 300.0
    ssh_timeout: float = 600.0
    poll_interval: float = 10.0
    poll_min_interval: float = 0.5
    install_poll_interval: float = 120.0
    ssh_probe: bool = True
    host_store: bool | str = True
    http_timeout: float = 30.0
    http_deadline: float = HTTP_DEADLINE
    max_response_size: int = MAX_RESPONSE_SIZE
    verify: bool | str = True
    erase: EraseMode = "quick"
    agent_name: str = "teuthology-maas"
    user_data: str | None = None
    user_data_base: Path = field(default_factory=Path.cwd, metadata=_BOOKKEEPING)
    user_data_vars: Mapping[str, Any] = field(default_factory=dict)
    ssh_user: str = "ubuntu"
    ssh_keys: tuple[str, ...] = ()
    ssh_private_key: str | None = None
    ssh_config: str | None = None
    image_map: Mapping[str, Any] = field(default_factory=dict)
    lock_after_deploy: bool = True
    sentinel_file: str | None = DEFAULT_SENTINEL_FILE
    max_concurrent_actions: int = 16
    lookup_retries: int = 3
    lab_domain: str | None = None
    ssh_resolve_grace: float = 60.0
    keep_on_failure: bool = False
    # Deploy settings per machine type and OS (kernel, memory, storage, bonds): deploy_config.
    deploy: DeployConfig = field(default_factory=DeployConfig)
    # Which MAAS machines belong to a machine type, per type (type_match.py); others: default.
    type_match: Mapping[str, TypeRule] = field(default_factory=dict)
    # Deployment failures in a row MAAS attributes to a node before it is quarantined (0: off).
    quarantine_after: int = 3
    source: str = field(default="<mapping>", compare=False, metadata=_BOOKKEEPING)
    # Several MAAS installations (config_regions): each region's own config, in order; this
    # object then answers for all of them (machine_types: every region's) and `for_node` /
    # `for_type` pick one. Empty in the flat form, which is the one region `region`.
    regions: tuple[MaasConfig, ...] = ()
    region: str = field(default=DEFAULT_REGION, metadata=_BOOKKEEPING)
    # Every region URL of this MAAS (HA; `api_url` is the first and names it).
    api_urls: tuple[str, ...] = field(default=(), metadata=_BOOKKEEPING)

    # ---- construction -------------------------------------------------------------------

    @classmethod
    def from_mapping(
        cls,
        section: Mapping[str, Any],
        *,
        base_dir: Path | str | None = None,
        top: Mapping[str, Any] | None = None,
        source: str = "<mapping>",
    ) -> MaasConfig:
        """Validate a `maas:` section. `top` is the whole teuthology config (for
        `lab_domain`); `base_dir` anchors relative paths (default: the current directory)."""
        if not isinstance(section, Mapping):
            # Only its shape: a malformed section may hold the API key anywhere.
            raise values.fail("maas", values.shape(section), "a mapping of maas settings")
        register_key_secret(section.get("api_key"))  # before any other value is echoed
        if len(section) > _MAX_SECTION_KEYS:
            raise values.fail("maas", values.shape(section), "a mapping of maas settings")
        for name, value in section.items():
            values.check_bounded(str(name)[:100], value)
        base = Path(base_dir).expanduser() if base_dir is not None else Path.cwd()
        base = base.absolute()
        unknown = unknown_keys(section)
        if unknown:
            values.warn_once(f"{source}: ignoring unknown maas key(s): {'; '.join(unknown)}")
        if section.get("regions") is None:
            return cls._one_region(section, base=base, top=top, source=source)
        if isinstance(section["regions"], Mapping):  # every region's key, before any echo
            for entry in section["regions"].values():
                if isinstance(entry, Mapping):
                    register_key_secret(entry.get("api_key"))

        def build(merged: Mapping[str, Any], name: str, all_types: Sequence[str]) -> MaasConfig:
            return cls._one_region(
                merged, base=base, top=top, source=source, region=name,
                deploy_types=None if "deploy" in section["regions"][name] else all_types,
                match_types=None if "type_match" in section["regions"][name] else all_types,
            )  # fmt: skip

        regions = [cfg for _, cfg in parse_regions(section, known_keys=KNOWN_KEYS, build=build)]
        every_type = tuple(t for cfg in regions for t in cfg.machine_types)
        # Each type by its own region's rule, for the commands that sort every region's machines.
        rules = {
            t: r for cfg in regions for t, r in cfg.type_match.items() if t in cfg.machine_types
        }
        return dataclasses.replace(
            regions[0], machine_types=every_type, type_match=rules, regions=tuple(regions)
        )

    @classmethod
    def _one_region(
        cls,
        section: Mapping[str, Any],
        *,
        base: Path,
        top: Mapping[str, Any] | None,
        source: str,
        region: str = DEFAULT_REGION,
        deploy_types: Sequence[str] | None = None,
        match_types: Sequence[str] | None = None,
    ) -> MaasConfig:
        """One MAAS installation's settings (`deploy_types`, `match_types`: the types an
        inherited `deploy:` or `type_match:` may name, every region's)."""
        s = _WithDefaults(section)
        for required in ("api_url", "api_key"):
            if s.get(required) in (None, ""):
                raise ConfigError(
                    f"maas: {required} is missing in {source}; expected "
                    + (
                        "the MAAS URL, e.g. http://maas.example.com:5240/MAAS/"
                        if required == "api_url"
                        else "the MAAS API key consumer_key:token_key:token_secret"
                    ),
                    key=required,
                )
        api_urls = normalize_api_urls(s["api_url"])
        api_key = ApiKey.parse(s["api_key"])
        timeout = values.number("timeout", s["timeout"])
        # Never give up on a deployment before MAAS does, whatever `timeout` says.
        deploy_default = max(timeout, _default("deploy_timeout"))
        deploy_timeout = values.number("deploy_timeout", s.get("deploy_timeout", deploy_default))
        poll_min = values.number("poll_min_interval", s["poll_min_interval"])
        poll = values.number("poll_interval", s["poll_interval"], minimum=poll_min)
        install_poll = values.number(
            "install_poll_interval", s["install_poll_interval"], minimum=poll_min
        )
        http_timeout = values.number("http_timeout", s["http_timeout"])
        # absent: at least the field's default, and never shorter than one socket read
        http_deadline = values.number(
            "http_deadline",
            s.get("http_deadline", max(HTTP_DEADLINE, http_timeout)),
            minimum=http_timeout,
        )
        lab_domain = s.get("lab_domain")
        if lab_domain is None and top is not None:
            lab_domain = top.get("lab_domain")
        sentinel = values.optional_text("sentinel_file", s["sentinel_file"])
        if sentinel is not None and not sentinel.startswith("/"):
            raise values.fail("sentinel_file", sentinel, "an absolute path on the node, or null")
        ssh_private_key = s["ssh_private_key"]
        if values.optional_text("ssh_private_key", ssh_private_key) is not None:
            ssh_private_key = str(values.readable_file("ssh_private_key", ssh_private_key, base))
        ssh_config = s["ssh_config"]
        if values.optional_text("ssh_config", ssh_config) is not None:
            ssh_config = str(values.readable_file("ssh_config", ssh_config, base))
        machine_types = values.string_list("machine_types", s["machine_types"])
        return cls(
            api_url=api_urls[0],
            api_urls=api_urls,
            api_key=api_key,
            machine_types=machine_types,
            timeout=timeout,
            deploy_timeout=deploy_timeout,
            release_timeout=values.number("release_timeout", s["release_timeout"]),
            abort_timeout=values.number("abort_timeout", s["abort_timeout"]),
            ssh_timeout=values.number("ssh_timeout", s["ssh_timeout"]),
            poll_interval=poll,
            poll_min_interval=poll_min,
            install_poll_interval=install_poll,
            ssh_probe=values.boolean("ssh_probe", s["ssh_probe"]),
            host_store=values.host_store("host_store", s["host_store"], base),
            http_timeout=http_timeout,
            http_deadline=http_deadline,
            max_response_size=values.byte_size(
                "max_response_size", s["max_response_size"], minimum=2**20
            ),
            verify=values.verify_setting(s, base, source),
            erase=values.erase_mode(s["erase"]),
            agent_name=values.text("agent_name", s["agent_name"]),
            user_data=values.user_data_pattern("user_data", s["user_data"], base),
            user_data_base=base,
            user_data_vars=values.string_mapping("user_data_vars", s["user_data_vars"]),
            ssh_user=values.text("ssh_user", s["ssh_user"]),
            # absent: the control node's own ~/.ssh keys (not the field's empty default)
            ssh_keys=values.ssh_public_keys("ssh_keys", s.get("ssh_keys"), base),
            ssh_private_key=ssh_private_key or None,
            ssh_config=ssh_config or None,
            image_map=values.image_map("image_map", s["image_map"]),
            lock_after_deploy=values.boolean("lock_after_deploy", s["lock_after_deploy"]),
            sentinel_file=sentinel,
            max_concurrent_actions=values.integer(
                "max_concurrent_actions", s["max_concurrent_actions"], minimum=1
            ),
            lookup_retries=values.integer("lookup_retries", s["lookup_retries"], minimum=0),
            lab_domain=values.optional_text("lab_domain", lab_domain),
            ssh_resolve_grace=values.number(
                "ssh_resolve_grace", s["ssh_resolve_grace"], allow_zero=True
            ),
            keep_on_failure=values.boolean("keep_on_failure", s["keep_on_failure"]),
            deploy=DeployConfig.parse(
                s.get("deploy"),
                machine_types=machine_types if deploy_types is None else deploy_types,
            ),
            type_match=parse_type_match(
                s.get("type_match"),
                machine_types if match_types is None else match_types,
            ),
            quarantine_after=_quarantine_after(s["quarantine_after"]),
            source=source,
            region=region,
        )

    @classmethod
    def from_yaml(cls, path: Path | str) -> MaasConfig:
        """Read a teuthology YAML file: its `maas:` section plus top-level `lab_domain`.
        A file holding only the section's keys (an `api_url` at top level) works too."""
        file = Path(path).expanduser()
        try:
            document = yaml.safe_load(values.utf8_text(file))
        except OSError as exc:
            raise ConfigError(
                f"cannot read config file {file}: {exc.strerror or exc}; expected a readable "
                "teuthology YAML file with a maas: section",
                key="maas",
            ) from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {file} is not valid YAML: {exc}", key="maas") from None
        if document is None:
            document = {}
        if not isinstance(document, Mapping):
            raise values.fail(
                "maas",
                values.Shown(f"a YAML document of type {type(document).__name__}"),
                "a YAML mapping",
            )
        section = document.get("maas")
        if section is None and "api_url" in document:
            section = document
        if section is None:
            raise ConfigError(
                f"{file} has no maas: section; expected maas: with api_url and api_key",
                key="maas",
            )
        return cls.from_mapping(
            section, base_dir=file.absolute().parent, top=document, source=str(file)
        )

    @classmethod
    def from_teuthology(cls, obj: Any) -> MaasConfig:
        """From teuthology's config object (duck-typed: `.maas` or `.get("maas")`), read at
        call time so teuthology's reloads and test overrides are seen."""
        section = _section_of(obj)
        if section is None:
            raise ConfigError(
                "teuthology's config has no maas: section; expected maas: with api_url, "
                "api_key and machine_types",
                key="maas",
            )
        top = {"lab_domain": _get(obj, "lab_domain")}
        yaml_path = _get(obj, "yaml_path")
        base_dir = Path(yaml_path).expanduser().absolute().parent if yaml_path else None
        return cls.from_mapping(
            section, base_dir=base_dir, top=top, source=str(yaml_path or "teuthology config")
        )

    @classmethod
    def load(cls, path: Path | str | None = None) -> MaasConfig:
        """`path`, else $TEUTHOLOGY_CONFIG, else ~/.teuthology.yaml, else /etc/teuthology.yaml."""
        if path is not None:
            return cls.from_yaml(path)
        env = os.environ.get("TEUTHOLOGY_CONFIG")
        if env:
            return cls.from_yaml(env)
        for candidate in _CONFIG_SEARCH:
            file = Path(candidate).expanduser()
            if file.is_file():
                return cls.from_yaml(file)
        raise ConfigError(
            "no configuration found; expected $TEUTHOLOGY_CONFIG, ~/.teuthology.yaml or "
            "/etc/teuthology.yaml with a maas: section",
            key="maas",
        )

    # ---- "is MAAS enabled?" ---------------------------------------------------------------

    @classmethod
    def problem(
        cls,
        section: Any,
        *,
        base_dir: Path | str | None = None,
        top: Mapping[str, Any] | None = None,
    ) -> str | None:
        """Why `section` cannot drive MAAS (None when it can): missing, invalid, or without
        machine_types. Never raises; meant for teuthology's `enabled()` checks."""
        if not section:
            return "no maas: section"
        if not isinstance(section, Mapping):
            return "the maas: section is not a mapping"
        try:
            cfg = cls.from_mapping(section, base_dir=base_dir, top=top)
        except ConfigError as exc:
            return str(exc)
        if not cfg.machine_types:
            return "maas: machine_types is empty; no machine type is provisioned through MAAS"
        return None

    @classmethod
    def usable(
        cls,
        section: Any,
        *,
        base_dir: Path | str | None = None,
        top: Mapping[str, Any] | None = None,
    ) -> bool:
        return cls.problem(section, base_dir=base_dir, top=top) is None

    @property
    def enabled(self) -> bool:
        """True when some machine type is provisioned through MAAS."""
        return bool(self.machine_types)

    def handles(self, machine_type: str | None) -> bool:
        return machine_type is not None and machine_type in self.machine_types

    @property
    def region_configs(self) -> tuple[MaasConfig, ...]:
        """Each MAAS installation's own config: the regions, or this one (the flat form)."""
        return self.regions or (self,)

    def map_regions(self, change: Callable[[MaasConfig], MaasConfig]) -> MaasConfig:
        """`change` applied to this config and to each region's: for settings that come
        from outside the `maas:` section (teuthology's own ssh_key, say)."""
        if not self.regions:
            return change(self)
        return dataclasses.replace(change(self), regions=tuple(change(r) for r in self.regions))

    def for_type(self, machine_type: str) -> MaasConfig | None:
        """The config of the region provisioning `machine_type` (None: no region does)."""
        return next((r for r in self.region_configs if machine_type in r.machine_types), None)

    def for_node(self, hostname: str, machine_type: str | None = None) -> MaasConfig | None:
        """The config of the node's region when known without asking MAAS: the only region,
        `machine_type`'s, or the one whose type the hostname is made of (`smithi001`)."""
        return region_of(self.region_configs, hostname, machine_type)

    @property
    def ca_bundle(self) -> str | None:
        return self.verify if isinstance(self.verify, str) else None

    def fqdn(self, hostname: str) -> str:
        """`hostname` qualified with lab_domain (unchanged if already qualified or no domain)."""
        if "." in hostname or not self.lab_domain:
            return hostname
        return f"{hostname}.{self.lab_domain}"


MAX_QUARANTINE_AFTER = 20  # MAAS's event history of a node holds about that many deployments


def _quarantine_after(value: Any) -> int:
    count = values.integer("quarantine_after", value, minimum=0)
    if count > MAX_QUARANTINE_AFTER:
        raise values.fail(
            "quarantine_after", value, f"an integer from 0 (off) to {MAX_QUARANTINE_AFTER}"
        )
    return count


# What a user may write in the section: MaasConfig's own fields, plus _NOT_FIELDS.
CONFIG_FIELDS = tuple(f for f in fields(MaasConfig) if f.metadata.get("key", True))
KNOWN_KEYS = frozenset(f.name for f in CONFIG_FIELDS) | _NOT_FIELDS
_FIELDS = {f.name: f for f in CONFIG_FIELDS}


def _default(name: str) -> Any:
    """The default of MaasConfig's field `name`: written once, on the field."""
    spec = _FIELDS[name]
    if spec.default_factory is not MISSING:
        return spec.default_factory()
    return spec.default


class _WithDefaults(dict[str, Any]):
    """A `maas:` section whose missing keys read as MaasConfig's field defaults (`[key]`;
    `.get(key)` still tells an absent key by None)."""

    def __missing__(self, key: str) -> Any:
        return _default(key)


def unknown_keys(section: Mapping[Any, Any]) -> list[str]:
    """The keys of a `maas:` section nobody reads, each bounded and redacted, with the nearest
    known key when one is close: `"'timeuot' (did you mean 'timeout'?)"`."""
    found = []
    for key in sorted((k for k in section if k not in KNOWN_KEYS), key=str):
        hint = did_you_mean(str(key)[:100], KNOWN_KEYS)
        shown = excerpt(key, 60)
        found.append(f"{shown} ({hint})" if hint else shown)
    return found


def _get(obj: Any, name: str) -> Any:
    if isinstance(obj, Mapping):
        return obj.get(name)
    try:
        value = getattr(obj, name)
    except (AttributeError, KeyError):
        value = None
    if value is None and hasattr(obj, "get"):
        try:
            value = obj.get(name)
        except Exception:  # a config object with an odd get(); treat the key as absent
            value = None
    return value


def _section_of(obj: Any) -> Mapping[str, Any] | None:
    section = _get(obj, "maas")
    if section is None:
        return None
    if not isinstance(section, Mapping):
        raise values.fail(
            "maas",
            values.Shown(f"a value of type {type(section).__name__}"),
            "a mapping of maas settings",
        )
    return section
