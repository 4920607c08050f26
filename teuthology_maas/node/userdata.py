"""cloud-init user_data for a deployment: find the template, render it, prove it is cloud-config.

Everything here happens before any MAAS call, so a broken template costs a second, not a
30-minute deployment. Errors name the template and the line: the template's own line for
Jinja errors, the rendered output's line (quoted) for YAML errors.

Template search: the config's `user_data` pattern (`{os_type}`/`{os_version}` substituted) when
set, which must then exist; otherwise the shipped templates: `<os_type>-<os_version>.yaml`,
then `<os_type>.yaml`, then `default.yaml`.

Variables: hostname, fqdn, os_type, os_version, ssh_user, ssh_authorized_keys (the teuthology
user's public keys) and every `user_data_vars` entry. Templates use Jinja's `tojson` filter to
put strings into YAML safely (JSON is YAML).

Templates render in Jinja's sandbox (no attribute walks to Python internals, so no code runs
whatever a template says), and every file read (the template and what it includes) must
resolve inside its configured directory: the part of the `user_data` pattern before its first
placeholder, or the template's own directory for includes. A path outside is refused before
anything is opened, so the message says nothing about whether that path exists.
"""

from __future__ import annotations

import importlib.resources
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import jinja2
import jinja2.meta
import jinja2.sandbox
import yaml
from jinja2.loaders import split_template_path

from teuthology_maas.config_values import undecodable
from teuthology_maas.errors import ConfigError, UserDataError
from teuthology_maas.names import check_os
from teuthology_maas.node.images import canonical_version

log = logging.getLogger(__name__)

__all__ = [
    "CLOUD_CONFIG_HEADER",
    "RESERVED_VARIABLES",
    "UserDataConfig",
    "find_template",
    "render_template",
    "render_user_data",
    "shipped_template_dir",
    "validate_cloud_config",
]

CLOUD_CONFIG_HEADER = "#cloud-config"
RESERVED_VARIABLES = frozenset(
    {"hostname", "fqdn", "os_type", "os_version", "ssh_user", "ssh_authorized_keys"}
)
_FALLBACK_TEMPLATE = "default.yaml"


class UserDataConfig(Protocol):
    """The MaasConfig attributes this module reads."""

    @property
    def user_data(self) -> str | None: ...
    @property
    def user_data_vars(self) -> Mapping[str, Any]: ...
    @property
    def ssh_user(self) -> str: ...
    @property
    def ssh_keys(self) -> Sequence[str]: ...


def shipped_template_dir() -> Path:
    """The templates shipped with the package: inside an installed wheel they are package data
    (`teuthology_maas/user_data`); in a source tree or editable install, `user_data/` at the
    repository top."""
    packaged = Path(str(importlib.resources.files("teuthology_maas") / "user_data"))
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[2] / "user_data"


def _candidate_versions(os_type: str, os_version: str) -> list[str]:
    versions = [os_version, canonical_version(os_type, os_version)]
    return list(dict.fromkeys(v for v in versions if v))


def _inside(path: Path, directory: Path) -> bool:
    """Does `path` resolve (symbolic links followed) to somewhere under `directory`?"""
    real, root = os.path.realpath(path), os.path.realpath(directory)
    return real == root or real.startswith(root.rstrip(os.sep) + os.sep)


def pattern_directory(pattern: str) -> Path:
    """The directory every path of a `user_data` pattern must stay in: where its fixed part
    (before the first placeholder) ends."""
    fixed = os.path.expanduser(pattern.split("{", 1)[0])
    return Path(fixed) if fixed.endswith(os.sep) else Path(fixed).parent


def find_template(cfg: UserDataConfig, os_type: str, os_version: str) -> Path:
    """The template for this OS; UserDataError lists every place looked at when none fits."""
    os_type, os_version = check_os(os_type, os_version)
    pattern = cfg.user_data
    if pattern:
        root = pattern_directory(pattern)
        tried: list[Path] = []
        for version in _candidate_versions(os_type, os_version):
            try:
                path = Path(pattern.format(os_type=os_type, os_version=version)).expanduser()
            except (KeyError, IndexError, ValueError) as exc:
                raise ConfigError(
                    f"maas.user_data pattern {pattern!r} cannot be filled in ({exc}); expected a "
                    "path using only {os_type} and {os_version}",
                    key="user_data",
                ) from None
            if not _inside(path, root):
                raise UserDataError(
                    f"user_data template for {os_type} {version}: maas.user_data {pattern!r} "
                    f"gives a path that resolves outside {root}; refused",
                    template=str(root),
                )
            if path.is_file():
                return path
            if path not in tried:
                tried.append(path)
        raise UserDataError(
            f"no user_data template for {os_type} {os_version}: maas.user_data {pattern!r} "
            f"gives {' or '.join(str(p) for p in tried)}, which does not exist",
            template=str(tried[0]),
        )
    shipped = shipped_template_dir()
    wanted_type, wanted_version = os_type.strip().lower(), os_version.strip().lower()
    names = [f"{wanted_type}-{v}.yaml" for v in _candidate_versions(wanted_type, wanted_version)]
    names += [f"{wanted_type}.yaml"]
    # An OS name is never a path: nothing outside the shipped directory is picked up.
    names = [name for name in names if "/" not in name and "\\" not in name]
    names.append(_FALLBACK_TEMPLATE)
    for name in dict.fromkeys(names):
        if (shipped / name).is_file():
            return shipped / name
    available = sorted(p.name for p in shipped.glob("*.yaml")) if shipped.is_dir() else []
    raise UserDataError(
        f"no shipped user_data template for {os_type} {os_version} in {shipped} "
        f"(looked for {', '.join(dict.fromkeys(names))}; shipped: "
        f"{', '.join(available) or 'none'}); set maas.user_data to a template of your own",
        template=str(shipped / names[0]),
    )


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UserDataError(
            f"cannot read user_data template {path}: {exc.strerror or exc}", template=str(path)
        ) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line, where = undecodable(raw, exc)
    raise UserDataError(
        f"user_data template {path} line {line}: not UTF-8 text ({where}); save the template "
        "as UTF-8",
        template=str(path),
        line=line,
    )


class _TemplateLoader(jinja2.BaseLoader):
    """Loads the template and anything it includes from its directory, as checked UTF-8."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.loaded: set[str] = set()  # file names, to find their lines in tracebacks

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        # split_template_path refuses '..'; the check after it, links leading elsewhere.
        path = self.directory.joinpath(*split_template_path(template))
        if not _inside(path, self.directory) or not path.is_file():
            raise jinja2.TemplateNotFound(template)
        self.loaded.add(str(path))
        return _read_text(path), str(path), lambda: False


def _environment(directory: Path) -> tuple[jinja2.Environment, _TemplateLoader]:
    loader = _TemplateLoader(directory)
    # The sandbox: templates are data that only fills in values, never code that runs.
    env = jinja2.sandbox.SandboxedEnvironment(
        loader=loader,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
        # Block tags on their own lines leave no blank lines or indentation behind in YAML.
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env, loader


def _template_line(tb: TracebackType | None, filenames: set[str]) -> tuple[str, int] | None:
    """The innermost template line of a rendering traceback (Jinja rewrites its frames so that
    they carry the template's file name and line)."""
    found: tuple[str, int] | None = None
    while tb is not None:
        filename = tb.tb_frame.f_code.co_filename
        if filename in filenames:
            found = (filename, tb.tb_lineno)
        tb = tb.tb_next
    return found


def _uses_variable(env: jinja2.Environment, source: str, name: str) -> bool:
    try:
        return name in jinja2.meta.find_undeclared_variables(env.parse(source))
    except jinja2.TemplateSyntaxError:
        return False  # rendering reports it with its line


def render_template(path: Path, variables: Mapping[str, Any]) -> str:
    """Render one template file with StrictUndefined; UserDataError names the file and line."""
    path = Path(path)
    env, loader = _environment(path.parent)
    try:
        template = env.get_template(path.name)
        return template.render(dict(variables))
    except UserDataError:
        raise
    except jinja2.TemplateSyntaxError as exc:
        where = exc.filename or str(path)
        raise UserDataError(
            f"user_data template {where} line {exc.lineno}: Jinja syntax error: {exc.message}",
            template=where,
            line=exc.lineno,
        ) from None
    except jinja2.TemplateNotFound as exc:
        raise UserDataError(
            f"user_data template {path}: included template {exc.name!r} not found in {path.parent}",
            template=str(path),
        ) from None
    except Exception as exc:  # the template is operator code: any failure is a template error
        location = _template_line(exc.__traceback__, loader.loaded)
        where, line = location if location else (str(path), None)
        kind = "undefined variable" if isinstance(exc, jinja2.UndefinedError) else "error"
        hint = (
            f" (available: {', '.join(sorted(variables))}; add others under maas.user_data_vars)"
            if isinstance(exc, jinja2.UndefinedError)
            else ""
        )
        at = f" line {line}" if line is not None else ""
        raise UserDataError(
            f"user_data template {where}{at}: {kind}: {exc}{hint}", template=where, line=line
        ) from None


def validate_cloud_config(text: str, *, template: str) -> dict[str, Any]:
    """Check rendered user_data is cloud-config: the header line, YAML, a mapping at the top.
    Returns the parsed mapping."""
    first_line = text.split("\n", 1)[0].rstrip()
    if first_line != CLOUD_CONFIG_HEADER:
        raise UserDataError(
            f"user_data from {template} line 1: expected the {CLOUD_CONFIG_HEADER!r} header "
            f"as the first line, found {first_line[:80]!r}",
            template=template,
            line=1,
        )
    try:
        document = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        lines = text.splitlines()
        quoted = (
            f" {lines[line - 1].strip()[:120]!r}" if line is not None and line <= len(lines) else ""
        )
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p)
        opened = exc.context_mark
        if opened is not None and mark is not None and opened.line != mark.line:
            problem += f" (the construct started at line {opened.line + 1})"
        raise UserDataError(
            f"user_data rendered from {template} is not valid YAML at line {line} of the "
            f"rendered output{quoted}: {problem or exc}",
            template=template,
            line=line,
        ) from None
    except yaml.YAMLError as exc:
        raise UserDataError(
            f"user_data rendered from {template} is not valid YAML: {exc}", template=template
        ) from None
    if not isinstance(document, dict):
        found = "nothing" if document is None else type(document).__name__
        raise UserDataError(
            f"user_data rendered from {template} must be a YAML mapping of cloud-config "
            f"modules, found {found}",
            template=template,
        )
    return document


def _variables(
    cfg: UserDataConfig, *, hostname: str, fqdn: str, os_type: str, os_version: str
) -> dict[str, Any]:
    extra = dict(cfg.user_data_vars or {})
    clash = sorted(RESERVED_VARIABLES & set(extra))
    if clash:
        raise ConfigError(
            f"maas.user_data_vars may not redefine {', '.join(clash)}: they are set per "
            f"deployment (reserved: {', '.join(sorted(RESERVED_VARIABLES))})",
            key="user_data_vars",
        )
    return {
        **extra,
        "hostname": hostname,
        "fqdn": fqdn,
        "os_type": os_type,
        "os_version": os_version,
        "ssh_user": cfg.ssh_user,
        "ssh_authorized_keys": [key.strip() for key in cfg.ssh_keys if key.strip()],
    }


def render_user_data(
    cfg: UserDataConfig, *, hostname: str, fqdn: str, os_type: str, os_version: str
) -> str:
    """The validated cloud-config text for one deployment (plain text: the client encodes)."""
    path = find_template(cfg, os_type, os_version)
    variables = _variables(
        cfg, hostname=hostname, fqdn=fqdn, os_type=os_type, os_version=os_version
    )
    if not variables["ssh_authorized_keys"] and _uses_variable(
        _environment(path.parent)[0], _read_text(path), "ssh_authorized_keys"
    ):
        raise UserDataError(
            f"user_data template {path} injects ssh_authorized_keys but there is no public key "
            "to inject: set maas.ssh_keys, or create ~/.ssh/id_ed25519.pub on the control node",
            template=str(path),
        )
    text = render_template(path, variables)
    validate_cloud_config(text, template=str(path))
    log.debug("user_data for %s (%s %s) rendered from %s", fqdn, os_type, os_version, path)
    return text
