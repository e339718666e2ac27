"""The CLI against a real server, as a user runs it (each command a subprocess), plus two
in-process checks of the API client's error lines."""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest import Cli, Server, free_port
from suanwang.cli.client import ApiClient, CliError

KEY = re.compile(r"^sw_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{43}$")
ANY_KEY = re.compile(r"sw_[A-Za-z0-9]{8}_[A-Za-z0-9_-]{20,}")

VALID_FLEET = """\
regions:
  - name: e2e-lab
    display_name: E2E lab
clusters:
  - name: e2e-sim
    region: e2e-lab
    kind: simulated
    description: SIMULATED test cluster
    nodes:
      - name: e2e-n1
        chip: nvidia-h20
        cards: 8
"""


def assert_error(result: subprocess.CompletedProcess[str], *fragments: str) -> str:
    """Exit code 1, one ``error:`` line on stderr containing ``fragments``, no traceback."""
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


def ok(result: subprocess.CompletedProcess[str]) -> str:
    """The stdout of a command that must succeed."""
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return result.stdout


def job_json(cli: Cli, job_id: str, key: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(ok(cli("jobs", "show", job_id, "--json", key=key)))
    return data


def wait_state(cli: Cli, job_id: str, key: str, states: set[str], timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while True:
        current = str(job_json(cli, job_id, key)["state"])
        if current in states or time.monotonic() > deadline:
            return current
        time.sleep(0.2)


def test_acceptance_path(cli: Cli) -> None:
    ok(cli("tenants", "create", "acme", "--quota", "cpu=2"))
    key = ok(cli("keys", "create", "--tenant", "acme", "--scope", "tenant-admin", "-q")).strip()
    assert KEY.match(key)

    program = "print('hello from acme'); open('out.txt', 'w').write('ok')"
    submitted = cli(
        "jobs",
        "submit",
        "--chip",
        "cpu",
        "--wait",
        "-q",
        "--",
        sys.executable,
        "-c",
        program,
        key=key,
    )
    job_id = ok(submitted).strip()
    assert job_id.startswith("job-")
    assert (cli.server.data_dir / "runs" / job_id / "work" / "out.txt").read_text() == "ok"
    assert "hello from acme" in ok(cli("jobs", "logs", job_id, key=key))
    shown = ok(cli("jobs", "show", job_id, key=key))
    assert "succeeded" in shown
    assert "local" in shown


def test_ten_thousand_card_simulated_job(cli: Cli, demo_key: str) -> None:
    submitted = cli(
        "jobs",
        "submit",
        "--chip",
        "ascend-910b",
        "--cards",
        "8",
        "--nodes",
        "1250",
        "--simulate-duration",
        "3600",
        "--wait",
        "-q",
        key=demo_key,
    )
    job_id = ok(submitted).strip()
    shown = ok(cli("jobs", "show", job_id, key=demo_key))
    assert "succeeded" in shown
    assert "lingang-ascend" in shown
    assert "SIMULATED" in shown
    attempt = job_json(cli, job_id, demo_key)["attempt_history"][-1]
    assert (attempt["cluster"], attempt["simulated"], attempt["cards"]) == (
        "lingang-ascend",
        True,
        10_000,
    )


@pytest.fixture
def totals_unchanged(cli: Cli) -> Iterator[None]:
    """Fails the test if ``fleet totals --json`` differs after it."""
    before = json.loads(ok(cli("fleet", "totals", "--json")))
    yield
    assert json.loads(ok(cli("fleet", "totals", "--json"))) == before


@pytest.mark.usefixtures("totals_unchanged")
@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        (b"regions: [\n  - name: x\n", "not valid YAML"),
        (VALID_FLEET.replace("nvidia-h20", "quantum-9000").encode(), "unknown chip 'quantum-9000'"),
        (VALID_FLEET.replace("E2E lab", "caf\xe9").encode("latin-1"), "not UTF-8"),
    ],
    ids=["malformed-yaml", "unknown-chip", "not-utf8"],
)
def test_bad_fleet_file(cli: Cli, tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "fleet.yaml"
    path.write_bytes(content)
    assert_error(cli("fleet", "apply", str(path)), fragment)


def test_missing_fleet_file(cli: Cli, tmp_path: Path) -> None:
    assert_error(cli("fleet", "apply", str(tmp_path / "nope.yaml")), "no such file")


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--cards", "-1", "--", "true"], "cards_per_node"),
        (
            [
                "--cards",
                "8",
                "--nodes",
                "5000",
                "--chip",
                "ascend-910b",
                "--simulate-duration",
                "10",
            ],
            "resources.nodes",
        ),
        (
            [
                "--cards",
                "8",
                "--nodes",
                "1300",
                "--chip",
                "ascend-910b",
                "--simulate-duration",
                "10",
            ],
            "no simulated cluster has 1300 node(s)",
        ),
        (["--chip", "quantum-9000", "--", "true"], "quantum-9000"),
        (["--env", "NOEQUALS", "--", "true"], "--env"),
        (["--cards", "many", "--", "true"], "--cards"),
        (["--speed", "nvidia-h20=fast", "--", "true"], "--speed"),
        (["--speed", "nvidia-h20=-2", "--", "true"], "speed.nvidia-h20"),
        (["--priority-class", "urgent", "--", "true"], "unknown priority class 'urgent'"),
        (["--network", "host", "--", "true"], "network"),
        (["--preemption-grace", "301", "--", "true"], "preemption_grace_s"),
    ],
    ids=[
        "negative-cards",
        "too-many-nodes",
        "more-cards-than-exist",
        "unknown-chip",
        "bad-env",
        "not-a-number",
        "speed-not-a-number",
        "negative-speed",
        "unknown-priority-class",
        "host-network",
        "grace-over-the-max",
    ],
)
def test_bad_job(cli: Cli, demo_key: str, args: list[str], fragment: str) -> None:
    assert_error(cli("jobs", "submit", *args, key=demo_key), fragment)


def test_priority_classes_from_the_cli(cli: Cli, demo_key: str) -> None:
    listed = ok(cli("fleet", "classes", key=demo_key))
    assert "critical" in listed
    assert "best-effort" in listed
    args = ["--chip", "ascend-910b", "--simulate-duration", "60", "--priority-class", "critical"]
    args += ["--kind", "resnet50", "--speed", "ascend-910b=2.5", "-q"]
    job_id = ok(cli("jobs", "submit", *args, key=demo_key)).strip()
    job = job_json(cli, job_id, demo_key)
    assert job["priority"] == 1000
    spec = job["spec"]
    assert (spec["priority_class"], spec["preemptible"]) == ("critical", False)
    assert (spec["kind"], spec["speed"]) == ("resnet50", {"ascend-910b": 2.5})


def test_a_job_asks_for_the_gateway_route(cli: Cli, demo_key: str) -> None:
    args = ["--chip", "ascend-910b", "--simulate-duration", "60", "--network", "gateway", "-q"]
    job = job_json(cli, ok(cli("jobs", "submit", *args, key=demo_key)).strip(), demo_key)
    assert (job["network"], job["spec"]["network"]) == ("gateway", "gateway")


def test_bad_keys_and_tenants(cli: Cli) -> None:
    assert_error(
        cli("keys", "create", "--tenant", "no-such-tenant", "--scope", "tenant-admin"),
        "no tenant 'no-such-tenant'",
    )
    wrong = "sw_AAAAAAAA_" + "B" * 43
    line = assert_error(cli("jobs", "list", key=wrong), "invalid API key")
    assert wrong not in line
    assert_error(cli("tenants", "create", "Bad_Name"), "invalid tenant name")


def test_unreachable_server(cli: Cli) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    assert_error(
        cli("--url", url, "fleet", "show"),
        f"cannot reach suanwang at {url} (is 'suanwang server' running?)",
    )


def test_cancel_finished_job_conflicts(cli: Cli, demo_key: str) -> None:
    done = cli(
        "jobs",
        "submit",
        "--chip",
        "ascend",
        "--cards",
        "8",
        "--simulate-duration",
        "60",
        "--wait",
        "-q",
        key=demo_key,
    )
    job_id = ok(done).strip()
    assert_error(cli("jobs", "cancel", job_id, key=demo_key), "already succeeded")


def test_fleet_apply_twice_is_a_no_op(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "lab.yaml"
    path.write_text(VALID_FLEET, encoding="utf-8")
    first = ok(cli("fleet", "apply", str(path)))
    assert "created" in first
    assert "no change" in ok(cli("fleet", "apply", str(path)))
    shown = ok(cli("fleet", "show")).splitlines()
    lab = [line for line in shown if line.startswith("e2e-sim ")]
    assert len(lab) == 1
    assert "SIMULATED" in lab[0]
    assert "e2e-lab" in lab[0]
    assert any(line.startswith("local ") and " real " in line for line in shown)


def test_cancel_running_job(cli: Cli, demo_key: str) -> None:
    program = "import time; print('sleeping', flush=True); time.sleep(60)"
    job_id = ok(
        cli(
            "jobs",
            "submit",
            "--chip",
            "cpu",
            "-q",
            "--",
            sys.executable,
            "-c",
            program,
            key=demo_key,
        )
    ).strip()
    assert wait_state(cli, job_id, demo_key, {"running"}, timeout=15) == "running"
    started = time.monotonic()
    ok(cli("jobs", "cancel", job_id, key=demo_key))
    assert (
        wait_state(cli, job_id, demo_key, {"cancelled", "failed", "succeeded"}, timeout=10)
        == "cancelled"
    )
    assert time.monotonic() - started < 10


def test_a_job_that_asks_to_resume_shows_its_resume(cli: Cli, demo_key: str) -> None:
    """Exit 75 ("checkpointed, please resume") requeues without a retry; show says so."""
    script = (
        'test -f "$SUANWANG_CHECKPOINT_DIR/saved" && exit 0; '
        'touch "$SUANWANG_CHECKPOINT_DIR/saved"; exit 75'
    )
    args = ["--chip", "cpu", "--preemption-grace", "5", "-q", "--", "sh", "-c", script]
    job_id = ok(cli("jobs", "submit", *args, key=demo_key)).strip()
    assert wait_state(cli, job_id, demo_key, {"succeeded", "failed"}, timeout=30) == "succeeded"
    job = job_json(cli, job_id, demo_key)
    assert (job["resumes"], job["spec"]["preemption_grace_s"], job["attempts"]) == (1, 5.0, 2)
    shown = ok(cli("jobs", "show", job_id, key=demo_key))
    assert "resumed 1 time(s)" in shown


def test_top_prints_once(cli: Cli) -> None:
    shown = ok(cli("top", timeout=20))
    assert "Fleet totals" in shown
    assert "all regions" in shown
    assert "Jobs by state" in shown


def test_init_is_idempotent(cli: Cli, server: Server) -> None:
    key_file = server.data_dir / "operator.key"
    before = key_file.read_text()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    again = ok(cli("init"))
    assert "kept" in again
    assert "already set up" in again
    assert key_file.read_text() == before


def test_keys_never_logged(cli: Cli, server: Server, demo_key: str) -> None:
    ok(cli("jobs", "list", key=demo_key))
    assert not ANY_KEY.search(server.log.read_text(errors="replace"))


def _client(handler: Any, key: str | None) -> ApiClient:
    return ApiClient("http://suanwang.test", key, transport=httpx.MockTransport(handler))


def test_client_turns_any_error_body_into_one_line() -> None:
    secret = "sw_AAAAAAAA_" + "C" * 43

    def html(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>\n<body>Bad gateway</body>\n</html>")

    with _client(html, secret) as api, pytest.raises(CliError) as caught:
        api.call("GET", "/api/v1/fleet")
    line = caught.value.line()
    assert line.startswith("error: HTTP 502 Bad Gateway")
    assert "\n" not in line
    assert secret not in line


def test_client_hints_at_a_key_when_none_was_sent() -> None:
    def unauthorized(_request: httpx.Request) -> httpx.Response:
        return httpx.Response(401, json={"detail": "missing or invalid API key", "status": 401})

    with _client(unauthorized, None) as api, pytest.raises(CliError) as caught:
        api.call("GET", "/api/v1/jobs")
    assert "SUANWANG_API_KEY" in caught.value.line()


def test_chip_is_repeatable_and_every_one_is_accepted(cli: Cli, demo_key: str) -> None:
    submitted = cli(
        "jobs",
        "submit",
        *("--chip", "nvidia-h20", "--chip", "ascend", "--chip", "nvidia-h20"),
        *("--simulate-duration", "5", "--wait", "-q"),
        key=demo_key,
    )
    job_id = ok(submitted).strip()
    job = job_json(cli, job_id, demo_key)
    assert job["state"] == "succeeded", job
    assert job["spec"]["resources"]["chips"] == ["nvidia-h20", "ascend"]
    attempt = job["attempt_history"][-1]
    assert attempt["chip"] == "nvidia-h20" or attempt["chip"].startswith("ascend"), attempt


def test_fleet_import_from_local_writes_a_file_apply_accepts(cli: Cli, tmp_path: Path) -> None:
    path = tmp_path / "imported.yaml"
    wrote = ok(cli("fleet", "import", "--from", "local", "--cluster", "e2e-imp",
                   "--region", "e2e-imp-r", "-o", str(path)))  # fmt: skip
    assert wrote.startswith(f"wrote {path}: cluster e2e-imp, ")
    assert "created" in ok(cli("fleet", "apply", str(path)))
    shown = json.loads(ok(cli("fleet", "show", "--json")))
    imported = {c["name"]: c for c in shown["clusters"]}["e2e-imp"]
    assert imported["backend"] == "local"
    assert imported["nodes"] >= 1
    printed = ok(cli("fleet", "import", "--from", "local", "--cluster", "x", "--region", "r"))
    assert printed.startswith("# written by 'suanwang fleet import --from local'")


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--from", "local", "--address", "http://h:1"), ("--address does not apply",)),
        (("--from", "ray"), ("--address",)),
        (("--from", "ray", "--address", "h:8265"), ("not an http(s) URL", "--address")),
        (("--from", "slurm", "--partition", "a;b"), ("--partition",)),
        (("--from", "nomad"), ("'nomad' is not one of",)),
    ],
)
def test_fleet_import_bad_flags(
    cli: Cli, args: tuple[str, ...], fragments: tuple[str, ...]
) -> None:
    assert_error(cli("fleet", "import", "--cluster", "c", "--region", "r", *args), *fragments)


ENGINE_FLEET = """
regions: [{name: e2e-eng}]
clusters:
  - name: e2e-ray
    region: e2e-eng
    kind: real
    ray: {address: 'http://127.0.0.1:9'}
    nodes: [{name: e2e-ray-n1, chip: ascend-310p, cards: 4}]
"""


def test_fleet_show_gives_an_engine_clusters_health_and_connection(
    cli: Cli, tmp_path: Path
) -> None:
    path = tmp_path / "engine.yaml"
    path.write_text(ENGINE_FLEET, encoding="utf-8")
    ok(cli("fleet", "apply", str(path)))
    deadline = time.monotonic() + 20  # the server checks a newly applied cluster next tick
    while "cluster e2e-ray is unhealthy" not in (shown := ok(cli("fleet", "show"))):
        assert time.monotonic() < deadline, shown
        time.sleep(0.2)
    row = next(line for line in shown.splitlines() if line.startswith("e2e-ray "))
    assert "real ray" in row
    assert "UNHEALTHY" in row
    assert "cluster e2e-ray ray: address=http://127.0.0.1:9" in shown
    data = json.loads(ok(cli("fleet", "show", "--json")))
    cluster = {c["name"]: c for c in data["clusters"]}["e2e-ray"]
    assert cluster["connection"] == {"ray": {"address": "http://127.0.0.1:9"}}
    assert cluster["health"]["status"] == "unhealthy"
    assert cluster["health"]["reason"]
