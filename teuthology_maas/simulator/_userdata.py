"""user_data as MAAS keeps it (verbatim) and serves it to cloud-init (decoded when base64)."""

from __future__ import annotations

import base64
import binascii


def served_user_data(stored: bytes) -> bytes:
    """What the metadata service hands cloud-init for the stored `user_data` field.

    MAAS tries a strict base64 decode, then one after removing all whitespace; a decode only
    counts when re-encoding the result reproduces the submitted text (canonical base64 with
    padding). Anything else is served unchanged, so plain-text scripts work too.
    """
    try:
        text = stored.decode("ascii")
    except UnicodeDecodeError:
        return stored
    for candidate in (text, "".join(text.split())):
        try:
            decoded = base64.b64decode(candidate, validate=True)
        except (binascii.Error, ValueError):
            continue
        if base64.b64encode(decoded).decode("ascii") == candidate:
            return decoded
    return stored
