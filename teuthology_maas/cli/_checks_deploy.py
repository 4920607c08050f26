"""Doctor checks of the `deploy:` settings against MAAS: for every machine type and OS the lab
deploys, the kernel is offered for the type's architectures, MAAS's version deploys to memory,
the API key may set storage layouts and bonds, the named disks and interfaces exist on every
machine of the type; and no bond of ours was left behind on a free machine."""

from __future__ import annotations

from collections.abc import Sequence

from teuthology_maas.cli._checks import CheckResult, DoctorState
from teuthology_maas.errors import ConfigError, ImageNotAvailable, MaasError
from teuthology_maas.machine_parts import interfaces_of
from teuthology_maas.models import BootResource, Machine, NodeStatus
from teuthology_maas.node import bonds, deploy_checks, images
from teuthology_maas.node.deploy_checks import Problem
from teuthology_maas.node.deploy_options import DeployOptions, describe, resolve
from teuthology_maas.node.images import ImageSpec

_SHOWN = 3  # problems spelled out per check; the rest are counted


def check_deploy(state: DoctorState) -> list[CheckResult]:
    cfg = state.cfg
    if cfg is None or not state.authenticated or state.client is None:
        if cfg is None or not cfg.deploy.configured:
            return []
        return [CheckResult("deploy", "SKIP", "needs a valid config and an accepted key")]
    if not cfg.deploy.configured:
        return _leftovers(state)
    client = state.client
    version = str((state.version_info or {}).get("version", ""))
    try:
        resources = client.boot_resources()
        me = client.whoami()
        user = (str(me.get("username", "?")), bool(me.get("is_superuser")))
    except MaasError as exc:
        return [CheckResult("deploy", "FAIL", f"cannot ask MAAS: {exc}", "")]
    commissioning: str | None = None
    results: list[CheckResult] = []
    for kind, machines in state.typed.items():
        for os_type, os_version in state.os_list:
            options = resolve(cfg.deploy, machine_type=kind, os_type=os_type,
                              os_version=os_version)  # fmt: skip
            if options == DeployOptions(sources=options.sources):
                continue
            name = f"deploy {kind} {os_type} {os_version}"
            try:
                spec = images.resolve(os_type, os_version, cfg.image_map)
                if options.hwe_kernel and spec.osystem != "ubuntu" and commissioning is None:
                    commissioning = str(client.get_config("commissioning_distro_series"))
            except (ImageNotAvailable, ConfigError, MaasError) as exc:
                results.append(CheckResult(name, "SKIP", f"cannot check: {exc}"))
                continue
            problems = _problems(options, machines, spec, resources, version, user,
                                 commissioning or "jammy")  # fmt: skip
            results.append(_result(name, options, problems, len(machines)))
    return results + _leftovers(state)


def _problems(
    options: DeployOptions,
    machines: Sequence[Machine],
    spec: ImageSpec,
    resources: list[BootResource],
    version: str,
    user: tuple[str, bool],
    commissioning: str,
) -> list[Problem]:
    found: list[Problem | None] = [
        deploy_checks.memory_problem(options, version) if options.ephemeral else None,
        deploy_checks.admin_problem(options, user),
    ]
    by_arch: dict[str, Machine] = {}
    for machine in machines:
        by_arch.setdefault(machine.arch, machine)
        try:
            found += deploy_checks.storage_problems(options, machine, spec.osystem)
            found += deploy_checks.bond_problems(options, machine)
        except ValueError as exc:
            found.append(Problem(options.key("bonds"), f"{machine.describe()}: {exc}"))
    for machine in by_arch.values():
        found.append(deploy_checks.kernel_problem(options, resources, machine, spec,
                                                  commissioning))  # fmt: skip
    return [p for p in found if p is not None]


def _result(name: str, options: DeployOptions, problems: list[Problem], count: int) -> CheckResult:
    if not count:
        return CheckResult(name, "SKIP", "no machines of this type to check against")
    if not problems:
        return CheckResult(name, "OK", f"{describe(options)}: fits all {count} machine(s)")
    shown = "; ".join(f"{p.key}: {p.text}" for p in problems[:_SHOWN])
    more = f" (and {len(problems) - _SHOWN} more)" if len(problems) > _SHOWN else ""
    return CheckResult(
        name,
        "FAIL",
        shown + more,
        "change the setting in maas.deploy (docs/configuration.md, Deploy settings) or the "
        "machines in MAAS; teuthology-maas refuses such a deployment before changing anything",
    )


def _leftovers(state: DoctorState) -> list[CheckResult]:
    """Free machines still carrying a bond teuthology-maas made (a release that could not
    wait, or a process that died): the next deployment through us undoes it, others see it."""
    left: list[str] = []
    for machines in state.typed.values():
        for machine in machines:
            if machine.status not in (NodeStatus.READY, NodeStatus.NEW) or machine.owner:
                continue
            try:
                names = [i.name for i in interfaces_of(machine) if bonds.ours(i)]
            except ValueError:
                continue
            left += [f"{n} on {machine.describe()}" for n in names]
    if not left:
        return []
    return [
        CheckResult(
            "deploy bonds",
            "WARN",
            f"bonds made by teuthology-maas are left on free machines: {', '.join(left)}",
            "they are undone by the next deployment through teuthology-maas; to undo them now, "
            "delete the bond in MAAS (Machine > Network) and link its members to their subnet",
        )
    ]
