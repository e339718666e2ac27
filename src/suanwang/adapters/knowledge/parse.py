"""Parses uploaded documents in a sandbox: :class:`SandboxedParser` runs
:mod:`~suanwang.adapters.knowledge.parse_worker` in a child process per file.

When this process can sandbox (root with bubblewrap and setpriv, as local jobs need), the
child runs in the jobs' bubblewrap sandbox (no network, no data directory, a private
tmpfs) as an unprivileged uid of its own; in every mode it runs under ``prlimit``
(address space, CPU seconds, no files written, few descriptors) and a wall-clock timeout.
A zip bomb or a malformed PDF fails its own upload with a 422 and nothing else.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import suanwang
from suanwang.adapters.backends.sandbox import (
    Confinement,
    bwrap_args,
    drop_privileges,
    probe_host,
    root_layout,
)
from suanwang.domain.errors import ValidationError
from suanwang.domain.knowledge import MediaType

log = logging.getLogger(__name__)
PARSER_UID = 199998
"""The uid parsers run as in the sandbox (no tenant's, not the engines' 199999)."""
MAX_TEXT_BYTES = 16 << 20


@dataclass(frozen=True, slots=True)
class ParseLimits:
    memory_bytes: int = 768 << 20
    cpu_s: int = 20
    wall_s: float = 30.0


class SandboxedParser:
    """:class:`~suanwang.ports.DocumentParser` that parses each file in a confined child."""

    def __init__(self, limits: ParseLimits | None = None, *, sandbox: bool | None = None) -> None:
        self._limits = limits or ParseLimits()
        facts = probe_host()
        can = facts.euid == 0 and facts.bwrap is not None and facts.setpriv is not None
        self.sandboxed = can if sandbox is None else (sandbox and can)
        self._bwrap = facts.bwrap or "bwrap"
        self._setpriv = facts.setpriv or "setpriv"
        self._prlimit = shutil.which("prlimit")
        self._code_root = str(Path(suanwang.__file__).resolve().parents[1])

    def argv(self, media_type: MediaType) -> list[str]:
        lim = self._limits
        limited = [sys.executable, "-m", "suanwang.adapters.knowledge.parse_worker"]
        limited.append(media_type.value)
        if self._prlimit:
            limited = [
                self._prlimit,
                f"--as={lim.memory_bytes}",
                f"--cpu={lim.cpu_s}",
                "--fsize=0",
                "--nofile=64",
                "--",
                *limited,
            ]
        env = ["/usr/bin/env", "-i", f"PYTHONPATH={self._code_root}", "LANG=C.UTF-8"]
        if not self.sandboxed:
            return [*env, *limited]
        confinement = Confinement(
            uid=PARSER_UID,
            work_dir=None,
            cwd_parts=(),
            read_only=(sys.base_prefix, sys.prefix, self._code_root),
            tmpfs_bytes=16 << 20,
        )
        box = bwrap_args(root_layout(), confinement)
        return [self._bwrap, *box, *drop_privileges(self._setpriv, PARSER_UID), *env, *limited]

    def parse(self, data: bytes, media_type: MediaType) -> str:
        try:
            done = subprocess.run(
                self.argv(media_type),
                input=data,
                capture_output=True,
                timeout=self._limits.wall_s,
                check=False,
                cwd="/",
            )
        except subprocess.TimeoutExpired as exc:
            raise _refused(f"parsing took longer than {self._limits.wall_s:.0f} s") from exc
        if done.returncode != 0:
            reason = _reason(done.returncode, done.stderr)
            log.info("document refused by the parser: %s", reason)
            raise _refused(reason)
        if len(done.stdout) > MAX_TEXT_BYTES:
            raise _refused(f"the document holds more than {MAX_TEXT_BYTES} bytes of text")
        text = done.stdout.decode("utf-8", errors="replace")
        if not text.strip():
            raise ValidationError(
                "the document has no text",
                field="file",
                hint="upload a document with text (scanned PDFs need OCR first)",
            )
        return text


def _reason(code: int, stderr: bytes) -> str:
    tail = stderr.decode("utf-8", errors="replace").strip().splitlines()
    last = tail[-1][:300] if tail else ""
    if code == 2 and last:
        return last
    if code < 0 or "MemoryError" in last or code in (137, 152):
        signal = -code if code < 0 else code - 128
        return f"the parser exceeded its memory or CPU limit (signal {signal})"
    return f"the parser failed (exit {code}): {last}" if last else f"the parser failed ({code})"


def _refused(reason: str) -> ValidationError:
    return ValidationError(
        f"cannot parse the document: {reason}",
        field="file",
        hint="check that the file opens in its own application and is not too large",
    )


def parser_mode(parser: SandboxedParser) -> str:
    return "sandbox" if parser.sandboxed else f"rlimits only (uid {os.geteuid()})"
