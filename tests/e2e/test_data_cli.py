"""``suanwang data`` against a real server: upload a directory (streamed, hashed both ends),
list, show, use in a job, delete (refused while the job waits), and the storage quota."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from test_cli import assert_error, ok

from conftest import Cli


def test_upload_list_show_use_and_delete(cli: Cli, tmp_path: Path) -> None:
    ok(cli("tenants", "create", "datafolk"))
    key = ok(cli("keys", "create", "--tenant", "datafolk", "--scope", "tenant-admin", "-q")).strip()
    shards = tmp_path / "shards"
    (shards / "train").mkdir(parents=True)
    files = {"train/part-0.jsonl": b'{"text": "hello"}\n' * 1000, "big.bin": os.urandom(3 << 20)}
    for path, data in files.items():
        (shards / path).write_bytes(data)
    (shards / "link").symlink_to("/etc/passwd")  # skipped: links are not followed

    said = ok(
        cli("data", "upload", "corpus", str(shards), "--format", "jsonl",
            "--region", "shanghai-lingang", key=key)
    )  # fmt: skip
    assert "2 file(s)" in said
    assert "sealed" in said
    listed = ok(cli("data", "list", key=key))
    assert "corpus" in listed
    assert "shanghai-lingang" in listed
    shown = json.loads(ok(cli("data", "show", "corpus", "--json", key=key)))
    assert {e["path"]: e["sha256"] for e in shown["manifest"]} == {
        p: hashlib.sha256(d).hexdigest() for p, d in files.items()
    }
    assert shown["state"] == "ready"

    assert_error(
        cli("data", "upload", "corpus", str(shards / "big.bin"), "--region", "local", key=key),
        "corpus",
    )
    job = ok(
        cli("jobs", "submit", "--dataset", "corpus", "--chip", "metax-c500",
            "--region", "ningxia-zhongwei", "--simulate-duration", "60", "-q", key=key)
    ).strip()  # fmt: skip
    assert_error(cli("data", "delete", "corpus", key=key), "unfinished job", job)
    ok(cli("jobs", "cancel", job, key=key))
    assert "deleted dataset corpus" in ok(cli("data", "delete", "corpus", key=key))
    assert_error(cli("data", "show", "corpus", key=key), "no dataset")
    assert_error(
        cli("jobs", "submit", "--dataset", "corpus", "--simulate-duration", "5", key=key),
        "no dataset",
    )


def test_the_storage_quota_from_the_cli(cli: Cli, tmp_path: Path) -> None:
    ok(cli("tenants", "create", "tightfolk"))
    key = ok(
        cli("keys", "create", "--tenant", "tightfolk", "--scope", "tenant-admin", "-q")
    ).strip()
    assert "0 of 2,000 bytes used" in ok(cli("data", "quota", "tightfolk", "--set", "2000"))
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"x" * 3000)
    assert_error(
        cli("data", "upload", "blob", str(blob), "--region", "local", key=key), "storage quota"
    )
    assert_error(cli("data", "quota", "tightfolk", "--set", "9", key=key), "operator")
    assert "(default)" in ok(cli("data", "quota", "tightfolk", "--default"))


def test_agents_and_copies_from_the_cli(cli: Cli, tmp_path: Path) -> None:
    said = ok(
        cli("agents", "register", "agent-local", "--region", "local",
            "--address", "127.0.0.1:7799", "--out", str(tmp_path / "certs"))
    )  # fmt: skip
    assert "suanwang agent serve --region local" in said
    for name in ("agent-local.pem", "agent-local.key", "ca.pem"):
        assert (tmp_path / "certs" / name).stat().st_mode & 0o777 == 0o600
    assert "BEGIN CERTIFICATE" in (tmp_path / "certs" / "agent-local.pem").read_text()
    assert "agent-local" in ok(cli("agents", "list"))
    ok(cli("tenants", "create", "copyfolk"))
    key = ok(cli("keys", "create", "--tenant", "copyfolk", "--scope", "tenant-admin", "-q")).strip()
    assert_error(cli("agents", "list", key=key), "operator")
    blob = tmp_path / "blob.bin"
    blob.write_bytes(b"y" * 100)
    ok(cli("data", "upload", "blob", str(blob), "--region", "local", key=key))
    assert_error(
        cli("data", "copy", "blob", "--to", "ningxia-zhongwei", key=key), "no agent registered"
    )
    for bad in ("fast", "0", "-1M"):
        assert_error(
            cli("data", "copy", "blob", "--to", "ningxia-zhongwei", f"--max-rate={bad}", key=key),
            "--max-rate",
        )
    assert_error(
        cli("jobs", "submit", "--output-dataset", "out", "--output-path", "../up",
            "--simulate-duration", "5", key=key),
        "output_path",
    )  # fmt: skip
