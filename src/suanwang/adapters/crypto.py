"""Credentials at rest: Fernet (AES-128-CBC + HMAC-SHA256) with key rotation (MultiFernet).

Where the keys live, newest first:

- ``SUANWANG_CREDENTIAL_KEYS`` (comma-separated Fernet keys), when set: for deployments whose
  control planes and gateways share a PostgreSQL database from several hosts (give every
  process the same value from the host's secret store);
- else ``<data dir>/credentials.key``, one key per line, created 0600 on first use (the data
  directory is 0700; :func:`~suanwang.adapters.data_dir.secure_data_dir` keeps it so).

Rotation (:func:`rotate_key_file`): a new key is put first, so new credentials are sealed
with it while older ciphertexts still open; ``suanwang models external rotate-key`` then
re-seals every stored credential under the new key and (``--drop-old``) removes the old
keys. A process that meets a ciphertext its keys cannot open reloads the key file once, so
running gateways pick up a rotation without a restart.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from suanwang.adapters.data_dir import PRIVATE_FILE

KEYS_ENV = "SUANWANG_CREDENTIAL_KEYS"
KEY_FILE = "credentials.key"


class FernetBox:
    """:class:`~suanwang.ports.SecretBox` over MultiFernet; keys from a file or given."""

    def __init__(self, keys: list[bytes] | None = None, key_file: Path | None = None) -> None:
        if keys is None and key_file is None:
            raise ValueError("FernetBox needs keys or a key file")
        self._file = key_file
        self._lock = threading.Lock()
        self._fernet = _multi(keys if keys is not None else _read_or_create(key_file))

    def seal(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except InvalidToken:
            if not self._reload():
                raise ValueError("no credential key opens this ciphertext") from None
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode()
        except InvalidToken:
            raise ValueError("no credential key opens this ciphertext") from None

    def reseal(self, sealed: str) -> str:
        try:
            return self._fernet.rotate(sealed.encode("ascii")).decode("ascii")
        except InvalidToken:
            raise ValueError("no credential key opens this ciphertext") from None

    def _reload(self) -> bool:
        """Re-read the key file (after a rotation elsewhere); False if there is none."""
        if self._file is None:
            return False
        with self._lock:
            self._fernet = _multi(_read_or_create(self._file))
        return True


def box_for(data_dir: Path, environ: dict[str, str] | None = None) -> FernetBox:
    """The box of this installation: ``SUANWANG_CREDENTIAL_KEYS`` if set, else the key file."""
    env = os.environ if environ is None else environ
    keys = env.get(KEYS_ENV, "").strip()
    if keys:
        return FernetBox([k.strip().encode() for k in keys.split(",") if k.strip()])
    return FernetBox(key_file=data_dir / KEY_FILE)


def rotate_key_file(key_file: Path) -> int:
    """Put a new key first in ``key_file``; the number of keys now."""
    keys = [Fernet.generate_key(), *_read_or_create(key_file)]
    _write(key_file, keys)
    return len(keys)


def drop_old_keys(key_file: Path) -> None:
    """Keep only the newest key (once every credential is sealed with it)."""
    _write(key_file, _read_or_create(key_file)[:1])


def _multi(keys: list[bytes]) -> MultiFernet:
    if not keys:
        raise ValueError("no credential keys configured")
    try:
        return MultiFernet([Fernet(k) for k in keys])
    except ValueError as exc:
        raise ValueError(f"invalid credential key ({exc})") from None


def _read_or_create(key_file: Path | None) -> list[bytes]:
    assert key_file is not None
    try:
        text = key_file.read_text(encoding="ascii")
    except FileNotFoundError:
        return _create(key_file)
    return [line.strip().encode() for line in text.splitlines() if line.strip()]


def _create(key_file: Path) -> list[bytes]:
    """A new key file with one key, created whole (link of a written temporary file), so a
    process racing to create it reads either nothing or the complete key."""
    key = Fernet.generate_key()
    tmp = key_file.with_name(f"{key_file.name}.{os.getpid()}.{threading.get_ident()}.new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(key + b"\n")
            out.flush()
            os.fsync(out.fileno())
        os.link(tmp, key_file)
    except FileExistsError:  # another process created it meanwhile: use theirs
        return _read_or_create(key_file)
    finally:
        tmp.unlink(missing_ok=True)
    return [key]


def _write(key_file: Path, keys: list[bytes]) -> None:
    """Replace ``key_file`` atomically (0600)."""
    tmp = key_file.with_name(key_file.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    with os.fdopen(fd, "wb") as out:
        out.write(b"".join(k + b"\n" for k in keys))
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, key_file)
