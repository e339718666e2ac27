"""``suanwang apps`` against a real server, as a user types it: an app from an industry
template (keyword-only, so no gateway is needed), a new version, a rollback, bad input
answered with one error line naming the field, and a delete that takes the template's
knowledge base with it. Calls through the gateway are in tests/integration/test_apps_live.py."""

from __future__ import annotations

import json

from test_cli import assert_error, ok

from conftest import Cli

CHAT = "smollm2-135m-instruct"


def test_template_versions_rollback_and_delete(cli: Cli) -> None:
    ok(cli("tenants", "create", "appfolk"))
    key = ok(cli("keys", "create", "--tenant", "appfolk", "--scope", "tenant-admin", "-q")).strip()
    assert "weather-briefing" in ok(cli("apps", "templates", key=key))
    made = cli(
        "apps", "create", "--from-template", "weather-briefing", "--name", "wx",
        "--embedding-model", "none", key=key,
    )  # fmt: skip
    assert "call it as model='app:wx'" in ok(made)
    assert "knowledge bases: wx-kb" in made.stdout
    docs = json.loads(ok(cli("kb", "docs", "wx-kb", "--json", key=key)))
    assert len(docs) == 3
    assert [a["name"] for a in json.loads(ok(cli("apps", "list", "--json", key=key)))] == ["wx"]

    assert "version 2 made; published 2" in ok(
        cli("apps", "update", "wx", "--system-prompt", "Be brief.", key=key)
    )
    versions = json.loads(ok(cli("apps", "versions", "wx", "--json", key=key)))
    assert [v["version"] for v in versions] == [1, 2]
    assert "version 1 published" in ok(cli("apps", "publish", "wx", "1", key=key))
    shown = json.loads(ok(cli("apps", "show", "wx", "--json", key=key)))
    assert shown["published_version"] == 1
    assert shown["version"]["system_prompt"].startswith("You are the briefing assistant")

    assert_error(
        cli("apps", "create", "x", "--model", "no-such-model", "--system-prompt", "x", key=key),
        "(field: model)",
    )
    assert_error(
        cli("apps", "create", "Bad", "--model", CHAT, "--system-prompt", "x", key=key),
        "(field: name)",
    )
    assert_error(cli("apps", "create", "empty", "--model", CHAT, key=key), "(field: system_prompt)")
    assert_error(
        cli(
            "apps", "create", "y", "--model", CHAT, "--system-prompt", "x", "--kb", "nope", key=key
        ),
        "(field: knowledge_bases)",
    )

    gone = ok(cli("apps", "delete", "wx", "--with-knowledge-bases", key=key))
    assert "deleted app wx and knowledge bases wx-kb" in gone
    assert json.loads(ok(cli("kb", "list", "--json", key=key))) == []
    assert_error(cli("apps", "show", "wx", key=key), "no app 'wx'")
