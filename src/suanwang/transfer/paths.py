"""Path confinement: every path an agent is given is relative to its storage root.

:func:`confine` refuses absolute paths, ``..`` components, names the agent reserves for
itself (``.suanwang-*``: staging and journals) and anything whose real path (all symlinks
resolved) leaves the root.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

RESERVED_PREFIX = ".suanwang-"


class PathRefused(ValueError):
    """A path that is not a plain relative path inside the agent's root."""


def confine(root: Path, rel: str) -> Path:
    """The real absolute path of ``rel`` under ``root``; PathRefused if it escapes."""
    if not rel or "\x00" in rel:
        raise PathRefused("path is empty or contains NUL")
    pure = PurePosixPath(rel)
    if pure.is_absolute():
        raise PathRefused(f"path {rel!r} is absolute; give a path relative to the storage root")
    if any(part == ".." for part in pure.parts):
        raise PathRefused(f"path {rel!r} contains '..'")
    if pure.parts and pure.parts[0].startswith(RESERVED_PREFIX):
        raise PathRefused(f"path {rel!r} is reserved for the agent")
    real_root = root.resolve(strict=True)
    real = (real_root / pure).resolve(strict=False)
    if real != real_root and real_root not in real.parents:
        raise PathRefused(f"path {rel!r} leaves the storage root (through a symlink)")
    return real


def inside(root: Path, path: Path) -> bool:
    """True when ``path``'s real path is ``root`` or under it."""
    real_root = root.resolve(strict=True)
    real = Path(os.path.realpath(path))
    return real == real_root or real_root in real.parents


def check_relative(rel: str) -> str:
    """``rel`` when it is a plain relative POSIX path (no '..', not absolute, no empty part)."""
    pure = PurePosixPath(rel)
    if not rel or "\x00" in rel or pure.is_absolute() or any(p in ("..", "") for p in pure.parts):
        raise PathRefused(f"path {rel!r} is not a plain relative path")
    return rel
