"""``suanwang audit`` against a real server: ``suanwang init`` is in the log as ``system``,
CLI changes appear with their key, and a tenant admin sees only its own tenant."""

from __future__ import annotations

import json

from test_cli import assert_error, ok

from conftest import Cli


def audit_json(cli: Cli, *args: str, key: str | None = None) -> list[dict[str, object]]:
    entries: list[dict[str, object]] = json.loads(
        ok(cli("audit", "--all", "--json", *args, key=key))
    )["entries"]
    return entries


def test_init_is_audited_as_the_local_operator(cli: Cli) -> None:
    by_system = audit_json(cli, "--actor", "system")
    actions = {e["action"] for e in by_system}
    assert {"key.create", "fleet.apply", "tenant.create"} <= actions
    assert all(e["request_id"] is None for e in by_system)


def test_a_cli_change_shows_in_the_table_and_json(cli: Cli) -> None:
    ok(cli("tenants", "create", "audit-e2e", "--quota", "cpu=1"))
    ok(cli("tenants", "set-quota", "audit-e2e", "--quota", "cpu=2"))
    table = ok(cli("audit", "--tenant", "audit-e2e", "--since", "1h"))
    assert "quota.update" in table
    assert "tenant.create" in table
    assert "operator" in table
    (entry,) = audit_json(cli, "--tenant", "audit-e2e", "--action", "quota.update")
    assert entry["resource"] == "tenant"
    assert entry["resource_id"] == "audit-e2e"
    assert entry["request_id"]


def test_tenant_admin_sees_its_own_tenant_only(cli: Cli, demo_key: str) -> None:
    ok(cli("keys", "create", "--scope", "read-only", "-q", key=demo_key))
    ok(cli("tenants", "create", "audit-other"))
    seen = audit_json(cli, key=demo_key)
    assert seen
    assert {e["tenant"] for e in seen} == {"demo"}
    assert_error(cli("audit", "--tenant", "audit-other", key=demo_key), "no tenant")
    member = ok(cli("keys", "create", "--scope", "tenant-member", "-q", key=demo_key)).strip()
    assert_error(cli("audit", key=member), "tenant-admin")


def test_bad_times_are_one_line_errors(cli: Cli) -> None:
    assert_error(cli("audit", "--since", "yesterday"), "--since", "7d")
