"""Compute and storage metering: a control-loop step that writes card-time of job attempts
and byte-time of datasets (:func:`~suanwang.domain.datasets.meter_storage`) to the ledger.

Every started attempt — a batch job's or a deployment replica's, which are jobs too — is
cut into grid pieces by :func:`suanwang.domain.metering.meter`; the pieces and the
attempt's new watermark (``metered_to``) are written in one transaction. Pieces have stable
entry ids, so a crash between the two, or a second control plane, re-meters nothing twice.
"""

from __future__ import annotations

from suanwang.domain.datasets import meter_storage
from suanwang.domain.metering import DEFAULT_INTERVAL_S, last_boundary, meter
from suanwang.ports import Clock, UnitOfWorkFactory

MAX_ATTEMPTS_PER_RUN = 500


class ComputeMeter:
    """Meters card-time; call :meth:`run` once per control tick (it is cheap when idle)."""

    def __init__(
        self,
        uows: UnitOfWorkFactory,
        clock: Clock,
        interval_s: float = DEFAULT_INTERVAL_S,
        *,
        min_period_s: float = 2.0,
    ) -> None:
        if interval_s < 0.001:
            raise ValueError("interval_s must be at least a millisecond")
        self._uows = uows
        self._clock = clock
        self.interval_s = interval_s
        self._min_period_s = min_period_s
        self._last_run: float | None = None

    def tick(self) -> None:
        """:meth:`run` as a control-loop step, at most once per ``min_period_s``."""
        now = self._clock.now()
        if self._last_run is not None and now - self._last_run < self._min_period_s:
            return
        self._last_run = now
        self.run()

    def run(self) -> int:
        """Append the closed, unmetered pieces of every attempt; returns how many were new."""
        now = self._clock.now()
        written = 0
        with self._uows() as uow:
            spans = uow.usage.unmetered_attempts(last_boundary(now, self.interval_s))
            for span in spans[:MAX_ATTEMPTS_PER_RUN]:
                metered = meter(span, now, self.interval_s)
                written += uow.usage.append(metered.pieces, now)
                if metered.metered_to is not None and metered.metered_to != span.metered_to:
                    uow.usage.set_metered_to(span.attempt_id, metered.metered_to)
            for dataset in uow.datasets.unmetered(last_boundary(now, self.interval_s))[
                :MAX_ATTEMPTS_PER_RUN
            ]:
                pieces, metered_to = meter_storage(dataset, now, self.interval_s)
                written += uow.usage.append(pieces, now)
                if metered_to is not None and metered_to != dataset.metered_to:
                    uow.datasets.set_metered_to(dataset.id, metered_to)
            uow.commit()
        return written
