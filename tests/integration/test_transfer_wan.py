"""A dataset copied agent to agent over the WAN testbed (1 Gbit/s, 50 ms RTT when the delay
line builds): killed twice mid-way (sender, then receiver), resumed, byte-identical, and no
acknowledged chunk sent again. The testbed is always torn down, also on failure."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from suanwang.transfer import AgentClient, PushOptions, TransferState
from transfer_support import (
    AgentProcess,
    NetNs,
    NsClient,
    Pki,
    make_dataset,
    tree_sha256,
    wait_progress,
    wait_state,
)
from wan_testbed import WanTestbed, build_delay_line, unavailable

MIB = 1 << 20
SH, NX = "10.250.0.1", "10.250.0.2"


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    reason = unavailable()
    if reason:
        if os.environ.get("SUANWANG_REQUIRE_WAN_TESTBED") == "1":
            pytest.fail(f"WAN testbed required: {reason}")
        pytest.skip(reason)
    work = tmp_path_factory.mktemp("xfer")
    delay, why = build_delay_line(work)
    rtt_ms = 50 if delay else 0
    if delay is None:
        print(f"WAN test without added delay: {why}")  # noqa: T201
    bed = WanTestbed(work, delay)
    try:
        print(bed.up("1gbit", rtt_ms))  # noqa: T201
        yield rtt_ms
    finally:
        bed.down()


def test_killed_twice_over_the_wan_resumes_byte_identical(testbed: int, tmp_path: Path) -> None:
    pki = Pki(tmp_path / "pki")
    control = pki.identity("control", "control", hosts=[])
    sh = AgentProcess(
        "sh",
        tmp_path / "sh" / "root",
        pki.identity("a-sh", "agent", [SH]),
        7700,
        netns="sh",
        host=SH,
    )
    nx = AgentProcess(
        "nx",
        tmp_path / "nx" / "root",
        pki.identity("a-nx", "agent", [NX]),
        7700,
        netns="nx",
        host=NX,
    )
    in_sh, in_nx = NetNs("sh"), NetNs("nx")
    source = sh.root / "ds"
    source.mkdir(parents=True)
    nx.root.mkdir(parents=True)
    make_dataset(
        source,
        small=2000,
        small_size=16_000,
        large=[104 * MIB, 64 * MIB, 64 * MIB + 1234, 16 * MIB],
    )
    client = NsClient(AgentClient(sh.address, control), in_sh)
    opts = PushOptions(reconnect_timeout_s=90)

    def start(agent: AgentProcess, ns: NetNs) -> None:
        agent.start()
        ns.call(agent.wait_ready, control)

    try:
        start(sh, in_sh)
        start(nx, in_nx)
        client.start_push("wan-1", "ds", nx.address, "copy", opts)
        first = wait_progress(client, "wan-1", 0.3, 120)
        sh.kill()  # kill 1: the sender
        start(sh, in_sh)
        resumed = client.start_push("wan-1", "ds", nx.address, "copy", opts)
        assert resumed.chunks_done >= first.chunks_done > 0
        wait_progress(client, "wan-1", 0.65, 120)
        nx.kill()  # kill 2: the receiver; the sender reconnects when it is back
        start(nx, in_nx)
        final = wait_state(client, "wan-1", {TransferState.VERIFIED, TransferState.FAILED}, 180)
        assert final.state is TransferState.VERIFIED, final.error
        assert final.duplicate_acked_arrivals == 0  # no acknowledged chunk arrived again
        assert tree_sha256(nx.root / "copy") == tree_sha256(source)
        assert final.bytes_total >= 256 * MIB
    finally:
        sh.stop()
        nx.stop()
        shutil.rmtree(tmp_path / "sh", ignore_errors=True)
        shutil.rmtree(tmp_path / "nx", ignore_errors=True)
