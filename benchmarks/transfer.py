"""Transfer engine benchmark on the WAN testbed: suanwang agents vs rclone, aria2c, one TCP
stream and rsync/scp over ssh, at 1 Gbit/s with 0 ms and 50 ms RTT.

Every tool moves the same dataset (many small files plus a few large ones; ``--size-mib``,
default 2048) from namespace ``sh`` (10.250.0.1) to ``nx`` (10.250.0.2):

- ``suanwang``: two ``suanwang agent serve`` processes, mutual TLS 1.3, per-chunk BLAKE3
  verified before acknowledgement, durable journal, whole-file SHA-256 verification before
  the rename into place (wall time: push to ``verified``);
- ``rclone``: ``rclone serve http`` in sh, ``rclone copy --transfers 8
  --multi-thread-streams 8`` in nx (plain HTTP, no encryption);
- ``aria2c``: the same HTTP server, ``aria2c -x8 -s8 -j8`` in nx (plain HTTP);
- ``tcp-1``: ``tar | socat`` over one TCP stream (plain);
- ``rsync-ssh`` and ``scp``: over OpenSSH (encrypted), keys made here.

Tools run round robin, ``--runs`` times each (default 3); reported per tool and RTT: the
median throughput as a fraction of the shaped rate (payload bytes / wall time / rate),
all runs, and CPU seconds per GB (sender + receiver processes, from /proc and wait4),
with the load average at each run (the machine is shared). Needs root and the testbed
(``SUANWANG_WAN_TESTBED``, default ``<repo>/../shared/tools/wan-testbed``).

Run: ``.venv/bin/python benchmarks/transfer.py [--size-mib 2048] [--runs 3] [--rtt 0 50]``.
Writes ``benchmarks/results/transfer.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "src"))

from suanwang.transfer import AgentClient, PushOptions, TransferState  # noqa: E402
from transfer_support import AgentProcess, NetNs, NsClient, Pki, make_dataset  # noqa: E402
from wan_testbed import WanTestbed, build_delay_line, unavailable  # noqa: E402

SH, NX = "10.250.0.1", "10.250.0.2"
MIB = 1 << 20
TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """utime + stime + reaped children's, in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(fields[i]) for i in (11, 12, 13, 14)) / TICK


def run_waited(cmd: list[str], *, timeout_s: float = 900.0, cwd: Path | None = None) -> float:
    """Run ``cmd`` to completion; its CPU seconds (with its children) from wait4."""
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + timeout_s
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError(" ".join(cmd))
        time.sleep(0.01)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        err = proc.stderr.read().decode(errors="replace")[-500:] if proc.stderr else ""
        raise RuntimeError(f"{cmd[:6]} exited {proc.returncode}: {err}")
    return usage.ru_utime + usage.ru_stime


def in_ns(ns: str, *cmd: str) -> list[str]:
    return ["ip", "netns", "exec", ns, *cmd]


def tree_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


@dataclass
class Result:
    tool: str
    rtt_ms: int
    run: int
    seconds: float
    bytes: int
    cpu_s: float
    load1: float

    def fraction(self, rate_bps: float) -> float:
        return self.bytes * 8 / self.seconds / rate_bps


class Bench:
    def __init__(self, work: Path, size_mib: int) -> None:
        self.work = work
        self.src = work / "sh" / "ds"
        self.dst_root = work / "nx"
        self.dst_root.mkdir(parents=True, exist_ok=True)
        self.size_mib = size_mib
        self.servers: list[subprocess.Popen[bytes]] = []
        self.agents: list[AgentProcess] = []
        self.pki = Pki(work / "pki")
        self.control = self.pki.identity("control", "control", hosts=[])

    # --- data and servers ---------------------------------------------------------------
    def make_data(self) -> int:
        small = 2000
        rest = self.size_mib * MIB - small * 16_000
        large = [rest // 6] * 5 + [rest - 5 * (rest // 6)]
        make_dataset(self.src, small=small, small_size=32_000, large=large)
        subprocess.run(["sync"], check=True)
        return tree_bytes(self.src)

    def fresh_dst(self, name: str) -> Path:
        dst = self.dst_root / name
        shutil.rmtree(dst, ignore_errors=True)
        return dst

    def clean_dst(self, dst: Path) -> None:
        shutil.rmtree(dst, ignore_errors=True)
        subprocess.run(["sync"], check=True)

    def start_servers(self) -> None:
        self.servers.append(
            subprocess.Popen(
                in_ns(
                    "sh",
                    "rclone",
                    "serve",
                    "http",
                    str(self.src),
                    "--addr",
                    f"{SH}:8080",
                    "--read-only",
                ),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        ssh = self.work / "ssh"
        ssh.mkdir(exist_ok=True)
        for name in ("host", "client"):
            if not (ssh / name).exists():
                subprocess.run(
                    ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ssh / name)],
                    check=True,
                )
        shutil.copy(ssh / "client.pub", ssh / "authorized_keys")
        (ssh / "sshd_config").write_text(
            f"Port 2222\nListenAddress {NX}\nHostKey {ssh / 'host'}\nPidFile {ssh / 'sshd.pid'}\n"
            f"AuthorizedKeysFile {ssh / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
            "PasswordAuthentication no\nStrictModes no\nUsePAM no\nSubsystem sftp internal-sftp\n"
        )
        Path("/run/sshd").mkdir(exist_ok=True)
        self.sshd = subprocess.Popen(
            in_ns("nx", "/usr/sbin/sshd", "-D", "-e", "-f", str(ssh / "sshd_config")),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.servers.append(self.sshd)
        self.sh_agent = AgentProcess(
            "sh",
            self.work / "sh",
            self.pki.identity("a-sh", "agent", [SH]),
            7700,
            netns="sh",
            host=SH,
        )
        self.nx_agent = AgentProcess(
            "nx", self.dst_root, self.pki.identity("a-nx", "agent", [NX]), 7700, netns="nx", host=NX
        )
        for agent, ns in ((self.sh_agent, "sh"), (self.nx_agent, "nx")):
            self.agents.append(agent)
            agent.start()
            NetNs(ns).call(agent.wait_ready, self.control)
        time.sleep(1.0)

    def stop_servers(self) -> None:
        for agent in self.agents:
            agent.stop()
        self.agents.clear()
        for proc in self.servers:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        self.servers.clear()

    def ssh_cmd(self) -> str:
        key = self.work / "ssh" / "client"
        return (
            f"ssh -p 2222 -i {key} -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "
            "-o LogLevel=ERROR"
        )

    # --- tools --------------------------------------------------------------------------
    def suanwang(self, dst: Path, tid: str) -> tuple[float, float]:
        raw = AgentClient(self.sh_agent.address, self.control, keep_alive=True)
        client = NsClient(raw, NetNs("sh"))
        pids = [a.proc.pid for a in (self.sh_agent, self.nx_agent) if a.proc]
        cpu0 = sum(proc_cpu(p) for p in pids)
        t0 = time.monotonic()
        client.start_push(tid, "ds", self.nx_agent.address, dst.name, PushOptions())
        while (st := client.status(tid)).state is TransferState.RUNNING:
            time.sleep(0.02)
        seconds = time.monotonic() - t0
        raw.close()
        if st.state is not TransferState.VERIFIED:
            raise RuntimeError(f"suanwang push {tid}: {st.state} {st.error}")
        return seconds, sum(proc_cpu(p) for p in pids) - cpu0

    def rclone(self, dst: Path, _tid: str) -> tuple[float, float]:
        server = self.servers[0].pid
        cpu0 = proc_cpu(server)
        t0 = time.monotonic()
        cpu = run_waited(
            in_ns(
                "nx",
                "rclone",
                "copy",
                "--http-url",
                f"http://{SH}:8080",
                ":http:",
                str(dst),
                "--transfers",
                "8",
                "--checkers",
                "16",
                "--multi-thread-streams",
                "8",
                "--multi-thread-cutoff",
                "64M",
                "--buffer-size",
                "32M",
            )
        )
        return time.monotonic() - t0, cpu + proc_cpu(server) - cpu0

    def aria2c(self, dst: Path, tid: str) -> tuple[float, float]:
        dst.mkdir(parents=True)
        urls = self.work / f"urls-{tid}.txt"
        with urls.open("w") as fh:
            for p in sorted(self.src.rglob("*")):
                if p.is_file():
                    rel = p.relative_to(self.src)
                    fh.write(f"http://{SH}:8080/{rel}\n  out={rel}\n")
        server = self.servers[0].pid
        cpu0 = proc_cpu(server)
        t0 = time.monotonic()
        cpu = run_waited(
            in_ns(
                "nx",
                "aria2c",
                "-q",
                "-x8",
                "-s8",
                "-j8",
                "--min-split-size=8M",
                "--file-allocation=none",
                "--allow-overwrite=true",
                "-d",
                str(dst),
                "-i",
                str(urls),
            )
        )
        return time.monotonic() - t0, cpu + proc_cpu(server) - cpu0

    def tcp1(self, dst: Path, _tid: str) -> tuple[float, float]:
        dst.mkdir(parents=True)
        recv = subprocess.Popen(
            in_ns("nx", "bash", "-c", f"socat -u TCP-LISTEN:9000,reuseaddr - | tar -C {dst} -xf -")
        )
        time.sleep(0.3)
        t0 = time.monotonic()
        cpu = run_waited(
            in_ns("sh", "bash", "-c", f"tar -C {self.src} -cf - . | socat -u - TCP:{NX}:9000")
        )
        _, status, usage = os.wait4(recv.pid, 0)
        recv.returncode = os.waitstatus_to_exitcode(status)
        return time.monotonic() - t0, cpu + usage.ru_utime + usage.ru_stime

    def rsync_ssh(self, dst: Path, _tid: str) -> tuple[float, float]:
        cpu0 = proc_cpu(self.sshd.pid)
        t0 = time.monotonic()
        cpu = run_waited(
            in_ns(
                "sh",
                "rsync",
                "-a",
                "--whole-file",
                "-e",
                self.ssh_cmd(),
                f"{self.src}/",
                f"root@{NX}:{dst}/",
            )
        )
        return time.monotonic() - t0, cpu + proc_cpu(self.sshd.pid) - cpu0

    def scp(self, dst: Path, _tid: str) -> tuple[float, float]:
        cpu0 = proc_cpu(self.sshd.pid)
        t0 = time.monotonic()
        key = self.work / "ssh" / "client"
        cpu = run_waited(
            in_ns(
                "sh",
                "scp",
                "-O",  # the scp protocol (streams files); SFTP mode pays round trips per file
                "-q",
                "-r",
                "-P",
                "2222",
                "-i",
                str(key),
                "-o",
                "StrictHostKeyChecking=no",
                "-o",
                "UserKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
                str(self.src),
                f"root@{NX}:{dst}",
            )
        )
        return time.monotonic() - t0, cpu + proc_cpu(self.sshd.pid) - cpu0


TOOLS = ["suanwang", "aria2c", "rclone", "tcp-1", "rsync-ssh", "scp"]


def run(args: argparse.Namespace) -> dict[str, Any]:
    reason = unavailable()
    if reason:
        raise SystemExit(f"benchmark needs the WAN testbed: {reason}")
    work = Path(tempfile.mkdtemp(prefix="suanwang-xfer-bench-", dir=args.work))
    bench = Bench(work, args.size_mib)
    total = bench.make_data()
    delay, why = build_delay_line(work / "xfer")
    methods: dict[str, Callable[[Path, str], tuple[float, float]]] = {
        "suanwang": bench.suanwang,
        "aria2c": bench.aria2c,
        "rclone": bench.rclone,
        "tcp-1": bench.tcp1,
        "rsync-ssh": bench.rsync_ssh,
        "scp": bench.scp,
    }
    results: list[Result] = []
    failures: list[dict[str, Any]] = []
    bed = WanTestbed(work / "xfer", delay)
    try:
        for rtt in args.rtt:
            if rtt and delay is None:
                print(f"skipping RTT {rtt} ms: {why}")
                continue
            print(bed.up(args.rate, rtt))
            try:
                bench.start_servers()
                for i in range(args.runs):
                    for tool in args.tools:
                        dst = bench.fresh_dst(f"dst-{tool}-{rtt}-{i}")
                        load = os.getloadavg()[0]
                        try:
                            seconds, cpu = methods[tool](dst, f"b-{rtt}-{i}")
                            got = tree_bytes(dst)
                            if got != total:
                                raise RuntimeError(f"{got} bytes arrived, {total} sent")
                        except (RuntimeError, TimeoutError, OSError) as exc:
                            failures.append(
                                {"tool": tool, "rtt_ms": rtt, "run": i, "error": str(exc)}
                            )
                            print(f"rtt {rtt:3d} run {i} {tool:10s} FAILED: {exc}")
                            bench.clean_dst(dst)
                            continue
                        r = Result(tool, rtt, i, seconds, total, cpu, load)
                        results.append(r)
                        print(
                            f"rtt {rtt:3d} run {i} {tool:10s} {seconds:6.2f}s "
                            f"{r.fraction(args.rate_bps):.3f} of link  cpu {cpu:6.2f}s  "
                            f"load {load:.1f}",
                            flush=True,
                        )
                        bench.clean_dst(dst)
                        partial = summarise(results, args, total) | {"failures": failures}
                        write(partial, REPO / "benchmarks" / "results", args.out)
            finally:
                bench.stop_servers()
                bed.down()
    finally:
        bed.down()
        shutil.rmtree(work, ignore_errors=True)
    return summarise(results, args, total) | {"failures": failures}


def summarise(results: list[Result], args: argparse.Namespace, total: int) -> dict[str, Any]:
    rows = []
    for rtt in sorted({r.rtt_ms for r in results}):
        for tool in args.tools:
            mine = [r for r in results if r.tool == tool and r.rtt_ms == rtt]
            if not mine:
                continue
            fr = [r.fraction(args.rate_bps) for r in mine]
            rows.append(
                {
                    "tool": tool,
                    "rtt_ms": rtt,
                    "median_fraction": round(statistics.median(fr), 3),
                    "fractions": [round(f, 3) for f in fr],
                    "median_seconds": round(statistics.median(r.seconds for r in mine), 2),
                    "cpu_s_per_gb": round(
                        statistics.median(r.cpu_s / (r.bytes / 1e9) for r in mine), 2
                    ),
                    "load1": [round(r.load1, 1) for r in mine],
                    "encrypted": tool in ("suanwang", "rsync-ssh", "scp"),
                    "verified": tool == "suanwang",
                }
            )
    return {
        "rate": args.rate,
        "size_bytes": total,
        "runs": args.runs,
        "rows": rows,
        "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "cpus": os.cpu_count(),
    }


def write(out: dict[str, Any], results_dir: Path, stem: str) -> None:
    results_dir.mkdir(parents=True, exist_ok=True)
    (results_dir / f"{stem}.json").write_text(json.dumps(out, indent=2) + "\n")
    lines = [
        f"# Transfer benchmark ({out['when']}, {out['cpus']} CPUs, shared)",
        "",
        f"{out['size_bytes'] / MIB:.0f} MiB dataset over the WAN testbed at {out['rate']}; "
        "median of "
        f"{out['runs']} runs; fraction = payload bytes / wall time / shaped rate.",
        "",
        "| RTT | tool | encrypted | median fraction | runs | median s | CPU s/GB | load at runs |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in out["rows"]:
        lines.append(
            f"| {r['rtt_ms']} ms | {r['tool']} | {'yes' if r['encrypted'] else 'no'} | "
            f"{r['median_fraction']:.3f} | {', '.join(f'{f:.3f}' for f in r['fractions'])} | "
            f"{r['median_seconds']} | {r['cpu_s_per_gb']} | {', '.join(map(str, r['load1']))} |"
        )
    for f in out.get("failures", []):
        lines.append(f"\nFailed: {f['tool']} at {f['rtt_ms']} ms, run {f['run']}: {f['error']}")
    (results_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")


def main() -> None:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the finally blocks (testbed down)
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mib", type=int, default=2048)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--rtt", type=int, nargs="+", default=[0, 50])
    p.add_argument("--rate", default="1gbit")
    p.add_argument("--tools", nargs="+", default=TOOLS, choices=TOOLS)
    p.add_argument("--work", default=None, help="directory for the data (default: $TMPDIR)")
    p.add_argument("--out", default="transfer", help="results file stem")
    args = p.parse_args()
    args.rate_bps = float(args.rate.lower().replace("gbit", "e9").replace("mbit", "e6"))
    out = run(args)
    write(out, REPO / "benchmarks" / "results", args.out)
    print((REPO / "benchmarks" / "results" / f"{args.out}.md").read_text())


if __name__ == "__main__":
    main()
