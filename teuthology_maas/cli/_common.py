"""What every subcommand shares: exit codes, the common options, loading the configuration,
and writing results as text or JSON."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from teuthology_maas.errors import (
    ConfigError,
    InvalidNodeName,
    InvalidOSName,
    MaasAuthError,
    MaasError,
    MaasUnavailable,
    MissingExtra,
)

if TYPE_CHECKING:
    from teuthology_maas.config import MaasConfig
    from teuthology_maas.endpoint import Endpoint
    from teuthology_maas.maas.client import MaasClient


class ExitCode(IntEnum):
    """Exit statuses scripts can rely on (documented in docs/cli.md)."""

    OK = 0
    FAILURE = 1  # the operation was attempted and failed (MAAS refused it, deploy failed ...)
    USAGE = 2  # bad command line or unusable configuration; nothing was attempted
    DOCTOR_FAIL = 3  # doctor: at least one check is FAIL
    FINDINGS = 4  # reconcile: leaks, drift or stuck nodes remain
    UNREACHABLE = 5  # MAAS (or paddles) could not be reached, or the API key was rejected
    INTERRUPTED = 130  # Ctrl-C
    PIPE_CLOSED = 141  # the reader of stdout went away (128 + SIGPIPE, as a shell reports it)


class UsageError(Exception):
    """The command line asks for something that does not exist (a typo): nothing was
    attempted. Exit status 2, like argparse's own usage errors."""


# Registered by each subcommand module: how to run it once arguments are parsed.
Handler = Callable[["Context", argparse.Namespace], int]


def add_common_options(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """`--config` and `--json` work before or after the subcommand. On subcommands the default
    is SUPPRESS so that a value given before the subcommand is not overwritten."""
    default_config: Any = None if top_level else argparse.SUPPRESS
    default_json: Any = False if top_level else argparse.SUPPRESS
    parser.add_argument(
        "--config",
        metavar="FILE",
        default=default_config,
        help="teuthology config file with a maas: section (default: $TEUTHOLOGY_CONFIG, "
        "~/.teuthology.yaml, /etc/teuthology.yaml: the file teuthology reads)",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        default=default_json,
        help="machine-readable JSON on stdout instead of text",
    )


@dataclass
class Context:
    """Per-invocation state: where output goes and how, and the lazily loaded config/client."""

    stdout: IO[str]
    stderr: IO[str]
    json: bool = False
    config_path: str | None = None
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))
    _config: MaasConfig | None = None
    _clients: list[MaasClient] = field(default_factory=list)
    _endpoints: list[Endpoint] = field(default_factory=list)

    @property
    def is_tty(self) -> bool:
        isatty = getattr(self.stdout, "isatty", None)
        return bool(isatty and isatty())

    @property
    def colour(self) -> bool:
        """Colour only for a human at a terminal (and never when NO_COLOR is set)."""
        return self.is_tty and not self.json and "NO_COLOR" not in self.env

    def config_file(self) -> Path | None:
        """The teuthology config file the maas: section came from (for its other keys)."""
        source = Path(self.config().source)
        return source if source.is_file() else None

    def config(self) -> MaasConfig:
        if self._config is None:
            from teuthology_maas.config import MaasConfig

            self._config = MaasConfig.load(self.config_path)
        return self._config

    def client(
        self, *, interactive: bool = False, config: MaasConfig | None = None
    ) -> MaasClient:
        """A new client on the configured MAAS (`config`: one region's, see cli/_regions);
        closed when the command ends.

        `interactive` (read-only listings an operator waits for): give up on an unreachable
        MAAS after a couple of seconds instead of the library's full retry budget."""
        from teuthology_maas.maas.client import MaasClient
        from teuthology_maas.maas.retry import RetryPolicy

        overrides: dict[str, Any] = {}
        if interactive:
            overrides["retry"] = RetryPolicy(max_attempts=3, max_total=10.0, backoff_initial=0.5)
        return self.track(MaasClient.from_config(config or self.config(), **overrides))

    def endpoint(self, config: MaasConfig | None = None) -> Endpoint:
        """The configured MAAS endpoint (`config`: one region's), as the library and
        teuthology get it (for the provisioner); its client is closed when the command ends."""
        from teuthology_maas.endpoint import endpoint_for

        endpoint = endpoint_for(config or self.config())
        if endpoint not in self._endpoints:
            self._endpoints.append(endpoint)
        return endpoint

    def track(self, client: MaasClient) -> MaasClient:
        """Close `client` when the command ends."""
        self._clients.append(client)
        return client

    def close(self) -> None:
        while self._clients:
            self._clients.pop().close()
        while self._endpoints:
            self._endpoints.pop().close()

    def out(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def err(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def emit_json(self, payload: Any) -> None:
        json.dump(payload, self.stdout, indent=2, sort_keys=True, default=str)
        self.stdout.write("\n")
        self.stdout.flush()


def exit_code_for(exc: BaseException) -> ExitCode:
    if isinstance(exc, ConfigError | MissingExtra | InvalidNodeName | InvalidOSName):
        return ExitCode.USAGE
    if isinstance(exc, MaasUnavailable | MaasAuthError):
        return ExitCode.UNREACHABLE
    return ExitCode.FAILURE


def error_payload(exc: MaasError) -> dict[str, Any]:
    """An error as --json reports it: the class, the text, and the machine it concerns."""
    payload: dict[str, Any] = {"error": type(exc).__name__, "message": str(exc)}
    for name in ("machine", "system_id", "status", "http_status"):
        value = getattr(exc, name, None)
        if value is not None:
            payload[name] = value
    return payload


def report_error(ctx: Context, exc: MaasError) -> int:
    """Print an error the way the chosen output mode wants (with a hint when the cause is a
    likely misconfiguration of api_url) and return its exit code."""
    from teuthology_maas.cli._hints import api_url_hint

    code = exit_code_for(exc)
    hint = api_url_hint(exc, ctx._config.api_url) if ctx._config is not None else None
    if ctx.json:
        ctx.emit_json({"ok": False, **error_payload(exc), **({"hint": hint} if hint else {})})
    else:
        ctx.err(f"teuthology-maas: {type(exc).__name__}: {exc}")
        if hint:
            ctx.err(f"hint: {hint}")
    return int(code)


def short_hostname(name: str) -> str:
    """`ubuntu@smithi001.front.sepia.ceph.com` -> `smithi001`: MAAS hostnames are short names."""
    return name.rsplit("@", 1)[-1].split(".", 1)[0]
