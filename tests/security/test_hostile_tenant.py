"""Suite R10: a tenant's jobs on the local cluster cannot reach anything that is not theirs.

Tenant B, with a plain tenant-member key, submits jobs that attack the platform and tenant
A (see ``attacks.py`` for each attempt and ``hostile_round.py`` for the round). Every
attempt must fail while the attacking job itself runs and logs; forged records must not
make the control plane act on processes B does not own; escaped processes must not outlive
their job; exhausting processes, memory or disk fails that job alone. On SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import pytest
from hostile_round import ESCAPES, EXHAUSTION, FINITE, Round
from hostile_stack import LIMITS
from hostile_targets import CAP

pytestmark = pytest.mark.timeout(900)
UID_RANGE = range(200_000, 300_000)
LIMIT_NAMED = {  # the failure reason names the limit the job ran into
    "fork-bomb": ("process",),
    "fill-memory": ("memory",),
    "fill-disk": ("disk",),
    "fill-tmp": ("memory", "disk"),
    "fill-log": ("disk", "log"),
}
LIMIT_ERRORS = ("ENOSPC", "EDQUOT", "EFBIG", "EAGAIN", "MemoryError")
JOB_LINES = ("WHOAMI ", "VICTIM ", "DONE ", "suanwang")


@pytest.mark.parametrize("attack", FINITE)
def test_every_attempt_is_blocked(attack_round: Round, attack: str) -> None:
    run = attack_round.jobs[attack]
    verdicts = run.verdicts()
    succeeded = [v for v in verdicts if v.outcome == "SUCCEEDED"]
    assert not succeeded, "\n".join(f"{v.target}: {v.detail}" for v in succeeded)
    assert len(verdicts) >= attack_round.expected_attempts[attack], run.describe()
    assert f"DONE {attack}" in run.log, run.describe()
    assert (run.state, run.exit_code) == ("succeeded", 0), run.describe()


@pytest.mark.parametrize("attack", ["forge-launch-sacrificial", "forge-launch-victim"])
def test_a_forged_launch_record_cannot_aim_a_cancel(attack_round: Round, attack: str) -> None:
    run = attack_round.jobs[attack]
    assert "READY" in run.log, run.describe()
    assert run.state_before_cancel == "running", run.describe()
    assert run.state == "cancelled", run.describe()
    if attack == "forge-launch-sacrificial":
        assert attack_round.sacrificial_alive, (
            "the cancel killed a root process named in a forged record"
        )
    else:
        assert attack_round.victim_alive_after == attack_round.victim_procs, (
            "the cancel killed tenant A's job named in a forged record"
        )


def test_a_forged_exit_record_is_not_believed(attack_round: Round) -> None:
    run = attack_round.jobs["forge-exit"]
    assert "READY" in run.log, run.describe()
    assert run.state_before_cancel == "running", f"reported {run.state_before_cancel} while running"
    assert run.state == "cancelled", run.describe()


@pytest.mark.parametrize("attack", ESCAPES)
def test_escaped_processes_do_not_outlive_their_job(attack_round: Round, attack: str) -> None:
    run = attack_round.jobs[attack]
    assert "ESCAPED" in run.log, run.describe()
    if attack == "escape-cancel":
        assert run.escaped_before_cancel, "the escaped process was not running before the cancel"
        assert run.state == "cancelled", run.describe()
    else:
        assert run.state in ("succeeded", "failed"), run.describe()
    assert not run.survivors, f"outlived {run.state} job: {run.survivors}"


@pytest.mark.parametrize("attack", EXHAUSTION)
def test_exhaustion_fails_the_job_alone(attack_round: Round, attack: str) -> None:
    run = attack_round.jobs[attack]
    assert run.uid() is not None, run.describe()  # it started and ran
    succeeded = [v for v in run.verdicts() if v.outcome == "SUCCEEDED"]
    assert not succeeded, f"{CAP}x the limit {LIMITS} was reached: {run.describe()}"
    assert run.state == "failed", run.describe()
    errors = [v.detail.split()[0] for v in run.verdicts()]
    named = any(word in run.reason for word in LIMIT_NAMED[attack])
    refused = bool(errors) and all(error in LIMIT_ERRORS for error in errors)
    assert named or refused, f"neither the reason nor the job says which limit: {run.describe()}"
    assert run.bytes_on_host < CAP * LIMITS["disk_bytes"], f"{run.bytes_on_host} bytes on the host"
    if attack == "fork-bomb":
        verdicts = run.verdicts()
        assert verdicts, run.describe()
        made = int(verdicts[0].detail.split()[-2])
        assert made <= LIMITS["processes"], run.describe()
    before, after, later = attack_round.bystander_beats
    assert later > after > before, f"tenant B's bystander stopped beating: {before} {after} {later}"
    assert attack_round.bystander_state_after == "running"
    assert attack_round.victim_state_after == "running"


def test_a_job_cannot_listen_on_the_hosts_loopback(attack_round: Round) -> None:
    run = attack_round.jobs["squat-host-port"]
    assert "READY" in run.log, run.describe()
    assert not run.host_connected, f"a host process reached the job: {run.host_connected}"


def test_symlinks_in_a_job_area_lead_nowhere(attack_round: Round) -> None:
    run = attack_round.jobs["symlink-trap"]
    assert run.attempts == 2, run.describe()  # the retry ran in the same area, after the links
    verdicts = run.verdicts()
    assert verdicts, run.describe()
    succeeded = [v for v in verdicts if v.outcome == "SUCCEEDED"]
    assert not succeeded, "\n".join(f"{v.target}: {v.detail}" for v in succeeded)
    assert (run.state, run.exit_code) == ("succeeded", 0), run.describe()


def test_the_platforms_files_stay_the_platforms(attack_round: Round) -> None:
    before, after = attack_round.platform_files
    assert after == before
    assert not attack_round.tenant_owned_outside_areas, attack_round.tenant_owned_outside_areas


def test_the_victim_is_untouched(attack_round: Round) -> None:
    victim = attack_round.victim
    assert attack_round.victim_state_after == "running"
    assert attack_round.victim_alive_after == attack_round.victim_procs, "victim processes died"
    assert attack_round.secret_after == dict.fromkeys(
        attack_round.secret_paths, attack_round.secret
    )
    assert not attack_round.planted_after, attack_round.planted_after
    foreign = [line for line in victim.log.splitlines() if line and not line.startswith(JOB_LINES)]
    assert not foreign, f"lines in A's log that A did not write: {foreign[:5]}"
    assert "TAMPERED" not in victim.log
    assert victim.log.count("VICTIM beat ") >= 10, victim.describe()


def test_the_api_answers_during_the_attacks(attack_round: Round) -> None:
    assert attack_round.api_checks >= 10
    assert not attack_round.api_errors, attack_round.api_errors[:5]
    assert attack_round.api_max_latency_s < 10.0


def test_jobs_run_under_their_tenants_own_uid(attack_round: Round) -> None:
    b_uids = {run.name: run.uid() for run in [*attack_round.jobs.values(), attack_round.bystander]}
    a_uid = attack_round.victim.uid()
    assert len(set(b_uids.values())) == 1, b_uids
    b_uid = attack_round.bystander.uid()
    assert b_uid in UID_RANGE, (a_uid, b_uid)
    assert a_uid in UID_RANGE, (a_uid, b_uid)
    assert a_uid != b_uid
    assert attack_round.server_uid not in (a_uid, b_uid)


def test_nothing_of_tenant_b_outlives_its_jobs(attack_round: Round) -> None:
    assert attack_round.bystander.uid() != attack_round.server_uid
    assert not attack_round.leftover_b, attack_round.leftover_b
    for run in attack_round.jobs.values():
        assert run.state in ("succeeded", "failed", "cancelled"), run.describe()
