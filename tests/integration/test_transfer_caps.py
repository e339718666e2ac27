"""Bandwidth caps set by the control plane, measured on real agents (127.0.0.1, mutual TLS).

Three regions, one agent each (subprocesses with certificates from the control plane's CA).
The operator caps the sh-nx link at 4 MiB/s in the fleet file; sh-gz is uncapped. A
tenant's ``max_bytes_per_s`` caps one transfer; two transfers over the capped link share
its 4 MiB/s; a tenant's cap above the link's does not lift it. Rates are timed at the
target agent's storage root: from the moment it opens the transfer (its staging directory
appears) to the moment the verified replica is installed (its files appear), polled every
10 ms; an uncapped copy on 127.0.0.1 takes well under a second, so a cap that does not hold
fails the ``<= cap * 1.1`` check. SQLite only: the database plays no part in the rates.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from suanwang.bootstrap import build_platform
from suanwang.config import Settings
from suanwang.domain.datasets import DatasetFormat
from suanwang.domain.tenancy import Principal, Scope
from suanwang.domain.transfers import TransferState
from suanwang.services.platform import Platform
from suanwang.transfer import Identity
from transfer_support import AgentProcess

OP = Principal("op", Scope.OPERATOR, None)
MIB = 1 << 20
CAP = 4 * MIB
PART = 2 * MIB
FLEET = """
regions: [{name: sh}, {name: nx}, {name: gz}]
clusters: []
wan_links:
  - {between: [sh, nx], bandwidth_gbps: 1, rtt_ms: 1, distance_km: 10, transfer_cap: 4MiB/s}
  - {between: [sh, gz], bandwidth_gbps: 1, rtt_ms: 1, distance_km: 10}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_agents(platform: Platform, storage: Path, certs: Path) -> list[AgentProcess]:
    agents = []
    for region in ("sh", "nx", "gz"):
        root = storage / region
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        port = free_port()
        _, issued = platform.agents.register(OP, f"agent-{region}", region, f"127.0.0.1:{port}")
        files = []
        for name, text in (
            ("cert", issued.cert_pem),
            ("key", issued.key_pem),
            ("ca", issued.ca_pem),
        ):
            path = certs / f"{region}.{name}.pem"
            path.write_text(text)
            path.chmod(0o600)
            files.append(path)
        agent = AgentProcess(region, root, Identity(*files), port)
        agent.start()
        agents.append(agent)
    for agent in agents:  # listening: the copies below measure bytes, not start-up
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", agent.port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, f"agent {agent.region} did not start"
                time.sleep(0.1)
    return agents


@pytest.fixture
def plane(tmp_path: Path) -> Iterator[tuple[Platform, Principal, Path]]:
    settings = Settings(data_dir=tmp_path / "data", database_url=f"sqlite:///{tmp_path / 'db'}")
    platform = build_platform(settings)  # the system clock: certificates and rates are real
    platform.fleet.apply_yaml(FLEET)
    agents = start_agents(platform, settings.storage_dir, tmp_path)
    platform.tenancy.create_tenant("acme", "Acme", {})
    key = platform.tenancy.create_key(
        OP, tenant="acme", scope=Scope.TENANT_MEMBER, name="", expires_in_s=None
    )
    try:
        yield platform, platform.tenancy.authenticate(key.secret), settings.storage_dir
    finally:
        for agent in agents:
            agent.stop()
        platform.uows.engine.dispose()  # type: ignore[attr-defined]


def dataset(platform: Platform, who: Principal, name: str, size: int) -> str:
    made = platform.datasets.create(who, name, DatasetFormat.BINARY, "sh")
    for i in range(size // PART):
        upload = platform.datasets.begin_file(who, made.id, f"part-{i:03d}.bin")
        upload.write(os.urandom(PART))
        platform.datasets.finish_file(who, upload)
    platform.datasets.seal(who, made.id)
    return made.id


@dataclass
class Watch:
    """When the target agent opened each transfer (its staging directory appears) and
    installed it (the replica's files appear): agent-side times, polled every 10 ms."""

    paths: list[Path]
    seen: dict[Path, float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set() and len(self.seen) < len(self.paths):
            for path in self.paths:
                if path not in self.seen and path.exists():
                    self.seen[path] = time.monotonic()
            time.sleep(0.01)


def copy_and_time(
    plane: tuple[Platform, Principal, Path], copies: list[tuple[str, str, float | None]]
) -> float:
    """Start ``copies`` (dataset, region, cap), drive them to the end; the seconds from the
    first staging directory to the last installed replica."""
    platform, who, root = plane
    ids = [platform.transfers.copy(who, name, region, cap).id for name, region, cap in copies]
    opened = [
        root / region / ".suanwang-staging" / t
        for (_, region, _), t in zip(copies, ids, strict=True)
    ]
    installed = [
        Path(platform.datasets.get(who, name).replica_in(region).path) / "part-000.bin"  # type: ignore[union-attr]
        for name, region, _ in copies
    ]
    watch = Watch([*opened, *installed])
    thread = threading.Thread(target=watch.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 90
    try:
        while any(platform.transfers.get(who, i).state.active for i in ids):
            assert time.monotonic() < deadline, [platform.transfers.get(who, i) for i in ids]
            platform.transfers.tick()
            time.sleep(0.05)
    finally:
        watch.stop.set()
        thread.join(5)
    for i in ids:
        done = platform.transfers.get(who, i)
        assert done.state is TransferState.VERIFIED, done.error
    return max(watch.seen[p] for p in installed) - min(watch.seen[p] for p in opened)


def test_a_tenants_cap_holds_and_the_link_cap_is_shared(
    plane: tuple[Platform, Principal, Path],
) -> None:
    platform, acme, _ = plane
    # one transfer over the uncapped link, capped by the tenant at 4 MiB/s
    size = 16 * MIB
    dataset(platform, acme, "one", size)
    seconds = copy_and_time(plane, [("one", "gz", CAP)])
    assert platform.transfers.of_dataset(acme, "one")[0].max_bytes_per_s == CAP
    assert size / seconds <= CAP * 1.1, (size / seconds / MIB, seconds)
    assert seconds >= 3.0

    # two at once over the sh-nx link the operator capped at 4 MiB/s: they share it, and a
    # tenant's cap above the link's does not lift it
    size = 8 * MIB
    for name in ("two", "three"):
        dataset(platform, acme, name, size)
    seconds = copy_and_time(plane, [("two", "nx", 64 * MIB), ("three", "nx", None)])
    assert 2 * size / seconds <= CAP * 1.1, (2 * size / seconds / MIB, seconds)
