"""Helpers for transfer tests and benchmarks: a CA with agent/control certificates, agent
subprocesses, and datasets of many small and a few large files."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from suanwang.transfer import AgentClient, AgentUnavailable, Identity, issue, new_ca
from suanwang.transfer.status import TransferState, TransferStatus

SRC = Path(__file__).resolve().parents[1] / "src"


@dataclass
class Pki:
    directory: Path
    ca: Path = field(init=False)

    def __post_init__(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        cert, key = new_ca("suanwang-test-ca", time.time())
        self.ca = self._write("ca", cert, key)[0]
        self._ca_pem = (cert, key)

    def _write(self, name: str, cert: bytes, key: bytes) -> tuple[Path, Path]:
        c, k = self.directory / f"{name}.crt", self.directory / f"{name}.key"
        c.write_bytes(cert)
        k.write_bytes(key)
        k.chmod(0o600)
        return c, k

    def identity(
        self,
        name: str,
        role: str,
        hosts: Sequence[str] = ("127.0.0.1",),
        valid_s: float = 86400.0,
        now: float | None = None,
    ) -> Identity:
        cert, key = issue(
            *self._ca_pem,
            name,
            hosts=list(hosts),
            role=role,  # type: ignore[arg-type]
            now=time.time() if now is None else now,
            valid_s=valid_s,
        )
        c, k = self._write(name, cert, key)
        return Identity(c, k, self.ca)


@dataclass
class AgentProcess:
    region: str
    root: Path
    identity: Identity
    port: int
    netns: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    host: str = "127.0.0.1"
    proc: subprocess.Popen[bytes] | None = None
    extra_args: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "suanwang.cli.main",
            "agent",
            "serve",
            "--region",
            self.region,
            "--root",
            str(self.root),
            "--listen",
            self.address,
            "--cert",
            str(self.identity.cert_file),
            "--key",
            str(self.identity.key_file),
            "--ca",
            str(self.identity.ca_file),
            *self.extra_args,
        ]
        if self.netns:
            cmd = ["ip", "netns", "exec", self.netns, *cmd]
        env = os.environ | {"PYTHONPATH": str(SRC)} | self.env
        log = (self.root.parent / f"agent-{self.region}.log").open("ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def wait_ready(self, control: Identity, timeout_s: float = 90.0) -> None:
        client = AgentClient(self.address, control, timeout_s=2.0)
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                client.status("__ready_probe__")
            except AgentUnavailable:
                if time.monotonic() > deadline or (self.proc and self.proc.poll() is not None):
                    raise
                time.sleep(0.1)
                continue
            except Exception:  # noqa: BLE001 - not_found means it answers
                return

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def make_dataset(
    base: Path, *, small: int, small_size: int, large: Sequence[int], seed: int = 1
) -> None:
    """``small`` files of about ``small_size`` bytes in nested dirs plus files of ``large`` sizes."""
    import random

    rng = random.Random(seed)
    for i in range(small):
        d = base / f"part-{i % 7}"
        d.mkdir(parents=True, exist_ok=True)
        (d / f"rec-{i:05d}.bin").write_bytes(rng.randbytes(rng.randint(0, small_size)))
    block = rng.randbytes(1 << 20)
    for j, size in enumerate(large):
        with (base / f"big-{j}.bin").open("wb") as fh:
            left = size
            n = 0
            while left > 0:
                part = block[: min(left, len(block))]
                # vary every MiB so chunks differ
                fh.write(n.to_bytes(8, "little") + part[8:])
                left -= len(part)
                n += 1
    (base / "empty.txt").write_bytes(b"")


def tree_sha256(base: Path) -> dict[str, str]:
    out = {}
    for p in sorted(base.rglob("*")):
        if p.is_file():
            h = hashlib.sha256()
            with p.open("rb") as fh:
                while b := fh.read(1 << 22):
                    h.update(b)
            out[str(p.relative_to(base))] = h.hexdigest()
    return out


def wait_state(
    client: AgentClient,
    tid: str,
    states: set[TransferState],
    timeout_s: float,
) -> TransferStatus:
    deadline = time.monotonic() + timeout_s
    while True:
        st = client.status(tid)
        if st.state in states:
            return st
        if time.monotonic() > deadline:
            raise TimeoutError(f"{tid} still {st}")
        time.sleep(0.1)


def wait_progress(
    client: AgentClient, tid: str, fraction: float, timeout_s: float
) -> TransferStatus:
    deadline = time.monotonic() + timeout_s
    while True:
        st = client.status(tid)
        if st.bytes_done >= fraction * st.bytes_total or st.state is not TransferState.RUNNING:
            return st
        if time.monotonic() > deadline:
            raise TimeoutError(f"{tid} stuck at {st}")
        time.sleep(0.05)


class NetNs:
    """Run calls with the calling thread in a named network namespace (``ip netns``)."""

    CLONE_NEWNET = 0x40000000

    def __init__(self, name: str) -> None:
        self.name = name

    def call(self, fn, *args, **kwargs):  # type: ignore[no-untyped-def]
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        with (
            open("/proc/thread-self/ns/net") as home,
            open(f"/var/run/netns/{self.name}") as target,
        ):
            if libc.setns(target.fileno(), self.CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns {self.name}")
            try:
                return fn(*args, **kwargs)
            finally:
                if libc.setns(home.fileno(), self.CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back")


class NsClient:
    """An AgentClient whose connections are made from inside a namespace."""

    def __init__(self, client: AgentClient, ns: NetNs) -> None:
        self._client = client
        self._ns = ns

    def __getattr__(self, name: str):  # type: ignore[no-untyped-def]
        method = getattr(self._client, name)
        return lambda *a, **k: self._ns.call(method, *a, **k)
