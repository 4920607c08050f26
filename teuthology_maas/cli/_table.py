"""Plain-text tables and the status colours of human output."""

from __future__ import annotations

import re
from collections.abc import Sequence

from teuthology_maas.models import NodeStatus

_RESET = "\x1b[0m"
_GREEN = "\x1b[32m"
_YELLOW = "\x1b[33m"
_RED = "\x1b[31m"
_CYAN = "\x1b[36m"
_BOLD_RED = "\x1b[1;31m"

_STATUS_COLOURS: dict[NodeStatus, str] = {
    NodeStatus.READY: _GREEN,
    NodeStatus.DEPLOYED: _CYAN,
    NodeStatus.ALLOCATED: _YELLOW,
    NodeStatus.BROKEN: _BOLD_RED,
}

# doctor/reconcile verdicts
VERDICT_COLOURS = {"OK": _GREEN, "WARN": _YELLOW, "FAIL": _RED, "SKIP": _YELLOW}


def paint(text: str, colour: str | None, enabled: bool) -> str:
    if not enabled or not colour:
        return text
    return f"{colour}{text}{_RESET}"


def status_colour(status: NodeStatus) -> str | None:
    if status.is_failure:
        return _RED
    if status.is_transitional:
        return _YELLOW
    return _STATUS_COLOURS.get(status)


def label_colour(label: str) -> str | None:
    """`status_colour` for a status as MAAS names it ("Failed deployment"); None if unknown."""
    try:
        return status_colour(NodeStatus.from_label(label))
    except ValueError:
        return None


def render_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    colours: Sequence[Sequence[str | None]] | None = None,
    colour: bool = False,
) -> list[str]:
    """Left-aligned columns separated by two spaces. Widths are measured before colouring so
    escape sequences never skew the alignment."""
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))
    lines = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    for r, row in enumerate(rows):
        cells = []
        for i, cell in enumerate(row):
            padded = cell.ljust(widths[i]) if i < len(row) - 1 else cell
            cell_colour = colours[r][i] if colours is not None else None
            cells.append(paint(padded, cell_colour, colour))
        lines.append("  ".join(cells).rstrip())
    return lines


_UNPRINTABLE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029]")


def printable(text: object) -> str:
    """`text` with every terminal control character (ESC included) shown as `?`: what MAAS or
    paddles answered is printed, never interpreted by the terminal."""
    return _UNPRINTABLE.sub("?", str(text))
