"""Pure parts of the audit log: secret scrubbing, the action table, value shapes, the CLI's
time parsing and change summaries."""

from __future__ import annotations

from datetime import datetime

import pytest

from suanwang.cli.audit import change_text, parse_time
from suanwang.cli.client import CliError
from suanwang.domain.audit import AuditAction, AuditQuery, AuditResource, scrub
from suanwang.domain.errors import ValidationError
from suanwang.domain.jobs import JobSpec, JobState
from suanwang.domain.records import JobRecord
from suanwang.services import audit
from suanwang.services.fleet import ApplyResult
from suanwang.services.fleet_audit import MAX_OBJECTS, change_values

KEY = "sw_Ab3dE6gH_" + "x" * 43


def test_scrub_drops_secret_fields_at_any_depth_and_masks_keys_in_text() -> None:
    value = {
        "name": "k",
        "secret_hash": "ab" * 32,
        "nested": [{"Key": KEY, "token": "t", "note": f"pasted {KEY} here"}],
    }
    assert scrub(value) == {"name": "k", "nested": [{"note": "pasted sw_Ab3dE6gH_*** here"}]}


def test_every_action_names_its_resource() -> None:
    assert {a.resource for a in AuditAction} == set(AuditResource)


@pytest.mark.parametrize("limit", [0, 501])
def test_page_size_is_bounded(limit: int) -> None:
    with pytest.raises(ValidationError, match="limit"):
        AuditQuery(limit=limit)


def test_job_env_values_are_masked_names_kept() -> None:
    job = JobRecord(
        id="job-1",
        tenant="a",
        name="j",
        state=JobState.QUEUED,
        reason="",
        priority=0,
        spec=JobSpec(name="j", command=("x",), env=(("HF_TOKEN", "hf_secret"), ("MODE", "fast"))),
        idempotency_key=None,
        request_hash="h",
        attempts=0,
        cancel_requested=False,
        created_at=0.0,
        updated_at=0.0,
        version=1,
    )
    value = audit.job_value(job)
    assert value["spec"]["env"] == {"HF_TOKEN": "***", "MODE": "***"}
    assert value["spec"]["command"] == ["x"]
    assert dict(job.spec.env)["HF_TOKEN"] == "hf_secret"  # the record itself is untouched


def test_fleet_values_are_capped() -> None:
    names = [f"node/c/n{i}" for i in range(MAX_OBJECTS + 5)]
    result = ApplyResult(created=names, updated=["cluster/c"])
    new = {n: {"cards": 8} for n in [*names, "cluster/c"]}
    before, after = change_values(result, {"cluster/c": {"region": "r"}}, new)
    assert before == {"cluster/c": {"region": "r"}}
    assert len(after) == MAX_OBJECTS + 1
    assert after["omitted"] == 6


def test_parse_time_takes_ages_and_iso_times() -> None:
    assert parse_time("30m", "--since", now=10_000.0) == 10_000.0 - 1800
    assert parse_time("7d", "--since", now=1e6) == 1e6 - 7 * 86400
    assert parse_time("2026-12-01T00:00+00:00", "--since") == 1_796_083_200.0
    local = datetime(2026, 12, 1).astimezone().timestamp()
    assert parse_time("2026-12-01", "--since") == local
    with pytest.raises(CliError, match="--until"):
        parse_time("yesterday", "--until")


def test_change_text_lists_changed_fields() -> None:
    assert change_text(None, {"tier": "edu"}) == 'created: {"tier": "edu"}'
    assert change_text({"tier": "a", "x": 1}, {"tier": "b", "x": 1}) == 'tier: "a" → "b"'
    assert change_text({"a": 1}, {"a": 1}) == "no field changed"
    assert change_text(None, None) == "-"
    long = change_text(None, {"v": "x" * 500})
    assert len(long) < 100
    assert long.endswith("…")
