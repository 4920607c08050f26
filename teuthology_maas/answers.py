"""Validated reads of the JSON that MAAS returns (used where its answers are parsed: models
and the client). A field of the wrong type, a required field missing, or a list where an
object belongs is a `MaasProtocolError` naming the field and showing a short, redacted excerpt,
never a raw KeyError/TypeError/ValueError/AttributeError."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from teuthology_maas.errors import MaasProtocolError
from teuthology_maas.redact import excerpt

__all__ = ["Fields", "expect_list", "expect_object", "json_kind", "malformed"]


def json_kind(value: Any) -> str:
    """How a JSON value is named in messages: `a list`, `a string` ..."""
    if value is None:
        return "null"
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    for kind, name in names.items():
        if type(value) is kind:
            return name
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, list | tuple):
        return "a list"
    return f"a {type(value).__name__}"


def malformed(problem: str, field: str | None = None) -> MaasProtocolError:
    """The error for a malformed answer; the transport names the endpoint in front."""
    return MaasProtocolError(f"MAAS answered {problem}", field=field, problem=problem)


def expect_object(data: Any, what: str) -> Mapping[str, Any]:
    """`data` when it is a JSON object; otherwise MaasProtocolError naming `what`."""
    if not isinstance(data, Mapping):
        raise malformed(f"{json_kind(data)} where {what} (a JSON object) belongs: {excerpt(data)}")
    return data


def expect_list(data: Any, what: str) -> list[Any]:
    """`data` when it is a JSON list (null counts as empty); otherwise MaasProtocolError."""
    if data is None:
        return []
    if not isinstance(data, list):
        raise malformed(f"{json_kind(data)} where a list of {what} belongs: {excerpt(data)}")
    return data


# A hostname as MAAS enforces it: labels of letters, digits and inner hyphens.
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")


class Fields:
    """Typed reads of one JSON object MAAS returned (`what` names it in messages)."""

    def __init__(self, data: Any, what: str) -> None:
        self.data = expect_object(data, what)
        self.what = what

    def bad(self, name: str, expected: str) -> MaasProtocolError:
        if name in self.data:
            found = f"whose {name!r} is {json_kind(self.data[name])} {excerpt(self.data[name])}"
        else:
            found = f"without {name!r}"
        return malformed(
            f"{self.what} {found}; expected {expected} (in {excerpt(self.data, 160)})", name
        )

    def text(self, name: str, default: str = "", *, required: bool = False) -> str:
        value = self.data.get(name)
        if value is None and not required:
            return default
        if not isinstance(value, str) or (required and not value):
            raise self.bad(name, "a non-empty string" if required else "a string")
        return value

    def optional_text(self, name: str) -> str | None:
        value = self.data.get(name)
        if value is not None and not isinstance(value, str):
            raise self.bad(name, "a string or null")
        return value

    def hostname(self, name: str) -> str:
        value = self.text(name)
        if value and (len(value) > 253 or not _HOSTNAME.fullmatch(value)):
            raise self.bad(name, "a hostname (letters, digits and '-' in dot-separated labels)")
        return value

    def integer(self, name: str, default: int = 0) -> int:
        value = self.data.get(name)
        if value is None:
            return default
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise self.bad(name, "an integer")
        return value

    def boolean(self, name: str, default: bool = False) -> bool:
        value = self.data.get(name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise self.bad(name, "true or false")
        return value

    def text_list(self, name: str) -> tuple[str, ...]:
        value = self.data.get(name)
        if value is None:
            return ()
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise self.bad(name, "a list of strings")
        return tuple(value)

    def text_map(self, *names: str) -> dict[str, str]:
        """The first of `names` present: an object of strings (numbers are turned into text)."""
        for name in names:
            value = self.data.get(name)
            if value is None:
                continue
            if not isinstance(value, Mapping) or not all(
                isinstance(v, str | int | float) and not isinstance(v, bool) for v in value.values()
            ):
                raise self.bad(name, "an object of strings")
            if value:
                return {str(k): str(v) for k, v in value.items()}
        return {}

    def name_of(self, name: str) -> str | None:
        """`zone`, `pool` and `domain` are nested objects in MAAS JSON; plain strings pass."""
        value = self.data.get(name)
        if isinstance(value, Mapping):
            value = value.get("name")
        if value is not None and not isinstance(value, str):
            raise self.bad(name, "an object with a string 'name', or a string")
        return value
