"""Doctor checks of what a run needs from the lab: machines per type, images per
architecture, user_data templates, the SSH key, teuthology's results_server."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from pathlib import Path

import yaml

from teuthology_maas.cli._checks import PLACEHOLDER_KEY, CheckResult, DoctorState
from teuthology_maas.cli._inventory import machines_by_type
from teuthology_maas.errors import (
    ConfigError,
    ImageNotAvailable,
    MaasError,
    UserDataError,
)
from teuthology_maas.models import BootResource, Machine, NodeStatus

# ---- machines and images ----------------------------------------------------------------


def check_machine_types(state: DoctorState) -> list[CheckResult]:
    cfg = state.cfg
    if cfg is None or not state.authenticated or state.client is None:
        return [CheckResult("machines", "SKIP", "needs a valid config and an accepted key")]
    try:
        state.machines = state.client.list_machines()
    except MaasError as exc:
        return [CheckResult("machines", "FAIL", f"cannot list machines: {exc}", "")]
    state.typed = machines_by_type(state.machines, cfg.machine_types, cfg.type_match)
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
    from teuthology_maas.node import images

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
    from teuthology_maas.node import userdata

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


# ---- teuthology's paddles URLs --------------------------------------------------------------


def check_results_server(state: DoctorState) -> list[CheckResult]:
    """teuthology builds f"{results_server}/runs/...": a trailing slash makes "//runs/", which
    paddles behind gunicorn (its production set-up) answers with 404. No row when the file
    does not set results_server."""
    cfg = state.cfg
    if cfg is None or not Path(cfg.source).is_file():
        return []
    try:
        document = yaml.safe_load(Path(cfg.source).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return []  # the config check reads the same file and reports it
    url = document.get("results_server") if isinstance(document, Mapping) else None
    if not isinstance(url, str) or not url.strip():
        return []
    if url.rstrip().endswith("/"):
        return [
            CheckResult(
                "results_server",
                "WARN",
                f"results_server {url.strip()!r} ends with '/': teuthology asks for "
                f"'{url.strip()}/runs/...', which paddles behind gunicorn answers with 404, so "
                "stale-lock clean-up (teuthology-node-cleanup, teuthology-kill) never finds a "
                "job and never unlocks",
                f"drop the trailing slash: results_server: {url.strip().rstrip('/')}",
            )
        ]
    return [CheckResult("results_server", "OK", url.strip())]
