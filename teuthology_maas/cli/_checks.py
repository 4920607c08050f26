"""The doctor's checks. Each returns CheckResult rows (OK / WARN / FAIL / SKIP) with a fix hint;
none raises. They run in order and later checks use what earlier ones learned (a state object),
so an unreachable MAAS yields one FAIL and SKIPs rather than a cascade of failures."""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from teuthology_maas.cli._inventory import machines_by_type
from teuthology_maas.errors import (
    ConfigError,
    ImageNotAvailable,
    MaasAuthError,
    MaasError,
    MaasNotFound,
    MaasPermissionDenied,
    UserDataError,
)
from teuthology_maas.models import BootResource, Machine, NodeStatus

if TYPE_CHECKING:
    from teuthology_maas.client import MaasClient
    from teuthology_maas.config import MaasConfig

Verdict = Literal["OK", "WARN", "FAIL", "SKIP"]

# stands in for a missing SSH key when only the templates are being checked
PLACEHOLDER_KEY = (
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGRvY3Rvci1wbGFjZWhvbGRlci1rZXktMDAwMDAwMDA= doctor"
)

# teuthology's own default when a job names no OS (teuthology/orchestra/opsys.py)
DEFAULT_OS: tuple[tuple[str, str], ...] = (("ubuntu", "22.04"),)
# Versions before 2.9 are not supported; up to 3.2 several list filters are single-valued.
MIN_SUPPORTED = (2, 9)
MIN_RECOMMENDED = (3, 3)


@dataclass(frozen=True)
class CheckResult:
    name: str
    verdict: Verdict
    detail: str
    hint: str = ""

    def as_json(self) -> dict[str, str]:
        return {"check": self.name, "status": self.verdict, "detail": self.detail,
                "hint": self.hint}


@dataclass
class DoctorState:
    """What the checks learn as they go."""

    config_path: str | None
    make_client: Callable[[MaasConfig], MaasClient]
    os_list: list[tuple[str, str]] = field(default_factory=list)
    cfg: MaasConfig | None = None
    client: MaasClient | None = None
    reachable: bool = False
    authenticated: bool = False
    version_info: Mapping[str, Any] | None = None
    machines: list[Machine] | None = None
    typed: dict[str, list[Machine]] = field(default_factory=dict)


def run_all(state: DoctorState) -> list[CheckResult]:
    results: list[CheckResult] = []
    for check in (
        check_config,
        check_api,
        check_key,
        check_version,
        check_machine_types,
        check_images,
        check_templates,
        check_ssh_keys,
    ):
        results.extend(check(state))
    return results


# ---- configuration --------------------------------------------------------------------


def check_config(state: DoctorState) -> list[CheckResult]:
    from teuthology_maas.config import MaasConfig

    try:
        cfg = MaasConfig.load(state.config_path)
    except ConfigError as exc:
        key = f"maas.{exc.key}" if exc.key and exc.key != "maas" else "the maas: section"
        return [
            CheckResult(
                "config",
                "FAIL",
                str(exc),
                f"correct {key} (docs/configuration.md lists every key), or point --config / "
                "$TEUTHOLOGY_CONFIG at the right file",
            )
        ]
    state.cfg = cfg
    # teuthology's default OS, every OS the lab mapped, and whatever the operator asked for
    state.os_list = list(
        dict.fromkeys([*DEFAULT_OS, *os_list_from_image_map(cfg.image_map), *state.os_list])
    )
    kinds = ", ".join(cfg.machine_types) or "none"
    detail = f"{cfg.source}: {cfg.api_url}, machine types: {kinds}"
    if not cfg.machine_types:
        return [
            CheckResult(
                "config",
                "FAIL",
                detail + "; machine_types is empty, so teuthology provisions nothing via MAAS",
                "list the teuthology machine types MAAS provisions under maas.machine_types",
            )
        ]
    return [CheckResult("config", "OK", detail)]


def os_list_from_image_map(image_map: Mapping[str, Any]) -> list[tuple[str, str]]:
    pairs: list[tuple[str, str]] = []
    for key, value in image_map.items():
        parts = str(key).split()
        if isinstance(value, Mapping) and len(parts) == 1:
            pairs.extend((parts[0], str(version)) for version in value)
        elif len(parts) == 2:
            pairs.append((parts[0], parts[1]))
    return pairs


# ---- MAAS API ---------------------------------------------------------------------------


def _is_tls_problem(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        text = f"{type(seen).__name__} {seen}"
        if re.search(r"SSL|TLS|certificate", text, re.IGNORECASE):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_api(state: DoctorState) -> list[CheckResult]:
    cfg = state.cfg
    if cfg is None:
        return [CheckResult("api", "SKIP", "no usable configuration")]
    parts = urlsplit(cfg.api_url)
    where = f"{parts.hostname}:{parts.port or (443 if parts.scheme == 'https' else 80)}"
    try:
        state.client = state.make_client(cfg)
        info = state.client.version()
    except MaasNotFound:
        return [
            CheckResult(
                "api",
                "FAIL",
                f"{where} answered, but {cfg.api_url}version/ is not the MAAS API (404)",
                "maas.api_url must be the MAAS URL, e.g. http://maas.example.com:5240/MAAS/ "
                "(the /api/2.0/ suffix is optional)",
            )
        ]
    except MaasError as exc:
        if _is_tls_problem(exc):
            return [
                CheckResult(
                    "api",
                    "FAIL",
                    f"TLS handshake with {where} failed: {exc}",
                    "set maas.verify (or ca_bundle) to the CA bundle that signed MAAS's "
                    "certificate, or check that the port speaks HTTPS (MAAS: 5443) and the "
                    "scheme of api_url matches",
                )
            ]
        return [
            CheckResult(
                "api",
                "FAIL",
                f"cannot reach MAAS at {cfg.api_url}: {exc}",
                f"check the host and port in maas.api_url ({where}); MAAS's region API "
                "listens on 5240 (http) or 5443 (https); check firewalls and that "
                "maas-regiond is running",
            )
        ]
    state.reachable = True
    state.version_info = info
    results = [CheckResult("api", "OK", f"{cfg.api_url} answers")]
    if parts.scheme == "http" and parts.hostname and not _is_loopback(parts.hostname):
        results.append(
            CheckResult(
                "tls",
                "WARN",
                "api_url is plain http: the API key's token secret crosses the network "
                "unencrypted (OAuth PLAINTEXT)",
                "use https://<maas>:5443/MAAS/ once MAAS has TLS enabled (maas config-tls)",
            )
        )
    return results


def check_key(state: DoctorState) -> list[CheckResult]:
    if not state.reachable or state.client is None:
        return [CheckResult("api key", "SKIP", "MAAS not reachable")]
    try:
        me = state.client.whoami()
    except (MaasAuthError, MaasPermissionDenied) as exc:
        return [
            CheckResult(
                "api key",
                "FAIL",
                f"MAAS rejected the API key: {exc}",
                "create a key for the teuthology MAAS user (MAAS UI: user menu > API keys, or "
                "`maas apikey --username USER`) and set maas.api_key to "
                "consumer_key:token_key:token_secret",
            )
        ]
    except MaasError as exc:
        return [CheckResult("api key", "FAIL", f"whoami failed: {exc}", "retry; check MAAS logs")]
    state.authenticated = True
    user = str(me.get("username", "?"))
    role = "admin" if me.get("is_superuser") else "non-admin"
    return [CheckResult("api key", "OK", f"accepted: MAAS user {user!r} ({role})")]


def parse_version(text: str) -> tuple[int, ...] | None:
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?", text)
    if not match:
        return None
    return tuple(int(g) for g in match.groups() if g is not None)


def check_version(state: DoctorState) -> list[CheckResult]:
    info = state.version_info
    if not state.reachable or info is None:
        return [CheckResult("maas version", "SKIP", "MAAS not reachable")]
    text = str(info.get("version", ""))
    subversion = str(info.get("subversion") or "")
    shown = text + (f" ({subversion})" if subversion else "")
    version = parse_version(text)
    if version is None:
        return [
            CheckResult(
                "maas version",
                "WARN",
                f"MAAS reports version {text!r}: no rack or region controller has reported "
                "one yet",
                "check that the region and rack controllers are running (maas status)",
            )
        ]
    if version[:2] < MIN_SUPPORTED:
        return [
            CheckResult(
                "maas version",
                "FAIL",
                f"MAAS {shown} is older than 2.9, which teuthology-maas does not support",
                "upgrade MAAS to 3.3 or later",
            )
        ]
    if version[:2] < MIN_RECOMMENDED:
        return [
            CheckResult(
                "maas version",
                "WARN",
                f"MAAS {shown}: supported, but list filters are single-valued before 3.3 "
                "(more API calls per poll)",
                "upgrade MAAS to 3.3 or later",
            )
        ]
    return [CheckResult("maas version", "OK", f"MAAS {shown}")]


# ---- machines and images ----------------------------------------------------------------


def check_machine_types(state: DoctorState) -> list[CheckResult]:
    cfg = state.cfg
    if cfg is None or not state.authenticated or state.client is None:
        return [CheckResult("machines", "SKIP", "needs a valid config and an accepted key")]
    try:
        state.machines = state.client.list_machines()
    except MaasError as exc:
        return [CheckResult("machines", "FAIL", f"cannot list machines: {exc}", "")]
    state.typed = machines_by_type(state.machines, cfg.machine_types)
    results = []
    for kind, machines in state.typed.items():
        ready = sum(1 for m in machines if m.status == NodeStatus.READY)
        name = f"machines {kind}"
        if not machines:
            results.append(
                CheckResult(
                    name,
                    "FAIL",
                    f"no machine of type {kind!r} is visible to this API key",
                    f"tag the machines {kind!r} in MAAS (or put them in a pool named "
                    f"{kind!r}, or name them {kind}NNN); a non-admin key sees only free "
                    "machines and its own",
                )
            )
        elif ready == 0:
            results.append(
                CheckResult(
                    name,
                    "WARN",
                    f"{len(machines)} machine(s), none Ready ({_status_counts(machines)})",
                    "jobs will queue until machines are released; see "
                    "`teuthology-maas reconcile` for leaks",
                )
            )
        else:
            results.append(
                CheckResult(name, "OK", f"{len(machines)} machine(s), {ready} Ready")
            )
    return results


def _status_counts(machines: Iterable[Machine]) -> str:
    counts: dict[str, int] = {}
    for machine in machines:
        counts[machine.status_name] = counts.get(machine.status_name, 0) + 1
    return ", ".join(f"{n} {label}" for label, n in sorted(counts.items()))


class _CachedResources:
    """boot_resources() fetched once for all the image checks."""

    def __init__(self, resources: list[BootResource]) -> None:
        self._resources = resources

    def boot_resources(self) -> list[BootResource]:
        return self._resources


def check_images(state: DoctorState) -> list[CheckResult]:
    from teuthology_maas import images

    cfg = state.cfg
    if cfg is None or not state.authenticated or state.client is None:
        return [CheckResult("images", "SKIP", "needs a valid config and an accepted key")]
    # one representative machine per architecture among the configured types
    by_arch: dict[str, Machine] = {}
    for machines in state.typed.values():
        for machine in machines:
            by_arch.setdefault(machine.architecture, machine)
    if not by_arch:
        return [CheckResult("images", "SKIP", "no machines of the configured types to check")]
    try:
        resources = _CachedResources(state.client.boot_resources())
    except MaasError as exc:
        return [CheckResult("images", "FAIL", f"cannot list boot resources: {exc}", "")]
    results = []
    for os_type, os_version in state.os_list:
        name = f"image {os_type} {os_version}"
        try:
            spec = images.resolve(os_type, os_version, cfg.image_map)
        except (ImageNotAvailable, ConfigError) as exc:
            results.append(
                CheckResult(name, "FAIL", str(exc), "map it with maas.image_map")
            )
            continue
        missing = []
        for arch, machine in sorted(by_arch.items()):
            try:
                images.ensure_available(resources, spec, machine)
            except ImageNotAvailable:
                missing.append(arch)
        archs = ", ".join(sorted(by_arch))
        if missing:
            results.append(
                CheckResult(
                    name,
                    "FAIL",
                    f"{spec.distro_series} is not synced for {', '.join(missing)}",
                    f"import {spec.distro_series} for {', '.join(missing)} in MAAS (Images, "
                    "or `maas $PROFILE boot-source-selections create ...` then "
                    "`boot-resources import`)",
                )
            )
        else:
            results.append(CheckResult(name, "OK", f"{spec.distro_series} synced for {archs}"))
    return results


# ---- user_data and SSH --------------------------------------------------------------------


def check_templates(state: DoctorState) -> list[CheckResult]:
    from teuthology_maas import userdata

    cfg = state.cfg
    if cfg is None:
        return [CheckResult("user_data", "SKIP", "no usable configuration")]
    if not cfg.ssh_keys:
        # A missing key is the ssh key check's FAIL; here the templates themselves are checked.
        cfg = dataclasses.replace(cfg, ssh_keys=(PLACEHOLDER_KEY,))
    results = []
    for os_type, os_version in state.os_list:
        name = f"user_data {os_type} {os_version}"
        hostname = "doctor-check"
        try:
            template = userdata.find_template(cfg, os_type, os_version)
            userdata.render_user_data(
                cfg,
                hostname=hostname,
                fqdn=cfg.fqdn(hostname),
                os_type=os_type,
                os_version=os_version,
            )
        except UserDataError as exc:
            where = f" ({exc.template}" + (f", line {exc.line})" if exc.line else ")")
            results.append(
                CheckResult(
                    name,
                    "FAIL",
                    str(exc) + (where if exc.template and exc.template not in str(exc) else ""),
                    "fix the template (Jinja2 with undefined variables as errors; the result "
                    "must be a #cloud-config YAML mapping) or maas.user_data / user_data_vars",
                )
            )
            continue
        except MaasError as exc:
            results.append(CheckResult(name, "FAIL", str(exc), "check maas.user_data"))
            continue
        results.append(CheckResult(name, "OK", f"{template} renders valid cloud-config"))
    return results


def check_ssh_keys(state: DoctorState) -> list[CheckResult]:
    cfg = state.cfg
    if cfg is None:
        return [CheckResult("ssh key", "SKIP", "no usable configuration")]
    if not cfg.ssh_keys:
        return [
            CheckResult(
                "ssh key",
                "FAIL",
                "no SSH public key to put on deployed nodes: maas.ssh_keys is empty and "
                "~/.ssh/id_*.pub does not exist",
                "create one (ssh-keygen -t ed25519) or list public keys (or .pub files) "
                "under maas.ssh_keys",
            )
        ]
    kinds = sorted({key.split()[0] for key in cfg.ssh_keys if key.split()})
    detail = f"{len(cfg.ssh_keys)} public key(s) ({', '.join(kinds)}) for {cfg.ssh_user}@node"
    return [CheckResult("ssh key", "OK", detail)]
