"""Teuthology integration: the adapter teuthology calls, its activation hook, process lifetime
and the paddles reads around them.

`teuthology_maas.teuthology` keeps the surface an in-tree `teuthology/provision/maas.py` (or
the activation hook) delegates to: `MAAS`, `enabled`, `get_types`, `load_config`. They are
resolved on first use because importing the adapter imports teuthology, which switches the
process to gevent; the activation hook, which runs at every interpreter start-up, lives in
this package too and must stay cheap.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False  # not from typing: this package is imported at interpreter start-up

__all__ = ["MAAS", "enabled", "get_types", "load_config"]

if TYPE_CHECKING:
    from typing import Any

    from teuthology_maas.teuthology.adapter import MAAS, enabled, get_types, load_config


def __getattr__(name: str) -> Any:
    if name in __all__:
        return getattr(importlib.import_module("teuthology_maas.teuthology.adapter"), name)
    raise AttributeError(f"module 'teuthology_maas.teuthology' has no attribute {name!r}")
