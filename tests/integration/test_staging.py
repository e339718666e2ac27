"""Staging a dataset to the region where its job must run, agent to agent (issue 14).

Two regions on this machine, each with its own storage root and a real transfer agent on
127.0.0.1 (subprocesses, mutual TLS with certificates the control plane's CA issued at
registration). A job whose dataset is only in region ``sh`` can only run in region ``nx``
(the only real cluster is there): the control loop's scheduler decides to stage the data,
the source agent pushes it, the control plane compares the target's manifest with the
dataset's, and only then is the job admitted; in its sandbox it reads every file and finds
the same SHA-256. SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from suanwang.adapters.backends.sandbox import probe_host, sandbox_refusal
from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.datasets import DatasetFormat
from suanwang.domain.errors import ValidationError
from suanwang.domain.jobs import JobSpec, JobState, Resources
from suanwang.domain.tenancy import Principal, Scope
from suanwang.domain.transfers import TransferState
from suanwang.services.platform import Platform
from suanwang.transfer import Identity
from transfer_support import AgentProcess

OP = Principal("op", Scope.OPERATOR, None)
FLEET = """
regions: [{name: sh}, {name: nx}]
clusters:
  - {name: local, region: nx, kind: real, nodes: [{name: n1, chip: cpu, cards: 2}]}
wan_links: [{between: [sh, nx], bandwidth_gbps: 1, rtt_ms: 1, distance_km: 10}]
"""
READER = """
import hashlib, json, os
base = os.environ["SUANWANG_DATASET_DIR"]
seen = {}
for root, _, files in os.walk(base):
    for name in files:
        path = os.path.join(root, name)
        seen[os.path.relpath(path, base)] = hashlib.sha256(open(path, "rb").read()).hexdigest()
print(json.dumps(seen, sort_keys=True))
"""
SANDBOX_REFUSAL = sandbox_refusal(probe_host())
pytestmark = pytest.mark.skipif(SANDBOX_REFUSAL is not None, reason=str(SANDBOX_REFUSAL))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def plane(settings: Settings, tmp_path: Path) -> Iterator[tuple[Platform, list[AgentProcess]]]:
    platform = build_platform(settings)  # the system clock: certificates are real
    platform.fleet.apply_yaml(FLEET)
    agents = []
    for region in ("sh", "nx"):
        root = settings.storage_dir / region
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        port = free_port()
        _, issued = platform.agents.register(OP, f"agent-{region}", region, f"127.0.0.1:{port}")
        files = []
        for name, text in (
            ("cert", issued.cert_pem),
            ("key", issued.key_pem),
            ("ca", issued.ca_pem),
        ):
            path = tmp_path / f"{region}.{name}.pem"
            path.write_text(text)
            path.chmod(0o600)
            files.append(path)
        agent = AgentProcess(region, root, Identity(*files), port)
        agent.start()
        agents.append(agent)
    try:
        yield platform, agents
    finally:
        for agent in agents:
            agent.stop()
        platform.uows.engine.dispose()  # type: ignore[attr-defined]


def test_a_job_starts_only_after_its_data_is_staged_and_verified(
    plane: tuple[Platform, list[AgentProcess]],
) -> None:
    platform, _ = plane
    platform.tenancy.create_tenant("acme", "Acme", {"cpu": 2})
    key = platform.tenancy.create_key(
        OP, tenant="acme", scope=Scope.TENANT_MEMBER, name="", expires_in_s=None
    )
    acme = platform.tenancy.authenticate(key.secret)
    payload = {f"shard-{n:03d}.jsonl": os.urandom(1000 + n) for n in range(40)}
    payload["big/blob.bin"] = os.urandom(24 << 20)
    made = platform.datasets.create(acme, "corpus", DatasetFormat.JSONL, "sh")
    for path, data in payload.items():
        upload = platform.datasets.begin_file(acme, made.id, path)
        upload.write(data)
        platform.datasets.finish_file(acme, upload)
    dataset = platform.datasets.seal(acme, made.id)
    with pytest.raises(ValidationError, match="no region"):
        platform.transfers.copy(acme, "corpus", "mars")

    spec = JobSpec(
        name="reader",
        command=(sys.executable, "-c", READER),
        resources=Resources(chip="cpu", cards_per_node=1),
        dataset="corpus",
    )
    job = platform.jobs.submit(acme, spec, None).job
    reasons, deadline = set(), time.monotonic() + 120
    while not (detail := platform.jobs.get(acme, job.id)).job.state.terminal:
        assert time.monotonic() < deadline, (
            detail.job.reason,
            platform.transfers.of_dataset(acme, "corpus"),
        )
        reasons.add(detail.job.reason)
        platform.control.tick()
        platform.transfers.tick()  # the server runs it in a thread of its own
        time.sleep(0.1)

    (transfer,) = platform.transfers.of_dataset(acme, "corpus")
    assert transfer.state is TransferState.VERIFIED, transfer.error
    assert (transfer.source_region, transfer.target_region) == ("sh", "nx")
    assert transfer.bytes_done == transfer.bytes_total == dataset.size_bytes
    assert transfer.id.startswith("stage-")
    assert any("staging dataset corpus from sh to nx" in r for r in reasons), reasons
    assert any("waiting for dataset corpus to reach nx" in r for r in reasons), reasons
    attempt = detail.attempts[-1]
    assert transfer.ended_at is not None
    assert attempt.admitted_at >= transfer.ended_at
    output = platform.jobs.logs(acme, job.id, 0, 1 << 20)[0].decode()
    assert detail.job.state is JobState.SUCCEEDED, output
    seen = json.loads(output.strip().splitlines()[-1])
    assert seen == {p: __import__("hashlib").sha256(d).hexdigest() for p, d in payload.items()}
    shown = platform.datasets.get(acme, "corpus")
    assert shown.ready_regions() == ("nx", "sh")
    replica = Path(shown.replica_in("nx").path)  # type: ignore[union-attr]
    assert stat.S_IMODE((replica / "big" / "blob.bin").stat().st_mode) == 0o644
    assert (replica / "big" / "blob.bin").stat().st_uid == 0


def test_copy_needs_agents_and_shows_progress(plane: tuple[Platform, list[AgentProcess]]) -> None:
    platform, agents = plane
    platform.tenancy.create_tenant("beta", "Beta", {})
    key = platform.tenancy.create_key(
        OP, tenant="beta", scope=Scope.TENANT_MEMBER, name="", expires_in_s=None
    )
    beta = platform.tenancy.authenticate(key.secret)
    made = platform.datasets.create(beta, "set", DatasetFormat.BINARY, "sh")
    upload = platform.datasets.begin_file(beta, made.id, "x.bin")
    upload.write(os.urandom(4 << 20))
    platform.datasets.finish_file(beta, upload)
    platform.datasets.seal(beta, made.id)
    agents[1].kill()  # the target agent is down: the transfer waits, then resumes
    transfer = platform.transfers.copy(beta, "set", "nx")
    assert transfer.state is TransferState.PENDING
    restart_at, deadline = time.monotonic() + 3, time.monotonic() + 120
    while (current := platform.transfers.get(beta, transfer.id)).state.active:
        assert time.monotonic() < deadline, current
        if time.monotonic() > restart_at and agents[1].proc.poll() is not None:  # type: ignore[union-attr]
            agents[1].start()
        platform.transfers.tick()
        time.sleep(0.2)
    assert current.state is TransferState.VERIFIED, current
    assert platform.datasets.get(beta, "set").ready_regions() == ("nx", "sh")
