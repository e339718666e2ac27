"""Two transfer agents as real processes on 127.0.0.1: resume after SIGKILL, corruption,
bad input, a full disk, concurrency. Every transfer ends byte-identical or failed with a
reason; the receiver's counter of acknowledged chunks received again stays 0."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from suanwang.transfer import AgentClient, AgentError, PushOptions, TransferState
from suanwang.transfer.journal import replay
from transfer_support import (
    AgentProcess,
    Pki,
    make_dataset,
    tree_sha256,
    wait_progress,
    wait_state,
)

MIB = 1 << 20
ENDED = {TransferState.VERIFIED, TransferState.FAILED, TransferState.CANCELLED}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("dataset") / "ds"
    make_dataset(base, small=300, small_size=30_000, large=[20 * MIB, 13 * MIB + 17, 9 * MIB])
    return base


class Pair:
    def __init__(
        self,
        base: Path,
        pki: Pki,
        receiver_env: dict[str, str] | None = None,
        receiver_root: Path | None = None,
    ) -> None:
        self.pki = pki
        self.control = pki.identity("control", "control", hosts=[])
        self.sh = AgentProcess(
            "sh", base / "sh" / "root", pki.identity("agent-sh", "agent"), free_port()
        )
        self.nx = AgentProcess(
            "nx",
            receiver_root or base / "nx" / "root",
            pki.identity("agent-nx", "agent"),
            free_port(),
            env=receiver_env or {},
        )
        for a in (self.sh, self.nx):
            a.root.mkdir(parents=True, exist_ok=True)
            a.start()
        for a in (self.sh, self.nx):
            a.wait_ready(self.control)
        self.client = AgentClient(self.sh.address, self.control)

    def restart(self, agent: AgentProcess) -> None:
        agent.start()
        agent.wait_ready(self.control)

    def stop(self) -> None:
        for a in (self.sh, self.nx):
            a.stop()


@pytest.fixture
def pair(tmp_path: Path, pki: Pki, dataset: Path) -> Iterator[Pair]:
    p = Pair(tmp_path, pki)
    shutil.copytree(dataset, p.sh.root / "ds")
    yield p
    p.stop()


def receiver_journal(agent: AgentProcess, tid: str) -> list[list[object]]:
    return replay(agent.root / ".suanwang-journal" / "recv" / f"{tid}.jsonl")


def test_killed_twice_and_resumed_is_byte_identical_and_resends_no_acked_chunk(
    pair: Pair, dataset: Path
) -> None:
    opts = PushOptions(max_bytes_per_s=12 * MIB, chunk_size=1 * MIB, reconnect_timeout_s=60)
    c = pair.client
    c.start_push("resume-1", "ds", pair.nx.address, "copy/ds", opts)
    st = wait_progress(c, "resume-1", 0.25, 60)
    pair.sh.kill()  # 1: the sender dies
    pair.restart(pair.sh)
    assert c.status("resume-1").state is TransferState.INTERRUPTED
    resumed = c.start_push("resume-1", "ds", pair.nx.address, "copy/ds", opts)
    assert resumed.state is TransferState.RUNNING
    assert resumed.chunks_done >= st.chunks_done > 0  # it starts from what was acknowledged
    wait_progress(c, "resume-1", 0.5, 60)
    pair.nx.kill()  # 2: the receiver dies; the sender reconnects when it is back
    time.sleep(0.5)
    pair.restart(pair.nx)
    wait_progress(c, "resume-1", 0.75, 60)
    pair.sh.kill()  # 3: the sender again
    pair.restart(pair.sh)
    c.start_push("resume-1", "ds", pair.nx.address, "copy/ds", opts)
    final = wait_state(c, "resume-1", ENDED, 120)
    assert final.state is TransferState.VERIFIED, final.error
    assert tree_sha256(pair.nx.root / "copy" / "ds") == tree_sha256(dataset)
    assert final.duplicate_acked_arrivals == 0
    commits = [r[1] for r in receiver_journal(pair.nx, "resume-1") if r[0] == "c"]
    assert len(commits) == len(set(commits)) == final.chunks_total  # each chunk committed once
    assert not (pair.nx.root / ".suanwang-journal" / "recv" / "resume-1.arrivals").exists()
    assert not (pair.nx.root / ".suanwang-staging" / "resume-1").exists()
    # pushing again is idempotent: verified, nothing sent
    assert (
        c.start_push("resume-1", "ds", pair.nx.address, "copy/ds", opts).state
        is TransferState.VERIFIED
    )


def test_corrupted_chunks_are_detected_and_only_they_are_resent(
    tmp_path: Path, pki: Pki, dataset: Path
) -> None:
    p = Pair(
        tmp_path, pki, receiver_env={"SUANWANG_TRANSFER_FAULTS": "recv_flip=3,40;disk_flip=12"}
    )
    try:
        shutil.copytree(dataset, p.sh.root / "ds")
        opts = PushOptions(chunk_size=1 * MIB)
        p.client.start_push("corrupt-1", "ds", p.nx.address, "copy", opts)
        final = wait_state(p.client, "corrupt-1", ENDED, 120)
        assert final.state is TransferState.VERIFIED, final.error
        assert final.chunks_resent == 3
        assert tree_sha256(p.nx.root / "copy") == tree_sha256(dataset)
        records = receiver_journal(p.nx, "corrupt-1")
        assert [r[1] for r in records if r[0] == "r"] == [12]  # the flipped chunk alone revoked
        commits = [r[1] for r in records if r[0] == "c"]
        assert sorted(commits) == sorted([*range(final.chunks_total), 12])
    finally:
        p.stop()


def test_a_chunk_corrupted_every_time_fails_the_transfer_after_bounded_retries(
    tmp_path: Path, pki: Pki, dataset: Path
) -> None:
    # the fault fires once per process: four receivers' worth is simulated by retries=0
    p = Pair(tmp_path, pki, receiver_env={"SUANWANG_TRANSFER_FAULTS": "recv_flip=5"})
    try:
        shutil.copytree(dataset, p.sh.root / "ds")
        opts = PushOptions(chunk_size=1 * MIB, max_chunk_retries=0)
        p.client.start_push("corrupt-2", "ds", p.nx.address, "copy", opts)
        final = wait_state(p.client, "corrupt-2", ENDED, 120)
        assert final.state is TransferState.FAILED
        assert "chunk 5 failed" in (final.error or "")
        assert not (p.nx.root / "copy").exists()  # never a silently incomplete dataset
    finally:
        p.stop()


def test_missing_source_fails_clearly(pair: Pair) -> None:
    with pytest.raises(AgentError) as err:
        pair.client.start_push("missing-1", "no-such-dir", pair.nx.address, "copy")
    assert err.value.code == "bad_path"
    assert "not found" in err.value.message
    # a file that disappears after the push started
    opts = PushOptions(max_bytes_per_s=8 * MIB, chunk_size=1 * MIB)
    pair.client.start_push("missing-2", "ds", pair.nx.address, "copy2", opts)
    (pair.sh.root / "ds" / "big-0.bin").unlink()
    final = wait_state(pair.client, "missing-2", ENDED, 60)
    assert final.state is TransferState.FAILED
    assert "source file missing: big-0.bin" in (final.error or "")
    assert not (pair.nx.root / "copy2").exists()


def test_paths_outside_the_root_are_refused(pair: Pair, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("x")
    (pair.sh.root / "escape").symlink_to(outside)
    (pair.sh.root / "ds2").mkdir()
    (pair.sh.root / "ds2" / "link").symlink_to(outside / "secret")
    for i, src in enumerate(["../outside", "/etc", "escape", "ds2", ".suanwang-journal"]):
        with pytest.raises(AgentError) as err:
            pair.client.start_push(f"esc-{i}", src, pair.nx.address, "copy")
        assert err.value.code == "bad_path", src
    for i, dst in enumerate(["../x", "/tmp/x", ".suanwang-staging/x"]):
        pair.client.start_push(f"escd-{i}", "ds", pair.nx.address, dst)
        final = wait_state(pair.client, f"escd-{i}", ENDED, 30)
        assert final.state is TransferState.FAILED
        assert "bad_request" in (final.error or "")
    with pytest.raises(AgentError):
        pair.client.manifest("../outside")


def test_manifest_lists_files_with_sha256(pair: Pair, dataset: Path) -> None:
    entries = pair.client.manifest("ds")
    assert {e.path: e.sha256 for e in entries} == tree_sha256(dataset)
    assert sum(e.size for e in entries) == sum(
        p.stat().st_size for p in dataset.rglob("*") if p.is_file()
    )


def test_cancel_stops_and_cleans_the_receiver(pair: Pair) -> None:
    opts = PushOptions(max_bytes_per_s=4 * MIB, chunk_size=1 * MIB)
    pair.client.start_push("cancel-1", "ds", pair.nx.address, "copy", opts)
    wait_progress(pair.client, "cancel-1", 0.1, 30)
    assert pair.client.cancel("cancel-1").state is TransferState.CANCELLED
    assert not (pair.nx.root / ".suanwang-staging" / "cancel-1").exists()
    assert not (pair.nx.root / "copy").exists()


def test_conflicting_arguments_for_a_transfer_id_are_refused(pair: Pair) -> None:
    opts = PushOptions(max_bytes_per_s=4 * MIB)
    pair.client.start_push("conf-1", "ds", pair.nx.address, "copy", opts)
    with pytest.raises(AgentError) as err:
        pair.client.start_push("conf-1", "ds", pair.nx.address, "elsewhere", opts)
    assert err.value.code == "conflict"
    pair.client.cancel("conf-1")


@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_full_target_disk_fails_with_enospc(tmp_path: Path, pki: Pki, dataset: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(small)], check=True)
    try:
        (small / "root").mkdir()
        p = Pair(tmp_path, pki, receiver_root=small / "root")
        try:
            shutil.copytree(dataset, p.sh.root / "ds")
            p.client.start_push("full-1", "ds", p.nx.address, "copy", PushOptions(chunk_size=MIB))
            final = wait_state(p.client, "full-1", ENDED, 60)
            assert final.state is TransferState.FAILED
            assert "enospc" in (final.error or "")
            assert "disk full" in (final.error or "")
            assert not (small / "root" / "copy").exists()
        finally:
            p.stop()
    finally:
        subprocess.run(["umount", "-l", str(small)], check=False)


def test_eight_concurrent_transfers_all_verify(pair: Pair, dataset: Path) -> None:
    ids = [f"conc-{i}" for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(
            pool.map(
                lambda t: pair.client.start_push(
                    t, "ds", pair.nx.address, f"many/{t}", PushOptions(chunk_size=2 * MIB)
                ),
                ids,
            )
        )
    want = tree_sha256(dataset)
    for t in ids:
        final = wait_state(pair.client, t, ENDED, 180)
        assert final.state is TransferState.VERIFIED, (t, final.error)
        assert tree_sha256(pair.nx.root / "many" / t) == want


def test_caps_per_transfer_and_per_link_hold(pair: Pair) -> None:
    """Two pushes to the same target share one link bucket; one push alone obeys its own cap."""
    part = pair.sh.root / "part"
    part.mkdir()
    for name in ("big-1.bin", "big-2.bin"):  # 13 MiB + 9 MiB
        shutil.copy(pair.sh.root / "ds" / name, part / name)
    size = sum(p.stat().st_size for p in part.iterdir())
    cap = 8 * MIB
    t0 = time.monotonic()
    for t in ("link-a", "link-b"):
        pair.client.start_push(
            t,
            "part",
            pair.nx.address,
            f"lk/{t}",
            PushOptions(chunk_size=MIB, link_max_bytes_per_s=cap),
        )
    for t in ("link-a", "link-b"):
        assert wait_state(pair.client, t, ENDED, 60).state is TransferState.VERIFIED
    both = time.monotonic() - t0
    assert both >= 0.85 * 2 * size / cap  # the two shared the link's 8 MiB/s
    t0 = time.monotonic()
    pair.client.start_push(
        "own-cap",
        "part",
        pair.nx.address,
        "lk/own",
        PushOptions(chunk_size=MIB, max_bytes_per_s=16 * MIB),
    )
    assert wait_state(pair.client, "own-cap", ENDED, 60).state is TransferState.VERIFIED
    assert time.monotonic() - t0 >= 0.85 * size / (16 * MIB)
