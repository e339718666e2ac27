"""What a hostile tenant's job runs: one attack per invocation, a verdict line per attempt.

Not a test module: the suite passes this file's source to ``python -c`` as a tenant job's
command (stdlib only, so it runs in any sandbox that offers the interpreter), with the
attack's name as the first argument and what the test knows about the machine in the job's
``env`` as ``HOSTILE_TARGETS`` (JSON; an attacker could learn the same by other means).

Every attempt prints exactly one line::

    ATTACK <attack> <target> BLOCKED <errno or reason>
    ATTACK <attack> <target> SUCCEEDED <what it got>

and the script ends with ``DONE <attack>``. Lines about the job itself: ``WHOAMI uid=…``,
``READY`` (the job waits to be cancelled), ``FORGED <path>`` / ``FORGE-REFUSED <path>``,
``PROGRESS <n>`` (exhaustion attacks). Only 127.0.0.1 and local sockets are ever contacted.
Every loop is bounded and every sleeper ends on its own within ten minutes.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import signal
import socket
import struct
import sys
import time
from collections.abc import Callable

MiB = 1 << 20
SLEEPER = "import time\nfor _ in range(1200):\n    time.sleep(0.5)\n"
SECRET_VALUE = re.compile(r"(postgres(ql)?|redis|rediss|sqlite)(\+\w+)?://|\bsw_[A-Za-z0-9]{8}_")


def out(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def targets() -> dict[str, object]:
    return dict(json.loads(os.environ.get("HOSTILE_TARGETS", "{}")))


def strings(name: str) -> list[str]:
    value = targets().get(name) or []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def attempt(attack: str, target: str, action: Callable[[], str]) -> None:
    """Run one attempt; an OS refusal is BLOCKED, anything it returns is SUCCEEDED."""
    target = target.replace(" ", "_") or "-"
    try:
        got = action()
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
        out(f"ATTACK {attack} {target} BLOCKED {name}")
    except Refused as exc:
        out(f"ATTACK {attack} {target} BLOCKED {str(exc).replace(' ', '_')}")
    else:
        out(f"ATTACK {attack} {target} SUCCEEDED {got.replace(chr(10), ' ')[:200]}")


class Refused(Exception):
    """The other side answered, and said no."""


# --- reading and writing what is not ours ---------------------------------------------------


def read_file(path: str) -> str:
    if os.path.isdir(path):
        return f"listed {len(os.listdir(path))} entries"
    with open(path, "rb") as handle:
        data = handle.read(4096)
    return f"read {len(data)} bytes"


def read_paths(attack: str, key: str) -> None:
    for path in strings(key):
        attempt(attack, path, lambda p=path: read_file(p))  # type: ignore[misc]


def write_into(path: str) -> str:
    if os.path.isdir(path):
        planted = os.path.join(path, f"planted-by-{os.getuid()}-{os.getpid()}")
        fd = os.open(planted, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, b"PWNED\n")
        os.close(fd)
        return f"created {planted}"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    os.write(fd, b"PWNED by another tenant\n")
    os.close(fd)
    return f"appended to {path}"


def open_for_append(path: str) -> str:
    """Opening for writing proves the access; no byte is written to the platform's state."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    os.close(fd)
    return "opened for writing"


# --- the environment -------------------------------------------------------------------------


def secrets_in(environ: dict[str, str]) -> list[str]:
    """Names whose value or name gives away a platform secret (``HOSTILE_TARGETS`` aside)."""
    forbidden = set(strings("forbidden_env_names"))
    canary = str(targets().get("canary", "\0"))
    found = []
    for name, value in environ.items():
        if name == "HOSTILE_TARGETS":  # what the test told the attacker, not a leak
            continue
        if name in forbidden or canary in value or SECRET_VALUE.search(value):
            found.append(name)
    return sorted(found)


def proc_environ(pid: str) -> str:
    with open(f"/proc/{pid}/environ", "rb") as handle:
        raw = handle.read()
    pairs = (item.partition(b"=") for item in raw.split(b"\0") if item)
    environ = {k.decode(errors="replace"): v.decode(errors="replace") for k, _, v in pairs}
    found = secrets_in(environ)
    return f"{len(environ)} variables, secrets: {','.join(found) or 'none'}"


def own_environment() -> str:
    found = secrets_in(dict(os.environ))
    if found:
        return "secrets in own environment: " + ",".join(found)
    raise Refused("no secret in own environment")


def every_readable_environ() -> str:
    """Any other process's environment holding a secret (bounded scan of /proc)."""
    hits = []
    for name in sorted(os.listdir("/proc"))[:5000]:
        if not name.isdigit() or int(name) == os.getpid():
            continue
        try:
            if "secrets: none" not in (got := proc_environ(name)):
                hits.append(f"{name}:{got}")
        except OSError:
            continue
    if hits:
        return "; ".join(hits[:5])
    raise Refused("no readable environment held a secret")


# --- signals ---------------------------------------------------------------------------------


def send(pid: str, destructive: bool) -> str:
    os.kill(int(pid), 0)  # the same permission check as any signal
    if destructive:
        os.kill(int(pid), signal.SIGKILL)
        return "SIGKILL delivered"
    return "signal 0 delivered (SIGKILL would have been)"


# --- the control plane's databases -----------------------------------------------------------


def credentials() -> list[tuple[str, str]]:
    """(user, password) pairs from any URL this job can see; postgres with no password first."""
    found = [("postgres", "")]
    texts = list(os.environ.values())
    url = re.compile(r"postgres(?:ql)?(?:\+\w+)?://([^:@/]+)(?::([^@/]*))?@")
    for pattern in url.finditer(" ".join(texts)):
        found.append((pattern.group(1), pattern.group(2) or ""))
    return list(dict.fromkeys(found))


def connect(address: str) -> socket.socket:
    if address.startswith("/"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(3)
        sock.connect(address)
        return sock
    host, _, port = address.rpartition(":")
    if host not in ("127.0.0.1", "localhost"):
        raise Refused("not a local address: never contacted")
    sock = socket.create_connection(("127.0.0.1", int(port)), timeout=3)
    sock.settimeout(3)
    return sock


def postgres_login(address: str, user: str, password: str) -> str:
    """A PostgreSQL startup as ``user``: SUCCEEDED on AuthenticationOk (no query is run)."""
    params = f"user\0{user}\0database\0postgres\0\0".encode()
    with connect(address) as sock:
        sock.sendall(struct.pack("!ii", 8 + len(params), 196608) + params)
        head = sock.recv(9)
        if len(head) >= 9 and head[:1] == b"R":
            code = struct.unpack("!i", head[5:9])[0]
            if code == 0:
                return f"logged in as {user}"
            if code == 3 and password:  # cleartext password requested
                body = password.encode() + b"\0"
                sock.sendall(b"p" + struct.pack("!i", 4 + len(body)) + body)
                reply = sock.recv(9)
                if reply[:1] == b"R" and struct.unpack("!i", reply[5:9])[0] == 0:
                    return f"logged in as {user} with a found password"
            raise Refused(f"authentication {code} required")
        raise Refused(f"refused ({head[:1]!r})")


def redis_ping(address: str) -> str:
    with connect(address) as sock:
        sock.sendall(b"PING\r\n")
        reply = sock.recv(64)
        if reply.startswith(b"+PONG"):
            return "PONG"
        for password in {p for _, p in credentials() if p}:
            sock.sendall(b"AUTH " + password.encode() + b"\r\n")
            if sock.recv(64).startswith(b"+OK"):
                return "authenticated with a found password"
        raise Refused(reply[:20].decode(errors="replace").strip() or "no answer")


# --- forging the records the control plane reads back ---------------------------------------


def plausible_record_dirs() -> list[str]:
    """Every directory near this job where a supervisor might keep its records."""
    job, attempt_no = os.environ.get("SUANWANG_JOB_ID", ""), os.environ.get("SUANWANG_ATTEMPT", "1")
    seeds = [os.getcwd(), os.environ.get("HOME", ""), os.environ.get("TMPDIR", "")]
    seeds.append(os.path.dirname(os.environ.get("SUANWANG_CHECKPOINT_FILE", "")))
    for root in strings("runs_dirs"):
        seeds.append(os.path.join(root, job, attempt_no))
    found: list[str] = []
    for seed in filter(None, seeds):
        path = os.path.abspath(seed)
        for _ in range(3):  # the directory and two parents
            found.append(path)
            path = os.path.dirname(path)
        for top, dirs, _files in os.walk(seed):
            found.extend(os.path.join(top, d) for d in dirs)
            if len(found) > 200 or top.count(os.sep) - seed.count(os.sep) >= 2:
                dirs[:] = []
    return [d for d in dict.fromkeys(found) if d not in ("/", "/tmp")]


def forge(records: dict[str, dict[str, object]]) -> None:
    """Write each record (and overwrite any JSON file) in every plausible directory."""
    for directory in plausible_record_dirs():
        names = set(records)
        with contextlib.suppress(OSError):
            names |= {n for n in os.listdir(directory) if n.endswith(".json")}
        for name in sorted(names):
            path = os.path.join(directory, name)
            body = records.get(name) or next(iter(records.values()))
            try:
                tmp = f"{path}.{os.getpid()}.tmp"
                with open(tmp, "w") as handle:
                    json.dump(body, handle)
                os.replace(tmp, path)
                out(f"FORGED {path}")
            except OSError as exc:
                out(f"FORGE-REFUSED {path} {errno.errorcode.get(exc.errno or 0, '?')}")


def launch_record(aim: dict[str, int]) -> dict[str, object]:
    return {
        "shim_pid": aim["pid"],
        "shim_start_time": aim["start_time"],
        "child_pid": aim["pid"],
        "child_start_time": aim["start_time"],
        "pgid": aim["pgid"],
        "sid": aim["sid"],
        "started_at": time.time(),
    }


def wait_for_cancel() -> None:
    out("READY")
    for _ in range(600):
        time.sleep(0.5)


# --- escaping and exhausting -----------------------------------------------------------------


def escape(marker: str) -> None:
    """Double fork into a new session; the grandchild keeps every inherited descriptor."""
    child = os.fork()
    if child == 0:
        os.setsid()
        if os.fork() == 0:
            os.execv(sys.executable, [sys.executable, "-c", SLEEPER, marker])
        os._exit(0)
    os.waitpid(child, 0)
    out(f"ESCAPED marker={marker}")


def fork_bomb(cap: int) -> None:
    for made in range(cap):
        try:
            pid = os.fork()
        except OSError as exc:
            name = errno.errorcode.get(exc.errno or 0, "?")
            out(f"ATTACK fork-bomb fork BLOCKED {name} after {made} processes")
            return
        if pid == 0:
            time.sleep(120)
            os._exit(0)
        if made % 16 == 0:
            out(f"PROGRESS {made}")
    out(f"ATTACK fork-bomb fork SUCCEEDED {cap} processes")


def fill_memory(cap_bytes: int) -> None:
    hoard: list[bytearray] = []
    try:
        while len(hoard) * 16 * MiB < cap_bytes:
            hoard.append(bytearray(16 * MiB))  # zero-filled: every page is touched
            out(f"PROGRESS {len(hoard) * 16} MiB")
    except MemoryError:
        out(f"ATTACK fill-memory allocate BLOCKED MemoryError after {len(hoard) * 16} MiB")
        return
    out(f"ATTACK fill-memory allocate SUCCEEDED {len(hoard) * 16} MiB")


def fill(attack: str, directory: str, cap_bytes: int) -> None:
    """Write 8 MiB files into ``directory`` (a limit per file is no limit) until refused."""
    chunk, written = b"\xa5" * MiB, 0
    paths: list[str] = []
    try:
        while written < cap_bytes:
            paths.append(os.path.join(directory, f"fill-{os.getpid()}-{len(paths)}.bin"))
            with open(paths[-1], "wb", buffering=0) as handle:
                for _ in range(8):
                    handle.write(chunk)
                    written += MiB
                os.fsync(handle.fileno())
            if written % (32 * MiB) == 0:
                out(f"PROGRESS {directory} {written // MiB} MiB")
    except OSError as exc:
        name = errno.errorcode.get(exc.errno or 0, "?")
        out(f"ATTACK {attack} {directory} BLOCKED {name} after {written // MiB} MiB")
    else:
        out(f"ATTACK {attack} {directory} SUCCEEDED {written // MiB} MiB")
    finally:
        for path in paths:
            with contextlib.suppress(OSError):
                os.unlink(path)


def fill_log(cap_bytes: int) -> None:
    """Write to stdout (the job's log, kept by the platform) until something stops it."""
    line, written = b"x" * (MiB - 1) + b"\n", 0
    try:
        while written < cap_bytes:
            os.write(1, line)
            written += MiB
    except OSError as exc:
        sys.stderr.write(f"ATTACK fill-log stdout BLOCKED {exc.errno} after {written // MiB} MiB\n")
        return
    out(f"ATTACK fill-log stdout SUCCEEDED {written // MiB} MiB")


def squat(port: int) -> socket.socket:
    """Listen on 127.0.0.1:port, where the platform's engines and services listen."""
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", port))
    listener.listen(8)
    out(f"LISTENING 127.0.0.1:{port}")
    return listener


def symlink_trap(attack: str, names: list[str], aims: list[str]) -> int:
    """Attempt 1 plants symlinks to the platform's files under every name the platform
    might touch in the job's area, and fails (the job is retried); attempt 2 follows them."""
    here = os.getcwd()
    checkpoint = os.path.basename(os.environ.get("SUANWANG_CHECKPOINT_FILE", "checkpoint"))
    names = [*names, checkpoint, checkpoint.replace("-1", "-2"), checkpoint.replace("-1", "-3")]
    if os.environ.get("SUANWANG_ATTEMPT", "1") == "1":
        for number, name in enumerate(dict.fromkeys(names)):
            aim = aims[number % len(aims)]
            try:
                os.symlink(aim, os.path.join(here, name))
                out(f"PLANTED {name} -> {aim}")
            except OSError as exc:
                out(f"PLANT-REFUSED {name} {errno.errorcode.get(exc.errno or 0, '?')}")
        return 1
    for name in dict.fromkeys(names):
        link = os.path.join(here, name)
        if os.path.islink(link):
            attempt(attack, name, lambda p=link: read_file(p))  # type: ignore[misc]
    return 0


def victim(name: str, secret: str) -> None:
    """Tenant A's job: keep a secret file in its own area and check it every half second."""
    path = os.path.join(os.getcwd(), name)
    with open(path, "w") as handle:
        handle.write(secret)
    out(f"VICTIM dir={os.getcwd()} secret={name}")
    for beat in range(1200):
        try:
            with open(path) as handle:
                intact = handle.read() == secret
        except OSError as exc:
            intact = False
            out(f"VICTIM TAMPERED cannot read: {exc}")
        planted = [n for n in os.listdir(os.getcwd()) if n.startswith("planted-by-")]
        out(f"VICTIM beat {beat} {'intact' if intact and not planted else 'TAMPERED'}")
        time.sleep(0.5)


# --- the attacks -------------------------------------------------------------------------------


def run(attack: str) -> int:
    """Run ``attack``; returns the job's exit code."""
    t = targets()
    if attack in ("read-operator-key", "read-database", "read-journals", "read-victim"):
        read_paths(attack, attack.removeprefix("read-"))
    elif attack == "write-victim":
        for path in strings("victim"):
            attempt(attack, path, lambda p=path: write_into(p))  # type: ignore[misc]
    elif attack == "write-state":
        for path in strings("state_files"):
            attempt(attack, path, lambda p=path: open_for_append(p))  # type: ignore[misc]
    elif attack == "write-code":
        for path in strings("code"):
            plant = write_into if os.path.isdir(path) else open_for_append
            attempt(attack, path, lambda p=path, f=plant: f(p))  # type: ignore[misc]
    elif attack == "signal":
        for pid in strings("victim_pids") + strings("supervisor_pids"):
            attempt(attack, f"pid-{pid}", lambda p=pid: send(p, destructive=True))  # type: ignore[misc]
        for pid in strings("server_pids"):
            attempt(attack, f"server-{pid}", lambda p=pid: send(p, destructive=False))  # type: ignore[misc]
    elif attack == "read-environ":
        for pid in strings("server_pids") + strings("victim_pids"):
            attempt(attack, f"/proc/{pid}/environ", lambda p=pid: proc_environ(p))  # type: ignore[misc]
        attempt(attack, "own-environment", own_environment)
        attempt(attack, "every-/proc/*/environ", every_readable_environ)
    elif attack == "connect-postgres":
        for address in strings("postgres"):
            for user, password in credentials():
                login = lambda a=address, u=user, p=password: postgres_login(a, u, p)  # noqa: E731
                attempt(attack, f"{address}@{user}", login)
    elif attack == "connect-redis":
        for address in strings("redis"):
            attempt(attack, address, lambda a=address: redis_ping(a))  # type: ignore[misc]
    elif attack in ("forge-launch-sacrificial", "forge-launch-victim"):
        aim = dict(t["sacrificial" if attack.endswith("sacrificial") else "victim_group"])  # type: ignore[call-overload]
        forge({"launch.json": launch_record(aim)})
        wait_for_cancel()
    elif attack == "forge-exit":
        now = time.time()
        record = {"exit_code": 0, "reason": "exited", "started_at": now - 1, "ended_at": now}
        forge({"exit.json": record})
        wait_for_cancel()
    elif attack in ("escape-cancel", "escape-exit"):
        escape(str(t["marker"]))
        if attack == "escape-cancel":
            wait_for_cancel()
    elif attack == "fork-bomb":
        fork_bomb(int(t["process_cap"]))  # type: ignore[call-overload]
        return 1
    elif attack == "fill-memory":
        fill_memory(int(t["memory_cap_bytes"]))  # type: ignore[call-overload]
        return 1
    elif attack in ("fill-disk", "fill-tmp"):
        places = [os.getcwd(), os.environ.get("HOME", os.getcwd())]
        if attack == "fill-tmp":
            places = [os.environ.get("TMPDIR", "/tmp"), "/dev/shm"]
        for place in dict.fromkeys(places):
            fill(attack, place, int(t["disk_cap_bytes"]))  # type: ignore[call-overload]
        return 1
    elif attack == "victim":
        victim(str(t["secret_name"]), str(t["secret"]))
    elif attack == "fill-log":
        fill_log(int(t["disk_cap_bytes"]))  # type: ignore[call-overload]
        return 1
    elif attack == "squat-host-port":
        listener = squat(int(t["squat_port"]))  # type: ignore[call-overload]
        wait_for_cancel()
        listener.close()
    elif attack == "symlink-trap":
        return symlink_trap(attack, strings("trap_names"), strings("trap_targets"))
    elif attack == "bystander":
        for beat in range(1200):
            out(f"BEAT {beat}")
            time.sleep(0.5)
    else:
        out(f"unknown attack {attack}")
        return 2
    return 0


def main() -> int:
    attack = sys.argv[1]
    groups = ",".join(str(g) for g in os.getgroups())
    ids = f"uid={os.getuid()} gid={os.getgid()} groups={groups}"
    out(f"WHOAMI {ids} pid={os.getpid()} cwd={os.getcwd()}")
    code = run(attack)
    out(f"DONE {attack}")
    return code


if __name__ == "__main__":
    sys.exit(main())
