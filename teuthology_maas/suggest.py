""""Did you mean ...?": the nearest known names to a word someone typed.

One place for the spelling suggestions of configuration keys, OS names and versions, machine
types and statuses, so every typo is answered the same way."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = ["STRICT", "closest", "did_you_mean"]

# difflib's ratio: 0.6 is its own default; it finds `timeout` for `timeuot` and `smithi` for
# `smithy` but not `mira` for `smithi`.
_CUTOFF = 0.6
# Short names that differ in a third of their letters are different names (gentoo is not
# centos): OS types ask for more.
STRICT = 0.75


def closest(
    word: str, choices: Iterable[str], *, limit: int = 3, cutoff: float = _CUTOFF
) -> list[str]:
    """The known names nearest to `word`, best first (none when nothing is close).
    Case is ignored for the comparison; the known names come back as they are spelled."""
    by_folded: dict[str, str] = {}
    for choice in choices:
        by_folded.setdefault(str(choice).lower(), str(choice))
    found = difflib.get_close_matches(str(word).lower(), list(by_folded), n=limit, cutoff=cutoff)
    return [by_folded[name] for name in found if by_folded[name] != word]


def did_you_mean(
    word: str, choices: Iterable[str], *, limit: int = 1, cutoff: float = _CUTOFF
) -> str:
    """`"did you mean 'timeout'?"` (up to `limit` names, best first), or "" when nothing is
    close."""
    found = closest(word, choices, limit=limit, cutoff=cutoff)
    if not found:
        return ""
    if len(found) == 1:
        return f"did you mean {found[0]!r}?"
    return "did you mean " + ", ".join(repr(n) for n in found[:-1]) + f" or {found[-1]!r}?"
