"""Structured logging (structlog) with secrets redacted, and Prometheus metrics.

Redaction runs on every event: values under secret-looking keys are replaced, and any
string that contains an API key (``sw_…``) has the key masked to its prefix.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO, cast

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

SECRET_KEYS = frozenset({"authorization", "api_key", "key", "secret", "token", "password"})
KEY_PATTERN = re.compile(r"(sw_[A-Za-z0-9]{8})_[A-Za-z0-9_-]{20,}")


def redact(value: Any) -> Any:
    """Mask API keys inside strings, recursively."""
    if isinstance(value, str):
        return KEY_PATTERN.sub(r"\1_***", value)
    if isinstance(value, dict):
        return {k: "***" if str(k).lower() in SECRET_KEYS else redact(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value


def _redact_processor(
    _logger: Any, _name: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for k in list(event):
        event[k] = "***" if k.lower() in SECRET_KEYS else redact(event[k])
    return event


class _CurrentStderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write.

    A logger bound to the ``sys.stderr`` object of the moment of configuration keeps writing
    to it after it was replaced and closed (an in-process test's captured stream: every later
    log line then raised ``ValueError: I/O operation on closed file`` in whichever thread
    logged, the control loop's included).
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()


def configure_logging(
    level: str = "info", json: bool = False, stream: TextIO | None = None
) -> None:
    """Route structlog to ``stream`` (stderr by default) with redaction."""
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            _redact_processor,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(stream or cast(TextIO, _CurrentStderr())),
        cache_logger_on_first_use=False,
    )


class Metrics:
    """The process's metrics in a registry of its own (no global state)."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "suanwang_http_requests",
            "HTTP requests",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "suanwang_http_request_seconds",
            "HTTP request latency",
            ["route"],
            registry=self.registry,
        )
        self.ticks = Counter("suanwang_control_ticks", "control-loop ticks", registry=self.registry)
        self.tick_errors = Counter(
            "suanwang_control_tick_errors", "control-loop ticks that failed", registry=self.registry
        )
        self.admitted = Counter(
            "suanwang_jobs_admitted", "jobs admitted by the scheduler", registry=self.registry
        )

    def add_gauges(self, name: str, doc: str, label: str, read: Any) -> None:
        """Register a gauge family read at scrape time from ``read() -> dict[label, value]``."""
        self.registry.register(_CallbackCollector(name, doc, label, read))


class _CallbackCollector(Collector):
    def __init__(self, name: str, doc: str, label: str, read: Any) -> None:
        self._name, self._doc, self._label, self._read = name, doc, label, read

    def collect(self) -> Iterable[GaugeMetricFamily]:
        family = GaugeMetricFamily(self._name, self._doc, labels=[self._label])
        for key, value in sorted(self._read().items()):
            family.add_metric([str(key)], float(value))
        yield family
