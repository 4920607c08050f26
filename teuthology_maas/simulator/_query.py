"""Machine selection: GET machines/ filters (ReadNodesForm) and allocate constraints."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field

from teuthology_maas.models import FAILURE_STATUSES, NodeStatus
from teuthology_maas.simulator._errors import bad_request, form_errors
from teuthology_maas.simulator._records import MachineRecord
from teuthology_maas.simulator.forms import Params

SIMPLE_STATUS: dict[str, frozenset[NodeStatus]] = {
    "allocated": frozenset({NodeStatus.ALLOCATED}),
    "broken": frozenset({NodeStatus.BROKEN}),
    "commissioning": frozenset({NodeStatus.COMMISSIONING}),
    "deployed": frozenset({NodeStatus.DEPLOYED}),
    "deploying": frozenset({NodeStatus.DEPLOYING}),
    "failed": FAILURE_STATUSES,
    "new": frozenset({NodeStatus.NEW}),
    "ready": frozenset({NodeStatus.READY}),
    "releasing": frozenset({NodeStatus.RELEASING, NodeStatus.DISK_ERASING}),
    "rescue_mode": frozenset(
        {NodeStatus.RESCUE_MODE, NodeStatus.ENTERING_RESCUE_MODE, NodeStatus.EXITING_RESCUE_MODE}
    ),
    "testing": frozenset({NodeStatus.TESTING}),
}
SIMPLE_STATUS["other"] = frozenset(NodeStatus) - frozenset().union(*SIMPLE_STATUS.values())

# Filters MAAS knows but the simulator does not model (no networks, no devices): refused
# loudly rather than silently ignored.
UNMODELLED = frozenset(
    {
        "mac_address",
        "fabrics",
        "not_fabrics",
        "fabric_classes",
        "not_fabric_classes",
        "vlans",
        "not_vlans",
        "subnets",
        "not_subnets",
        "link_speed",
        "interfaces",
        "devices",
        "deployment_target",
        "not_deployment_target",
    }
)
LIST_FILTERS = frozenset(
    {
        "id", "not_id", "system_id", "hostname", "not_hostname", "domain", "not_domain",
        "agent_name", "not_agent_name", "zone", "not_in_zone", "pool", "not_in_pool",
        "tags", "not_tags", "status", "not_status", "simple_status", "not_simple_status",
        "owner", "not_owner", "power_state", "not_power_state", "arch", "not_arch",
        "cpu_count", "cpu_speed", "mem", "storage",
    }
)  # fmt: skip
ALLOCATE_CONSTRAINTS = frozenset(
    {
        "name", "system_id", "arch", "not_arch", "cpu_count", "cpu_speed", "mem", "tags",
        "not_tags", "zone", "not_in_zone", "pool", "not_in_pool", "storage", "owner",
        "not_owner", "power_state", "not_power_state",
    }
)  # fmt: skip
ALLOCATE_OPTIONS = frozenset(
    {"agent_name", "comment", "bridge_all", "bridge_type", "bridge_stp", "bridge_fd", "dry_run",
     "verbose"}
)  # fmt: skip
_IGNORED_BY_LIST = frozenset({"op", *ALLOCATE_OPTIONS} - {"agent_name"})


def split_names(values: Iterable[str]) -> list[str]:
    """Tag-style values: repeated keys, and commas or whitespace inside one value."""
    return [name for value in values for name in value.replace(",", " ").split() if name]


@dataclass
class Universe:
    """What exists, for validating names in filters."""

    tags: set[str]
    zones: set[str]
    pools: set[str]
    owners: set[str]
    arches: set[str]  # primary architectures that have boot images


@dataclass
class Predicate:
    tests: list[Callable[[MachineRecord], bool]] = field(default_factory=list)

    def add(self, test: Callable[[MachineRecord], bool]) -> None:
        self.tests.append(test)

    def __call__(self, machine: MachineRecord) -> bool:
        return all(test(machine) for test in self.tests)


def _number(params: Params, name: str, message: str) -> float | None:
    values = [v for v in params.getlist(name) if v != ""]
    if not values:
        return None
    try:
        return min(float(v) for v in values)
    except ValueError:
        raise form_errors({name: [message]}) from None


def _statuses(values: Sequence[str], name: str) -> set[NodeStatus]:
    result: set[NodeStatus] = set()
    for value in values:
        keyword = value.lstrip("=")
        matches = [s for s in NodeStatus if s.keyword == keyword]
        if not matches:
            raise form_errors(
                {name: [f"Select a valid choice. {value} is not one of the available choices."]}
            )
        result.update(matches)
    return result


def _arch_matcher(values: Sequence[str], universe: Universe) -> Callable[[str], bool]:
    wanted: list[str] = []
    for value in values:
        primary = "armhf" if value.split("/", 1)[0] == "arm" else value.split("/", 1)[0]
        if primary not in universe.arches:
            raise form_errors({"arch": ["Architecture not recognised."]})
        wanted.append(value if "/" in value else primary)

    def matches(architecture: str) -> bool:
        return any(w == architecture or w == architecture.split("/", 1)[0] for w in wanted)

    return matches


def _storage_matcher(spec: str) -> Callable[[MachineRecord], bool]:
    sizes: list[float] = []
    for item in (s.strip() for s in spec.split(",") if s.strip()):
        body = item.split(":", 1)[1] if ":" in item else item
        size_text = body.split("(", 1)[0]
        try:
            sizes.append(float(size_text))
        except ValueError:
            raise bad_request(f'Malformed storage constraint, "{spec}".') from None
    # Every simulated machine has a single disk: one requested size at most, and it must fit.
    return lambda m: len(sizes) <= 1 and all(size <= m.storage_gb for size in sizes)


def _membership(
    attr: str, allowed: Collection[object], *, negate: bool
) -> Callable[[MachineRecord], bool]:
    def test(machine: MachineRecord) -> bool:
        return (getattr(machine, attr) in allowed) != negate

    return test


def build_predicate(params: Params, universe: Universe, *, for_allocate: bool) -> Predicate:
    """Translate filters/constraints into a predicate; 400 for unknown names or values."""
    pred = Predicate()
    allowed = ALLOCATE_CONSTRAINTS | ALLOCATE_OPTIONS if for_allocate else LIST_FILTERS
    for name in params.names():
        if name in UNMODELLED:
            raise bad_request(f"The MAAS simulator does not model the '{name}' constraint.")
        if name not in allowed and not (not for_allocate and name in _IGNORED_BY_LIST):
            raise form_errors({name: ["No such constraint."]})

    def values(name: str) -> list[str]:
        return params.getlist(name)

    ids = values("id") + values("system_id")
    if ids:
        pred.add(lambda m: m.system_id in ids)
    if not_ids := values("not_id"):
        pred.add(lambda m: m.system_id not in not_ids)
    if hostnames := values("hostname"):
        pred.add(lambda m: m.hostname in hostnames)
    if not_hostnames := values("not_hostname"):
        pred.add(lambda m: m.hostname not in not_hostnames)
    if names := values("name"):
        # Repeated names are AND-ed by MAAS: more than one distinct name matches nothing.
        def name_matches(m: MachineRecord) -> bool:
            return all(n in (m.hostname, m.fqdn) for n in names)

        pred.add(name_matches)
    if domains := values("domain"):
        pred.add(lambda m: m.domain in domains)
    if not_domains := values("not_domain"):
        pred.add(lambda m: m.domain not in not_domains)
    if not for_allocate and "agent_name" in params:
        agents = values("agent_name")
        pred.add(lambda m: m.agent_name in agents)
    if not_agents := values("not_agent_name"):
        pred.add(lambda m: m.agent_name not in not_agents)
    for key, attr, known, label in (
        ("zone", "zone", universe.zones, "zone(s)"),
        ("pool", "pool", universe.pools, "pool(s)"),
    ):
        negative = "not_in_" + key
        for param in (key, negative):
            chosen = [v for v in values(param) if v]
            if not chosen:
                continue
            missing = [v for v in chosen if v not in known]
            if missing:
                raise form_errors({param: [f"No such {label}: {', '.join(missing)}."]})
            pred.add(_membership(attr, chosen, negate=param != key))
    if tags := split_names(values("tags")):
        missing = [t for t in tags if t not in universe.tags]
        if missing:
            raise form_errors({"tags": [f"No such tag(s): {', '.join(repr(t) for t in missing)}."]})
        pred.add(lambda m: all(t in m.tags for t in tags))
    if not_tags := split_names(values("not_tags")):
        pred.add(lambda m: not any(t in m.tags for t in not_tags))
    if status_values := values("status"):
        wanted = _statuses(status_values, "status")
        pred.add(lambda m: m.status in wanted)
    if not_status_values := values("not_status"):
        unwanted = _statuses(not_status_values, "not_status")
        pred.add(lambda m: m.status not in unwanted)
    for param, negate in (("simple_status", False), ("not_simple_status", True)):
        if chosen := values(param):
            groups: set[NodeStatus] = set()
            for value in chosen:
                if value not in SIMPLE_STATUS:
                    message = f"Select a valid choice. {value} is not one of the available choices."
                    raise form_errors({param: [message]})
                groups |= SIMPLE_STATUS[value]
            pred.add(_membership("status", groups, negate=negate))
    for param, negate in (("owner", False), ("not_owner", True)):
        if owners := [v for v in values(param) if v]:
            for owner in owners:
                if owner not in universe.owners:
                    raise form_errors({param: [f"No such owner: '{owner}'."]})
            pred.add(_membership("owner", owners, negate=negate))
    for param, negate in (("power_state", False), ("not_power_state", True)):
        if states := values(param):
            pred.add(_membership("power_state", states, negate=negate))
    if arches := [v for v in values("arch") if v]:
        arch_ok = _arch_matcher(arches, universe)
        pred.add(lambda m: arch_ok(m.architecture))
    if not_arches := [v for v in values("not_arch") if v]:
        arch_bad = _arch_matcher(not_arches, universe)
        pred.add(lambda m: not arch_bad(m.architecture))
    cpus = _number(params, "cpu_count", "Invalid CPU count: number required.")
    if cpus is not None:
        pred.add(lambda m: m.cpu_count >= cpus)
    speed = _number(params, "cpu_speed", "Invalid CPU speed: number required.")
    if speed is not None:
        pred.add(lambda m: m.cpu_speed >= speed)
    mem = _number(params, "mem", "Invalid memory: number of MiB required.")
    if mem is not None:
        pred.add(lambda m: m.memory >= mem)
    for spec in values("storage"):
        if spec.strip():
            pred.add(_storage_matcher(spec))
    return pred


def no_match_message(params: Params) -> str:
    """allocate's 409 text, which depends on what was asked for."""
    submitted = [(name, vals) for name, vals in params.lists() if name != "op"]
    constraints = [(n, v) for n, v in submitted if n in ALLOCATE_CONSTRAINTS and any(v)]
    if not constraints:
        return "No machine available."
    system_ids = params.getlist("system_id")
    if system_ids:
        return f"No machine with system ID {system_ids[-1]} available."
    resolved = " ".join(f"{n}={','.join(v)}" for n, v in sorted(constraints))
    return f'No available machine matches constraints: {submitted!r} (resolved to "{resolved}")'
