"""The sbatch command line and the batch script: tenant text stays data (hostile input).

The hostile commands below try to add ``#SBATCH`` directives (via a newline), break out of
a quoted shell word, or look like an ``env`` assignment. None of them may change the
directives: they must appear only as whole arguments after the batch script path, and the
script itself must be the constant ``exec "$@"``. tests/integration/test_slurm_real.py
runs the same commands on the real cluster and checks what the job saw.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from suanwang.adapters.backends.sandbox import Confinement, RootLayout
from suanwang.adapters.backends.sandbox_argv import Sandbox
from suanwang.adapters.backends.slurm_parse import (
    SlurmOutputError,
    parse_gres,
    parse_sacct_completion,
    parse_sbatch,
)
from suanwang.adapters.backends.slurm_script import (
    BATCH_SCRIPT,
    Submission,
    job_argv,
    sbatch_argv,
    time_limit,
)

HOSTILE = [
    ("echo", "ok\n#SBATCH --uid=0\n#SBATCH --partition=vip"),
    ("sh", "-c", "'; scontrol shutdown; echo '"),
    ("X=1", "rm", "-rf", "/"),
    ("$(id)", "`id`", "a b\tc", "--uid=0"),
]
SUB = Submission(
    name="suanwang-j-1",
    partition="debug",
    nodes=1,
    cards_per_node=2,
    gres="ascend910b",
    output=Path("/spool/j/1.log"),
    chdir=Path("/spool/j/work"),
    script=Path("/spool/j/batch.sh"),
)


@pytest.mark.parametrize("command", HOSTILE)
def test_tenant_text_is_only_ever_whole_arguments_after_the_script(
    command: tuple[str, ...],
) -> None:
    run = job_argv({"A": "1"}, command, sandbox=None, nodes=1)
    argv = sbatch_argv("sbatch", SUB, run)
    script = argv.index("/spool/j/batch.sh")
    plain = sbatch_argv("sbatch", SUB, job_argv({"A": "1"}, ("true",), sandbox=None, nodes=1))
    assert argv[: script + 1] == plain[: script + 1]  # the directives do not depend on it
    assert all(a.startswith("--") for a in argv[1:script])
    assert argv[-len(command) :] == list(command)


def test_a_grace_with_a_time_limit_asks_for_sigterm_before_it() -> None:
    def signals(**changes: object) -> list[str]:
        sub = dataclasses.replace(SUB, **changes)  # type: ignore[arg-type]
        return [a for a in sbatch_argv("sbatch", sub, ["true"]) if a.startswith("--signal")]

    assert signals(time_limit_s=3600, grace_s=29.5) == ["--signal=B:TERM@30"]
    assert signals(time_limit_s=3600) == []
    assert signals(grace_s=30.0) == [], "no time limit: nothing to warn of"


def test_a_command_that_looks_like_an_assignment_is_not_taken_for_one() -> None:
    run = job_argv({}, ("X=1", "rm"), sandbox=None, nodes=1)
    assert run[:4] == ["/usr/bin/env", "/bin/sh", "-c", 'exec "$0" "$@"']


def test_the_batch_script_is_constant_and_has_no_directives() -> None:
    assert "#SBATCH" not in BATCH_SCRIPT
    lines = [line for line in BATCH_SCRIPT.splitlines() if not line.startswith("#")]
    assert lines == ['exec "$@"']


def test_multi_node_runs_one_sandboxed_task_per_node() -> None:
    confinement = Confinement(uid=5, work_dir=Path("/w"), cwd_parts=(), read_only=())
    sandbox = Sandbox("/usr/bin/bwrap", RootLayout((), ("/bin",)), confinement)
    run = job_argv({"A": "1"}, ("hostname",), sandbox=sandbox, nodes=2)
    assert run[:4] == ["srun", "--nodes=2", "--ntasks-per-node=1", "--export=ALL"]
    assert run[4] == "/usr/bin/bwrap"
    assert "--dev-bind" in run
    assert "--dev" not in run
    assert run[-3:] == ["/usr/bin/env", "A=1", "hostname"]


@pytest.mark.parametrize(("seconds", "minutes"), [(1, "1"), (60, "1"), (61, "2"), (7200, "120")])
def test_time_limits_round_up_to_minutes(seconds: int, minutes: str) -> None:
    assert time_limit(seconds) == minutes


def test_sbatch_output_is_a_job_id_or_an_error() -> None:
    assert parse_sbatch("42\n") == 42
    assert parse_sbatch("42;cluster\n") == 42
    with pytest.raises(SlurmOutputError):
        parse_sbatch("sbatch: error: nope")


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("ascend910b:8", (("ascend910b", "", 8),)),
        ("gpu:h100:8(S:0-1),gpu:a100:2", (("gpu", "h100", 8), ("gpu", "a100", 2))),
        ("gpu:a100:2(IDX:0,1),mlu370:4", (("gpu", "a100", 2), ("mlu370", "", 4))),
        ("(null)", ()),
        ("", ()),
    ],
)
def test_gres_strings(text: str, parsed: tuple[tuple[str, str, int], ...]) -> None:
    assert parse_gres(text) == parsed


def test_completion_log_lines() -> None:
    jobs = parse_sacct_completion("7|suanwang-j-1|COMPLETED|0:0|vm\n8|x|FAILED|0:9|vm\nbad\n")
    assert [(j.job_id, j.state, j.exit_code, j.signal) for j in jobs] == [
        (7, "COMPLETED", 0, None),
        (8, "FAILED", None, 9),
    ]
