"""The relay of a ``gateway`` job: the host end of its only route, started by the supervisor.

``request.json`` of such a run holds ``relay``: the argv (``setpriv`` to a non-root uid, then
``socat UNIX-LISTEN:gateway.sock,fork,… TCP4:127.0.0.1:<gateway port>``, rendered by
``sandbox.relay_command``), the directory it runs in and the uid it runs as. The supervisor
(root) makes that directory in the attempt's root-only control directory, owned by the
relay's uid, starts the relay there inside the job's cgroup (its forks count against the
job's process limit, and it is killed with the job), waits until the socket exists, then
hands the directory back to root so that nothing but root can change what bubblewrap binds.
This happens before the sandbox starts: no byte of the job has reached the relay yet.

Stdlib only, like the supervisor that loads it (``local_shim.py``).
"""

from __future__ import annotations

import contextlib
import os
import stat
import subprocess
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

RELAY_SOCKET_MODE = 0o666
"""The mode ``sandbox.relay_command`` asks socat for (the job's uid connects to it)."""
START_TIMEOUT_S = 5.0
"""How long the supervisor waits for the relay's socket before the attempt fails."""


class Relay:
    """One running relay; :meth:`stop` kills and reaps it (its forks die with the cgroup)."""

    def __init__(self, process: subprocess.Popen[bytes]) -> None:
        self.process = process

    @classmethod
    def start(cls, spec: Mapping[str, Any], join_cgroup: Callable[[int], None]) -> Relay:
        """Start the relay of ``spec`` (``request["relay"]``); OSError if it does not listen."""
        directory, uid = Path(spec["dir"]), int(spec["uid"])
        os.mkdir(directory, 0o700)
        os.chown(directory, uid, uid)

        def in_child() -> None:  # after fork, before exec, still root
            join_cgroup(os.getpid())

        process = subprocess.Popen(
            spec["argv"], stdin=subprocess.DEVNULL, cwd=directory, preexec_fn=in_child
        )
        relay = cls(process)
        try:
            relay._wait_listening(directory / str(spec["socket"]))
            os.chown(directory, 0, 0)
        except OSError:
            relay.stop()
            raise
        return relay

    def _wait_listening(self, socket_path: Path) -> None:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(FileNotFoundError):
                if _chmodded_socket(os.lstat(socket_path).st_mode):
                    return
            if self.process.poll() is not None:
                raise OSError(f"the gateway relay exited with {self.process.returncode}")
            time.sleep(0.002)
        raise OSError(f"the gateway relay did not listen within {START_TIMEOUT_S:g} s")

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self) -> None:
        """SIGKILL the relay and reap it."""
        with contextlib.suppress(ProcessLookupError):
            self.process.kill()
        self.process.wait()


def _chmodded_socket(mode: int) -> bool:
    """Whether socat is past ``mode=0666``: it binds (the socket appears), then chmods it.
    Taking the directory back between the two makes its chmod fail (EACCES) and the relay
    exit, so the job finds no route (seen on a loaded machine)."""
    return stat.S_ISSOCK(mode) and stat.S_IMODE(mode) == RELAY_SOCKET_MODE
