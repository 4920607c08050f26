"""What MAAS 3.7's deploy and allocate ops read from their form before touching the machine.

`allocation_options` runs right after the permission check, before any state check: a bad
`bridge_type`, a non-integer `bridge_fd` or a non-boolean flag is a 400 even on a machine that
could not be deployed anyway. The `bridge_type` error is the choice text MAAS composes for a
form field, which the API raises without filling in the value (hence the literal `%(value)s`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from teuthology_maas.simulator._errors import JSON, ApiError, bad_request, forbidden
from teuthology_maas.simulator.forms import Params

BRIDGE_TYPES = ("standard", "ovs")
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0")


def string_bool(params: Params, name: str, default: bool = False) -> bool:
    """formencode StringBool, used by deploy/allocate options."""
    value = params.get(name)
    if value is None or value == "":
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise bad_request(f"Invalid {name}: Value should be 'true' or 'false'")


def _integer(params: Params, name: str) -> int:
    """formencode Int: an empty value is no value; anything but an integer is a 400."""
    value = params.get(name)
    if value is None or value.strip() == "":
        return 0
    try:
        return int(value.strip())
    except ValueError:
        raise bad_request(f"Invalid {name}: Please enter an integer value") from None


@dataclass(frozen=True)
class AllocationOptions:
    agent_name: str
    comment: str
    bridge_all: bool
    bridge_type: str
    bridge_stp: bool
    bridge_fd: int
    install_rackd: bool
    install_kvm: bool
    register_vmhost: bool
    ephemeral_deploy: bool
    enable_hw_sync: bool


def allocation_options(form: Params) -> AllocationOptions:
    """Parse and check the options allocate and deploy share, in MAAS's order."""
    install_rackd = string_bool(form, "install_rackd")
    install_kvm = string_bool(form, "install_kvm")
    register_vmhost = string_bool(form, "register_vmhost")
    ephemeral = string_bool(form, "ephemeral_deploy")
    bridge_all = string_bool(
        form, "bridge_all", default=(install_kvm or register_vmhost) and not ephemeral
    )
    bridge_type = form.get("bridge_type")
    if bridge_type is None:
        bridge_type = "standard"
    if bridge_type not in BRIDGE_TYPES:
        choices = ", ".join(f"'{t}'" for t in BRIDGE_TYPES)
        message = f"'%(value)s' is not a valid bridge_type.  It should be one of: {choices}."
        raise ApiError(400, json.dumps({"bridge_type": [message]}), content_type=JSON)
    bridge_stp = string_bool(form, "bridge_stp")
    bridge_fd = _integer(form, "bridge_fd")
    enable_hw_sync = string_bool(form, "enable_hw_sync")
    return AllocationOptions(
        agent_name=form.get("agent_name") or "",
        comment=form.get("comment") or "",
        bridge_all=bridge_all,
        bridge_type=bridge_type,
        bridge_stp=bridge_stp,
        bridge_fd=bridge_fd,
        install_rackd=install_rackd,
        install_kvm=install_kvm,
        register_vmhost=register_vmhost,
        ephemeral_deploy=ephemeral,
        enable_hw_sync=enable_hw_sync,
    )


def check_vm_host_options(options: AllocationOptions, *, is_admin: bool) -> None:
    """Deploy's refusals of the VM-host and rack options (MAAS 3.7)."""
    if options.install_rackd:
        raise bad_request(
            "Deploying a machine as a rackd has been disabled and it's not supported anymore."
        )
    vm_host = options.install_kvm or options.register_vmhost
    if vm_host and not is_admin:
        raise forbidden("Only administratros can deploy VM hosts")
    if vm_host and options.ephemeral_deploy:
        raise bad_request("A machine can not be a VM host if it is deployed to memory.")
