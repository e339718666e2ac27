"""``suanwang kb`` against a real server, as a user types it: create a keyword-only base,
upload the labelled document set plus a bad file (it fails alone, exit 1, the others are
indexed), list documents, retrieve, remove a document, delete the base."""

from __future__ import annotations

import json
from pathlib import Path

from test_cli import assert_error, ok

from conftest import Cli

DOCS = Path(__file__).resolve().parents[1] / "data" / "kb" / "docs"


def test_create_upload_retrieve_and_delete(cli: Cli, tmp_path: Path) -> None:
    ok(cli("tenants", "create", "kbfolk"))
    key = ok(cli("keys", "create", "--tenant", "kbfolk", "--scope", "tenant-admin", "-q")).strip()
    assert "created knowledge base handbook" in ok(cli("kb", "create", "handbook", key=key))
    bad = tmp_path / "broken.pdf"
    bad.write_bytes(b"%PDF-1.4 not really")
    files = [str(p) for p in sorted(DOCS.iterdir())]
    uploaded = cli("kb", "upload", "handbook", *files, str(bad), key=key)
    assert uploaded.returncode == 1, uploaded.stderr
    assert "broken.pdf: error:" in uploaded.stderr
    assert "cannot parse the document" in uploaded.stderr
    assert uploaded.stderr.count("chunks (doc_") == len(files)
    docs = json.loads(ok(cli("kb", "docs", "handbook", "--json", key=key)))
    assert sorted(d["name"] for d in docs) == sorted(Path(f).name for f in files)

    found = json.loads(
        ok(cli("kb", "retrieve", "handbook", "东山人民医院有多少张病床？", "--json", key=key))
    )
    assert found["mode"] == "keyword"
    assert found["hits"][0]["document"] == "dongshan-hospital.md"
    assert "dongshan-hospital.md" in ok(cli("kb", "retrieve", "handbook", "东山医院 床位", key=key))

    assert "deleted dongshan-hospital.md" in ok(
        cli("kb", "rm", "handbook", "dongshan-hospital.md", key=key)
    )
    again = json.loads(ok(cli("kb", "retrieve", "handbook", "东山人民医院床位", "--json", key=key)))
    assert all(h["document"] != "dongshan-hospital.md" for h in again["hits"])
    assert_error(cli("kb", "create", "handbook", key=key), "exists")
    assert "deleted knowledge base handbook" in ok(cli("kb", "delete", "handbook", key=key))
    assert_error(cli("kb", "docs", "handbook", key=key), "no knowledge base")
