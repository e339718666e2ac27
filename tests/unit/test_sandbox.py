"""The sandbox's pure parts: bubblewrap arguments, the user command, environment, refusals,
the working-directory rule and the tenant uid range."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from suanwang.adapters.backends.sandbox import (
    NEEDED_CAPS,
    REFUSAL_PREFIX,
    Confinement,
    HostFacts,
    RootLayout,
    bwrap_args,
    gateway_forward,
    job_environment,
    relay_command,
    sandbox_refusal,
    user_command,
)
from suanwang.domain.errors import ValidationError
from suanwang.domain.jobs import JobSpec, spec_from_dict, spec_to_dict
from suanwang.domain.workloads import (
    GATEWAY_SOCKET,
    JOB_AREA,
    JobNetwork,
    UidRange,
    job_area_parts,
)

DEBIAN = RootLayout(
    symlinks=(("/bin", "usr/bin"), ("/lib", "usr/lib"), ("/lib64", "usr/lib64")),
    directories=(),
)
PYTHON = ("/root/.pyenv/versions/3.11.7", "/work/main/.venv")


def tenant_job(**changes: object) -> Confinement:
    fields: dict[str, object] = {
        "uid": 200001,
        "work_dir": Path("/srv/data/runs/job-1/work"),
        "cwd_parts": (),
        "read_only": PYTHON,
    }
    fields.update(changes)
    return Confinement(**fields)  # type: ignore[arg-type]


def pairs(args: list[str], option: str) -> list[tuple[str, str]]:
    """Every ``option A B`` in ``args`` as ``(A, B)``."""
    return [(args[i + 1], args[i + 2]) for i, a in enumerate(args) if a == option]


def test_a_tenant_job_gets_every_namespace_and_no_network() -> None:
    args = bwrap_args(DEBIAN, tenant_job())
    for flag in ("--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net"):
        assert flag in args
    assert "--die-with-parent" in args
    assert "--share-net" not in args
    assert "/sys" not in args


def test_an_engine_keeps_the_host_network_and_reads_sys() -> None:
    args = bwrap_args(DEBIAN, tenant_job(share_net=True, with_sys=True))
    assert "--unshare-net" not in args
    assert ("/sys", "/sys") in pairs(args, "--ro-bind")
    assert "--unshare-pid" in args


def test_only_what_a_job_needs_is_mounted_and_read_only() -> None:
    args = bwrap_args(DEBIAN, tenant_job())
    read_only = pairs(args, "--ro-bind")
    assert read_only == [
        ("/usr", "/usr"),
        ("/etc", "/etc"),
        ("/root/.pyenv/versions/3.11.7", "/root/.pyenv/versions/3.11.7"),
        ("/work/main/.venv", "/work/main/.venv"),
    ]
    assert pairs(args, "--bind") == [("/srv/data/runs/job-1/work", JOB_AREA)]
    assert pairs(args, "--symlink") == [(target, path) for path, target in DEBIAN.symlinks]
    assert not any("/srv/data" in a for a in args if a != "/srv/data/runs/job-1/work")


def test_ancestors_of_read_only_paths_are_made_traversable() -> None:
    args = bwrap_args(DEBIAN, tenant_job())
    made = [args[i + 3] for i, a in enumerate(args) if a == "--perms" and args[i + 2] == "--dir"]
    assert made == ["/root", "/root/.pyenv", "/root/.pyenv/versions", "/work", "/work/main"]
    assert all(
        args[i + 1] == "0755"
        for i, a in enumerate(args)
        if a == "--perms" and args[i + 2] == "--dir"
    )


def test_nested_and_system_paths_are_not_bound_twice() -> None:
    job = tenant_job(read_only=("/opt/py", "/opt/py/lib", "/usr/lib/python3"))
    assert pairs(bwrap_args(DEBIAN, job), "--ro-bind")[2:] == [("/opt/py", "/opt/py")]


def test_private_tmp_run_and_shm_with_a_size() -> None:
    args = bwrap_args(DEBIAN, tenant_job(tmpfs_bytes=12345))
    for path in ("/tmp", "/dev/shm"):
        at = args.index(path, args.index("--tmpfs") - 1)
        assert args[at - 1] == "--tmpfs"
    assert args.count("12345") == 2
    assert args[args.index("/run") - 1] == "--tmpfs"


@pytest.mark.parametrize(
    ("parts", "cwd"), [((), "/job"), (("a", "b"), "/job/a/b")], ids=["area", "below"]
)
def test_the_command_starts_in_its_own_area(parts: tuple[str, ...], cwd: str) -> None:
    args = bwrap_args(DEBIAN, tenant_job(cwd_parts=parts))
    assert args[args.index("--chdir") + 1] == cwd


def test_the_user_command_drops_every_privilege_before_the_environment_is_set() -> None:
    argv = user_command(
        "/usr/bin/setpriv", "/usr/bin/env", 200001, {"B": "2", "A": "x=y"}, ["python", "-c", "1"]
    )
    assert argv[:9] == [
        "/usr/bin/setpriv",
        "--reuid=200001",
        "--regid=200001",
        "--clear-groups",
        "--inh-caps=-all",
        "--bounding-set=-all",
        "--no-new-privs",
        "--",
        "/usr/bin/env",
    ]
    assert argv[9:] == ["-i", "A=x=y", "B=2", "python", "-c", "1"]


def test_a_program_name_with_an_equals_sign_is_not_taken_for_a_variable() -> None:
    argv = user_command("setpriv", "env", 1, {}, ["./a=b", "arg"])
    assert argv[-5:] == ["/bin/sh", "-c", 'exec "$0" "$@"', "./a=b", "arg"]


def test_the_environment_is_an_allow_list_plus_the_jobs_own() -> None:
    host = {
        "SUANWANG_DATABASE_URL": "postgresql://postgres@127.0.0.1/x",
        "SUANWANG_REDIS_URL": "redis://127.0.0.1",
        "DATABASE_URL": "x",
        "AWS_SECRET_ACCESS_KEY": "x",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "LC_ALL": "C",
        "TZ": "UTC",
        "PATH": "/root/bin:/usr/bin",
    }
    env = job_environment(
        host,
        "/v/bin:/usr/bin",
        JOB_AREA,
        [("MINE", "1"), ("SUANWANG_JOB_ID", "forged")],
        {"SUANWANG_JOB_ID": "job-1"},
    )
    assert env == {
        "LANG": "C.UTF-8",
        "LC_ALL": "C",
        "TZ": "UTC",
        "PATH": "/v/bin:/usr/bin",
        "HOME": JOB_AREA,
        "MINE": "1",
        "SUANWANG_JOB_ID": "job-1",
    }


ROOT = HostFacts(0, NEEDED_CAPS, "/usr/bin/bwrap", "/usr/bin/setpriv", "/usr/bin/env", True)


@pytest.mark.parametrize(
    ("facts", "fragment"),
    [
        (ROOT, None),
        (
            HostFacts(1000, 0, "/usr/bin/bwrap", "/usr/bin/setpriv", "/usr/bin/env", False),
            "uid 1000",
        ),
        (HostFacts(0, 0, "/usr/bin/bwrap", "/usr/bin/setpriv", "/usr/bin/env", True), "CAP_SETUID"),
        (
            HostFacts(0, NEEDED_CAPS, None, "/usr/bin/setpriv", "/usr/bin/env", True),
            "bwrap not found",
        ),
        (
            HostFacts(0, NEEDED_CAPS, "/usr/bin/bwrap", None, "/usr/bin/env", True),
            "setpriv not found",
        ),
        (
            HostFacts(0, NEEDED_CAPS, "/usr/bin/bwrap", "/usr/bin/setpriv", "/usr/bin/env", False),
            "cgroup",
        ),
    ],
    ids=["root", "not-root", "no-caps", "no-bwrap", "no-setpriv", "no-cgroups"],
)
def test_refusal_names_what_is_missing_and_the_way_out(
    facts: HostFacts, fragment: str | None
) -> None:
    refusal = sandbox_refusal(facts)
    if fragment is None:
        assert refusal is None
        return
    assert refusal is not None
    assert refusal.startswith(REFUSAL_PREFIX)
    assert fragment in refusal
    assert "SUANWANG_LOCAL_ISOLATION=single-user-dev" in refusal


@pytest.mark.parametrize(
    ("working_dir", "parts"),
    [
        (None, ()),
        (".", ()),
        ("/job", ()),
        ("/job/", ()),
        ("out", ("out",)),
        ("a/./b/", ("a", "b")),
        ("/job/a//b", ("a", "b")),
    ],
)
def test_working_dirs_inside_the_area(working_dir: str | None, parts: tuple[str, ...]) -> None:
    assert job_area_parts(working_dir) == parts


@pytest.mark.parametrize(
    "working_dir",
    ["/", "/tmp", "/jobs", "/job/../etc", "..", "a/../../b", "a/..", "a\x00b", "x" * 5000],
)
def test_working_dirs_outside_the_area_are_refused(working_dir: str) -> None:
    with pytest.raises(ValidationError) as raised:
        job_area_parts(working_dir)
    assert raised.value.field == "working_dir"
    assert "/job" in (raised.value.hint or "")


def test_uid_range() -> None:
    uids = UidRange.parse(" 200000-299999 ")
    assert (uids.first, uids.last, str(uids)) == (200000, 299999, "200000-299999")
    assert [u in uids for u in (199999, 200000, 299999, 300000)] == [False, True, True, False]


@pytest.mark.parametrize("text", ["200000", "a-b", "5-4", "0-10", "-1-5"])
def test_malformed_uid_ranges_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"range|expected"):
        UidRange.parse(text)


def test_a_gateway_job_sees_the_relay_socket_and_still_no_network() -> None:
    socket = Path("/srv/data/runs/job-1/1/relay/gateway.sock")
    args = bwrap_args(DEBIAN, tenant_job(gateway_socket=socket))
    assert "--unshare-net" in args
    assert (str(socket), GATEWAY_SOCKET) in pairs(args, "--bind")
    assert args.index(GATEWAY_SOCKET) > args.index("/run")  # bound on top of /run's tmpfs
    assert GATEWAY_SOCKET not in bwrap_args(DEBIAN, tenant_job())


def test_the_relay_runs_unprivileged_and_connects_only_to_the_gateway_port() -> None:
    argv = relay_command("/usr/bin/setpriv", "/usr/bin/socat", 199999, "gateway.sock", 8001)
    assert argv[:2] == ["/usr/bin/setpriv", "--reuid=199999"]
    assert "--no-new-privs" in argv
    assert argv[-3:] == [
        "/usr/bin/socat",
        "UNIX-LISTEN:gateway.sock,fork,mode=0666,unlink-early,unlink-close=0",
        "TCP4:127.0.0.1:8001",
    ]


def test_the_forwarder_starts_before_the_command_as_the_jobs_user() -> None:
    forward = gateway_forward("/usr/bin/socat", 8001)
    argv = user_command("/usr/bin/setpriv", "/usr/bin/env", 200001, {}, ["a=b", "x"], forward)
    assert argv.index("--reuid=200001") < argv.index("/bin/sh")
    script = argv[argv.index("-c") + 1]
    assert script.startswith("/usr/bin/socat TCP4-LISTEN:8001,bind=127.0.0.1,")
    assert f"UNIX-CONNECT:{GATEWAY_SOCKET}" in script
    assert "0100007F:1F41 00000000:0000 0A" in script  # waits for 127.0.0.1:8001 LISTEN
    assert script.endswith('; exec "$0" "$@"')
    assert argv[-2:] == ["a=b", "x"]


def test_the_jobs_own_env_may_repoint_the_sdk_but_not_the_platform_url() -> None:
    env = job_environment(
        {},
        "/usr/bin",
        JOB_AREA,
        [("OPENAI_BASE_URL", "http://mine"), ("SUANWANG_GATEWAY_URL", "http://forged")],
        {"SUANWANG_GATEWAY_URL": "http://127.0.0.1:8001/v1"},
        {"OPENAI_BASE_URL": "http://127.0.0.1:8001/v1"},
    )
    assert env["OPENAI_BASE_URL"] == "http://mine"
    assert env["SUANWANG_GATEWAY_URL"] == "http://127.0.0.1:8001/v1"


def test_the_network_field_round_trips_and_none_is_left_out() -> None:
    plain = JobSpec(name="j", command=("true",))
    assert "network" not in spec_to_dict(plain)  # specs stored before the field hash alike
    routed = JobSpec(name="j", command=("true",), network=JobNetwork.GATEWAY)
    assert spec_to_dict(routed)["network"] == "gateway"
    assert spec_from_dict(spec_to_dict(routed)) == routed
    assert spec_from_dict(spec_to_dict(plain)).network is JobNetwork.NONE


def test_a_venv_under_tmp_is_bound_on_top_of_the_private_tmp() -> None:
    """A CI clone under /tmp: its interpreter must not vanish under the job's empty /tmp."""
    args = bwrap_args(DEBIAN, tenant_job(read_only=("/tmp/ci/.venv",)))
    tmpfs_at = args.index("/tmp", args.index("--tmpfs") - 1)
    assert args[tmpfs_at - 1] == "--tmpfs"
    bind_at = args.index("/tmp/ci/.venv")
    assert args[bind_at - 1] == "--ro-bind"
    assert bind_at > tmpfs_at
    made = [args[i + 3] for i, a in enumerate(args) if a == "--perms" and args[i + 2] == "--dir"]
    assert made == ["/tmp/ci"]  # /tmp itself is the tmpfs


def test_the_relay_is_ready_only_once_socat_has_chmodded_its_socket() -> None:
    """socat binds (the socket appears with the umask's mode), then chmods it to 0666: the
    supervisor must not take the directory back in between, or the chmod fails and the
    relay exits."""
    from suanwang.adapters.backends.local_relay import _chmodded_socket

    assert not _chmodded_socket(stat.S_IFSOCK | 0o755)
    assert not _chmodded_socket(stat.S_IFREG | 0o666)
    assert _chmodded_socket(stat.S_IFSOCK | 0o666)
