"""The region URLs of one MAAS (HA: several region controllers, one database, one API key)
and which of them requests go to now.

`Transport` asks `current()` for each attempt and calls `fail_over(url)` after a failure that
says the region may be down (no connection, a timeout, a 5xx): the next URL becomes current
for every later request too. What may be sent again after a failover is the transport's
rule, not this module's: a POST whose outcome is unknown never is.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence

__all__ = ["RegionUrls"]


class RegionUrls:
    """The region URLs of one MAAS and which of them requests go to now: the first until it
    fails, then the next, and so on round the list (sticky: a healthy region keeps serving
    until it fails in turn). Shared by every thread using the client."""

    def __init__(self, urls: str | Sequence[str]) -> None:
        self.urls: tuple[str, ...] = (urls,) if isinstance(urls, str) else tuple(urls)
        if not self.urls:
            raise ValueError("a MAAS needs at least one region URL")
        self._index = 0
        self._lock = threading.Lock()

    def current(self) -> str:
        return self.urls[self._index]

    def fail_over(self, failed: str) -> tuple[str, bool] | None:
        """`failed` failed: the URL in use from now on, and whether this call moved to it
        (None with a single URL). A failure of a URL that is no longer current (another
        thread moved on already) moves nothing."""
        if len(self.urls) < 2:
            return None
        with self._lock:
            moved = self.urls[self._index] == failed
            if moved:
                self._index = (self._index + 1) % len(self.urls)
            return self.urls[self._index], moved
