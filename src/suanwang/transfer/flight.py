"""The sender's book of chunks: queued, in flight, acknowledged; the byte window; retries.

One condition variable guards it. Stream threads :meth:`Flight.take` the next chunk (waiting
while the window of unacknowledged bytes is full), the acknowledgement reader calls
:meth:`Flight.on_ack` / :meth:`Flight.on_nack`, and a broken session :meth:`Flight.stop`s
everyone and puts the unacknowledged chunks back at the front of the queue.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable

from suanwang.transfer.plan import ChunkPlan, remaining


class PushFailed(Exception):
    """The push cannot succeed (the reason is the message)."""


class Flight:
    def __init__(
        self, plan: ChunkPlan, window_bytes: int, max_retries: int, acked: set[int]
    ) -> None:
        self.plan = plan
        self.window_bytes = window_bytes
        self.max_retries = max_retries
        self.cond = threading.Condition()
        self.acked: set[int] = set(acked)
        self.queue: deque[int] = deque()
        self.inflight: set[int] = set()
        self.unacked_bytes = 0
        self.retries: dict[int, int] = {}
        self.resent = 0
        self.sent_bytes = 0
        self.stopped = False
        self.fatal: PushFailed | None = None

    def start(self, acked: set[int]) -> None:
        """A new session: the receiver's acknowledged set; everything else queued."""
        with self.cond:
            self.acked = set(acked)
            self.queue = deque(remaining(self.plan, acked))
            self.inflight.clear()
            self.unacked_bytes = 0
            self.stopped = False
            self.fatal = None

    @property
    def complete(self) -> bool:
        return len(self.acked) == len(self.plan.chunks)

    def take(self) -> int | None:
        """The next chunk to send (now in flight), or None when stopped or complete."""
        with self.cond:
            while not self.stopped and not self.complete:
                if self.queue and (self.unacked_bytes < self.window_bytes or not self.inflight):
                    cid = self.queue.popleft()
                    self.inflight.add(cid)
                    self.unacked_bytes += self.plan.chunks[cid].size
                    return cid
                self.cond.wait(0.5)
            return None

    def sent(self, n: int) -> None:
        with self.cond:
            self.sent_bytes += n

    def on_ack(self, ids: Iterable[int]) -> list[int]:
        """Record acknowledgements; the ids that were new."""
        with self.cond:
            new = [i for i in ids if i not in self.acked]
            self.acked.update(new)
            for i in new:
                if i in self.inflight:
                    self.inflight.discard(i)
                    self.unacked_bytes -= self.plan.chunks[i].size
            self.cond.notify_all()
            return new

    def on_nack(self, cid: int, reason: str) -> None:
        with self.cond:
            if cid in self.inflight:
                self.inflight.discard(cid)
                self.unacked_bytes -= self.plan.chunks[cid].size
            self.retries[cid] = self.retries.get(cid, 0) + 1
            if self.retries[cid] > self.max_retries:
                self.stop_locked(
                    PushFailed(f"chunk {cid} failed {self.retries[cid]} times: {reason}")
                )
                return
            self.resent += 1
            self.queue.appendleft(cid)
            self.cond.notify_all()

    def resend(self, ids: list[int]) -> None:
        """Chunks the receiver revoked at FINISH: no longer acknowledged, queued again."""
        with self.cond:
            self.resent += len(ids)
            self.acked.difference_update(ids)
            self.queue.extend(ids)

    def stop(self, fatal: PushFailed | None = None) -> None:
        with self.cond:
            self.stop_locked(fatal)

    def stop_locked(self, fatal: PushFailed | None) -> None:
        if fatal is not None and self.fatal is None:
            self.fatal = fatal
        self.stopped = True
        self.cond.notify_all()

    def requeue_inflight(self) -> None:
        """After a broken session: unacknowledged chunks in flight go back to the front."""
        with self.cond:
            back = sorted(self.inflight - self.acked)
            self.queue.extendleft(reversed(back))
            self.inflight.clear()
            self.unacked_bytes = 0

    def wait_complete(self, timeout_s: float) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.complete or self.stopped, timeout_s)
