"""Parsing and checking of single `maas:` values. Every failure names the key, shows the value
(bounded in depth and length, and redacted: see `redact.excerpt`) and says what was expected."""

from __future__ import annotations

import logging
import os
import re
import string
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

from teuthology_maas.errors import ConfigError
from teuthology_maas.redact import excerpt

# Warnings are the configuration's, whichever helper finds the problem.
log = logging.getLogger("teuthology_maas.config")


EraseMode = Literal["none", "quick", "full", "secure", "ceph"]
ERASE_MODES: tuple[EraseMode, ...] = ("none", "quick", "full", "secure", "ceph")
_ERASE_ALIASES: dict[str, EraseMode] = {"off": "none", "false": "none", "no": "none"}

_TRUE = {"true", "yes", "on", "1"}
_FALSE = {"false", "no", "off", "0"}


class Shown(str):
    """A description to print instead of a value (a secret, a type): shown without quotes."""


def fail(key: str, value: Any, expected: str) -> ConfigError:
    shown = value if isinstance(value, Shown) else excerpt(value)
    where = "maas" if key == "maas" else f"maas: {key}"
    return ConfigError(f"{where}: got {shown}; expected {expected}", key=key)


def number(key: str, value: Any, *, minimum: float = 0.0, allow_zero: bool = False) -> float:
    """A positive number of seconds (YAML int/float, or a numeric string)."""
    if isinstance(value, bool):
        raise fail(key, value, "a number of seconds")
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            raise fail(key, value, "a number of seconds") from None
    if not isinstance(value, int | float) or value != value:  # NaN is not a duration
        raise fail(key, value, "a number of seconds")
    result = float(value)
    if result < minimum or (result == 0 and not allow_zero):
        bound = f">= {minimum:g}" if allow_zero or minimum > 0 else "> 0"
        raise fail(key, value, f"a number of seconds {bound}")
    return result


def integer(key: str, value: Any, *, minimum: int) -> int:
    if isinstance(value, bool):
        raise fail(key, value, f"an integer >= {minimum}")
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise fail(key, value, f"an integer >= {minimum}") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < minimum:
        raise fail(key, value, f"an integer >= {minimum}")
    return value


_SIZE = re.compile(r"(\d+)\s*([KMG]i?B?|B)?", re.IGNORECASE)
_SIZE_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30}


def byte_size(key: str, value: Any, *, minimum: int) -> int:
    """A size in bytes: an integer, or a string such as `64MiB`, `512 KiB`, `1G`."""
    expected = f"a size in bytes >= {minimum} (an integer, or e.g. 64MiB, 1GiB)"
    if isinstance(value, str):
        match = _SIZE.fullmatch(value.strip())
        if match is None:
            raise fail(key, value, expected)
        unit = (match.group(2) or "").upper()[:1]
        size = int(match.group(1)) * _SIZE_UNITS[unit]
    elif isinstance(value, int) and not isinstance(value, bool):
        size = value
    else:
        raise fail(key, value, expected)
    if size < minimum:
        raise fail(key, value, expected)
    return size


def boolean(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise fail(key, value, "true or false")


def text(key: str, value: Any, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise fail(key, value, "a non-empty string")
    return value.strip()


def optional_text(key: str, value: Any) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    return text(key, value)


def string_list(key: str, value: Any) -> tuple[str, ...]:
    """A YAML list of strings, or one comma-separated string; whitespace stripped, empties
    dropped, duplicates removed (first wins)."""
    if value is None:
        return ()
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, Sequence):
        items = list(value)
    else:
        raise fail(key, value, "a list of names or a comma-separated string")
    result: list[str] = []
    for item in items:
        if not isinstance(item, str | int | float) or isinstance(item, bool):
            raise fail(key, value, "a list of names or a comma-separated string")
        name = str(item).strip()
        if name and name not in result:
            result.append(name)
    return tuple(result)


def undecodable(raw: bytes, exc: UnicodeDecodeError) -> tuple[int, str]:
    """Where `raw` stops being UTF-8: its line, and `byte 0xe9 at offset 26 (line 2)`."""
    line = raw[: exc.start].count(b"\n") + 1
    return line, f"byte {raw[exc.start]:#04x} at offset {exc.start} (line {line})"


def utf8_text(file: Path) -> str:
    """The file's text; a ConfigError naming the file, line and byte offset if it is not
    UTF-8 (OSError passes through for the caller to explain)."""
    raw = file.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        where = undecodable(raw, exc)[1]
    raise ConfigError(
        f"config file {file} is not UTF-8 text: {where}; expected a YAML file saved as UTF-8",
        key="maas",
    )


def resolve_path(value: str, base_dir: Path) -> Path:
    path = Path(os.path.expanduser(value))
    return path if path.is_absolute() else base_dir / path


def readable_file(key: str, value: Any, base_dir: Path) -> Path:
    path = resolve_path(text(key, value), base_dir)
    if not path.is_file():
        raise fail(key, value, f"a readable file (looked for {path}; it does not exist)")
    if not os.access(path, os.R_OK):
        raise fail(key, value, f"a readable file ({path} is not readable by this user)")
    return path


def host_store(key: str, value: Any, base_dir: Path) -> bool | str:
    """`true` (the default file), `false`/null (no store), or a path (made absolute)."""
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    if isinstance(value, str) and value.strip():
        return str(resolve_path(value.strip(), base_dir))
    raise fail(key, value, "true (the default file), false, or the path of the store file")


USER_DATA_FIELDS = frozenset({"os_type", "os_version"})


def user_data_pattern(key: str, value: Any, base_dir: Path) -> str | None:
    """The user_data path pattern, made absolute against `base_dir`. A pattern without
    placeholders names one file, which must be readable now."""
    pattern = optional_text(key, value)
    if pattern is None:
        return None
    try:
        fields = {name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None}
    except ValueError as exc:
        raise fail(key, value, f"a path pattern with balanced braces ({exc})") from None
    unknown = fields - USER_DATA_FIELDS
    if unknown:
        raise fail(
            key,
            value,
            "a path pattern using only {os_type} and {os_version} "
            f"(unknown placeholder(s): {', '.join(sorted(unknown))})",
        )
    path = resolve_path(pattern, base_dir)
    if not fields and (not path.is_file() or not os.access(path, os.R_OK)):
        raise fail(
            key,
            value,
            f"a readable cloud-init template (looked for {path}; relative paths are "
            f"resolved against {base_dir})",
        )
    return str(path)


_PUBLIC_KEY = re.compile(
    r"^(ssh-(rsa|dss|ed25519)|ecdsa-sha2-\S+|sk-\S+@openssh\.com)\s+[A-Za-z0-9+/=]+(\s.*)?$"
)


def is_public_key(value: str) -> bool:
    return bool(_PUBLIC_KEY.match(value.strip()))


def _keys_in_file(key: str, shown: str, path: Path) -> list[str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise fail(key, shown, f"a public key or a readable public key file ({exc})") from None
    found = [line.strip() for line in lines if is_public_key(line)]
    if not found:
        raise fail(key, shown, f"a public key file; {path} holds no OpenSSH public key")
    return found


def ssh_public_keys(key: str, value: Any, base_dir: Path) -> tuple[str, ...]:
    """Public keys given inline or as paths to `.pub` files; None means the control node's
    own `~/.ssh/id_*.pub` (none found gives an empty tuple)."""
    if value is None:
        keys: list[str] = []
        for pub in sorted((Path.home() / ".ssh").glob("id_*.pub")):
            try:
                keys.extend(_keys_in_file(key, str(pub), pub))
            except ConfigError:
                continue  # an unrelated broken file in ~/.ssh is not a config error
        return tuple(dict.fromkeys(keys))
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Sequence) or isinstance(items, str | bytes):
        raise fail(key, value, "a list of public keys or .pub file paths")
    keys = []
    for item in items:
        if not isinstance(item, str) or not item.strip():
            raise fail(key, item, "a public key or a .pub file path")
        if is_public_key(item):
            keys.append(item.strip())
        else:
            path = resolve_path(item.strip(), base_dir)
            if not path.is_file():
                raise fail(
                    key, item, f"an OpenSSH public key or a .pub file path ({path} not found)"
                )
            keys.extend(_keys_in_file(key, item, path))
    return tuple(dict.fromkeys(keys))


def image_map(key: str, value: Any) -> dict[str, Any]:
    """{"<os_type> <os_version>": "<os>/<release>"} or {"<os_type>": {"<version>": "..."}}."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise fail(key, value, 'a mapping like {"ubuntu 22.04": "ubuntu/jammy"}')
    result: dict[str, Any] = {}
    for name, target in value.items():
        label = str(name).strip()
        if isinstance(target, str) and target.strip():
            result[label] = target.strip()
        elif isinstance(target, Mapping):
            inner: dict[str, str] = {}
            for version, image in target.items():
                if not isinstance(image, str) or not image.strip():
                    raise fail(f"{key}.{label}.{version}", image, "an image name like rocky/9")
                inner[str(version).strip()] = image.strip()
            result[label] = inner
        else:
            raise fail(
                f"{key}.{label}", target, "an image name like ubuntu/jammy or a version mapping"
            )
    return result


# Bounds on one value, counted with shared YAML aliases expanded: a real maas: value has tens of
# items (user_data_vars perhaps hundreds); an alias bomb has billions.
MAX_VALUE_ITEMS = 10_000
MAX_VALUE_DEPTH = 16
MAX_STRING = 1024 * 1024


def shape(value: Any) -> Shown:
    """A value described by its type and size only (for a value that may hold a secret)."""
    if isinstance(value, Mapping | list | tuple | set | str | bytes):
        return Shown(f"a {type(value).__name__} of {len(value)} item(s)")
    return Shown(f"a value of type {type(value).__name__}")


def check_bounded(key: str, value: Any) -> None:
    """Refuse a value too large or too deep to be a setting, without ever expanding it: the
    walk stops at MAX_VALUE_ITEMS items (aliases counted each time they are used) or at
    MAX_VALUE_DEPTH levels (which also ends a self-referencing structure)."""
    seen = 0
    todo: list[tuple[Any, int]] = [(value, 0)]
    while todo:
        item, depth = todo.pop()
        seen += 1
        problem = None
        if seen > MAX_VALUE_ITEMS:
            problem = f"more than {MAX_VALUE_ITEMS} items (counting each YAML alias use)"
        elif depth > MAX_VALUE_DEPTH:
            problem = f"more than {MAX_VALUE_DEPTH} levels of nesting"
        elif isinstance(item, str | bytes) and len(item) > MAX_STRING:
            problem = f"a string of {len(item)} characters"
        if problem is not None:
            raise fail(
                key,
                Shown(f"a structure with {problem}"),
                "a setting of plain values (is it a YAML alias bomb?)",
            )
        if isinstance(item, Mapping):
            todo.extend((part, depth + 1) for pair in item.items() for part in pair)
        elif isinstance(item, list | tuple | set | frozenset):
            todo.extend((part, depth + 1) for part in item)


def string_mapping(key: str, value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise fail(key, value, "a mapping with string keys")
    return dict(value)


_warned: set[str] = set()
_warned_lock = threading.Lock()


def warn_once(message: str) -> None:
    """Configuration is re-read for every node teuthology reimages; say each thing once."""
    with _warned_lock:
        if message in _warned:
            return
        _warned.add(message)
    log.warning("%s", message)


def erase_mode(value: Any) -> EraseMode:
    if value is None or value is False:
        return "none"
    if value is True:
        return "quick"
    if isinstance(value, str):
        mode = value.strip().lower()
        mode = _ERASE_ALIASES.get(mode, mode)
        if mode in ERASE_MODES:
            return mode
    raise fail("erase", value, "one of " + ", ".join(ERASE_MODES))


def verify_setting(section: Mapping[str, Any], base: Path, source: str) -> bool | str:
    verify = section["verify"]  # the field's default when absent (config._WithDefaults)
    bundle = section.get("ca_bundle")
    if isinstance(verify, str) and verify.strip().lower() in ("true", "false", "yes", "no"):
        verify = boolean("verify", verify)
    if bundle not in (None, ""):
        if verify is False:
            raise fail("ca_bundle", bundle, "no ca_bundle when verify is false (they contradict)")
        if isinstance(verify, str) and verify != bundle:
            raise fail("ca_bundle", bundle, f"the same path as verify ({verify!r})")
        verify = bundle
    if isinstance(verify, bool):
        if not verify:
            warn_once(
                f"{source}: maas: verify is false: TLS certificates of the MAAS server are NOT "
                "checked; anyone on the path can read the API key"
            )
        return verify
    if isinstance(verify, str):
        key = "ca_bundle" if bundle not in (None, "") else "verify"
        path = resolve_path(verify.strip(), base)
        if not (path.is_file() or path.is_dir()) or not os.access(path, os.R_OK):
            raise fail(key, verify, f"true, false, or a readable CA bundle file/directory ({path})")
        return str(path)
    raise fail("verify", verify, "true, false, or the path of a CA bundle")
