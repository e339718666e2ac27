"""The transfer service over fakes: what it asks the agents and what it records.

A replica becomes ready only when the agent says verified *and* the target's manifest
equals the dataset's; an unreachable agent changes nothing but the shown error; an
interrupted push is pushed again; staging records one transfer per dataset and target."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from fakes import FakeClock, FakeDatabase

from suanwang.domain.datasets import (
    DatasetFormat,
    DatasetRecord,
    DatasetReplica,
    DatasetState,
    ManifestEntry,
    ReplicaState,
)
from suanwang.domain.fleet import RegionSpec, WanLinkSpec
from suanwang.domain.ids import RegionName
from suanwang.domain.transfers import AgentRecord, LinkCaps, TransferProgress, TransferState
from suanwang.ports import AgentUnreachable
from suanwang.services.transfers import Transfers

FILES = (ManifestEntry("a", 3, "aa"), ManifestEntry("b/c", 5, "bb"))


@dataclass
class FakeAgents:
    """Answers as a test scripts it; records every call."""

    answers: list[TransferProgress | Exception] = field(default_factory=list)
    held: list[ManifestEntry] = field(default_factory=lambda: list(FILES))
    calls: list[tuple[str, ...]] = field(default_factory=list)
    links: list[LinkCaps | None] = field(default_factory=list)

    def _next(self) -> TransferProgress:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    def start_push(
        self,
        source: str,
        transfer_id: str,
        src: str,
        target: str,
        dst: str,
        link: LinkCaps | None = None,
    ) -> TransferProgress:
        self.calls.append(("push", source, transfer_id, src, target, dst))
        self.links.append(link)
        return self._next()

    def status(self, source: str, transfer_id: str) -> TransferProgress:
        self.calls.append(("status", source, transfer_id))
        return self._next()

    def manifest(self, address: str, path: str) -> list[ManifestEntry]:
        self.calls.append(("manifest", address, path))
        return self.held


@dataclass
class FakeFiles:
    finalised: list[str] = field(default_factory=list)

    def replica_dir(self, region: str, tenant: str, dataset_id: str) -> str:
        return f"/s/{region}/tenants/{tenant}/datasets/{dataset_id}"

    def finalise(self, region: str, tenant: str, dataset_id: str) -> None:
        self.finalised.append(region)


def world() -> tuple[FakeDatabase, FakeClock, FakeAgents, FakeFiles, Transfers]:
    db, clock, agents, files = FakeDatabase(), FakeClock(), FakeAgents(), FakeFiles()
    with db() as uow:
        for region in ("sh", "nx"):
            uow.t.regions[region] = RegionSpec(region, region)
            uow.datasets.put_agent(
                AgentRecord(f"ag-{region}", region, f"{region}:7700", "1", 1e12, 0.0)
            )
        uow.fleet.put_wan_link(WanLinkSpec(RegionName("nx"), RegionName("sh"), 8.0, 40.0, 1000.0))
        replica = DatasetReplica("ds-000000000001", "sh", ReplicaState.READY, "/s/sh/x", 0.0)
        uow.datasets.add(
            DatasetRecord(
                "ds-000000000001", "acme", "corpus", DatasetFormat.TEXT, DatasetState.READY, 8,
                FILES, 0.0, 0.0, replicas=(replica,),
            )
        )  # fmt: skip
        uow.commit()
    transfers = Transfers(db, clock, agents, files, min_period_s=0.0)  # type: ignore[arg-type]
    return db, clock, agents, files, transfers


def staged(db: FakeDatabase, transfers: Transfers) -> str:
    with db() as uow:
        transfers.stage(uow, "acme", "corpus", "nx")
        transfers.stage(uow, "acme", "corpus", "nx")  # the next cycle: nothing more
        uow.commit()
        (transfer,) = uow.datasets.transfers()
    return transfer.id


def test_ready_only_after_the_agent_and_the_manifest_agree() -> None:
    db, _, agents, files, transfers = world()
    tid = staged(db, transfers)
    agents.answers = [
        AgentUnreachable("down"),
        TransferProgress(TransferState.RUNNING, 8, 3, 1.0, 5.0),
        TransferProgress(TransferState.PENDING, 8, 3),  # interrupted: push again
        TransferProgress(TransferState.RUNNING, 8, 5, 1.0, 3.0, chunks_resent=1),
        TransferProgress(TransferState.VERIFIED, 8, 8),
    ]
    transfers.tick()
    with db() as uow:
        first = uow.datasets.transfer(tid)
        assert first is not None
        assert (first.state, first.error) == (
            TransferState.PENDING,
            "agent unreachable, retrying: down",
        )
    transfers.tick()
    transfers.tick()
    with db() as uow:
        running = uow.datasets.transfer(tid)
        dataset = uow.datasets.get("ds-000000000001")
    assert running is not None
    assert running.state is TransferState.RUNNING
    assert running.chunks_resent == 1
    assert dataset is not None
    assert dataset.ready_regions() == ("sh",)
    transfers.tick()
    with db() as uow:
        done = uow.datasets.transfer(tid)
        dataset = uow.datasets.get("ds-000000000001")
    assert done is not None
    assert done.state is TransferState.VERIFIED
    assert dataset is not None
    assert dataset.ready_regions() == ("nx", "sh")
    assert files.finalised == ["nx"]
    rel = "tenants/acme/datasets/ds-000000000001"
    assert [c[0] for c in agents.calls] == ["push", "push", "status", "push", "status", "manifest"]
    assert agents.calls[0] == ("push", "sh:7700", tid, rel, "nx:7700", rel)
    # the fleet's 8 Gbit/s link, for the agent's streams; no caps
    assert agents.links == [LinkCaps(1e9, None, None)] * 3


def test_a_manifest_that_differs_fails_the_transfer() -> None:
    db, _, agents, files, transfers = world()
    tid = staged(db, transfers)
    agents.held = [FILES[0], ManifestEntry("b/c", 5, "tampered")]
    agents.answers = [TransferProgress(TransferState.VERIFIED, 8, 8)]
    transfers.tick()
    with db() as uow:
        failed = uow.datasets.transfer(tid)
        dataset = uow.datasets.get("ds-000000000001")
    assert failed is not None
    assert failed.state is TransferState.FAILED
    assert "1 file(s) wrong or missing" in failed.error
    assert dataset is not None
    assert dataset.ready_regions() == ("sh",)
    assert dataset.replica_in("nx") is not None
    assert dataset.replica_in("nx").state is ReplicaState.FAILED  # type: ignore[union-attr]
    assert files.finalised == []


@pytest.mark.parametrize("target", ["sh", "nowhere"])
def test_staging_needs_a_target_without_the_data_and_with_an_agent(target: str) -> None:
    db, _, _, _, transfers = world()
    with db() as uow:
        transfers.stage(uow, "acme", "corpus", target)
        transfers.stage(uow, "other", "corpus", "nx")  # another tenant's name: nothing
        assert uow.datasets.transfers() == []
