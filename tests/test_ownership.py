"""Deployment tokens (node/ownership.py): the stamp, the comment tags, and who may act on whose
deployment; and the paddles reader's unlock rules. No I/O but a loopback paddles double."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from teuthology_maas.models import Machine
from teuthology_maas.node.ownership import (
    TOKEN_KEY,
    Authority,
    Holder,
    LockHolder,
    Stamp,
    Tag,
    comment_actor,
    judge,
    parse_tag,
    this_host,
)
from teuthology_maas.testing.lockserver import LockServer
from teuthology_maas.teuthology.paddles import PaddlesNode, PaddlesReader, unlock_refusal

LOCK = LockHolder("scheduled_alice@ctl", "/archive/alice-run/7")


def machine_with(owner_data: dict[str, str]) -> Machine:
    return Machine.from_json(
        {"system_id": "abc123", "hostname": "smithi001", "status": 6, "owner": "teuthology",
         "owner_data": owner_data}
    )  # fmt: skip


def stamp(**fields: object) -> Stamp:
    defaults: dict[str, object] = {"owner": LOCK.locked_by, "lock": LOCK.description}
    return Stamp.new(**{**defaults, **fields})  # type: ignore[arg-type]


def dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_a_stamp_round_trips_through_owner_data_and_says_whose_it_is():
    made = Stamp.new(owner="bob@ctl", run="run-1", job="7", lock="/a/run-1/7",
                     os_name="ubuntu 22.04", agent="teuthology-maas")  # fmt: skip
    data = made.owner_data()
    read = Stamp.read(machine_with({k: v for k, v in data.items() if v}))
    assert read == made
    assert read.applied_to(machine_with(data))
    assert (read.pid, read.host) == (os.getpid(), this_host())
    text = read.describe()
    for part in (made.token[:12], "owner bob@ctl", "run run-1", "job 7", "paddles lock /a/run-1/7",
                 f"pid {os.getpid()} on host {this_host()}"):
        assert part in text, text
    assert Stamp.read(machine_with({"teuthology_owner": "old"})) is None  # no token: no stamp


def test_a_stamp_clears_the_keys_an_earlier_stamp_left():
    """set_owner_data deletes a key sent empty: a stamp without a job removes an old job."""
    data = Stamp.new(owner="bob@ctl").owner_data()
    assert data["teuthology_job"] == "" and data[TOKEN_KEY]


@pytest.mark.parametrize("kind", ["deployment", "request"])
def test_tags_ride_in_comments_and_are_read_back_from_events(kind):
    tag = Tag("0123456789abcdef" * 2, 4242, "ctl2", kind)
    comment = f"teuthology-maas abort before release for alice@ctl run r job 7 {tag.text()}"
    assert parse_tag(comment) == tag
    assert parse_tag(comment).deployment is (kind == "deployment")
    assert comment_actor(comment) == ("abort before release", "alice@ctl run r job 7")
    assert parse_tag("aborted from the UI") is None and comment_actor("by hand") is None


def test_judging_who_may_act_on_a_deployment():
    mine, other, old = stamp(), stamp(), stamp(lock="/old/1")
    live = {mine.token, other.token, old.token}  # attempts still running in this process
    ours, theirs, none = Holder(stamp=mine), Holder(stamp=other), Holder()

    def allowed(holder: Holder, authority: Authority) -> bool:
        return judge(holder, authority, running=live).allowed

    assert allowed(none, Authority())  # no token: an older version, or by hand
    assert allowed(ours, Authority(tokens=frozenset({mine.token})))
    refused = judge(theirs, Authority(tokens=frozenset({mine.token})), running=live)
    assert not refused.allowed and refused.token == other.token
    # teuthology's unlock for the lock the deployment was made under; not for another lock
    assert allowed(theirs, Authority(lock=LOCK))
    assert not allowed(theirs, Authority(lock=LockHolder(LOCK.locked_by, "/archive/other/8")))
    # a create() of the job paddles says holds the node may take over any deployment
    assert allowed(Holder(stamp=old), Authority(lock=LOCK, claim=True))
    assert not allowed(Holder(stamp=old), Authority(lock=LOCK))
    assert allowed(theirs, Authority(operator=True))
    # reconcile: exactly what it saw, nothing else (not even an unstamped machine)
    assert allowed(theirs, Authority.exactly(other.token))
    assert not allowed(theirs, Authority.exactly(None))
    assert not allowed(none, Authority.exactly(other.token))


def test_a_deployment_whose_process_has_ended_may_be_taken_over_and_only_that():
    running = stamp()
    assert not judge(Holder(stamp=running), Authority(), running={running.token}).allowed
    # this process, attempt finished
    assert judge(Holder(stamp=running), Authority(), running=set()).allowed
    gone = Stamp(token="ab" * 16, pid=dead_pid(), host=this_host())
    assert judge(Holder(stamp=gone), Authority()).allowed
    elsewhere = Stamp(token="cd" * 16, pid=dead_pid(), host="another-host")
    assert not judge(Holder(stamp=elsewhere), Authority()).allowed  # cannot tell: in use
    alive = Stamp(token="ef" * 16, pid=os.getppid(), host=this_host())
    assert not judge(Holder(stamp=alive), Authority()).allowed
    # known only from MAAS's events (allocated, not yet stamped): the same rules
    acquired = Holder(acquired=Tag("12" * 16, os.getppid(), this_host()))
    assert acquired.token == "12" * 16 and not judge(acquired, Authority()).allowed


@pytest.mark.parametrize(
    ("node", "user", "description", "refusal"),
    [
        (("alice", "/a/1"), "alice", "/a/1", None),
        (("alice", "/a/1"), "alice", None, None),
        (("alice", "/a/1"), "alice", "", None),
        (("alice", "/a/1"), "bob", "/a/1", "locked_by values must match"),
        (("alice", "/a/1"), "alice", "/a/2", "description values must match"),
        (None, "alice", None, "already-unlocked"),
        (("alice", "/a/1"), "", None, "without specifying locked_by"),
    ],
)
def test_paddles_unlock_rules(node, user, description, refusal):
    record = PaddlesNode("smithi001.lab", "smithi", node is not None,
                         node[0] if node else None, node[1] if node else None)  # fmt: skip
    found = unlock_refusal(record, user, description)
    assert (found is None) if refusal is None else (refusal in found)


def test_the_paddles_reader_quotes_node_names_into_one_path_segment():
    record = {"name": "smithi001.lab.test", "machine_type": "smithi", "locked": True,
              "locked_by": "alice", "description": "/a/1"}  # fmt: skip
    paddles = LockServer([record])
    with paddles.serve() as served, PaddlesReader(served.url + "//") as reader:
        node = reader.node("smithi001.lab.test")
        assert (node.locked, node.locked_by, node.description, node.hostname) == (
            True, "alice", "/a/1", "smithi001")  # fmt: skip
        with pytest.raises(Exception) as info:
            reader.node("../nodes/x?locked=1")
        assert "nodes/..%2Fnodes%2Fx%3Flocked%3D1/" in str(info.value)
        assert [n.name for n in reader.nodes(["smithi"])] == ["smithi001.lab.test"]
    paths = [r.path for r in paddles.requests_to("GET", r"/nodes/.*")]
    assert all("//" not in p for p in paths), paths
