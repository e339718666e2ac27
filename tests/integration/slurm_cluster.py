"""A real one-node Slurm cluster for the tests: munged, slurmctld and slurmd on 127.0.0.1.

Started once per test session (``slurm_cluster`` fixture in tests/integration/conftest.py)
from Debian's ``slurm-wlm`` and ``munge`` (``.ci/run`` installs them), as root, following
../shared/SERVICES.md §1: a private munged (own socket), free ports, state and logs in a
temporary directory, fake GRES devices (``mknod c 1 3``, like /dev/null) for
``ascend910b`` (the GRES of chip ``ascend-910b`` in ``domain/chip_resources.py``), CPUs
and memory overridden (``SlurmdParameters=config_overrides``) so that 8 jobs fit at once.

Clients reach it through wrapper scripts in ``bin/`` that set ``SLURM_CONF``: a cluster's
``slurm: {bin_dir: ...}`` points at them, so nothing depends on the test's environment.
The tenant uids the tests use get passwd and group entries (Slurm must resolve a job's
uid); the ones this session created are removed at the end.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

PARTITION = "debug"
GRES = "ascend910b"
CHIP = "ascend-910b"
CARDS = 8
CPUS = 16
TENANT_UIDS = range(151000, 151012)
ENGINE_UID = 151999
CLIENTS = ("sbatch", "squeue", "sinfo", "scancel", "sacct", "scontrol", "srun")
NEEDED = ("/usr/sbin/slurmctld", "/usr/sbin/slurmd", "/usr/sbin/munged", "/usr/bin/sbatch")


def unavailable() -> str | None:
    """Why the cluster cannot start here (None if it can)."""
    if os.geteuid() != 0:
        return "the Slurm test cluster needs root (slurmd starts jobs as tenant uids)"
    missing = [p for p in NEEDED if not os.path.exists(p)]
    if missing:
        return f"Slurm is not installed ({', '.join(missing)} missing): apt-get install slurm-wlm munge"
    try:
        pwd.getpwnam("munge")
    except KeyError:
        return "the munge user does not exist (apt-get install munge)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SlurmCluster:
    """The running cluster: its directory, wrapper ``bin_dir`` and daemons."""

    root: Path
    bin_dir: Path
    conf: Path
    munge_socket: Path
    procs: dict[str, int]

    @property
    def node(self) -> str:
        """The one node's name (slurmd registers under the short hostname)."""
        return socket.gethostname().split(".")[0]

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, timeout: float = 10.0) -> str:
        """Run a Slurm client (``scontrol``, ``squeue``…) against this cluster."""
        done = subprocess.run(
            [str(self.bin_dir / argv[0]), *argv[1:]],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise AssertionError(f"{argv} failed: {done.stderr.strip()}")
        return done.stdout

    def stop_controller(self) -> None:
        _stop(self.procs.pop("slurmctld", 0))

    def start_controller(self) -> None:
        """Start slurmctld again on its saved state (jobs are recovered)."""
        subprocess.run(["/usr/sbin/slurmctld"], env=self.env, check=True, timeout=30)
        self.procs["slurmctld"] = _read_pid(self.root / "slurmctld.pid")
        _wait_idle(self)

    def job_ids(self, name_prefix: str = "suanwang-") -> list[int]:
        out = self.run("squeue", "-h", "-t", "all", "-o", "%i %j")
        return [
            int(i)
            for i, n in (line.split(" ", 1) for line in out.splitlines())
            if n.startswith(name_prefix)
        ]


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.write_text(text)
    path.chmod(mode)


def _config(root: Path, host: str, ctld_port: int, slurmd_port: int, socket_path: Path) -> str:
    return f"""ClusterName=suanwangtest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={socket_path}
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/log/slurmctld.log
SlurmdLogFile={root}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc={root}/log/jobcomp.txt
SchedulerType=sched/backfill
SchedulerParameters=sched_min_interval=100000
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
MessageTimeout=3
GresTypes={GRES}
MinJobAge=300
KillWait=2
NodeName={host} NodeAddr=127.0.0.1 CPUs={CPUS} RealMemory=4096 Gres={GRES}:{CARDS} State=UNKNOWN
PartitionName={PARTITION} Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


def _ensure_identities(uids: list[int]) -> list[int]:
    """passwd and group entries ``suanwang-<uid>`` for ``uids``; the ones created."""
    created = []
    for uid in uids:
        try:
            pwd.getpwuid(uid)
            continue
        except KeyError:
            pass
        name = f"suanwang-{uid}"
        subprocess.run(["groupadd", "-g", str(uid), name], check=True, capture_output=True)
        subprocess.run(
            [
                "useradd",
                "-M",
                "-N",
                "-u",
                str(uid),
                "-g",
                str(uid),
                "-d",
                "/nonexistent",
                "-s",
                "/usr/sbin/nologin",
                name,
            ],
            check=True,
            capture_output=True,
        )
        created.append(uid)
    return created


def _remove_identities(uids: list[int]) -> None:
    for uid in uids:
        name = f"suanwang-{uid}"
        subprocess.run(["userdel", name], check=False, capture_output=True)
        subprocess.run(["groupdel", name], check=False, capture_output=True)


def _read_pid(path: Path, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(path.read_text().strip())
        time.sleep(0.02)
    raise AssertionError(f"no pid in {path}")


def _stop(pid: int) -> None:
    if not pid:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        if Path(f"/proc/{pid}/stat").exists() and ") Z " in Path(f"/proc/{pid}/stat").read_text():
            return  # a zombie for PID 1 to reap
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def _wait_empty(cluster: SlurmCluster, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            if not cluster.run("squeue", "-h", "-o", "%i", timeout=3).split():
                return
        time.sleep(0.1)


def _wait_idle(cluster: SlurmCluster, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
            states = cluster.run("sinfo", "-h", "-o", "%T", timeout=3).split()
            if states and all(s in ("idle", "mixed", "allocated") for s in states):
                return
        time.sleep(0.1)
    log = (cluster.root / "log" / "slurmd.log").read_text(errors="replace")[-2000:]
    raise AssertionError(f"the Slurm node did not become idle in {timeout:.0f} s:\n{log}")


@contextlib.contextmanager
def running() -> Iterator[SlurmCluster]:
    """Start the cluster; stop it (and remove what it created) on exit."""
    root = Path(tempfile.mkdtemp(prefix="suanwang-slurm-"))
    root.chmod(0o755)
    for sub in ("state", "spool", "log", "dev", "bin", "munge"):
        (root / sub).mkdir()
    for i in range(CARDS):
        os.mknod(root / "dev" / f"{GRES}{i}", 0o666 | 0o020000, os.makedev(1, 3))
    munge_dir = root / "munge"
    shutil.chown(munge_dir, "munge", "munge")
    munge_dir.chmod(0o755)
    socket_path = munge_dir / "munge.socket"
    host = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    _write(conf, _config(root, host, _free_port(), _free_port(), socket_path))
    _write(
        root / "gres.conf",
        f"AutoDetect=off\nNodeName={host} Name={GRES} File={root}/dev/{GRES}[0-{CARDS - 1}]\n",
    )
    for name in CLIENTS:
        program = shutil.which(name) or f"/usr/bin/{name}"
        _write(root / "bin" / name, f'#!/bin/sh\nSLURM_CONF={conf} exec {program} "$@"\n', 0o755)
    cluster = SlurmCluster(root, root / "bin", conf, socket_path, {})
    created = _ensure_identities([*TENANT_UIDS, ENGINE_UID])
    try:
        _start(cluster, munge_dir)
        yield cluster
    finally:
        if "slurmctld" in cluster.procs:  # no job of the session outlives it
            with contextlib.suppress(AssertionError, subprocess.TimeoutExpired):
                cluster.run("scancel", f"--partition={PARTITION}", timeout=5)
            _wait_empty(cluster)
        for name in ("slurmd", "slurmctld", "munged"):
            _stop(cluster.procs.pop(name, 0))
        _remove_identities(created)
        shutil.rmtree(root, ignore_errors=True)


def _start(cluster: SlurmCluster, munge_dir: Path) -> None:
    key = Path("/etc/munge/munge.key")
    subprocess.run(
        [
            "runuser",
            "-u",
            "munge",
            "--",
            "/usr/sbin/munged",
            f"--socket={cluster.munge_socket}",
            f"--pid-file={munge_dir}/munged.pid",
            f"--key-file={key}",
            f"--seed-file={munge_dir}/seed",
            f"--log-file={munge_dir}/munged.log",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    cluster.procs["munged"] = _read_pid(munge_dir / "munged.pid")
    env = cluster.env
    subprocess.run(["/usr/sbin/slurmctld", "-i"], env=env, check=True, timeout=30)
    cluster.procs["slurmctld"] = _read_pid(cluster.root / "slurmctld.pid")
    subprocess.run(["/usr/sbin/slurmd"], env=env, check=True, timeout=30)
    cluster.procs["slurmd"] = _read_pid(cluster.root / "slurmd.pid")
    _wait_idle(cluster)
