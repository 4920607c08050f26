"""A machine's network interfaces and their subnet links, as MAAS 3.7's interface API edits them.

Each VLAN id `vid` has one subnet, `10.<vid>.0.0/16` (id `vid + 1`). Commissioning links every
interface to its VLAN's subnet as its inventory entry says (`auto` by default). A bond takes its
MAC and VLAN from its first parent; creating it clears the parents' links and leaves the bond
with a bare `link_up`, so it needs `link_subnet` before the machine can deploy. Deleting a bond
does not give the parents their links back. Forms answer MAAS's field errors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from teuthology_maas.simulator._errors import form_errors
from teuthology_maas.simulator._inventory_parts import InterfaceSpec
from teuthology_maas.simulator.forms import Params

API = "/MAAS/api/2.0/"
BOND_MODES = (
    "balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb",
    "balance-alb",
)  # fmt: skip
LACP_RATES = ("fast", "slow")
XMIT_HASH_POLICIES = ("layer2", "layer2+3", "layer3+4", "encap2+3", "encap3+4")
LINK_MODES = ("auto", "dhcp", "static", "link_up")
# (field, minimum, maximum, default when a bond is created)
_BOND_NUMBERS = (
    ("bond_miimon", 0, None, 100),
    ("bond_downdelay", 0, None, 0),
    ("bond_updelay", 0, None, 0),
    ("bond_num_grat_arp", 0, 255, 1),
)
_BOND_CHOICES = (
    ("bond_mode", BOND_MODES),
    ("bond_lacp_rate", LACP_RATES),
    ("bond_xmit_hash_policy", XMIT_HASH_POLICIES),
)
_IP_MODES = ("auto", "dhcp", "static")


@dataclass
class Link:
    id: int
    mode: str
    vid: int | None  # the subnet's VLAN; None: no subnet
    ip: str | None = None


@dataclass
class Nic:
    id: int
    name: str
    type: str
    mac: str
    vid: int
    parents: list[str] = field(default_factory=list)
    links: list[Link] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)


def subnet_json(vid: int) -> dict[str, Any]:
    return {
        "id": vid + 1,
        "name": f"10.{vid}.0.0/16",
        "cidr": f"10.{vid}.0.0/16",
        "vlan": vlan_json(vid),
        "gateway_ip": f"10.{vid}.0.1",
        "dns_servers": [],
        "managed": True,
        "space": "undefined",
        "resource_uri": f"{API}subnets/{vid + 1}/",
    }


def vlan_json(vid: int) -> dict[str, Any]:
    return {
        "vid": vid,
        "mtu": 1500,
        "dhcp_on": vid == 0,
        "external_dhcp": None,
        "relay_vlan": None,
        "fabric": "fabric-0",
        "fabric_id": 0,
        "primary_rack": "rack01",
        "secondary_rack": None,
        "space": "undefined",
        "id": 5001 + vid,
        "name": "untagged" if vid == 0 else str(vid),
        "resource_uri": f"{API}vlans/{5001 + vid}/",
    }


class Interfaces:
    """The interfaces of one machine."""

    def __init__(self, index: int, specs: tuple[InterfaceSpec, ...], default_mac: str) -> None:
        self.index = index
        self._next = index * 1000
        self.nics: list[Nic] = []
        for n, spec in enumerate(specs or (InterfaceSpec("eno1", default_mac),)):
            mac = spec.mac_address or (default_mac if n == 0 else _mac(index, n))
            nic = Nic(self._id(), spec.name, "physical", mac, spec.vid)
            nic.links.append(self._link(spec.link, spec.vid, None))
            self.nics.append(nic)

    def _id(self) -> int:
        self._next += 1
        return self._next

    def _link(self, mode: str, vid: int | None, ip: str | None) -> Link:
        if mode == "static" and ip is None and vid is not None:
            ip = f"10.{vid}.{100 + self.index // 250}.{self.index % 250 + 2}"
        return Link(self._id(), mode, vid, ip)

    @property
    def boot(self) -> Nic:
        return next(n for n in self.nics if n.type == "physical")

    def find(self, ident: str) -> Nic | None:
        return next((n for n in self.nics if str(n.id) == ident), None)

    def children(self, nic: Nic) -> list[Nic]:
        return [n for n in self.nics if nic.name in n.parents]

    def has_address(self) -> bool:
        """Whether some link gives the machine an address (MAAS refuses to deploy without)."""
        return any(link.mode in _IP_MODES for nic in self.nics for link in nic.links)

    # -- create_bond --------------------------------------------------------------------------

    def create_bond(self, form: Params, node: str) -> Nic:
        errors: dict[str, list[str]] = {}
        name = form.get("name") or ""
        if not name:
            errors["name"] = ["This field is required."]
        elif any(n.name == name for n in self.nics):
            errors["name"] = [f"Node {node} already has an interface named '{name}'."]
        parents = self._parents(form.getlist("parents"), errors)
        params = self._bond_params(form, errors)
        mtu = _integer(form.get("mtu"), "mtu", 552, None, errors)
        if parents is not None and "parents" not in errors:
            busy = sorted(p.name for p in parents if self.children(p))
            if busy:
                errors["parents"] = [f"Interfaces already in-use: {', '.join(busy)}."]
            elif len({p.vid for p in parents}) > 1:
                errors["parents"] = ["All parents must belong to the same VLAN."]
        if errors:
            raise form_errors(errors)
        assert parents is not None
        if mtu is not None:
            params["mtu"] = mtu
        tags = [t.strip() for t in (form.get("tags") or "").split(",") if t.strip()]
        first = parents[0]
        bond = Nic(
            self._id(),
            name,
            "bond",
            (form.get("mac_address") or first.mac).lower(),
            first.vid,
            [p.name for p in parents],
            [],
            params,
            tags,
        )
        for parent in parents:
            parent.links.clear()  # MAAS clears the parents' links when they join a bond
        bond.links.append(self._link("link_up", None, None))
        self.nics.append(bond)
        return bond

    def _parents(self, values: list[str], errors: dict[str, list[str]]) -> list[Nic] | None:
        found = []
        for value in values:
            if not value.strip().isdigit():
                errors["parents"] = [f"“{value}” is not a valid value."]
                return None
            nic = self.find(value.strip())
            if nic is None:
                errors["parents"] = [
                    f"Select a valid choice. {value} is not one of the available choices."
                ]
                return None
            if nic not in found:
                found.append(nic)
        if not found:
            errors["parents"] = ["A bond interface must have one or more parents."]
            return None
        return found

    @staticmethod
    def _bond_params(form: Params, errors: dict[str, list[str]]) -> dict[str, Any]:
        params: dict[str, Any] = {}
        for name, choices in _BOND_CHOICES:
            value = form.get(name)
            if value and value not in choices:
                listed = ", ".join(f"'{c}'" for c in choices)
                errors[name] = [f"'{value}' is not a valid {name}.  It should be one of: {listed}."]
            params[name] = value or choices[0]
        for name, low, high, default in _BOND_NUMBERS:
            number = _integer(form.get(name), name, low, high, errors)
            params[name] = default if number is None else number
        return params

    # -- link_subnet and delete ---------------------------------------------------------------

    def link_subnet(self, nic: Nic, form: Params) -> Nic:
        errors: dict[str, list[str]] = {}
        for child in self.children(nic):
            if child.type == "bond":
                errors["bond"] = [
                    f"Cannot link interface({nic.name}) when interface is in a bond({child.name})."
                ]
        mode = (form.get("mode") or "").lower()
        force = (form.get("force") or "").lower() in ("true", "yes", "on", "1")
        if not mode:
            errors["mode"] = ["This field is required."]
        elif mode not in LINK_MODES:
            listed = ", ".join(f"'{m}'" for m in LINK_MODES)
            errors["mode"] = [f"'{mode}' is not a valid mode.  It should be one of: {listed}."]
        vid = self._subnet(form.get("subnet"), nic, force, errors)
        if mode in ("auto", "static") and vid is None and "subnet" not in errors:
            errors["subnet"] = ["This field is required."]
        if mode == "dhcp" and any(link.mode == "dhcp" for link in nic.links):
            errors["mode"] = ["Interface is already set to DHCP."]
        if mode == "link_up" and any(link.mode in _IP_MODES for link in nic.links) and not force:
            errors["mode"] = [
                "Cannot configure interface to link up (with no IP address) while other "
                "links are already configured. Specify force=True to override this behavior "
                "and delete all links."
            ]
        if errors:
            raise form_errors(errors)
        if mode == "link_up":
            nic.links.clear()
        else:
            nic.links[:] = [link for link in nic.links if link.mode != "link_up"]
        nic.links.append(self._link(mode, vid, form.get("ip_address") or None))
        return nic

    @staticmethod
    def _subnet(
        value: str | None, nic: Nic, force: bool, errors: dict[str, list[str]]
    ) -> int | None:
        if not value:
            return None
        text = value.strip()
        if text.startswith("cidr:"):
            text = text[len("cidr:") :]
        vid = None
        if text.isdigit() and int(text) >= 1:
            vid = int(text) - 1
        elif text.startswith("10.") and text.endswith(".0.0/16"):
            middle = text[len("10.") : -len(".0.0/16")]
            vid = int(middle) if middle.isdigit() else None
        if vid is None or (vid != nic.vid and not force):
            errors["subnet"] = [
                "Select a valid choice. That choice is not one of the available choices."
            ]
            return None
        return vid

    def delete(self, nic: Nic) -> None:
        """Delete `nic`; children left without a parent go too (MAAS's pre-delete signal)."""
        for child in self.children(nic):
            child.parents.remove(nic.name)
            if not child.parents:
                self.delete(child)
        self.nics.remove(nic)

    # -- rendering ----------------------------------------------------------------------------

    def json(self, system_id: str, nic: Nic) -> dict[str, Any]:
        links = []
        for link in nic.links:
            item: dict[str, Any] = {"id": link.id, "mode": link.mode}
            if link.ip:
                item["ip_address"] = link.ip
            if link.vid is not None:
                item["subnet"] = subnet_json(link.vid)
            links.append(item)
        physical = nic.type == "physical"
        return {
            "system_id": system_id,
            "id": nic.id,
            "name": nic.name,
            "type": nic.type,
            "vlan": vlan_json(nic.vid),
            "mac_address": nic.mac,
            "parents": list(nic.parents),
            "children": [c.name for c in self.children(nic)],
            "tags": list(nic.tags),
            "enabled": True,
            "links": links,
            "params": dict(nic.params) if nic.params else "",
            "discovered": None,
            "effective_mtu": int(nic.params.get("mtu", 1500)),
            "vendor": "Intel Corporation" if physical else None,
            "product": "Ethernet Controller X710" if physical else None,
            "firmware_version": "8.30" if physical else None,
            "link_connected": True,
            "interface_speed": 10000 if physical else 0,
            "link_speed": 10000 if physical else 0,
            "numa_node": 0,
            "sriov_max_vf": 0,
            "resource_uri": f"{API}nodes/{system_id}/interfaces/{nic.id}/",
        }

    def all_json(self, system_id: str) -> list[dict[str, Any]]:
        return [self.json(system_id, nic) for nic in self.nics]


def _integer(
    value: str | None, name: str, low: int, high: int | None, errors: dict[str, list[str]]
) -> int | None:
    if value is None or value.strip() == "":
        return None
    try:
        number = int(value.strip())
    except ValueError:
        errors[name] = ["Enter a whole number."]
        return None
    if number < low:
        errors[name] = [f"Ensure this value is greater than or equal to {low}."]
    elif high is not None and number > high:
        errors[name] = [f"Ensure this value is less than or equal to {high}."]
    return number


def _mac(index: int, n: int) -> str:
    return f"52:54:{n:02x}:{(index >> 16) & 0xFF:02x}:{(index >> 8) & 0xFF:02x}:{index & 0xFF:02x}"
