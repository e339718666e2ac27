"""How a local run is confined: the bubblewrap command line, the environment, the host check.

Pure parts (unit-tested without a sandbox): :func:`bwrap_args` renders the arguments of
``bwrap`` for one run from a :class:`Confinement` and the host's :class:`RootLayout`;
:func:`job_environment` builds the scrubbed environment; :func:`sandbox_refusal` says why
this host cannot sandbox, from :class:`HostFacts`. The I/O parts only gather those facts
(:func:`probe_host`, :func:`root_layout`). Running the command and its limits is the
supervisor's job (``local_shim.py``).

Inside the sandbox the run sees (in this order of mounts): read-only ``/usr``, ``/etc``,
the top-level ``/bin``, ``/lib*``, ``/sbin`` (symlinks or read-only binds, as on the host),
the Python installation and the virtualenv, a minimal ``/dev`` with a private ``/dev/shm``,
its own ``/proc``, tmpfs on ``/tmp`` and ``/run``, and its own directory at
:data:`~suanwang.domain.workloads.JOB_AREA`, read-write. Nothing else of the host: not the
data directory, not ``/home`` or ``/root``, not ``/sys`` (engines get ``/sys`` read-only).
Namespaces: PID, IPC, UTS, cgroup, mount, and network unless ``share_net`` (engines).
The command runs through ``setpriv`` (numeric uid and gid, no groups, no capabilities,
``no_new_privs``) and then ``env -i`` so that no variable of the request reaches a process
that still runs as root.

The route of a ``gateway`` job (:func:`relay_command`, :func:`gateway_forward`): outside the
sandbox ``socat`` as a non-root uid listens on a Unix socket and connects each client to the
gateway's TCP port only; the socket is bound at
:data:`~suanwang.domain.workloads.GATEWAY_SOCKET`, and inside, before the user command, a
second ``socat`` (as the job's uid) listens on ``127.0.0.1:<gateway port>`` of the job's own
network namespace and forwards to it.
"""

from __future__ import annotations

import enum
import os
import shlex
import shutil
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from suanwang.domain.datasets import DATASET_MOUNT
from suanwang.domain.workloads import GATEWAY_SOCKET, JOB_AREA
from suanwang.ports import TenantUids

ALLOWED_HOST_ENV = ("LANG", "LANGUAGE", "TZ")
"""Variables copied from the control plane's environment (plus every ``LC_*``)."""
TOP_LEVEL = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_CAP_CHOWN, _CAP_SETGID, _CAP_SETUID, _CAP_SYS_ADMIN = 0, 6, 7, 21
NEEDED_CAPS = (1 << _CAP_CHOWN) | (1 << _CAP_SETGID) | (1 << _CAP_SETUID) | (1 << _CAP_SYS_ADMIN)
REFUSAL_PREFIX = "the local cluster cannot sandbox tenant jobs here"
REFUSAL_HINT = (
    "run the control plane as root with bubblewrap and util-linux installed "
    "(apt-get install bubblewrap), or set SUANWANG_LOCAL_ISOLATION=single-user-dev "
    "for development (jobs then run as the service user, unconfined)"
)


class IsolationMode(enum.StrEnum):
    """``SUANWANG_LOCAL_ISOLATION``: confine local runs, or run them as this process's user."""

    SANDBOX = "sandbox"
    SINGLE_USER_DEV = "single-user-dev"


@dataclass(frozen=True, slots=True)
class JobLimits:
    """What one local run may use (``SUANWANG_JOB_MAX_*``)."""

    processes: int = 256
    memory_bytes: int = 4 << 30
    disk_bytes: int = 1 << 30
    """Its own directory plus its ``output.log``."""


@dataclass(frozen=True, slots=True)
class Isolation:
    """How the local backend confines runs; ``tenant_uids`` is needed in sandbox mode."""

    mode: IsolationMode
    tenant_uids: TenantUids | None = None
    engine_uid: int = 199999
    limits: JobLimits = field(default_factory=JobLimits)
    gateway_port: int = 8001
    """``SUANWANG_GATEWAY_PORT``: where the relay of a ``gateway`` job connects."""

    @classmethod
    def development(cls, limits: JobLimits | None = None) -> Isolation:
        """Single-user development mode: runs as this process's user, unconfined."""
        return cls(IsolationMode.SINGLE_USER_DEV, limits=limits or JobLimits())


@dataclass(frozen=True, slots=True)
class HostFacts:
    """What decides whether this process can sandbox runs."""

    euid: int
    effective_caps: int
    bwrap: str | None
    setpriv: str | None
    env: str | None
    cgroups_writable: bool
    socat: str | None = None
    """Needed by ``gateway`` jobs only (the relay)."""


@dataclass(frozen=True, slots=True)
class RootLayout:
    """How the host's top-level program directories look: symlinks or real directories."""

    symlinks: tuple[tuple[str, str], ...]
    """``(path, target)``, e.g. ``("/bin", "usr/bin")`` on a merged-/usr system."""
    directories: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Confinement:
    """One run's sandbox: who it runs as, what it sees, where it starts."""

    uid: int
    work_dir: Path | None
    """The run's own directory on the host, mounted read-write at ``JOB_AREA``; None: a
    private tmpfs there (a Ray job, whose node suanwang keeps no directory on)."""
    cwd_parts: tuple[str, ...]
    """Where the command starts, below ``JOB_AREA``."""
    read_only: tuple[str, ...]
    """Host paths mounted read-only at the same path (the interpreter, the venv, …)."""
    tmpfs_bytes: int = 1 << 30
    """Size of each private tmpfs (``/tmp``, ``/dev/shm``); its pages count as memory too."""
    share_net: bool = False
    """Keep the host's network (platform engines that must listen on 127.0.0.1)."""
    with_sys: bool = False
    """Mount ``/sys`` read-only (engines: CPU topology for llama.cpp and torch)."""
    gateway_socket: Path | None = None
    """The relay's Unix socket on the host, bound at ``GATEWAY_SOCKET`` (``gateway`` jobs)."""
    dataset_dir: Path | None = None
    """The job's dataset replica on the host, bound read-only at ``DATASET_MOUNT``."""


def bwrap_args(layout: RootLayout, confinement: Confinement) -> list[str]:
    """The arguments of ``bwrap`` (without the program name and the command after it)."""
    args = ["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try"]
    if not confinement.share_net:
        args.append("--unshare-net")
    args += ["--die-with-parent", "--hostname", "job", "--ro-bind", "/usr", "/usr"]
    for path, target in layout.symlinks:
        args += ["--symlink", target, path]
    for path in layout.directories:
        args += ["--ro-bind", path, path]
    args += ["--ro-bind", "/etc", "/etc"]
    size = str(confinement.tmpfs_bytes)
    # Private /tmp and /run before the read-only binds: a checkout or venv under /tmp (a CI
    # clone) is bound on top of the empty tmpfs instead of being hidden by it.
    args += ["--perms", "1777", "--size", size, "--tmpfs", "/tmp"]
    args += ["--perms", "0755", "--size", str(1 << 20), "--tmpfs", "/run"]
    bound = ("/usr", "/etc", *layout.directories)
    made: set[str] = {"/", "/tmp", "/run", *bound}
    for path in _outermost(confinement.read_only):
        if not inside_any(path, bound):
            args += [*_parents(path, made), "--ro-bind", path, path]
    args += ["--dev", "/dev", "--perms", "1777", "--size", size, "--tmpfs", "/dev/shm"]
    args += ["--proc", "/proc"]
    if confinement.with_sys:
        args += ["--ro-bind", "/sys", "/sys"]
    if confinement.gateway_socket is not None:
        args += ["--perms", "0755", "--dir", str(PurePosixPath(GATEWAY_SOCKET).parent)]
        args += ["--bind", str(confinement.gateway_socket), GATEWAY_SOCKET]
    if confinement.work_dir is None:
        args += ["--perms", "0700", "--size", size, "--tmpfs", JOB_AREA]
    else:
        args += ["--bind", str(confinement.work_dir), JOB_AREA]
    if confinement.dataset_dir is not None:
        # bwrap makes missing parents with the supervisor's umask (0700): /data must be 0755
        args += ["--perms", "0755", "--dir", str(PurePosixPath(DATASET_MOUNT).parent)]
        args += ["--ro-bind", str(confinement.dataset_dir), DATASET_MOUNT]
    args += ["--chdir", str(PurePosixPath(JOB_AREA, *confinement.cwd_parts))]
    return args


def user_command(
    setpriv: str,
    env_program: str,
    uid: int,
    env: Mapping[str, str],
    command: Iterable[str],
    forward: Sequence[str] = (),
) -> list[str]:
    """What bwrap runs: drop to ``uid`` (setpriv), then set the environment (``env -i``).

    ``forward`` (from :func:`gateway_forward`) is a shell prologue run before the command.
    """
    argv = drop_privileges(setpriv, uid)
    argv += [env_program, "-i", *(f"{k}={v}" for k, v in sorted(env.items()))]
    command = list(command)
    if forward:
        return [*argv, "/bin/sh", "-c", f'{" ".join(forward)}; exec "$0" "$@"', *command]
    if command and "=" in command[0]:  # env would take it for one more variable
        return [*argv, "/bin/sh", "-c", 'exec "$0" "$@"', *command]
    return [*argv, *command]


def drop_privileges(setpriv: str, uid: int) -> list[str]:
    """``setpriv`` to ``uid`` (and gid ``uid``): no groups, no capabilities, no_new_privs."""
    argv = [setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]
    return [*argv, "--inh-caps=-all", "--bounding-set=-all", "--no-new-privs", "--"]


def relay_command(setpriv: str, socat: str, uid: int, socket_name: str, port: int) -> list[str]:
    """The relay outside the sandbox: ``socat`` as ``uid`` (never root: it handles the job's
    bytes), listening on ``socket_name`` (relative to its working directory, which only it
    and root can reach) and connecting each client to ``127.0.0.1:port`` and nowhere else."""
    listen = f"UNIX-LISTEN:{socket_name},fork,mode=0666,unlink-early,unlink-close=0"
    return [*drop_privileges(setpriv, uid), socat, listen, f"TCP4:127.0.0.1:{port}"]


def gateway_forward(socat: str, port: int) -> list[str]:
    """Shell words, run as the job's uid before its command: a ``socat`` listening on
    ``127.0.0.1:port`` in the job's network namespace, forwarding to the relay's socket,
    and a wait (at most 5 s) until it listens so the command's first connect succeeds."""
    listen = f"TCP4-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr"
    line = f"0100007F:{port:04X} 00000000:0000 0A"  # /proc/net/tcp: 127.0.0.1:port LISTEN
    return [
        f"{shlex.quote(socat)} {listen} UNIX-CONNECT:{GATEWAY_SOCKET} </dev/null &",
        f"i=0; while [ $i -lt 500 ] && ! grep -q '{line}' /proc/net/tcp; do",
        "sleep 0.01; i=$((i+1)); done",
    ]


def job_environment(
    host_env: Mapping[str, str],
    path: str,
    home: str,
    own: Iterable[tuple[str, str]],
    platform: Mapping[str, str],
    defaults: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The scrubbed environment: an allow-list of the host's, the job's own, the platform's.

    Nothing else of the control plane's environment passes: no ``SUANWANG_*`` setting, no
    database or Redis URL, no credentials. ``defaults`` (e.g. ``OPENAI_BASE_URL``) yield
    to the job's own values; the platform's variables are set last.
    """
    env = {k: v for k, v in host_env.items() if k in ALLOWED_HOST_ENV or k.startswith("LC_")}
    env.update({"PATH": path, "HOME": home})
    env.update(defaults or {})
    env.update(own)
    env.update(platform)
    return env


def sandbox_refusal(facts: HostFacts) -> str | None:
    """Why runs cannot be sandboxed on this host (one line with a hint), or None."""
    missing = [name for name in ("bwrap", "setpriv", "env") if getattr(facts, name) is None]
    if facts.euid != 0 or facts.effective_caps & NEEDED_CAPS != NEEDED_CAPS:
        why = f"the control plane runs as uid {facts.euid} without CAP_SETUID/CAP_SYS_ADMIN"
    elif missing:
        why = f"{', '.join(missing)} not found on PATH"
    elif not facts.cgroups_writable:
        why = "the cgroup v1 pids and memory hierarchies are not writable"
    else:
        return None
    return f"{REFUSAL_PREFIX}: {why}; {REFUSAL_HINT}"


def probe_host() -> HostFacts:
    """The facts of this process and host (cheap; called once per backend)."""
    return HostFacts(
        euid=os.geteuid(),
        effective_caps=_effective_caps(),
        bwrap=shutil.which("bwrap"),
        setpriv=shutil.which("setpriv"),
        env=shutil.which("env"),
        socat=shutil.which("socat"),
        cgroups_writable=all(
            os.access(base, os.W_OK) for base in (own_cgroup("pids"), own_cgroup("memory"))
        ),
    )


def own_cgroup(controller: str) -> Path:
    """This process's cgroup directory in the v1 hierarchy of ``controller``."""
    with open("/proc/self/cgroup", encoding="ascii") as handle:
        for line in handle:
            _, controllers, path = line.rstrip("\n").split(":", 2)
            if controller in controllers.split(","):
                return Path("/sys/fs/cgroup", controller, path.lstrip("/"))
    return Path("/sys/fs/cgroup", controller)


def root_layout() -> RootLayout:
    """The host's top-level program directories (``/bin`` → ``usr/bin`` on Debian 12)."""
    symlinks, directories = [], []
    for path in TOP_LEVEL:
        if os.path.islink(path):
            symlinks.append((path, os.readlink(path)))
        elif os.path.isdir(path):
            directories.append(path)
    return RootLayout(tuple(symlinks), tuple(directories))


def _effective_caps() -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    return 0


def inside_any(path: str, roots: Iterable[str]) -> bool:
    """True if ``path`` is one of ``roots`` or below one of them (lexically)."""
    path = os.path.normpath(path)
    return any(path == r or path.startswith(r.rstrip("/") + "/") for r in roots)


def _outermost(paths: Iterable[str]) -> list[str]:
    """``paths`` without those inside another one (binding the outer one shows them)."""
    kept: list[str] = []
    for path in sorted({os.path.normpath(p) for p in paths}):
        if not inside_any(path, kept):
            kept.append(path)
    return kept


def _parents(path: str, made: set[str]) -> list[str]:
    """``--dir`` for each missing ancestor of ``path``, world-traversable (0755).

    bwrap would create them 0700, so a checkout under ``/root`` would stay unreachable for
    the unprivileged user; the ancestors are empty directories in the sandbox either way.
    """
    args: list[str] = []
    for parent in reversed(PurePosixPath(path).parents):
        name = str(parent)
        if name not in made:
            made.add(name)
            args += ["--perms", "0755", "--dir", name]
    return args
