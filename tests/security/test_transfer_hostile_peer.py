"""A hostile peer on the transfer plane: a compromised agent (valid agent certificate) or
a control client sends crafted frames. Nothing may be written or read outside the
receiving agent's storage root, and every bad frame is answered with an ERROR."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from suanwang.transfer import Agent, AgentClient, AgentConfig, AgentError, wire
from suanwang.transfer.plan import FileEntry, make_plan, plan_digest
from suanwang.transfer.tls import client_context, connect
from transfer_support import Pki


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Pki, Path, int]]:
    pki = Pki(tmp_path / "pki")
    root = tmp_path / "root"
    root.mkdir()
    (tmp_path / "outside").mkdir()
    (root / "link-out").symlink_to(tmp_path / "outside")
    agent = Agent(
        AgentConfig("r", root, pki.identity("victim", "agent"), root / ".suanwang-journal")
    )
    port = agent.bind("127.0.0.1", 0)
    threading.Thread(target=agent.serve_forever, daemon=True).start()
    yield pki, root, port
    agent.stop()


def open_frame(
    files: list[list[object]], dst: str = "copy", chunk_size: int = 1 << 20
) -> dict[str, object]:
    plan = make_plan([FileEntry(str(p), int(s)) for p, s in files], chunk_size)  # type: ignore[call-overload]
    return {
        "transfer_id": "evil",
        "dst": dst,
        "digest": plan_digest(plan),
        "chunk_size": chunk_size,
        "files": files,
    }


def exchange(
    pki: Pki, port: int, frames: list[tuple[wire.Kind, dict[str, object], bytes]]
) -> wire.Frame:
    sock = connect(
        client_context(pki.identity("mallory", "agent")), "127.0.0.1", port, timeout_s=10
    )
    with sock:
        reply = None
        for kind, meta, payload in frames:
            wire.send(sock, kind, meta, payload)
            reply = wire.recv(sock)
            if reply.kind is wire.Kind.ERROR:
                return reply
        assert reply is not None
        return reply


@pytest.mark.parametrize(
    "files",
    [[["../../outside/pwn", 10]], [["/etc/pwn", 10]], [["a/../../pwn", 10]], [["", 1]]],
)
def test_plan_paths_that_leave_the_staging_area_are_refused(
    setup: tuple[Pki, Path, int], files: list[list[object]]
) -> None:
    pki, root, port = setup
    reply = exchange(
        pki,
        port,
        [
            (
                wire.Kind.OPEN,
                {
                    "transfer_id": "evil",
                    "dst": "x",
                    "digest": "0",
                    "chunk_size": 1 << 20,
                    "files": files,
                },
                b"",
            )
        ],
    )
    assert reply.kind is wire.Kind.ERROR
    assert not (root.parent / "outside" / "pwn").exists()


@pytest.mark.parametrize("dst", ["../outside/x", "/tmp/x", "link-out/x", ".suanwang-journal/x"])
def test_destinations_outside_the_root_are_refused(setup: tuple[Pki, Path, int], dst: str) -> None:
    pki, root, port = setup
    reply = exchange(pki, port, [(wire.Kind.OPEN, open_frame([["f", 10]], dst=dst), b"")])
    assert reply.kind is wire.Kind.ERROR
    assert list((root.parent / "outside").iterdir()) == []


def test_a_chunk_out_of_the_plan_or_of_the_wrong_size_is_refused(
    setup: tuple[Pki, Path, int],
) -> None:
    pki, _, port = setup
    ctx = client_context(pki.identity("mallory", "agent"))
    frame = open_frame([["f", 10]])
    for meta, payload in (({"id": 99, "b3": "0"}, b"x" * 10), ({"id": 0, "b3": "0"}, b"x" * 11)):
        with connect(ctx, "127.0.0.1", port, timeout_s=10) as channel:
            wire.send(channel, wire.Kind.OPEN, frame)
            assert wire.recv(channel).kind is wire.Kind.OK
            reply = exchange(
                pki,
                port,
                [
                    (wire.Kind.JOIN, {"transfer_id": "evil", "digest": frame["digest"]}, b""),
                    (wire.Kind.CHUNK, meta, payload),
                ],
            )
            assert reply.kind is wire.Kind.ERROR
            assert reply.meta["code"] == "bad_request"
            told = wire.recv(channel)  # the sender also hears it on its ack channel
            assert told.kind is wire.Kind.ERROR


def test_a_plan_whose_digest_does_not_match_its_files_is_refused(
    setup: tuple[Pki, Path, int],
) -> None:
    pki, _, port = setup
    frame = open_frame([["f", 10]]) | {"digest": "f" * 64}
    assert exchange(pki, port, [(wire.Kind.OPEN, frame, b"")]).kind is wire.Kind.ERROR


def test_chunks_before_open_and_finish_of_another_transfer_are_refused(
    setup: tuple[Pki, Path, int],
) -> None:
    pki, _, port = setup
    assert (
        exchange(pki, port, [(wire.Kind.CHUNK, {"id": 0, "b3": "0"}, b"x")]).kind is wire.Kind.ERROR
    )
    assert (
        exchange(pki, port, [(wire.Kind.JOIN, {"transfer_id": "nope", "digest": "0"}, b"")]).kind
        is wire.Kind.ERROR
    )


def test_a_control_client_cannot_read_outside_the_root(setup: tuple[Pki, Path, int]) -> None:
    pki, _, port = setup
    client = AgentClient(f"127.0.0.1:{port}", pki.identity("ctl", "control", hosts=[]))
    for path in ("../outside", "/etc", "link-out", ".suanwang-journal"):
        with pytest.raises(AgentError) as err:
            client.manifest(path)
        assert err.value.code == "bad_path"
