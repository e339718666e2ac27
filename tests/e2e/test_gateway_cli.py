"""``suanwang tenants limits`` and ``suanwang keys limits`` as a user runs them."""

from __future__ import annotations

import json
import subprocess

from conftest import Cli


def ok(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_limits_commands(cli: Cli) -> None:
    ok(cli("tenants", "create", "limited"))
    shown = ok(cli("tenants", "limits", "limited"))
    assert "unlimited" in shown
    ok(cli("tenants", "limits", "limited", "--rpm", "60", "--token-quota", "5000"))
    ok(cli("tenants", "limits", "limited", "--tpm", "9000"))  # changes only what is given
    limits = json.loads(ok(cli("tenants", "limits", "limited", "--json")))
    assert (limits["rpm"], limits["tpm"], limits["token_quota"]) == (60, 9000, 5000)
    assert limits["period"] == "seconds"  # the default: fixed windows of period_s
    ok(cli("tenants", "limits", "limited", "--period", "month"))
    monthly = json.loads(ok(cli("tenants", "limits", "limited", "--json")))
    assert (monthly["period"], monthly["token_quota"]) == ("month", 5000)
    ok(cli("tenants", "limits", "limited", "--period-s", "86400"))  # alone: fixed windows again
    daily = json.loads(ok(cli("tenants", "limits", "limited", "--json")))
    assert (daily["period"], daily["period_s"]) == ("seconds", 86400)
    assert cli("tenants", "limits", "limited", "--period", "week").returncode != 0

    admin = ok(cli("keys", "create", "--tenant", "limited", "--scope", "tenant-admin", "-q"))
    member = json.loads(
        ok(cli("keys", "create", "--tenant", "limited", "--scope", "tenant-member", "--json"))
    )
    key_id = member["id"]
    ok(
        cli(
            "keys",
            "limits",
            key_id,
            "--rpm",
            "5",
            "--model",
            "smollm2-135m-instruct",
            key=admin.strip(),
        )
    )
    got = json.loads(ok(cli("keys", "limits", key_id, "--json", key=admin.strip())))
    assert got == {"rpm": 5, "tpm": None, "models": ["smollm2-135m-instruct"]}

    refused = cli("tenants", "limits", "limited", "--rpm", "1", key=admin.strip())
    assert refused.returncode != 0
    assert len(refused.stderr.strip().splitlines()) == 1
    bad = cli("tenants", "limits", "limited", "--period-s", "5")
    assert bad.returncode != 0
