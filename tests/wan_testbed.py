"""The WAN testbed of ../shared/tools/wan-testbed (two namespaces, a shaped veth, a delay
line) for the transfer tests and benchmark. Never copied into the project: found through
``SUANWANG_WAN_TESTBED`` (default ``<repo>/../shared/tools/wan-testbed``)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def testbed_dir() -> Path:
    return Path(
        os.environ.get("SUANWANG_WAN_TESTBED", REPO.parent / "shared" / "tools" / "wan-testbed")
    )


def unavailable() -> str | None:
    """Why the testbed cannot run here, or None."""
    script = testbed_dir() / "testbed.sh"
    if not script.is_file():
        return f"no WAN testbed at {script.parent} (set SUANWANG_WAN_TESTBED)"
    if os.geteuid() != 0:
        return "the WAN testbed needs root (network namespaces, tc)"
    if shutil.which("ip") is None or shutil.which("tc") is None:
        return "iproute2 (ip, tc) is not installed"
    probe = subprocess.run(["ip", "netns", "add", "suanwang-probe"], capture_output=True, text=True)
    if probe.returncode != 0:
        return f"network namespaces unavailable: {probe.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", "suanwang-probe"], check=False)
    return None


def build_delay_line(work: Path) -> tuple[Path | None, str]:
    """Build nfq_delay into ``work``; (binary, "") or (None, why not)."""
    work.mkdir(parents=True, exist_ok=True)
    binary = work / "nfq_delay"
    if binary.exists():
        return binary, ""
    if shutil.which("gcc") is None:
        return None, "gcc is not installed"
    proc = subprocess.run(
        [
            "gcc",
            "-O2",
            "-o",
            str(binary),
            str(testbed_dir() / "nfq_delay.c"),
            "-lnetfilter_queue",
            "-lnfnetlink",
        ],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        return (
            None,
            f"nfq_delay did not build (libnetfilter-queue-dev missing?): {proc.stderr[-300:]}",
        )
    return binary, ""


class WanTestbed:
    """``up`` / ``down`` of testbed.sh with its work files under ``work``."""

    def __init__(self, work: Path, delay_line: Path | None) -> None:
        self.env = os.environ | {"XFER_WORK": str(work)}
        if delay_line is not None:
            self.env["NFQ_DELAY"] = str(delay_line)

    def _run(self, *args: str) -> str:
        proc = subprocess.run(
            [str(testbed_dir() / "testbed.sh"), *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"testbed.sh {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc.stdout.strip()

    def up(self, rate: str, rtt_ms: int) -> str:
        return self._run("up", rate, str(rtt_ms))

    def down(self) -> None:
        self._run("down")
