"""Doctor checks of the configuration and the MAAS region: config, API (port, TLS), key,
version."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import yaml

from teuthology_maas.api_url import is_loopback
from teuthology_maas.cli._checks import (
    DEFAULT_OS,
    MIN_RECOMMENDED,
    MIN_SUPPORTED,
    CheckResult,
    DoctorState,
)
from teuthology_maas.cli._hints import is_tls_problem, tls_hint

if TYPE_CHECKING:
    from teuthology_maas.config import MaasConfig
from teuthology_maas.errors import (
    ConfigError,
    MaasAuthError,
    MaasError,
    MaasNotFound,
    MaasPermissionDenied,
)

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
    typos = _unknown_keys(cfg.source)
    # teuthology's default OS, every OS the lab mapped, and whatever the operator asked for
    state.os_list = list(
        dict.fromkeys([*DEFAULT_OS, *os_list_from_image_map(cfg.image_map), *state.os_list])
    )
    kinds = ", ".join(cfg.machine_types) or "none"
    detail = f"{cfg.source}: {', '.join(cfg.api_urls or (cfg.api_url,))}, machine types: {kinds}"
    if cfg.regions:
        detail = f"{cfg.source}: regions " + "; ".join(
            f"{r.region} ({', '.join(r.machine_types)})" for r in cfg.regions
        )
    results = []
    if typos:
        results.append(
            CheckResult(
                "config keys",
                "WARN",
                f"unknown maas key(s), ignored: {'; '.join(typos)}",
                "rename or remove them: a misspelt key leaves its setting at the default "
                "(docs/configuration.md lists every key)",
            )
        )
    if not cfg.machine_types:
        return [
            CheckResult(
                "config",
                "FAIL",
                detail + "; machine_types is empty, so teuthology provisions nothing via MAAS",
                "list the teuthology machine types MAAS provisions under maas.machine_types",
            ),
            *results,
        ]
    results.insert(0, CheckResult("config", "OK", detail))
    if not cfg.lab_domain:
        results.append(
            CheckResult(
                "lab_domain",
                "WARN",
                "lab_domain is not set: teuthology then names nodes <host>.front.sepia.ceph.com, "
                "and SSH to deployed nodes uses those names",
                "set the top-level lab_domain (e.g. lab_domain: front.example.com) to the "
                "domain of your nodes' FQDNs in paddles",
            )
        )
    return results


def _unknown_keys(source: str) -> list[str]:
    """The maas: keys of the config file nobody reads, with the nearest known key."""
    from teuthology_maas.config import unknown_keys

    try:
        document = yaml.safe_load(Path(source).read_text(encoding="utf-8"))
    except (OSError, ValueError, yaml.YAMLError):  # ValueError: not UTF-8 (any more)
        return []  # a mapping built in code, or a file that changed since it was read
    if not isinstance(document, Mapping):
        return []
    section = document.get("maas")
    if section is None and "api_url" in document:
        section = document
    return unknown_keys(section) if isinstance(section, Mapping) else []


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


def check_api(state: DoctorState) -> list[CheckResult]:
    cfg = state.cfg
    if cfg is None:
        return [CheckResult("api", "SKIP", "no usable configuration")]
    if len(cfg.api_urls) > 1:
        return _check_region_urls(state, cfg)
    return _check_one_url(state, cfg)


def _check_region_urls(state: DoctorState, cfg: MaasConfig) -> list[CheckResult]:
    """HA: every region URL of the MAAS on its own. The later checks use the first that
    answers; one that does not is a WARN while another answers (requests fail over)."""
    results: list[CheckResult] = []
    answered: DoctorState | None = None
    for url in cfg.api_urls:
        only = dataclasses.replace(cfg, api_url=url, api_urls=(url,))
        one = DoctorState(state.config_path, state.make_client, cfg=only)
        found = _check_one_url(one, only)
        results.extend(dataclasses.replace(r, name=f"api {url}") for r in found)
        if one.reachable and answered is None:
            answered = one
    if answered is None:
        return results
    state.client, state.reachable = answered.client, True
    state.version_info = answered.version_info
    return [
        dataclasses.replace(
            r, verdict="WARN",
            detail=r.detail + "; requests fail over to the region URLs that answer",
        ) if r.verdict == "FAIL" else r
        for r in results
    ]  # fmt: skip


def _check_one_url(state: DoctorState, cfg: MaasConfig) -> list[CheckResult]:
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
        if is_tls_problem(exc):
            return [
                CheckResult("api", "FAIL", f"TLS handshake with {where} failed: {exc}",
                            tls_hint(exc))
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
    if parts.scheme == "http" and parts.hostname and not is_loopback(parts.hostname):
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
    if me.get("is_superuser"):
        return [
            CheckResult(
                "api key",
                "WARN",
                f"accepted: MAAS user {user!r} is an administrator: it sees every user's "
                "machines and MAAS lets it change them; a mistake (or a bug) can reach nodes "
                "that are not teuthology's",
                "create a dedicated non-admin MAAS user for teuthology and use its key "
                "(MAAS UI: Settings > Users; then its API keys)",
            )
        ]
    return [CheckResult("api key", "OK", f"accepted: MAAS user {user!r} (non-admin)")]


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
