"""The host store: what processes of one host share, and what it refuses to believe."""

from __future__ import annotations

import json
import logging
import multiprocessing
import os

from teuthology_maas.fleet.store import MAX_SAMPLES, HostStore

URL = "http://maas.example:5240/MAAS/api/2.0/"
KEY = "consumerkey123"


def test_answers_round_trip_and_no_key_is_written(tmp_path):
    store = HostStore(tmp_path / "s" / "host-store.json")
    store.save_username(URL, KEY, "teuthology")
    store.save_images(URL, KEY, [{"id": 1, "name": "ubuntu/jammy", "architecture": "amd64/ga"}])
    store.add_sample(URL, KEY, "deploy smithi ubuntu/jammy",
                     {"total": [500.0, 510.0], "seen": {"Rebooting": [400.0, 420.0]}})
    again = HostStore(tmp_path / "s" / "host-store.json")  # another process, in effect
    assert again.username(URL, KEY) == "teuthology"
    assert again.images(URL, KEY)[0]["name"] == "ubuntu/jammy"
    assert again.samples(URL, KEY)["deploy smithi ubuntu/jammy"][0]["total"] == [500.0, 510.0]
    assert again.username(URL, "another-key") is None
    text = (tmp_path / "s" / "host-store.json").read_text()
    assert KEY not in text and URL not in text
    assert oct(os.stat(tmp_path / "s" / "host-store.json").st_mode & 0o777) == "0o600"


def test_answers_expire(tmp_path):
    now = [1000.0]
    store = HostStore(tmp_path / "h.json", clock=lambda: now[0])
    store.save_images(URL, KEY, [{"id": 1, "name": "ubuntu/jammy"}])
    now[0] += 601
    assert store.images(URL, KEY) is None


def test_a_corrupt_or_hostile_file_is_ignored_with_a_warning(tmp_path, caplog):
    path = tmp_path / "h.json"
    for content in ("{not json", json.dumps({"version": 1, "endpoints": []}),
                    json.dumps({"version": 99}), "[" * 100000):
        path.write_text(content)
        os.chmod(path, 0o600)
        with caplog.at_level(logging.WARNING, logger="teuthology_maas.fleet"):
            assert HostStore(path).username(URL, KEY) is None
        assert "ignoring the host store" in caplog.text
        caplog.clear()
    # well formed, but writable by others: anyone could have put another user name in it
    good = HostStore(path)
    path.unlink()
    good.save_username(URL, KEY, "teuthology")
    os.chmod(path, 0o666)
    with caplog.at_level(logging.WARNING, logger="teuthology_maas.fleet"):
        assert HostStore(path).username(URL, KEY) is None
    assert "others may write it" in caplog.text


def test_bad_values_are_left_out(tmp_path):
    path = tmp_path / "h.json"
    store = HostStore(path)
    store.save_username(URL, KEY, "teuthology")
    document = json.loads(path.read_text())
    (entry,) = document["endpoints"].values()
    entry["whoami"]["username"] = "evil; rm -rf /"
    entry["durations"] = {"deploy": [{"total": [5, 1], "seen": {}}, {"total": [1, 2], "seen": {}},
                                     {"total": ["x", 2], "seen": {}}]}
    path.write_text(json.dumps(document))
    assert store.username(URL, KEY) is None
    assert store.samples(URL, KEY) == {"deploy": [{"total": [1.0, 2.0], "seen": {}}]}


def test_samples_are_bounded(tmp_path):
    store = HostStore(tmp_path / "h.json")
    for i in range(MAX_SAMPLES + 10):
        store.add_sample(URL, KEY, "release", {"total": [float(i), i + 1.0], "seen": {}})
    samples = store.samples(URL, KEY)["release"]
    assert len(samples) == MAX_SAMPLES
    assert samples[-1]["total"] == [MAX_SAMPLES + 9.0, MAX_SAMPLES + 10.0]


def _writer(path: str, kind: str) -> None:
    store = HostStore(path)
    for i in range(10):
        store.add_sample(URL, KEY, kind, {"total": [float(i), i + 1.0], "seen": {}})


def test_concurrent_writers_in_several_processes_lose_nothing(tmp_path):
    path = str(tmp_path / "h.json")
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_writer, args=(path, f"kind{n}")) for n in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    samples = HostStore(path).samples(URL, KEY)
    assert sorted(samples) == [f"kind{n}" for n in range(4)]
    assert all(len(items) == 10 for items in samples.values())


def test_an_unwritable_store_costs_only_the_saving(tmp_path):
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the directory should be")
    store = HostStore(blocked / "h.json")
    store.save_username(URL, KEY, "teuthology")  # no exception
    assert store.username(URL, KEY) is None


def test_a_new_process_endpoint_asks_maas_neither_whoami_nor_the_images(maas_sim):
    from teuthology_maas.endpoint import Endpoint

    cfg = maas_sim.config()  # host_store: true, under this test's own XDG_CACHE_HOME
    first = Endpoint.from_config(cfg)
    assert first.username() == "teuthology"
    assert first.images.boot_resources()
    before = len(maas_sim.sim.request_log)
    second = Endpoint.from_config(cfg)  # what a new supervisor process makes
    assert second.username() == "teuthology"
    assert second.images.boot_resources()
    assert maas_sim.sim.request_log[before:] == []
    second.images.forget()  # an image missing from the copy: MAAS is asked after all
    second.images.boot_resources()
    assert [r.path for r in maas_sim.sim.request_log[before:]][-1].endswith("boot-resources/")
    first.close()
    second.close()


def test_many_greenlets_save_at_once_under_gevent(tmp_path):
    """flock blocks a whole gevent process: greenlets of one process must never wait for it
    behind each other (they take a cooperative lock first)."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        from gevent import monkey
        monkey.patch_all()
        import gevent, logging
        logging.basicConfig(level=logging.DEBUG)
        from teuthology_maas.fleet.store import HostStore
        path = {str(tmp_path / "h.json")!r}
        def save(n):
            store = HostStore(path)
            for i in range(5):
                store.add_sample("u", "k", f"kind{{n}}", {{"total": [1.0, 2.0], "seen": {{}}}})
                gevent.sleep(0)
        gevent.joinall([gevent.spawn(save, n) for n in range(20)], timeout=60,
                       raise_error=True)
        print(sorted(len(v) for v in HostStore(path).samples("u", "k").values()))
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == str([5] * 20)


def test_the_host_shares_poller_starts_with_the_stores_timings_and_saves_what_it_learns(
    tmp_path,
):
    """With host sharing the poller that polls for the host is the HostShare's (the leader's),
    not the Endpoint's in-process one: it gets the same learned timings and saving."""
    from teuthology_maas.config import MaasConfig
    from teuthology_maas.endpoint import endpoint_for
    from teuthology_maas.fleet.estimate import Bracket
    from teuthology_maas.fleet.hostshare import HostShare

    cfg = MaasConfig.from_mapping({
        "api_url": URL, "api_key": f"{KEY}:tok:secret", "machine_types": ["smithi"],
        "host_sharing": True, "host_sharing_dir": str(tmp_path / "share"),
        "host_store": str(tmp_path / "store.json"),
    })  # fmt: skip
    store = HostStore(tmp_path / "store.json")
    store.add_sample(URL, KEY, "deploy smithi ubuntu/jammy",
                     {"total": [500.0, 510.0], "seen": {"Rebooting": [400.0, 420.0]}})  # fmt: skip
    endpoint = endpoint_for(cfg)
    try:
        share = endpoint.status_poller(cfg)
        assert isinstance(share, HostShare)
        assert share.poller.history.total("deploy smithi ubuntu/jammy") == (500.0, 510.0)
        assert share.poller.on_learn is not None
        share.poller.on_learn("release", Bracket(20.0, 21.0), {})
    finally:
        endpoint.close()
    assert HostStore(tmp_path / "store.json").samples(URL, KEY)["release"][0]["total"] == [
        20.0, 21.0
    ]  # fmt: skip
