"""Keep the documentation honest where a machine can check it: the configuration keys and their
defaults, the CLI's subcommands, options and exit codes, the simulator's inventory keys, the
commands the docs show, the fault matrix suites and scenario count, and every relative link.
Fast: no server; one `pytest --collect-only` subprocess (about 2 s)."""

from __future__ import annotations

import argparse
import dataclasses
import re
import subprocess
import sys
import unicodedata
from pathlib import Path

import pytest
import yaml

from teuthology_maas.cli import build_parser
from teuthology_maas.cli._common import ExitCode
from teuthology_maas.config import ACTIVATION_KEYS, CONFIG_FIELDS, KNOWN_KEYS, MaasConfig
from teuthology_maas.simulator.inventory import Inventory, MachineSpec, Timings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", *DOCS.glob("*.md")])


FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.MULTILINE | re.DOTALL)
# Inline code may wrap onto the next line of a paragraph, never across a blank line.
INLINE_CODE = re.compile(r"`(?:[^`\n]|\n(?![ \t]*\n))+`")
LINK = re.compile(r"(?<!!)\[[^\]\n]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


# -- helpers ----------------------------------------------------------------------------------


def text_of(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def without_code_blocks(markdown: str) -> str:
    return FENCE.sub("", markdown)


def code_blocks(markdown: str) -> list[str]:
    return [m.group(0) for m in FENCE.finditer(markdown)]


def section(markdown: str, heading: str) -> str:
    """The text under `heading` (a whole heading line) up to the next heading of its level or
    higher."""
    level = len(heading) - len(heading.lstrip("#"))
    lines = without_code_blocks(markdown).splitlines()
    try:
        start = lines.index(heading)
    except ValueError:
        raise AssertionError(f"heading {heading!r} not found") from None
    body: list[str] = []
    for line in lines[start + 1 :]:
        match = re.match(r"^(#+) ", line)
        if match and len(match.group(1)) <= level:
            break
        body.append(line)
    return "\n".join(body)


def table_rows(markdown: str) -> list[list[str]]:
    """Body rows of every pipe table (header and separator rows left out)."""
    rows: list[list[str]] = []
    lines = markdown.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith("|") or re.match(r"^\|[\s:|-]+\|$", line):
            continue
        if i + 1 < len(lines) and re.match(r"^\|[\s:|-]+\|$", lines[i + 1]):
            continue  # a header row
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    return rows


def first_code_name(cell: str) -> str | None:
    match = re.fullmatch(r"`([a-z_]+)`", cell)
    return match.group(1) if match else None


def slug(heading: str) -> str:
    """The anchor MkDocs (Python-Markdown's toc) gives a heading."""
    value = unicodedata.normalize("NFKD", heading).encode("ascii", "ignore").decode("ascii")
    value = re.sub(r"[^\w\s-]", "", value).strip().lower()
    return re.sub(r"[-\s]+", "-", value)


def anchors(path: Path) -> set[str]:
    headings = re.findall(r"^#{1,6} (.+?)\s*$", without_code_blocks(text_of(path)), re.MULTILINE)
    return {slug(h) for h in headings}


def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    raise AssertionError("teuthology-maas has no subcommands")


def option_strings(parser: argparse.ArgumentParser) -> list[list[str]]:
    return [
        list(action.option_strings)
        for action in parser._actions
        if action.option_strings and "--help" not in action.option_strings
    ]


def mentions(text: str, option: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", text) is not None


# -- configuration.md -------------------------------------------------------------------------

CONFIGURATION = text_of(DOCS / "configuration.md")
KEY_ROWS = {
    name: row
    for row in table_rows(section(CONFIGURATION, "## Keys"))
    if (name := first_code_name(row[0])) is not None
}
MINIMAL = {"api_url": "http://maas.example.com:5240/MAAS/", "api_key": "ck:tk:secret"}


def test_configuration_documents_exactly_the_keys_maas_config_accepts():
    documented = set(KEY_ROWS)
    accepted = set(KNOWN_KEYS)
    assert documented - accepted == set(), "documented but not a maas: key"
    assert accepted - documented == set(), "maas: keys missing from docs/configuration.md"


def test_every_maas_config_field_is_a_documented_key():
    fields = {f.name for f in CONFIG_FIELDS}
    assert fields - set(KEY_ROWS) == set()
    # and the rest of the dataclass is bookkeeping nobody writes in a config
    bookkeeping = {f.name for f in dataclasses.fields(MaasConfig)} - fields
    assert bookkeeping == {"user_data_base", "source", "region", "api_urls"}
    assert not bookkeeping & KNOWN_KEYS


def test_activation_keys_are_documented_under_activation():
    rows = table_rows(section(CONFIGURATION, "### Activation"))
    assert {first_code_name(row[0]) for row in rows} == set(ACTIVATION_KEYS)


def test_documented_literal_defaults_are_the_real_defaults(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.ssh keys leak into ssh_keys
    cfg = MaasConfig.from_mapping(MINIMAL)
    checked = []
    for name, row in KEY_ROWS.items():
        default = row[2]
        literal = re.fullmatch(r"`([^`]+)`", default)
        if name in ACTIVATION_KEYS or literal is None or "(" in literal.group(1):
            continue
        expected = yaml.safe_load(literal.group(1))
        assert getattr(cfg, name) == expected, f"{name}: docs say {default}"
        checked.append(name)
    # the numeric, boolean and string defaults are literals in the table: make sure they
    # really were compared (a table the parser no longer reads must not pass quietly)
    assert {"http_timeout", "timeout", "release_timeout", "erase", "verify"} <= set(checked)
    assert "max(timeout, 1800)" in KEY_ROWS["deploy_timeout"][2]
    assert cfg.deploy_timeout == max(cfg.timeout, 1800)
    for name, row in KEY_ROWS.items():
        if row[2] == "none" and name not in ACTIVATION_KEYS:
            assert getattr(cfg, name, None) in (None, ()), f"{name}: docs say none"


def test_documented_erase_modes_are_the_real_ones():
    from teuthology_maas.config import ERASE_MODES

    modes = re.findall(r"`([a-z]+)`", KEY_ROWS["erase"][1])
    assert tuple(modes) == ERASE_MODES


def deploy_rows(heading: str, *, top_only: bool = False) -> dict[str, list[str]]:
    text = section(CONFIGURATION, heading)
    if top_only:
        text = text.split("\n### ", 1)[0]
    return {
        name: row for row in table_rows(text) if (name := first_code_name(row[0])) is not None
    }


def test_deploy_settings_document_exactly_the_keys_deploy_config_reads():
    from teuthology_maas import deploy_config

    assert set(deploy_rows("## Deploy settings", top_only=True)) == set(deploy_config.SECTION_KEYS)
    assert set(deploy_rows("### `storage`")) == set(deploy_config.STORAGE_KEYS)
    bonds = deploy_rows("### `bonds`")
    assert set(bonds) == set(deploy_config.BOND_KEYS)
    options = bonds["options"][3]
    for option in [*deploy_config.BOND_CHOICE_OPTIONS, *deploy_config.BOND_NUMBER_OPTIONS]:
        assert f"`{option}`" in options, option
    for choices in deploy_config.BOND_CHOICE_OPTIONS.values():
        assert all(f"`{c}`" in options for c in choices)
    assert [f"`{m}`" in bonds["mode"][3] for m in deploy_config.BOND_MODES] == [True] * 7
    layouts = re.findall(r"`([a-z]+)`", deploy_rows("### `storage`")["layout"][1])
    assert tuple(layouts) == deploy_config.LAYOUTS


# -- cli.md -----------------------------------------------------------------------------------

CLI = text_of(DOCS / "cli.md")
PARSER = build_parser()
SUBCOMMANDS = subparsers(PARSER)


def test_every_subcommand_has_a_section_in_cli_md():
    headings = re.findall(r"^## (.+)$", without_code_blocks(CLI), re.MULTILINE)
    named = {word for heading in headings for word in re.split(r",\s*|\s+and\s+|\s+", heading)}
    missing = sorted(set(SUBCOMMANDS) - named)
    assert missing == [], f"subcommands without a '## ' section in docs/cli.md: {missing}"


def test_every_section_of_cli_md_names_a_real_subcommand():
    headings = re.findall(r"^## (.+)$", without_code_blocks(CLI), re.MULTILINE)
    general = {"Common behaviour"}
    for heading in headings:
        if heading in general:
            continue
        words = [w for w in re.split(r",\s*|\s+and\s+", heading) if w]
        assert all(w in SUBCOMMANDS for w in words), f"## {heading}: not a subcommand"


@pytest.mark.parametrize("name", sorted(SUBCOMMANDS))
def test_every_option_of_a_subcommand_is_in_cli_md(name):
    missing = [
        "/".join(strings)
        for strings in option_strings(SUBCOMMANDS[name])
        if not any(mentions(CLI, option) for option in strings)
    ]
    assert missing == [], f"teuthology-maas {name}: options not in docs/cli.md: {missing}"


def test_top_level_options_and_exit_codes_are_in_cli_md():
    for strings in option_strings(PARSER):
        assert any(mentions(CLI, option) for option in strings), strings
    rows = table_rows(section(CLI, "### Exit codes"))
    documented = {int(row[0]) for row in rows}
    assert documented == {int(code) for code in ExitCode}


def shown_commands() -> list[tuple[Path, str]]:
    """Every `teuthology-maas ...` command line shown as code (fenced blocks and inline code),
    with backslash continuations joined."""
    found: list[tuple[Path, str]] = []
    for page in PAGES:
        markdown = text_of(page)
        snippets = [block.replace("\\\n", " ") for block in code_blocks(markdown)]
        prose = without_code_blocks(markdown)
        snippets += [
            re.sub(r"\s*\n\s*", " ", m.group(0).strip("`")) for m in INLINE_CODE.finditer(prose)
        ]
        for snippet in snippets:
            for line in snippet.splitlines():
                match = re.match(r"^\s*(?:\$\s+)?teuthology-maas\s+(.*)$", line)
                if match:
                    found.append((page, match.group(1)))
    return found


def test_docs_show_only_real_subcommands_and_options():
    commands = shown_commands()
    assert len(commands) > 20, "the command scan found too little to be trusted"
    top = {option for strings in option_strings(PARSER) for option in strings}
    for page, line in commands:
        words = re.split(r"\s+", re.split(r"\s(?:#|\|)\s|`", line)[0].strip())
        tokens = [w.strip("[]") for w in words]
        # the first word that is neither an option nor an option's argument: the subcommand,
        # or a placeholder (COMMAND, FILE) on the generic usage line
        plain = [
            t for t, w in zip(tokens, words, strict=True) if t and not w.startswith(("-", "["))
        ]
        name = plain[0] if plain else None
        if name is None or name.isupper():
            continue
        where = f"{page.relative_to(ROOT)}: teuthology-maas {line}"
        assert name in SUBCOMMANDS, f"{where}: no subcommand {name!r}"
        allowed = top | {o for strings in option_strings(SUBCOMMANDS[name]) for o in strings}
        for token in tokens:
            option = token.split("=", 1)[0]
            if re.fullmatch(r"--?[a-z][a-z-]*", option):
                assert option in allowed, f"{where}: {name} has no option {option}"


# -- simulator.md -----------------------------------------------------------------------------

SIMULATOR = text_of(DOCS / "simulator.md")


def yaml_block_after(markdown: str, heading: str) -> dict:
    start = markdown.index(heading)
    block = FENCE.search(markdown, start)
    assert block is not None, heading
    body = block.group(0).split("\n", 1)[1].rsplit("\n", 1)[0]
    return yaml.safe_load(body.replace("[...]", "[]").replace("{...}", "{}"))


def test_simulator_inventory_top_level_keys_are_the_real_ones():
    documented = set(yaml_block_after(SIMULATOR, "## Inventory format"))
    assert documented == set(Inventory._TOP_KEYS)


def test_simulator_machine_keys_are_the_real_ones():
    machines = yaml_block_after(SIMULATOR, "### machines")["machines"]
    assert set(machines[0]) == {f.name for f in dataclasses.fields(MachineSpec)}


def test_simulator_timings_table_lists_every_timing_with_its_default():
    rows = table_rows(section(SIMULATOR, "### timings"))
    documented = {first_code_name(row[0]): row[1] for row in rows}
    defaults = {f.name: f.default for f in dataclasses.fields(Timings)}
    assert set(documented) == set(defaults)
    for name, default in defaults.items():
        shown = documented[name]
        assert (shown == "none") if default is None else float(shown) == default, name


def test_simulator_command_options_are_in_simulator_md():
    simulator = SUBCOMMANDS["simulator"]
    shared = {"--config", "--json"}  # common to every subcommand, described in cli.md
    for strings in option_strings(simulator):
        if shared & set(strings):
            continue
        assert any(mentions(SIMULATOR, option) for option in strings), strings


def test_the_example_inventory_loads():
    inventory = Inventory.from_yaml(DOCS / "simulator-inventory.yaml")
    assert inventory.machines


# -- links and navigation ----------------------------------------------------------------------


def links() -> list[tuple[Path, str]]:
    found = []
    for page in PAGES:
        prose = INLINE_CODE.sub("", without_code_blocks(text_of(page)))
        found += [(page, target) for target in LINK.findall(prose)]
    return found


def test_every_relative_link_points_to_an_existing_file_and_anchor():
    checked = 0
    for page, target in links():
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # http:, https:, mailto:
        path_part, _, fragment = target.partition("#")
        destination = (page.parent / path_part).resolve() if path_part else page
        where = f"{page.relative_to(ROOT)}: ({target})"
        assert destination.exists(), f"{where}: {destination} does not exist"
        if fragment and destination.suffix == ".md":
            assert fragment in anchors(destination), f"{where}: no heading #{fragment}"
        checked += 1
    assert checked > 30, "the link scan found too little to be trusted"


def test_every_page_is_in_the_mkdocs_nav_and_every_nav_entry_exists():
    config = yaml.safe_load(text_of(ROOT / "mkdocs.yml"))
    nav = {next(iter(entry.values())) for entry in config["nav"]}
    pages = {p.name for p in DOCS.glob("*.md")}
    assert pages - nav == set(), "pages missing from mkdocs.yml nav"
    assert nav - pages == set(), "nav entries without a page"


# -- reliability.md ----------------------------------------------------------------------------

RELIABILITY = text_of(DOCS / "reliability.md")


def test_reliability_describes_every_fault_matrix_suite():
    suites = sorted(p.name for p in (ROOT / "tests").glob("test_fault_matrix_*.py"))
    assert suites, "no fault matrix suites found"
    described = {
        name
        for row in table_rows(section(RELIABILITY, "## How it is measured"))
        for name in re.findall(r"`tests/(test_fault_matrix_\w+\.py)`", row[0])
    }
    assert described == set(suites)


def test_reliability_quotes_the_current_number_of_matrix_scenarios():
    """The doc quotes the matrix's closing line; a scenario added or removed must be run and
    the figure refreshed."""
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         *sorted(str(p) for p in (ROOT / "tests").glob("test_fault_matrix_*.py"))],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    count = int(re.search(r"^(\d+) tests? collected", collected, re.MULTILINE).group(1))
    quoted = re.search(r"`(\d+)/(\d+) scenarios passed; nodes leaked: 0;", RELIABILITY)
    assert quoted is not None, "reliability.md no longer quotes the matrix's summary line"
    assert (int(quoted.group(1)), int(quoted.group(2))) == (count, count)


def test_reliability_counts_the_hostile_suites_exactly():
    """The hostile-server and hostile-input table quotes each suite's number of cases."""
    rows = table_rows(section(RELIABILITY, "## Hostile servers and hostile input"))
    quoted = {
        re.search(r"`tests/(\w+\.py)`", row[0]).group(1): int(row[1]) for row in rows if row[1]
    }
    assert set(quoted) == {
        "test_client_hostile_server.py",
        "test_hostile_server_lifecycle.py",
        "test_bad_input_hostile_names.py",
        "test_bad_input_hostile_config.py",
    }
    collected = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         *(str(ROOT / "tests" / name) for name in sorted(quoted))],
        cwd=ROOT, capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    counts: dict[str, int] = {}
    for line in collected.splitlines():
        match = re.match(r"tests/(\w+\.py)::", line)
        if match:
            counts[match.group(1)] = counts.get(match.group(1), 0) + 1
    assert counts == quoted
