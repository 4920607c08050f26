"""The shipped Ceph-aware release script really removes what BlueStore leaves on a disk, and
`erase: ceph` asks MAAS to run exactly that script with parameters it declares.

The script runs here on a sparse disk image (a regular file: --device accepts one), seeded the
way a Squid-era OSD leaves a disk: label copies at 0, 1, 10, 100 and 1000 GiB, a copy shifted by
a 1 MiB LVM header, and a primary and backup GPT header.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from teuthology_maas.config import MaasConfig
from teuthology_maas.node import erase as _erase

SCRIPT = Path(_erase.__file__).parents[1] / "release_scripts" / _erase.CEPH_WIPE_SCRIPT
MAGIC = b"bluestore block device\n"
GPT = b"EFI PART"
GIB = 1 << 30
MIB = 1 << 20



def _metadata() -> dict:
    text = SCRIPT.read_text()
    start = text.index("# --- Start MAAS 1.0 script metadata ---")
    end = text.index("# --- End MAAS 1.0 script metadata ---")
    lines = text[start:end].splitlines()[1:]
    return yaml.safe_load("\n".join(line.removeprefix("#").removeprefix(" ") for line in lines))


def _image(path: Path, size: int, marks: dict[int, bytes]) -> Path:
    with path.open("wb") as image:
        image.truncate(size)
        for offset, data in marks.items():
            image.seek(offset)
            image.write(data + b"\x5a" * 200)
    return path


def _read(path: Path, offset: int, length: int) -> bytes:
    with path.open("rb") as image:
        image.seek(offset)
        return image.read(length)


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_metadata_declares_a_release_script_named_as_the_provisioner_requests_it():
    meta = _metadata()
    assert meta["name"] == _erase.CEPH_WIPE_SCRIPT
    assert meta["script_type"] == "release"
    params = _erase.release_params("ceph")
    assert _erase.CEPH_WIPE_SCRIPT in params.scripts
    # MAAS maps a form field "<script>_<param>" onto that script's declared parameter.
    for field in params.script_params:
        script, _, param = field.partition("_")
        assert script == _erase.CEPH_WIPE_SCRIPT
        assert param in meta["parameters"], f"{field} names no parameter the script declares"
    assert meta["parameters"]["offsets_gib"]["default"] == params.script_params[
        f"{_erase.CEPH_WIPE_SCRIPT}_offsets_gib"
    ]


def test_erase_ceph_in_the_config_maps_to_the_wipe_script_plus_quick_erase():
    cfg = MaasConfig.from_mapping(
        {"api_url": "http://127.0.0.1:5240/MAAS/", "api_key": "a:b:c", "erase": "ceph"}
    )
    params = _erase.release_params(cfg.erase)
    assert params.quick_erase and params.erases
    assert _erase.CEPH_WIPE_SCRIPT in params.scripts


def test_every_bluestore_label_copy_and_partition_table_is_gone(tmp_path):
    size = 1001 * GIB  # sparse: only the written blocks use space
    label_offsets = [0, GIB, 10 * GIB, 100 * GIB, 1000 * GIB]
    lvm_shifted = [offset + MIB for offset in label_offsets]  # an LV after a 1 MiB PV header
    marks = {offset: MAGIC for offset in label_offsets + lvm_shifted}
    marks[512] = GPT
    marks[size - 512] = GPT
    image = _image(tmp_path / "disk.img", size, marks)

    result = _run(f"--device={image}")

    assert result.returncode == 0, result.stdout + result.stderr
    for offset in label_offsets + lvm_shifted:
        assert MAGIC not in _read(image, offset, 4096), f"label left at {offset}"
    assert GPT not in _read(image, 0, 4096)
    assert GPT not in _read(image, size - 4096, 4096)
    assert "no BlueStore label left" in result.stdout
    assert image.stat().st_size == size  # wiped in place, never truncated


def test_quick_erase_alone_would_have_left_the_copies(tmp_path):
    """What MAAS's quick erase does (zero the first and last 2 MiB) leaves four label copies:
    the reason this mode exists."""
    size = 101 * GIB
    image = _image(tmp_path / "disk.img", size, {0: MAGIC, GIB: MAGIC, 10 * GIB: MAGIC})
    with image.open("r+b") as disk:
        disk.write(b"\0" * 2 * MIB)
        disk.seek(size - 2 * MIB)
        disk.write(b"\0" * 2 * MIB)
    assert MAGIC in _read(image, GIB, 4096) and MAGIC in _read(image, 10 * GIB, 4096)
    assert _run(f"--device={image}").returncode == 0
    assert MAGIC not in _read(image, GIB, 4096) and MAGIC not in _read(image, 10 * GIB, 4096)


def test_a_small_disk_is_wiped_where_it_has_room_and_custom_offsets_are_honoured(tmp_path):
    small = _image(tmp_path / "small.img", 3 * GIB, {0: MAGIC, GIB: MAGIC, 2 * GIB: MAGIC})
    result = _run(f"--device={small}", "--offsets-gib=0,1,2")
    assert result.returncode == 0, result.stderr
    assert all(MAGIC not in _read(small, o, 4096) for o in (0, GIB, 2 * GIB))
    assert small.stat().st_size == 3 * GIB


def test_data_between_the_label_windows_is_left_alone(tmp_path):
    """It is a targeted wipe, not a full one: 4 MiB per offset, nothing else."""
    payload = b"journal data that is not a label"
    image = _image(tmp_path / "disk.img", 2 * GIB, {0: MAGIC, 512 * MIB: payload})
    assert _run(f"--device={image}").returncode == 0
    assert payload in _read(image, 512 * MIB, 4096)


@pytest.mark.parametrize(
    ("argument", "complaint"),
    [
        ("--offsets-gib=0,one", "comma-separated whole GiB"),
        ("--offsets-gib=", "comma-separated whole GiB"),
        ("--window-mib=0", "positive integer"),
        ("--bogus", "unknown argument '--bogus'"),
    ],
)
def test_bad_parameters_are_refused_before_anything_is_written(tmp_path, argument, complaint):
    image = _image(tmp_path / "disk.img", 2 * GIB, {0: MAGIC})
    result = _run(f"--device={image}", argument)
    assert result.returncode == 2
    assert complaint in result.stderr
    assert MAGIC in _read(image, 0, 4096)
