"""The `teuthology-maas` command: operator tooling around the MAAS provisioner.

Each subcommand lives in its own module and exposes `register(subparsers)`, which adds its
parser and sets `handler` (a `(Context, Namespace) -> int` function) as a parser default.
Importing this package must stay cheap and must never fail: library modules are imported
inside the handlers, so `--help` works whatever state the rest of the package is in.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from contextlib import redirect_stderr, redirect_stdout
from typing import IO

from teuthology_maas import __version__
from teuthology_maas.cli._common import (
    Context,
    ExitCode,
    UsageError,
    add_common_options,
    report_error,
)
from teuthology_maas.errors import MaasError

# Order is the order `--help` lists them in.
_OWN_SUBCOMMANDS = (
    "doctor", "machines", "nodes", "events", "reconcile", "inventory", "quarantine", "metrics",
)
# Written by other areas; wired in when present so a missing one never breaks the command.
_OPTIONAL_SUBCOMMANDS = ("simulator", "demo")

EPILOG = """\
exit codes:
  0    success (doctor: no FAIL; reconcile: nothing to report)
  1    the operation failed (MAAS refused it, the deployment or release failed)
  2    usage or configuration error: nothing was attempted
  3    doctor: at least one check is FAIL
  4    reconcile: leaks, drift or stuck nodes were found (and remain); inventory: a dry
       run found nodes to create or update
  5    MAAS or the lock server could not be reached, or the API key was rejected
       (with several MAAS regions: any one of them; the others' results are shown)
  130  interrupted
  141  stdout was closed early (e.g. piped into head)

The configuration is the maas: section of the teuthology config file (see --config).
"""


def _subcommand_modules() -> list[object]:
    modules: list[object] = []
    for name in _OWN_SUBCOMMANDS:
        modules.append(importlib.import_module(f"teuthology_maas.cli.{name}"))
    for name in _OPTIONAL_SUBCOMMANDS:
        qualified = f"teuthology_maas.cli.{name}"
        try:
            modules.append(importlib.import_module(qualified))
        except ModuleNotFoundError as exc:
            if exc.name != qualified:
                raise
    return modules


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="teuthology-maas",
        description="Inspect and operate the MAAS machines teuthology provisions.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    add_common_options(parser, top_level=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in _subcommand_modules():
        register = getattr(module, "register", None)
        if callable(register):
            register(subparsers)
    return parser


def run(argv: Sequence[str] | None, stdout: IO[str], stderr: IO[str]) -> int:
    parser = build_parser()
    try:
        # argparse prints help and usage errors itself: send them to our streams
        with redirect_stdout(stdout), redirect_stderr(stderr):
            args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: --help, --version (0) or a usage error (2)
        return int(exc.code) if isinstance(exc.code, int) else int(ExitCode.USAGE)
    ctx = Context(stdout=stdout, stderr=stderr, json=bool(args.json), config_path=args.config)
    handler = getattr(args, "handler", None)
    try:
        if handler is None:
            # A subcommand registered by another area in argparse's own style.
            func = getattr(args, "func", None)
            if func is None:
                parser.print_help(stderr)
                return int(ExitCode.USAGE)
            result = func(args)
            return int(result or 0)
        return int(handler(ctx, args))
    except MaasError as exc:
        return report_error(ctx, exc)
    except UsageError as exc:
        if ctx.json:
            ctx.emit_json({"ok": False, "error": "UsageError", "message": str(exc)})
        else:
            ctx.err(f"teuthology-maas {args.command}: {exc}")
        return int(ExitCode.USAGE)
    except KeyboardInterrupt:
        ctx.err("teuthology-maas: interrupted")
        return int(ExitCode.INTERRUPTED)
    except BrokenPipeError:
        # the reader went away (`| head`): stop quietly, and keep the interpreter's final
        # flush of stdout from raising again
        _silence(stdout)
        return int(ExitCode.PIPE_CLOSED)
    finally:
        ctx.close()


def _silence(stream: IO[str]) -> None:
    try:
        fileno = stream.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fileno)
    os.close(devnull)


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point (`teuthology-maas`). The command owns its process: SIGTERM,
    SIGHUP and SIGINT stop a deployment in flight with its clean-up before the exit."""
    from teuthology_maas.teuthology import lifetime

    with lifetime.hosting():
        return run(argv, sys.stdout, sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
