"""Logs go to the stderr of the moment of writing, not of the moment of configuration."""

from __future__ import annotations

import io
import sys

import pytest
import structlog

from suanwang.observability import configure_logging


def test_a_replaced_and_closed_stderr_does_not_break_later_logging(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = io.StringIO()
    monkeypatch.setattr(sys, "stderr", first)
    configure_logging("info")  # as an in-process test of the app does, under capture
    first.close()  # the capture of that test ends
    second = io.StringIO()
    monkeypatch.setattr(sys, "stderr", second)
    try:
        structlog.get_logger("t").info("after the first stream closed", n=1)
    finally:
        structlog.reset_defaults()
    assert "after the first stream closed" in second.getvalue()
