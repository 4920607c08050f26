"""The dependency direction of docs/architecture.md, checked on every module's imports (ast).

    cli -> teuthology -> node -> endpoint -> maas | fleet -> config -> models -> errors
        -> redact | suggest | waits

A module imports only from its own part or from parts below it; parts on one floor (maas and
fleet; redact, suggest and waits) do not import each other. `simulator` and `testing` (the test
doubles, an optional extra) stand beside the floors: no library module imports them, except
the CLI's `simulator` and `demo` commands inside their functions, and they themselves use only
the ground floors. Only `teuthology_maas.teuthology` imports teuthology (and gevent); only the
simulator imports Werkzeug; nothing uses asyncio. Imports under `if TYPE_CHECKING:` count too:
a type-only dependency is a dependency of the design.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "teuthology_maas"

# Floors, top to bottom; a part imports only from its own part and from lower floors.
FLOORS: list[set[str]] = [
    {"cli"},
    {"teuthology"},
    {"node"},
    {"endpoint"},
    {"maas", "fleet"},
    {"config"},  # config, config_values, deploy_config, api_url, api_key, config_regions
    {"models"},  # models.py, machine_parts.py, answers.py (parsing MAAS answers), names.py
    {"metrics"},  # prometheus metrics (metrics, metrics_export): reasons from the exception types
    {"errors"},  # every message passes through redact
    # The ground: modules that import nothing of the package, used from every floor above.
    {"redact", "suggest", "waits"},  # secrets out of texts; "did you mean"; reported waits
]
PART_OF = {
    "config_values": "config", "deploy_config": "config", "api_url": "config",
    "type_match": "config",
    "api_key": "config", "config_regions": "config",
    "machine_parts": "models", "answers": "models", "names": "models",
    "metrics_export": "metrics",
}
DOUBLES = {"simulator", "testing"}
# What the test doubles may use of the library: the ground floors only (they stand in for MAAS,
# paddles and nodes; they must not lean on the client or the lifecycle they test).
DOUBLES_MAY_USE = {"config", "models", "errors", "redact"}
# Third-party imports reserved to one part of the package.
RESERVED = {
    "teuthology": {"teuthology"}, "gevent": {"teuthology"}, "werkzeug": {"simulator"},
    "prometheus_client": {"metrics"},
}
FORBIDDEN = {"asyncio"}

# Upward imports still in the tree, each with the work that removes it. The test below fails
# once an entry is no longer needed, so the list only ever shrinks. (Empty: process lifetime
# belongs to the teuthology adapter and the CLI entry point, issue 15.)
KNOWN_UPWARD: set[tuple[str, str]] = set()

RANK = {part: rank for rank, floor in enumerate(FLOORS) for part in floor}


@dataclass(frozen=True)
class Import:
    source: str  # importing module
    target: str  # imported module (resolved to a module where `from pkg import mod`)
    line: int
    lazy: bool  # inside a function: not run when the module is imported
    type_only: bool  # under `if TYPE_CHECKING:`

    def __str__(self) -> str:
        how = " (in a function)" if self.lazy else " (type only)" if self.type_only else ""
        return f"{self.source}:{self.line} imports {self.target}{how}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(module: str, name: str) -> str:
    candidate = f"{module}.{name}"
    return candidate if candidate in MODULES else module


def _imports(name: str, path: Path) -> Iterator[Import]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))

    def walk(node: ast.AST, lazy: bool, type_only: bool) -> Iterator[Import]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield Import(name, alias.name, child.lineno, lazy, type_only)
            elif isinstance(child, ast.ImportFrom):
                assert child.level == 0, f"{name}:{child.lineno}: relative import"
                assert child.module is not None
                for alias in child.names:
                    target = _resolve(child.module, alias.name)
                    yield Import(name, target, child.lineno, lazy, type_only)
            elif isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda):
                yield from walk(child, True, type_only)
            elif isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from walk(child, lazy, True)
            else:
                yield from walk(child, lazy, type_only)

    yield from walk(tree, False, False)


IMPORTS = [imp for name, path in MODULES.items() for imp in _imports(name, path)]


def part(module: str) -> str | None:
    """`teuthology_maas.node.ssh` -> "node"; the package root -> ""; outside -> None."""
    pieces = module.split(".")
    if pieces[0] != "teuthology_maas":
        return None
    if len(pieces) == 1:
        return ""
    return PART_OF.get(pieces[1], pieces[1])


def test_every_module_belongs_to_a_floor_or_the_doubles():
    parts = {part(name) for name in MODULES} - {""}
    assert parts <= set(RANK) | DOUBLES, parts - set(RANK) - DOUBLES
    assert set(RANK) | DOUBLES <= parts, "a floor names a part that does not exist"
    assert len(IMPORTS) > 300  # the parser really read the package


def test_no_import_runs_upward_or_sideways():
    wrong = []
    for imp in IMPORTS:
        source, target = part(imp.source), part(imp.target)
        if source in ("", *DOUBLES) or target in (None, "", *DOUBLES) or source == target:
            continue  # the root and the doubles have rules of their own below
        assert source is not None
        if RANK[target] <= RANK[source] and (imp.source, imp.target) not in KNOWN_UPWARD:
            wrong.append(str(imp))
    assert wrong == [], "\n".join(wrong)


def test_each_known_upward_import_is_still_there():
    present = {(imp.source, imp.target) for imp in IMPORTS}
    assert present >= KNOWN_UPWARD, f"no longer needed, remove: {KNOWN_UPWARD - present}"


def test_no_library_module_imports_the_test_doubles():
    wrong = []
    for imp in IMPORTS:
        source, target = part(imp.source), part(imp.target)
        if target not in DOUBLES or source in DOUBLES:
            continue
        # the CLI's simulator/demo commands, when run, and only there
        allowed = source == "cli" and imp.lazy and imp.source in (
            "teuthology_maas.cli.simulator", "teuthology_maas.cli.demo",
            "teuthology_maas.cli._demo_suite",
        )
        if not allowed:
            wrong.append(str(imp))
    assert wrong == [], "\n".join(wrong)


def test_the_test_doubles_use_only_the_ground_floors():
    wrong = [
        str(imp) for imp in IMPORTS
        if part(imp.source) in DOUBLES
        and part(imp.target) not in (None, "", part(imp.source), *DOUBLES_MAY_USE)
    ]
    assert wrong == [], "\n".join(wrong)


@pytest.mark.parametrize("library", sorted(RESERVED))
def test_reserved_third_party_imports_stay_in_their_part(library):
    users = {
        str(imp) for imp in IMPORTS
        if imp.target.split(".")[0] == library and part(imp.source) not in RESERVED[library]
    }
    assert users == set(), "\n".join(sorted(users))


def test_nothing_uses_asyncio():
    users = [str(imp) for imp in IMPORTS if imp.target.split(".")[0] in FORBIDDEN]
    assert users == []


def test_the_package_root_imports_nothing_of_its_own_when_imported():
    """It runs at every interpreter start-up (the activation hook): public names resolve
    lazily, so importing it must not pull the library in."""
    eager = [
        str(imp) for imp in IMPORTS
        if imp.source == "teuthology_maas" and not imp.type_only and not imp.lazy
        and part(imp.target) is not None
    ]
    assert eager == []


def test_no_two_library_modules_import_each_other():
    """(The simulator's modules name each other's types under TYPE_CHECKING: its business.)"""
    graph: dict[str, set[str]] = {}
    for imp in IMPORTS:
        if part(imp.source) in DOUBLES or part(imp.target) in ("", None, *DOUBLES):
            continue
        if imp.target in MODULES and imp.target != imp.source:
            graph.setdefault(imp.source, set()).add(imp.target)
    cycles = sorted(
        f"{a} <-> {b}" for a, targets in graph.items() for b in targets
        if a < b and a in graph.get(b, set())
    )
    assert cycles == []


def test_the_check_catches_an_upward_import(tmp_path):
    """The rule itself, on a module written for the purpose: an endpoint importing node."""
    bad = tmp_path / "bad.py"
    bad.write_text("from teuthology_maas.node.provisioner import MaasProvisioner\n")
    (imp,) = list(_imports("teuthology_maas.endpoint", bad))
    assert (part(imp.source), part(imp.target)) == ("endpoint", "node")
    assert RANK["node"] < RANK["endpoint"]  # node is above: importing it runs upward
