"""Preparing one local attempt: the job's directory, its identity, and ``request.json``.

:class:`Preparer` turns a :class:`~suanwang.ports.LaunchRequest` into what the supervisor
(``local_shim.py``) starts: in sandbox mode ``bwrap … setpriv … env -i … command`` as the
tenant's uid (or the engine uid), in development mode the bare command as this process's
user. It also owns the host check: :attr:`Preparer.refusal` says why nothing can start.

Runs as root in sandbox mode, so it never follows a path the job controls: the job's
directory is created by the platform under a root-owned parent, and the working directory is
checked component by component with ``O_NOFOLLOW`` (a symlink anywhere is refused).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
import sys
from pathlib import Path
from typing import Any

import suanwang
from suanwang.adapters.backends.local_records import CHECKPOINT_DIR, CHECKPOINT_MARK, WORK_DIR
from suanwang.adapters.backends.local_shim import write_json_atomic
from suanwang.adapters.backends.sandbox import (
    REFUSAL_PREFIX,
    Confinement,
    HostFacts,
    Isolation,
    IsolationMode,
    bwrap_args,
    gateway_forward,
    inside_any,
    job_environment,
    own_cgroup,
    relay_command,
    root_layout,
    sandbox_refusal,
    user_command,
)
from suanwang.domain.datasets import DATASET_MOUNT
from suanwang.domain.errors import DomainError
from suanwang.domain.workloads import JOB_AREA, JobNetwork, Workload, job_area_parts
from suanwang.ports import LaunchRequest

SYSTEM_PATH = "/usr/local/bin:/usr/bin:/bin"
CONTROLLERS = ("pids", "memory")
RELAY_DIR, RELAY_SOCKET = "relay", "gateway.sock"
"""The relay's directory in the attempt's control directory, and its socket's name."""
NO_SOCAT = (
    "could not start: network 'gateway' needs socat on the host for its relay "
    "(apt-get install socat)"
)


class Preparer:
    """Writes ``request.json`` for each fresh attempt of one :class:`LocalBackend`."""

    def __init__(
        self, runs_dir: Path, isolation: Isolation, grace_s: float, facts: HostFacts
    ) -> None:
        self._runs_dir = runs_dir
        self._isolation = isolation
        self._grace_s = grace_s
        self._sandboxed = isolation.mode is IsolationMode.SANDBOX
        self._code_root = str(Path(suanwang.__file__).resolve().parents[1])
        self._read_only = (sys.base_prefix, sys.prefix)
        self._facts, self._layout = facts, root_layout()
        cgroups = facts.cgroups_writable and facts.euid == 0
        self._cgroup_bases = {c: own_cgroup(c) for c in CONTROLLERS} if cgroups else {}
        self.refusal: str | None = None
        """Why no run can start here, with a hint (sandbox mode only)."""
        if self._sandboxed:
            self.refusal = sandbox_refusal(facts) or self._exposure()
            if isolation.tenant_uids is None:
                raise ValueError("sandbox isolation needs tenant_uids")

    def write_request(self, request: LaunchRequest, run_dir: Path) -> str | None:
        """Prepare the attempt and write its ``request.json``; or say why it cannot start."""
        if self.refusal is not None:
            return self.refusal
        try:
            parts = job_area_parts(request.working_dir)
            uid = self._uid(request) if self._sandboxed else None
        except DomainError as exc:
            return f"could not start: {exc.message}"
        work = run_dir.parent / WORK_DIR
        try:
            _own_directory(work, uid)
            _check_directory(work, parts)
        except OSError as exc:
            return f"could not start: working_dir {request.working_dir!r}: {exc.strerror}"
        try:
            _own_checkpoint_directory(work, uid)
        except OSError as exc:
            return f"could not start: {JOB_AREA}/{CHECKPOINT_DIR}: {exc.strerror}"
        if uid is None:
            payload = self._development(request, work, parts)
        elif self._gateway(request) and self._facts.socat is None:
            return NO_SOCAT
        else:
            payload = self._sandbox(request, uid, run_dir, parts)
            if not self._program_visible(request.command[0], payload.pop("job_path")):
                return (
                    f"could not start: {request.command[0]!r} is not a program the job can "
                    f"see (its sandbox shows /usr, /etc, the Python installation and {JOB_AREA})"
                )
        payload.update(self._common(request, run_dir, work))
        write_json_atomic(run_dir / "request.json", payload)
        return None

    def _uid(self, request: LaunchRequest) -> int:
        if request.workload is Workload.PLATFORM_ENGINE:
            return self._isolation.engine_uid
        assert self._isolation.tenant_uids is not None
        return self._isolation.tenant_uids.uid_for(request.tenant)

    @staticmethod
    def _gateway(request: LaunchRequest) -> bool:
        """Whether the run gets the route to the gateway (tenant jobs that asked for it)."""
        tenant = request.workload is Workload.TENANT_JOB
        return tenant and request.network is JobNetwork.GATEWAY

    def _sandbox(
        self, request: LaunchRequest, uid: int, run_dir: Path, parts: tuple[str, ...]
    ) -> dict[str, Any]:
        engine = request.workload is Workload.PLATFORM_ENGINE
        path = f"{sys.prefix}/bin:{SYSTEM_PATH}"
        gateway = self._gateway(request)
        env = job_environment(
            os.environ,
            path,
            JOB_AREA,
            request.env,
            self._platform_env(request),
            self._tenant_defaults(gateway),
        )
        relay = run_dir / RELAY_DIR
        confinement = Confinement(
            uid=uid,
            work_dir=run_dir.parent / WORK_DIR,
            cwd_parts=parts,
            # The platform's own code too: with an editable install it lives outside the
            # venv, and tenant jobs run its job programs (python -m suanwang.corpus …).
            read_only=(*self._read_only, self._code_root),
            tmpfs_bytes=self._isolation.limits.disk_bytes,
            share_net=engine,
            with_sys=engine,
            gateway_socket=relay / RELAY_SOCKET if gateway else None,
            dataset_dir=Path(request.dataset_dir) if request.dataset_dir else None,
        )
        facts = self._facts
        assert facts.bwrap
        assert facts.setpriv
        assert facts.env
        port = self._isolation.gateway_port
        forward = gateway_forward(facts.socat, port) if gateway and facts.socat else ()
        argv = [facts.bwrap, *bwrap_args(self._layout, confinement)]
        argv += user_command(facts.setpriv, facts.env, uid, env, request.command, forward)
        payload: dict[str, Any] = {
            "argv": argv,
            "env": {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
            "cwd": None,
            "sandboxed": True,
            "tmpfs": ["/tmp", "/dev/shm"],
            "job_path": path,
        }
        if gateway and facts.socat:
            relay_uid = self._isolation.engine_uid
            payload["relay"] = {
                "argv": relay_command(facts.setpriv, facts.socat, relay_uid, RELAY_SOCKET, port),
                "dir": str(relay),
                "socket": RELAY_SOCKET,
                "uid": relay_uid,
            }
        return payload

    def _tenant_defaults(self, gateway: bool) -> dict[str, str]:
        """What a sandboxed job's own env may override: ``PYTHONPATH`` to the platform's code
        (so ``python -m suanwang.corpus`` runs the code the platform runs, also when the
        editable install's path is not the one bound), ``OPENAI_BASE_URL`` for the gateway."""
        return {"PYTHONPATH": self._code_root, **(self._gateway_env() if gateway else {})}

    def _gateway_env(self) -> dict[str, str]:
        """``OPENAI_BASE_URL`` for a ``gateway`` job (its own env may override it)."""
        return {"OPENAI_BASE_URL": self._gateway_url()}

    def _gateway_url(self) -> str:
        return f"http://127.0.0.1:{self._isolation.gateway_port}/v1"

    def _development(
        self, request: LaunchRequest, work: Path, parts: tuple[str, ...]
    ) -> dict[str, Any]:
        path = os.environ.get("PATH", SYSTEM_PATH)
        platform = self._platform_env(request, area=str(work))
        defaults = self._gateway_env() if self._gateway(request) else None
        env = job_environment(os.environ, path, str(work), request.env, platform, defaults)
        cwd = str(work.joinpath(*parts))
        return {"argv": list(request.command), "env": env, "cwd": cwd, "sandboxed": False}

    def _platform_env(self, request: LaunchRequest, area: str = JOB_AREA) -> dict[str, str]:
        env = {
            "SUANWANG_JOB_ID": request.job_id,
            "SUANWANG_ATTEMPT": str(request.attempt),
            "SUANWANG_CARDS": str(sum(p.cards for p in request.placements)),
            "SUANWANG_CHECKPOINT_FILE": f"{area}/{CHECKPOINT_MARK.format(attempt=request.attempt)}",
            "SUANWANG_CHECKPOINT_DIR": f"{area}/{CHECKPOINT_DIR}",
            "SUANWANG_RESUME_COUNT": str(request.resume_count),
            "SUANWANG_PREEMPTION_GRACE_S": f"{self._grace_of(request):g}",
        }
        if request.workload is Workload.PLATFORM_ENGINE:
            env["PYTHONPATH"] = self._code_root  # engines run the platform's own code
        if self._gateway(request):
            env["SUANWANG_GATEWAY_URL"] = self._gateway_url()
        if request.dataset_dir is not None:
            sandboxed = area == JOB_AREA
            env["SUANWANG_DATASET_DIR"] = DATASET_MOUNT if sandboxed else request.dataset_dir
        return env

    def _common(self, request: LaunchRequest, run_dir: Path, work: Path) -> dict[str, Any]:
        limits = self._isolation.limits
        unit = "run-" + hashlib.sha256(str(run_dir.resolve()).encode()).hexdigest()[:20]
        return {
            "command_name": request.command[0],
            "grace_s": self._grace_of(request),
            "max_runtime_s": request.max_runtime_s,
            "limits": {
                "processes": limits.processes,
                "memory_bytes": limits.memory_bytes,
                "disk_bytes": limits.disk_bytes,
            },
            "cgroups": {c: str(b / "suanwang" / unit) for c, b in self._cgroup_bases.items()},
            "measure": [str(work), str(run_dir / "output.log")],
        }

    def _grace_of(self, request: LaunchRequest) -> float:
        """Seconds between SIGTERM and SIGKILL: the job's own, else the backend's."""
        return self._grace_s if request.grace_s is None else request.grace_s

    def _visible_roots(self) -> tuple[str, ...]:
        links = tuple(path for path, _ in self._layout.symlinks)
        return ("/usr", "/etc", *self._layout.directories, *links, *self._read_only)

    def _program_visible(self, program: str, path: str) -> bool:
        """Whether ``program`` exists inside the sandbox (anything under the job's own
        directory is given the benefit of the doubt: root does not look there)."""
        if "/" in program and not program.startswith("/"):
            return True  # relative to the working directory, inside the job's area
        candidates = [program] if "/" in program else [f"{d}/{program}" for d in path.split(":")]
        for candidate in candidates:
            if inside_any(candidate, (JOB_AREA,)):
                return True
            if inside_any(candidate, self._visible_roots()) and os.access(candidate, os.X_OK):
                return True
        return False

    def _exposure(self) -> str | None:
        """A refusal if a sandbox would see the run directories through a read-only bind."""
        runs = str(self._runs_dir.resolve())
        for root in (*self._visible_roots(), self._code_root):
            if inside_any(runs, (root,)):
                return (
                    f"{REFUSAL_PREFIX}: the data directory {runs} lies inside {root}, which "
                    "sandboxes see; move SUANWANG_DATA_DIR out of it"
                )
        return None


def _own_directory(work: Path, uid: int | None) -> None:
    """Create the job's directory (0700), owned by ``uid`` when one is given."""
    with contextlib.suppress(FileExistsError):
        os.mkdir(work, 0o700)
    info = os.lstat(work)
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(20, "the job's directory is not a directory", str(work))
    if uid is not None and (info.st_uid, info.st_gid) != (uid, uid):
        os.lchown(work, uid, uid)
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(work, 0o700)


def _own_checkpoint_directory(work: Path, uid: int | None) -> None:
    """Create ``work/checkpoints`` (0700, owned by ``uid`` when given), never following a
    symlink: the job owns ``work`` and may have put anything there."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    parent = os.open(work, flags)
    try:
        with contextlib.suppress(FileExistsError):
            os.mkdir(CHECKPOINT_DIR, 0o700, dir_fd=parent)
        try:
            fd = os.open(CHECKPOINT_DIR, flags, dir_fd=parent)
        except OSError as exc:
            if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                exc.strerror = "not a directory (symlinks are not followed)"
            raise
    finally:
        os.close(parent)
    try:
        info = os.fstat(fd)
        if uid is not None and (info.st_uid, info.st_gid) != (uid, uid):
            os.fchown(fd, uid, uid)
        if stat.S_IMODE(info.st_mode) != 0o700:
            os.fchmod(fd, 0o700)
    finally:
        os.close(fd)


def _check_directory(work: Path, parts: tuple[str, ...]) -> None:
    """Open ``work/parts…`` one component at a time, never following a symlink."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(work, flags)
    try:
        for part in parts:
            try:
                inner = os.open(part, flags, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR) and _is_symlink(part, fd):
                    exc.strerror = "a symlink (symlinks are not followed)"
                raise
            os.close(fd)
            fd = inner
    finally:
        os.close(fd)


def _is_symlink(name: str, dir_fd: int) -> bool:
    return stat.S_ISLNK(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
