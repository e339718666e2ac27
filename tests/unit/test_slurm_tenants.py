"""Per-tenant Slurm partition, account and QoS (the ``slurm.tenants`` block): parsed with
errors naming the field, stored and shown like the rest of the connection, and used by
submit for the tenant's jobs (platform engines and unmapped tenants get the block's)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from suanwang.adapters.backends.sandbox import HostFacts
from suanwang.adapters.backends.slurm import SlurmBackend
from suanwang.adapters.backends.slurm_cli import Completed
from suanwang.config import Settings
from suanwang.domain.connections import (
    SlurmConnection,
    SlurmTenant,
    connection_data,
    connection_from_data,
)
from suanwang.domain.errors import ValidationError
from suanwang.domain.workloads import Workload
from suanwang.ports import LaunchRequest, NodeSlice
from suanwang.services.catalogue import default_catalogue
from suanwang.services.fleet_file import parse_fleet_yaml

CAT = default_catalogue()
DATA = Path(__file__).resolve().parents[1] / "data" / "slurm"
FLEET = """
regions: [{name: r1}]
clusters:
  - name: hpc
    region: r1
    kind: real
    nodes: [{name: n1, chip: ascend-910b, cards: 8}]
    slurm:
      partition: npu
      account: ai-platform
      qos: normal
      tenants:
        acme: {account: acme-ai, qos: high}
        hospital-7: {partition: npu-secure, account: h7}
"""
MAPPED = SlurmConnection(
    "npu",
    account="ai-platform",
    qos="normal",
    tenants=(
        SlurmTenant("acme", account="acme-ai", qos="high"),
        SlurmTenant("hospital-7", partition="npu-secure", account="h7"),
    ),
)


def test_the_tenants_block_parses_into_a_sorted_tuple() -> None:
    (cluster,) = parse_fleet_yaml(FLEET, CAT).clusters
    assert cluster.backend == "slurm"
    assert cluster.connection == MAPPED
    assert MAPPED.partitions == frozenset({"npu", "npu-secure"})


@pytest.mark.parametrize(
    ("tenants", "field"),
    [
        ("{acme: {qos: 'hi gh'}}", "clusters[0].slurm.tenants.acme.qos"),
        ("{acme: {account: 'a;b'}}", "clusters[0].slurm.tenants.acme.account"),
        ("{acme: {partition: ''}}", "clusters[0].slurm.tenants.acme"),
        ("{acme: {}}", "clusters[0].slurm.tenants.acme"),
        ("{acme: {priority: 9}}", "clusters[0].slurm.tenants.acme.priority"),
        ("{acme: {qos: 3}}", "clusters[0].slurm.tenants.acme.qos"),
        ("{acme: high}", "clusters[0].slurm.tenants.acme"),
        ("{Acme: {qos: high}}", "clusters[0].slurm.tenants.Acme"),
        ("{a: {qos: high}}", "clusters[0].slurm.tenants.a"),
        ("{'acme;x': {qos: high}}", "clusters[0].slurm.tenants.acme;x"),
        ("[acme]", "clusters[0].slurm.tenants"),
    ],
)
def test_bad_tenant_entries_name_the_field(tenants: str, field: str) -> None:
    text = (
        "regions: [{name: r1}]\nclusters:\n  - {name: c1, region: r1, kind: real, "
        "nodes: [{name: n1, chip: ascend-910b, cards: 8}], "
        f"slurm: {{partition: p, tenants: {tenants}}}}}\n"
    )
    with pytest.raises(ValidationError) as err:
        parse_fleet_yaml(text, CAT)
    assert err.value.field == field


def test_stored_and_shown_form_round_trips() -> None:
    data = connection_data(MAPPED)
    assert data["slurm"]["tenants"] == {
        "acme": {"account": "acme-ai", "qos": "high"},
        "hospital-7": {"partition": "npu-secure", "account": "h7"},
    }
    assert connection_from_data(data) == MAPPED
    assert connection_data(SlurmConnection("p"))["slurm"]["tenants"] == {}
    assert connection_from_data({"slurm": {"partition": "p"}}) == SlurmConnection("p")


class FakeSlurm:
    """Answers sbatch with job 42 and squeue / sinfo with the recordings; records argv."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout_s: float) -> Completed:
        self.calls.append(list(argv))
        program = Path(argv[0]).name
        if program == "sbatch":
            return Completed(0, "42\n", "")
        recorded = {"squeue": "squeue-22.05.json", "sinfo": "sinfo-22.05.json"}[program]
        return Completed(0, (DATA / recorded).read_text(), "")

    def sbatch_options(self) -> tuple[str | None, str | None, str | None]:
        (argv,) = [c for c in self.calls if Path(c[0]).name == "sbatch"]
        found = dict(a[2:].split("=", 1) for a in argv if a.startswith("--") and "=" in a)
        return found.get("partition"), found.get("account"), found.get("qos")


class Clock:
    def now(self) -> float:
        return 1_800_000_000.0


def backend(tmp_path: Path, fake: FakeSlurm) -> SlurmBackend:
    settings = Settings(
        data_dir=tmp_path / "data",
        slurm_spool_dir=tmp_path / "spool",
        local_isolation="single-user-dev",
    )
    host = HostFacts(0, -1, "/usr/bin/bwrap", "/usr/bin/setpriv", "/usr/bin/env", True)
    return SlurmBackend(Clock(), settings, runner=fake, host=host)


def submitted(tmp_path: Path, tenant: str, workload: Workload = Workload.TENANT_JOB) -> FakeSlurm:
    fake = FakeSlurm()
    status = backend(tmp_path, fake).submit(
        LaunchRequest(
            job_id="j1",
            attempt=1,
            tenant=tenant,
            cluster="hpc",
            command=("true",),
            placements=(NodeSlice("vm", 1),),
            connection=MAPPED,
            chip="ascend-910b",
            workload=workload,
        )
    )
    assert status.handle["slurm_job_id"] == 42
    return fake


@pytest.mark.parametrize(
    ("tenant", "workload", "expected"),
    [
        ("acme", Workload.TENANT_JOB, ("npu", "acme-ai", "high")),
        ("hospital-7", Workload.TENANT_JOB, ("npu-secure", "h7", "normal")),
        ("beta", Workload.TENANT_JOB, ("npu", "ai-platform", "normal")),
        ("acme", Workload.PLATFORM_ENGINE, ("npu", "ai-platform", "normal")),
    ],
)
def test_sbatch_gets_the_tenants_partition_account_and_qos(
    tmp_path: Path, tenant: str, workload: Workload, expected: tuple[str, str, str]
) -> None:
    assert submitted(tmp_path, tenant, workload).sbatch_options() == expected


def test_runs_include_the_tenants_partitions(tmp_path: Path) -> None:
    """The recorded jobs sit in partition ``debug``: found when a tenant maps to it."""
    slurm = backend(tmp_path, FakeSlurm())
    assert slurm.runs("hpc", SlurmConnection("other")) == []
    mapped = SlurmConnection("other", tenants=(SlurmTenant("acme", partition="debug"),))
    assert len(slurm.runs("hpc", mapped)) == 5
