"""Clocks for backends and services: the real one. Tests bring their own fakes."""

from __future__ import annotations

import time


class SystemClock:
    """Wall-clock time (:func:`time.time`)."""

    def now(self) -> float:
        """Seconds since the epoch."""
        return time.time()
