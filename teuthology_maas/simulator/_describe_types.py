"""The building blocks of the describe document: handlers and their actions."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

API_PREFIX = "/MAAS/api/2.0/"


@dataclass(frozen=True)
class Action:
    name: str
    method: str
    doc: str
    params: tuple[tuple[str, str, str], ...] = ()  # (name, type, description)
    restful: bool = False

    def to_json(self) -> dict[str, Any]:
        text = self.doc + "\n"
        for name, kind, description in self.params:
            text += f"\n:param {name}: {description}\n:type {name}: {kind}\n"
        return {
            "name": self.name,
            "method": self.method,
            "op": None if self.restful else self.name,
            "restful": self.restful,
            "doc": text,
        }


def crud(name: str, doc: str, *params: tuple[str, str, str]) -> Action:
    method = {"read": "GET", "create": "POST", "update": "PUT", "delete": "DELETE"}[name]
    return Action(name, method, doc, params, restful=True)


@dataclass(frozen=True)
class Handler:
    name: str
    doc: str
    path: str  # below the API prefix, with {placeholders}
    actions: tuple[Action, ...]

    @property
    def params(self) -> list[str]:
        return [part[1:-1] for part in self.path.split("/") if part.startswith("{")]

    def to_json(self, base_url: str) -> dict[str, Any]:
        return {
            "name": self.name,
            "doc": self.doc,
            "path": API_PREFIX + self.path,
            "uri": base_url + API_PREFIX + self.path,
            "params": self.params,
            "actions": [a.to_json() for a in sorted(self.actions, key=lambda a: a.name)],
        }
