"""`teuthology-maas doctor`: a preflight of everything a run needs, in one pass."""

from __future__ import annotations

import argparse
import dataclasses
from typing import Any

from teuthology_maas.cli._checks import CheckResult, DoctorState
from teuthology_maas.cli._checks_deploy import check_deploy
from teuthology_maas.cli._checks_lab import (
    check_images,
    check_machine_types,
    check_results_server,
    check_ssh_keys,
    check_templates,
)
from teuthology_maas.cli._checks_maas import (
    check_api,
    check_config,
    check_key,
    check_version,
    os_list_from_image_map,
)
from teuthology_maas.cli._checks_metrics import check_metrics
from teuthology_maas.cli._common import Context, ExitCode, add_common_options
from teuthology_maas.cli._table import VERDICT_COLOURS, paint


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "doctor",
        help="check the configuration, MAAS, machines, images, templates and SSH key",
        description="Preflight before a run: the configuration is valid; MAAS answers (port, "
        "TLS); it accepts the API key (whoami); its version; every configured machine type "
        "has machines and some are Ready; the OS images are synced for every architecture in "
        "use; the deploy settings (kernel, memory deploys, storage layout, bonds) fit MAAS and "
        "every machine of their type; the user_data templates render to valid cloud-config; "
        "an SSH public key is there to inject; teuthology's results_server has no trailing "
        "slash. Each check prints OK, WARN, FAIL or SKIP (an earlier check failed) with a fix "
        "hint. Exit status 3 when any check FAILs.",
    )
    add_common_options(parser, top_level=False)
    parser.add_argument(
        "--os",
        action="append",
        metavar="TYPE:VERSION",
        type=_os_pair,
        help="also check images and templates for this OS (repeatable); always checked: "
        "ubuntu:22.04 (teuthology's default) and every OS in maas.image_map",
    )
    parser.set_defaults(handler=run)


def _os_pair(text: str) -> tuple[str, str]:
    os_type, sep, os_version = text.partition(":")
    if not sep or not os_type.strip() or not os_version.strip():
        raise argparse.ArgumentTypeError(f"expected TYPE:VERSION such as centos:9.stream, "
                                         f"got {text!r}")
    return os_type.strip(), os_version.strip()


def run(ctx: Context, args: argparse.Namespace) -> int:
    from teuthology_maas.maas.client import MaasClient
    from teuthology_maas.maas.retry import RetryPolicy

    def make_client(cfg: Any) -> MaasClient:
        # a preflight reports what it sees now: one attempt per call, no retry budget
        client = MaasClient.from_config(cfg, retry=RetryPolicy(max_attempts=1, max_total=0.0))
        return ctx.track(client)

    state = DoctorState(
        config_path=ctx.config_path,
        make_client=make_client,
        os_list=list(dict.fromkeys(args.os or [])),
    )
    results = run_all(state)
    failed = any(r.verdict == "FAIL" for r in results)
    if ctx.json:
        ctx.emit_json({"ok": not failed, "checks": [r.as_json() for r in results]})
    else:
        render(ctx, results)
    return int(ExitCode.DOCTOR_FAIL if failed else ExitCode.OK)


CHECKS = (
    check_config,
    check_api,
    check_key,
    check_version,
    check_machine_types,
    check_images,
    check_deploy,
    check_templates,
    check_ssh_keys,
    check_results_server,
    check_metrics,
)


# With `maas: regions:`, what is checked once for the host; the rest per MAAS installation.
HOST_CHECKS = (check_results_server, check_metrics)
REGION_CHECKS = tuple(check for check in CHECKS[1:] if check not in HOST_CHECKS)


def run_all(state: DoctorState) -> list[CheckResult]:
    results = check_config(state)
    cfg = state.cfg
    if cfg is None or len(cfg.region_configs) == 1:
        for check in CHECKS[1:]:
            results.extend(check(state))
        return results
    # Each installation on its own: one that is down or refuses its key FAILs (and SKIPs)
    # its own checks only, named after it.
    for region in cfg.region_configs:
        own = DoctorState(
            config_path=state.config_path,
            make_client=state.make_client,
            os_list=list(dict.fromkeys([*state.os_list,
                                        *os_list_from_image_map(region.image_map)])),
            cfg=region,
        )  # fmt: skip
        for check in REGION_CHECKS:
            results.extend(
                dataclasses.replace(r, name=f"{r.name} [{region.region}]") for r in check(own)
            )
    for check in HOST_CHECKS:
        results.extend(check(state))
    return results


def render(ctx: Context, results: list[CheckResult]) -> None:
    width = max(len(r.name) for r in results)
    for result in results:
        verdict = paint(f"{result.verdict:<4}", VERDICT_COLOURS.get(result.verdict), ctx.colour)
        ctx.out(f"{verdict}  {result.name:<{width}}  {result.detail}")
        if result.hint and result.verdict in ("WARN", "FAIL"):
            ctx.out(f"{'':<4}  {'':<{width}}  fix: {result.hint}")
    counts = {v: sum(1 for r in results if r.verdict == v) for v in ("OK", "WARN", "FAIL", "SKIP")}
    ctx.out()
    ctx.out(", ".join(f"{n} {v}" for v, n in counts.items() if n))
