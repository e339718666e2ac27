"""What the attacker is told about the machine, and what the test checks of the platform's files.

The test runs as root and finds, on the host, the paths and processes a hostile tenant
would aim at (tenant A's area, log and processes, the supervisor, the server, the state
files, the database's local endpoints). Each target is checked to exist before it is handed
to the attacker, so an attempt that fails with ENOENT proves a path was hidden, not that
the test guessed wrong.
"""

from __future__ import annotations

import hashlib
import os
import sysconfig
from pathlib import Path
from typing import Any

import hostproc
import psycopg
from hostile_stack import LIMITS, PG_ADMIN_URL, Stack, free_port

import suanwang

CAP = 4  # exhaustion attacks stop at CAP times the limit: past it, the limit did not hold
TRAP_NAMES = ("output.log", "launch.json", "exit.json", "request.json", "submitted", "lock",
              "cancel", "checkpoint", "1", "2", "work")  # fmt: skip


def under(roots: list[Path], match: str, limit: int = 50_000) -> list[Path]:
    """Paths under ``roots`` with ``match`` as one of their components (bounded walk)."""
    found: list[Path] = []
    seen = 0
    for root in roots:
        for top, dirs, files in os.walk(root):
            for name in dirs + files:
                seen += 1
                path = Path(top, name)
                if match in path.relative_to(root).parts:
                    found.append(path)
            if seen > limit:
                return found
    return found


def postgres_files() -> list[str]:
    with psycopg.connect(PG_ADMIN_URL, autocommit=True) as conn:
        row = conn.execute("SHOW data_directory").fetchone()
    assert row is not None
    base = Path(str(row[0]))
    return [str(base / "global" / "pg_control"), str(base / "PG_VERSION")]


def machine_targets(
    stack: Stack, victim_token: str, victim_job_id: str, secret_name: str
) -> dict[str, Any]:
    """What an attacker could learn about the machine, checked to exist (no empty attempt)."""
    data = stack.data_dir
    victim_procs = hostproc.with_token(victim_token)
    assert victim_procs, f"no process of the victim job {victim_job_id}"
    inner = hostproc.innermost(victim_procs)
    server_pids = stack.server_pids()
    server_start = hostproc.read_proc(server_pids[0])
    assert server_start is not None
    supervisors = [
        p
        for proc in victim_procs
        for p in hostproc.ancestors(proc.pid, server_start.start_time, set(server_pids))
        if p.pid not in {v.pid for v in victim_procs}
    ]
    victim_tree = under([data], victim_job_id)
    secret_paths = under([data, stack.server_cwd], secret_name)
    assert secret_paths, f"the victim's secret file {secret_name} is not on the host"
    victim_dirs = [p for p in victim_tree if p.is_dir()] + [p.parent for p in secret_paths]
    logs = [p for p in victim_tree if p.is_file() and p.name.endswith(".log")]
    assert logs, f"no log file of the victim under {data}: {victim_tree}"
    proc_cwd = f"/proc/{inner.pid}/cwd"
    proc_secret = f"{proc_cwd}/{secret_name}"
    if stack.backend == "sqlite":
        database = [str(p) for p in data.glob("suanwang.db*")]
    else:
        database = postgres_files()
    journals = [data / "usage-journal", *sorted((data / "usage-journal").iterdir())]
    assert len(journals) > 1, "the gateway journaled nothing"
    unix_sockets = [str(p) for p in Path("/run/postgresql").glob(".s.PGSQL.*") if p.is_socket()]
    redis_sockets = [str(p) for p in Path("/run/redis").glob("*.sock") if p.is_socket()]
    targets: dict[str, Any] = {
        "operator-key": [str(data / "operator.key")],
        "database": database,
        "journals": [str(p) for p in journals],
        "victim": [*sorted({str(p) for p in [*victim_tree, *secret_paths]}), proc_cwd, proc_secret],
        "victim_write": [*sorted({str(p) for p in [*victim_dirs, *logs, *secret_paths]}), proc_cwd],
        "state_files": [str(data / "operator.key"), *database, *map(str, journals[1:])],
        "code": platform_code(),
        "victim_pids": sorted({p.pid for p in victim_procs}),
        "supervisor_pids": sorted({p.pid for p in supervisors}),
        "server_pids": server_pids,
        "canary": stack.canary,
        "forbidden_env_names": sorted(n for n in stack.env if n.startswith("SUANWANG_")),
        "postgres": ["127.0.0.1:5432", *unix_sockets],
        "redis": ["127.0.0.1:6379", *redis_sockets],
        "runs_dirs": [str(data / "runs")],
        "victim_group": {"pid": 999_999, "start_time": 0, "pgid": inner.pgid, "sid": inner.sid},
        "squat_port": free_port(),
        "process_cap": CAP * LIMITS["processes"],
        "memory_cap_bytes": CAP * LIMITS["memory_bytes"],
        "disk_cap_bytes": CAP * LIMITS["disk_bytes"],
        "trap_names": list(TRAP_NAMES),
        "trap_targets": [str(data / "operator.key"), database[0], str(data / "runs"), str(data)],
    }
    for key in ("operator-key", "database", "journals", "victim", "state_files", "code"):
        for path in targets[key]:
            assert os.path.lexists(path), f"{key} target {path} does not exist on the host"
    return targets


def platform_code() -> list[str]:
    """The platform's code and Python, which jobs see read-only (job programs such as
    ``python -m suanwang.corpus`` run from it): directories to plant a file in, modules to
    open for writing."""
    code = Path(suanwang.__file__).resolve().parents[1]
    site = Path(sysconfig.get_paths()["purelib"])
    return [
        str(code),
        str(code / "suanwang" / "corpus"),
        str(code / "suanwang" / "__init__.py"),
        str(code / "suanwang" / "corpus" / "pii.py"),
        str(site),
    ]


def expected_attempts(t: dict[str, Any]) -> dict[str, int]:
    """How many verdict lines each finite attack must print (at least)."""
    return {
        "read-operator-key": len(t["operator-key"]),
        "read-database": len(t["database"]),
        "read-journals": len(t["journals"]),
        "read-victim": len(t["victim"]),
        "write-victim": len(t["victim_write"]),
        "write-state": len(t["state_files"]),
        "write-code": len(t["code"]),
        "signal": len(t["victim_pids"]) + len(t["supervisor_pids"]) + len(t["server_pids"]),
        "read-environ": len(t["server_pids"]) + len(t["victim_pids"]) + 2,
        "connect-postgres": len(t["postgres"]),
        "connect-redis": len(t["redis"]),
    }


def platform_files(stack: Stack) -> dict[str, tuple[int, ...] | str]:
    """Owner, group and mode of the platform's own files (and the operator key's digest)."""
    data = stack.data_dir
    paths = [data, data / "runs", data / "operator.key", data / "usage-journal"]
    paths += sorted(data.glob("suanwang.db*"))
    facts: dict[str, tuple[int, ...] | str] = {}
    for path in paths:
        st = path.lstat()
        facts[str(path)] = (st.st_uid, st.st_gid, st.st_mode)
    facts["operator.key sha256"] = hashlib.sha256((data / "operator.key").read_bytes()).hexdigest()
    return facts


def tenant_owned_outside_areas(stack: Stack, server_uid: int) -> list[str]:
    """Paths under the data directory that a uid other than the server's owns, outside the
    jobs' own areas (``runs/<job>/<name>`` directories that are not attempt numbers)."""
    runs = stack.data_dir / "runs"
    found = []
    for top, dirs, files in os.walk(stack.data_dir):
        here = Path(top)
        if here.parent.parent == runs and not here.name.isdigit():
            dirs[:] = []  # a job's own area: its tenant owns what is inside
            continue
        for name in dirs + files:
            if (here / name).lstat().st_uid != server_uid:
                path = here / name
                if not (path.parent.parent == runs and not path.name.isdigit()):
                    found.append(str(path))
    return found


def bytes_under(stack: Stack, job_id: str) -> int:
    """Bytes in files under the data directory that belong to ``job_id``."""
    return sum(p.stat().st_size for p in under([stack.data_dir], job_id) if p.is_file())
