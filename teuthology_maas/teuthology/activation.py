"""Make a stock teuthology provision MAAS nodes through teuthology_maas, with no edit of
teuthology's files and no wrapper command.

The wheel ships `teuthology_maas_activation.pth` at the root of site-packages; Python's `site`
module runs its single `import` line at every interpreter start-up, which imports this module.
Importing it only puts a finder on `sys.meta_path`: nothing of teuthology or of the library is
imported then, so start-up stays cheap. When (and only when) some process imports
`teuthology.provision.maas`, the finder lets the normal import run and then replaces the
module's `enabled`, `get_types` and `MAAS` with dispatchers to `teuthology_maas.teuthology`.
Every teuthology path goes through that module (`provision.get_reimage_types()`,
`provision.reimage()`, `lock.ops.stop_node()`), so teuthology-lock, the dispatcher and
supervisor, teuthology-reimage, teuthology-node-cleanup and teuthology-kill all use us.

Turning it off:
- `TEUTHOLOGY_MAAS_ACTIVATE=0` (or false/no/off) in the environment: the finder is not
  installed at all; teuthology's own MAAS code runs.
- `maas: {activate: false}` in teuthology's config: the dispatchers are installed but hand
  every call to teuthology's own functions, decided at call time (the dispatcher re-reads its
  config on every loop, so flipping the key takes effect without a restart).

Nothing here may break interpreter start-up: `install()` and the patching swallow every
exception (a broken activation leaves stock teuthology behaviour and logs why).
"""

from __future__ import annotations

import os
import sys

# Start-up cost matters (this runs in every interpreter of the venv): no typing, logging or
# importlib.abc at import time. mypy treats a module-level TYPE_CHECKING name as the real one.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from importlib.machinery import ModuleSpec
    from types import ModuleType
    from typing import Any

TARGET = "teuthology.provision.maas"
ENV_SWITCH = "TEUTHOLOGY_MAAS_ACTIVATE"
_OFF = frozenset({"0", "false", "no", "off"})
PATCHED_NAMES = ("enabled", "get_types", "MAAS")
# Set on each dispatcher (so patching twice is a no-op, also after importlib.reload) and on
# the module (so anyone can check: `teuthology.provision.maas.__teuthology_maas__`).
MARKER = "__teuthology_maas__"


def _log() -> Any:
    import logging

    return logging.getLogger("teuthology_maas.activation")


def env_allows() -> bool:
    """False when TEUTHOLOGY_MAAS_ACTIVATE says off (0/false/no/off, any case)."""
    return os.environ.get(ENV_SWITCH, "1").strip().lower() not in _OFF


def config_allows() -> bool:
    """False when teuthology's config has `maas: {activate: false}` (or 0/no/off); read at call
    time. Absent, null or unreadable means on."""
    try:
        from teuthology.config import config

        section = config.get("maas") or {}
        value = section.get("activate") if isinstance(section, dict) else None
    except Exception:  # teuthology's config failing in any way must not decide for us: on
        return True
    if value is None:
        return True
    if isinstance(value, str):
        return value.strip().lower() not in _OFF
    return value is not False and value != 0


class _PatchingLoader:
    """Runs the real loader, then patches the fresh module."""

    def __init__(self, wrapped: Any) -> None:
        self._wrapped = wrapped

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        create = getattr(self._wrapped, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        self._wrapped.exec_module(module)
        patch_module(module)

    def __getattr__(self, name: str) -> Any:
        # get_source, get_filename, is_package ... (tracebacks, inspect, pkgutil).
        return getattr(self._wrapped, name)


class MaasActivationFinder:
    """Finds nothing itself: wraps the loader of `teuthology.provision.maas` found by the
    finders after it."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname != TARGET:
            return None
        try:
            for finder in sys.meta_path:
                if finder is self or isinstance(finder, MaasActivationFinder):
                    continue
                find = getattr(finder, "find_spec", None)
                if find is None:
                    continue
                spec: ModuleSpec | None = find(fullname, path, target)
                if spec is not None:
                    if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                        spec.loader = _PatchingLoader(spec.loader)  # type: ignore[assignment]
                    return spec
        except Exception:  # never break the import of teuthology itself
            _log().debug("teuthology_maas activation could not wrap %s", TARGET, exc_info=True)
        return None


_broken_adapter_reported = False


def _adapter() -> ModuleType | None:
    """teuthology_maas.teuthology, or None (reported once) when it cannot be imported: a
    broken install must not take teuthology's lock paths down with it."""
    global _broken_adapter_reported
    try:
        from teuthology_maas.teuthology import adapter
    except Exception:  # a broken install fails in any way; teuthology's own code answers
        if not _broken_adapter_reported:
            _broken_adapter_reported = True
            _log().error(
                "teuthology_maas is installed but teuthology_maas.teuthology.adapter cannot be "
                "imported; teuthology's own MAAS code answers instead", exc_info=True,
            )  # fmt: skip
        return None
    return adapter


def _dispatcher(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def dispatch(*args: Any, **kwargs: Any) -> Any:
        adapter = _adapter() if config_allows() else None
        if adapter is None:
            return original(*args, **kwargs)
        return getattr(adapter, name)(*args, **kwargs)

    dispatch.__name__ = dispatch.__qualname__ = name
    dispatch.__doc__ = (
        f"teuthology_maas activation: teuthology_maas.teuthology.{name}, or teuthology's own "
        f"{name} when `maas: {{activate: false}}` is configured."
    )
    dispatch.__wrapped__ = original  # type: ignore[attr-defined]
    setattr(dispatch, MARKER, True)
    return dispatch


def patch_module(module: ModuleType) -> bool:
    """Point `enabled`, `get_types` and `MAAS` of teuthology.provision.maas at us.

    Returns True when patched (now or before). Never raises: on any error the module keeps
    teuthology's own code and the reason is logged.
    """
    try:
        originals = {
            name: getattr(module, name)
            for name in PATCHED_NAMES
            if not getattr(getattr(module, name), MARKER, False)
        }
        for name, original in originals.items():
            setattr(module, name, _dispatcher(name, original))
        if originals:
            setattr(module, MARKER, {"originals": originals})
        return True
    except Exception:  # whatever went wrong, teuthology itself must keep working
        _log().warning("teuthology_maas activation failed; teuthology's own MAAS code stays in "
                    "use", exc_info=True)
        return False


def install() -> None:
    """Called by the .pth at start-up. Cheap, idempotent, never raises."""
    try:
        if not env_allows():
            return
        if any(isinstance(finder, MaasActivationFinder) for finder in sys.meta_path):
            return
        already = sys.modules.get(TARGET)
        if already is not None:
            patch_module(already)
            return
        sys.meta_path.insert(0, MaasActivationFinder())
    except Exception:  # start-up must survive anything
        pass


install()
