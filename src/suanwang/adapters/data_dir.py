"""Files at rest: the data directory is the service user's alone (0700 directories, 0600 files).

:func:`secure_data_dir` creates the data directory 0700, creates an SQLite database file
0600 before SQLite does (SQLite gives ``-wal`` and ``-shm`` the database file's mode), and
tightens what an older version left readable: the database and its ``-wal``/``-shm``, the
operator key, the usage journals, the run directories and job logs. Called on every start
(``suanwang init``, ``suanwang server``, any process that builds the platform or gateway).

Jobs' own directories (``runs/<job>/work``) belong to the jobs' uids and are left alone:
they sit below ``runs/<job>/``, which only the service user can enter.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Iterator
from pathlib import Path

PRIVATE_DIR = 0o700
PRIVATE_FILE = 0o600


def secure_data_dir(data_dir: Path, sqlite_file: Path | None) -> None:
    """Create ``data_dir`` (0700) and tighten every state file in it to 0600."""
    data_dir.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    if sqlite_file is not None:
        sqlite_file.parent.mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.close(os.open(sqlite_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE))
        for suffix in ("", "-wal", "-shm", "-journal"):
            _tighten(sqlite_file.with_name(sqlite_file.name + suffix), PRIVATE_FILE)
    _tighten(data_dir, PRIVATE_DIR)
    for path in _state_paths(data_dir):
        _tighten(path, PRIVATE_DIR if path.is_dir() else PRIVATE_FILE)


def _state_paths(data_dir: Path) -> Iterator[Path]:
    """Everything the platform keeps in ``data_dir`` (not the jobs' own directories)."""
    yield from data_dir.glob("*.key")
    yield from data_dir.glob("suanwang.db*")
    for name in ("usage-journal", "runs"):
        if (data_dir / name).is_dir():
            yield data_dir / name
    yield from data_dir.glob("usage-journal/*")
    yield from data_dir.glob("runs/*")
    for attempt in data_dir.glob("runs/*/[0-9]*"):
        yield attempt
        yield from attempt.iterdir()


def _tighten(path: Path, mode: int) -> None:
    """Remove group and other bits from ``path`` (a file or directory we own, not a link)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(info.st_mode) or info.st_uid != os.geteuid():
        return
    if stat.S_IMODE(info.st_mode) & ~mode:
        os.chmod(path, stat.S_IMODE(info.st_mode) & mode)
