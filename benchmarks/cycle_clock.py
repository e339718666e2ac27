"""Timing one scheduling cycle: wall clock, CPU time, and the full garbage collections
that fell inside it (``scheduler_scale.py``)."""

from __future__ import annotations

import gc
import time
from collections.abc import Callable
from typing import Any

from suanwang.scheduler import Snapshot
from suanwang.scheduler.cache import CycleCache

Cycle = Callable[[Snapshot, CycleCache], list[Any]]


class FullCollections:
    """Full (oldest-generation) garbage collections and their CPU time, while counting."""

    def __init__(self) -> None:
        self.count, self.cpu_s, self.counting, self._began = 0, 0.0, False, 0.0

    def __enter__(self) -> FullCollections:
        gc.callbacks.append(self._observe)
        return self

    def __exit__(self, *_exc: object) -> None:
        gc.callbacks.remove(self._observe)

    def _observe(self, phase: str, info: dict[str, int]) -> None:
        if info["generation"] != 2 or not self.counting:
            return
        if phase == "start":
            self._began = time.process_time()
        else:
            self.count += 1
            self.cpu_s += time.process_time() - self._began


def timed(
    run: Cycle, snapshot: Snapshot, cache: CycleCache, full: FullCollections | None = None
) -> tuple[float, float, list[Any]]:
    if full is not None:
        full.counting = True
    started, cpu = time.perf_counter(), time.process_time()
    decisions = run(snapshot, cache)
    seconds, cpu_s = time.perf_counter() - started, time.process_time() - cpu
    if full is not None:
        full.counting = False
    return seconds, cpu_s, decisions
