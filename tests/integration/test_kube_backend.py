"""KubernetesBackend through the real ``kubernetes`` client against a fake API server.

The fake (tests/integration/kube_fake.py) answers as the API reference documents: Status
objects for errors, 409 AlreadyExists, watch streams of JSON lines, 410 Expired as an
ERROR event. Covered: create (and a retried create: 409 = the same run), watch to
completion (answered from the watch cache, no GET per poll), a failed run's exit code,
logs with offset/limit, delete with propagationPolicy=Background, 410 relist, 5xx /
dropped connections / unreachable server -> EngineUnreachable, 401 / 403 -> unhealthy with
the reason, a kubeconfig with a token and context, capacity from node allocatable, runs()
by label, and JobSet / Volcano objects. Each test has its own server (~0.1 s to start).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kube_fake import FakeKube
from kube_fake_server import WallClock, fake_kube

from suanwang.config import Settings
from suanwang.domain.connections import KubeJobApi, KubernetesConnection
from suanwang.domain.jobs import AttemptState
from suanwang.domain.workloads import Workload
from suanwang.ports import EngineUnreachable, LaunchRequest, NodeSlice, RunStatus

pytest.importorskip("kubernetes")
from suanwang.adapters.backends.kube import KubernetesBackend

NAME = "suanwang-job-0123456789ab-1"


def make_backend(tmp_path: Path) -> KubernetesBackend:
    settings = Settings(data_dir=tmp_path / "data", kube_image="busybox:1.36")
    return KubernetesBackend(WallClock(), settings, watch_s=1)


@pytest.fixture
def backend(tmp_path: Path) -> Iterator[KubernetesBackend]:
    made = make_backend(tmp_path)
    yield made
    made.close()


def conn(url: str, api: KubeJobApi = KubeJobApi.JOB, **extra: Any) -> KubernetesConnection:
    queue = {"kueue_queue": "team-a"} if api is KubeJobApi.KUEUE else {}
    return KubernetesConnection(api_url=url, job_api=api, **queue, **extra)


def request(
    connection: KubernetesConnection, job: str = "job-0123456789ab", **extra: Any
) -> LaunchRequest:
    fields: dict[str, Any] = {
        "job_id": job,
        "attempt": 1,
        "tenant": "acme",
        "cluster": "k8s",
        "command": ("sh", "-c", "echo hi; exit 0"),
        "placements": (NodeSlice("n1", 8),),
        "env": (("GREETING", "hello"),),
        "chip": "ascend-910b",
        "max_runtime_s": 600,
        "connection": connection,
    }
    fields.update(extra)
    return LaunchRequest(**fields)


def wait_for(check: Callable[[], RunStatus], want: AttemptState, timeout: float = 10) -> RunStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = check()
        if status.state is want or time.monotonic() > deadline:
            return status
        time.sleep(0.05)


def test_create_watch_to_completion_logs_and_delete(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    submitted = backend.submit(request(conn(kube.url), resume_count=2))
    assert submitted.state is AttemptState.STARTING
    assert "created Job suanwang-acme/" + NAME in submitted.reason
    namespace = kube.objects[("v1/namespaces", "", "suanwang-acme")]
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
    (job,) = kube.managed()
    env = {e["name"]: e["value"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env == {
        "GREETING": "hello",
        "SUANWANG_JOB_ID": "job-0123456789ab",
        "SUANWANG_ATTEMPT": "1",
        "SUANWANG_CARDS": "8",
        "SUANWANG_RESUME_COUNT": "2",
    }
    handle = submitted.handle

    again = backend.submit(request(conn(kube.url)))  # a retried submit: 409, the same run
    assert again.state is AttemptState.STARTING
    assert len(kube.managed()) == 1
    assert sum(1 for m, p in kube.requests if m == "POST" and "/jobs" in p) == 2

    poll = lambda: backend.poll("job-0123456789ab", 1, handle)  # noqa: E731
    kube.start(NAME)
    assert wait_for(poll, AttemptState.RUNNING).state is AttemptState.RUNNING
    kube.finish(NAME, 0, b"hello from the pod\n")
    done = wait_for(poll, AttemptState.SUCCEEDED)
    assert (done.state, done.exit_code) == (AttemptState.SUCCEEDED, 0)
    assert done.ended_at is not None

    gets_before = sum(1 for m, p in kube.requests if m == "GET" and p.endswith("/" + NAME))
    for _ in range(20):
        assert poll().state is AttemptState.SUCCEEDED
    gets_after = sum(1 for m, p in kube.requests if m == "GET" and p.endswith("/" + NAME))
    assert gets_after == gets_before, "polls of a watched job must not GET it each time"

    assert backend.logs("job-0123456789ab", 1, handle, 0, 1 << 20) == b"hello from the pod\n"
    assert backend.logs("job-0123456789ab", 1, handle, 6, 4) == b"from"
    backend.cancel("job-0123456789ab", 1, handle)
    assert kube.deletes == [(NAME, "suanwang-acme", "Background")]
    backend.cancel("job-0123456789ab", 1, handle)  # gone: 404 is not an error
    lost = wait_for(poll, AttemptState.LOST)
    assert lost.state is AttemptState.LOST


def test_a_failed_run_reports_its_exit_code(kube: FakeKube, backend: KubernetesBackend) -> None:
    handle = backend.submit(request(conn(kube.url))).handle
    kube.start(NAME)
    kube.finish(NAME, 3, b"boom\n")
    failed = wait_for(lambda: backend.poll("job-0123456789ab", 1, handle), AttemptState.FAILED)
    assert (failed.state, failed.exit_code) == (AttemptState.FAILED, 3)
    assert "BackoffLimitExceeded" in failed.reason


def test_an_expired_watch_relists_and_resumes(kube: FakeKube, backend: KubernetesBackend) -> None:
    handle = backend.submit(request(conn(kube.url))).handle
    poll = lambda: backend.poll("job-0123456789ab", 1, handle)  # noqa: E731
    cache = next(iter(backend._caches.values()))
    deadline = time.monotonic() + 5
    while cache.relists < 1 and time.monotonic() < deadline:
        time.sleep(0.05)
    kube.compact()  # the watch (1 s) resumes from an expired version: ERROR 410
    deadline = time.monotonic() + 10
    while cache.relists < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert cache.relists >= 2
    assert cache.interruptions == 0  # 410 means relist and resume, not an error
    assert any(m == "GET" and "watch=true" in p for m, p in kube.requests)
    kube.start(NAME)
    kube.finish(NAME, 0, b"")
    assert wait_for(poll, AttemptState.SUCCEEDED).state is AttemptState.SUCCEEDED


def test_server_errors_and_dropped_connections_mean_ask_again(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    connection = conn(kube.url)
    kube.fail("POST", "/jobs", 503)
    with pytest.raises(EngineUnreachable, match="503"):
        backend.submit(request(connection))
    kube.fail("POST", "/jobs", 0)
    with pytest.raises(EngineUnreachable, match="cannot reach"):
        backend.submit(request(connection))
    handle = backend.submit(request(connection)).handle  # the next tick: created once
    assert len(kube.managed()) == 1
    kube.fail("DELETE", NAME, 500)
    with pytest.raises(EngineUnreachable, match="500"):
        backend.cancel("job-0123456789ab", 1, handle)
    kube.fail("GET", "/nodes", 500)
    health = backend.capacity("k8s", connection)
    assert not health.healthy
    assert "500" in health.reason


def test_a_rejected_object_fails_the_attempt_and_403_waits(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    kube.fail("POST", "/jobs", 422)
    failed = backend.submit(request(conn(kube.url)))
    assert failed.state is AttemptState.FAILED
    assert "422" in failed.reason
    kube.fail("POST", "/jobs", 403)
    with pytest.raises(EngineUnreachable, match="403"):
        backend.submit(request(conn(kube.url), job="job-aaaaaaaaaaaa"))


def test_unreachable_api_server(backend: KubernetesBackend) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    connection = conn(f"http://127.0.0.1:{port}")
    health = backend.capacity("k8s", connection)
    assert not health.healthy
    assert "cannot reach the API server" in health.reason
    with pytest.raises(EngineUnreachable):
        backend.submit(request(connection))


def kubeconfig(path: Path, url: str, token: str) -> Path:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "fake", "cluster": {"server": url}}],
        "users": [
            {"name": "ops", "user": {"token": token}},
            {"name": "wrong", "user": {"token": "nope"}},
        ],
        "contexts": [
            {"name": "good", "context": {"cluster": "fake", "user": "ops"}},
            {"name": "bad", "context": {"cluster": "fake", "user": "wrong"}},
        ],
        "current-context": "bad",
    }
    path.write_text(yaml.safe_dump(config))
    return path


def test_credentials_from_a_kubeconfig_and_wrong_ones(
    tmp_path: Path, backend: KubernetesBackend
) -> None:
    with fake_kube(token="s3cret") as kube:
        kube.node("n1", {"huawei.com/Ascend910B": "8"})
        path = str(kubeconfig(tmp_path / "kubeconfig", kube.url, "s3cret"))
        good = KubernetesConnection(kubeconfig=path, context="good")
        assert backend.capacity("k8s", good).healthy
        wrong = KubernetesConnection(kubeconfig=path)  # current-context: the wrong token
        health = backend.capacity("k8s", wrong)
        assert not health.healthy
        assert health.reason.startswith("credentials refused")
        assert "401" in health.reason
        missing = KubernetesConnection(kubeconfig=str(tmp_path / "absent"))
        assert "cannot load the cluster's config" in backend.capacity("k8s", missing).reason


def test_capacity_from_node_allocatable(kube: FakeKube, backend: KubernetesBackend) -> None:
    kube.node("npu-1", {"huawei.com/Ascend910B": "8"})
    kube.node(
        "gpu-1", {"nvidia.com/gpu": "8"}, labels={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    )
    kube.node("mlx-1", {"metax-tech.com/gpu": "4"})
    kube.node("cordoned", {"huawei.com/Ascend910B": "8"}, unschedulable=True)
    kube.node("notready", {"huawei.com/Ascend910B": "8"}, ready=False)
    kube.node("cpu-1", {})
    health = backend.capacity("k8s", conn(kube.url))
    assert health.healthy
    found = {(n.name, n.chip, n.cards) for n in health.nodes}
    assert found == {
        ("npu-1", "ascend-910b", 8),
        ("gpu-1", "nvidia-h100", 8),
        ("mlx-1", "metax-c500", 4),
        ("cpu-1", "cpu", 16),
    }


@pytest.mark.parametrize("api", [KubeJobApi.JOBSET, KubeJobApi.VOLCANO, KubeJobApi.KUEUE])
def test_other_job_apis_run_to_completion_and_are_listed(
    api: KubeJobApi, kube: FakeKube, backend: KubernetesBackend
) -> None:
    connection = conn(kube.url, api)
    handle = backend.submit(
        request(connection, placements=(NodeSlice("n1", 8), NodeSlice("n2", 8)))
    ).handle
    (obj,) = kube.managed("jobsets" if api is KubeJobApi.JOBSET else "jobs")
    assert (
        obj["apiVersion"]
        == {
            "jobset": "jobset.x-k8s.io/v1alpha2",
            "volcano": "batch.volcano.sh/v1alpha1",
            "kueue": "batch/v1",
        }[api.value]
    )
    if api is KubeJobApi.KUEUE:
        assert obj["spec"]["suspend"] is True
        waiting = backend.poll("job-0123456789ab", 1, handle)
        assert "Kueue" in waiting.reason
    (ref,) = backend.runs("k8s", connection)
    assert (ref.job_id, ref.attempt, ref.alive) == ("job-0123456789ab", 1, True)
    kube.start(NAME)
    kube.finish(NAME, 0, b"ok\n")
    done = wait_for(lambda: backend.poll("job-0123456789ab", 1, handle), AttemptState.SUCCEEDED)
    assert (done.state, done.exit_code) == (AttemptState.SUCCEEDED, 0)
    (ref,) = backend.runs("k8s", connection)
    assert not ref.alive
    backend.cancel(ref.job_id, ref.attempt, ref.handle)
    assert kube.deletes[-1] == (NAME, "suanwang-acme", "Background")


def test_what_the_backend_refuses(kube: FakeKube, backend: KubernetesBackend) -> None:
    assert backend.refusal(Workload.PLATFORM_ENGINE) is None  # replicas: test_kube_replicas.py
    assert backend.refusal(Workload.TENANT_JOB) is None
    long_tenant = backend.submit(request(conn(kube.url), tenant="t" * 60))
    assert long_tenant.state is AttemptState.FAILED
    assert "namespace" in long_tenant.reason
    unknown_chip = backend.submit(request(conn(kube.url), chip="quantum-9000"))
    assert unknown_chip.state is AttemptState.FAILED
    assert kube.managed() == []


def test_namespaces_the_operator_created_are_used_without_permission_to_create(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    kube.objects[("v1/namespaces", "", "suanwang-acme")] = {"metadata": {"name": "suanwang-acme"}}
    kube.fail("POST", "/api/v1/namespaces", 403)
    assert backend.submit(request(conn(kube.url))).state is AttemptState.STARTING
    assert len(kube.managed()) == 1
    kube.fail("POST", "/api/v1/namespaces", 403)
    missing = backend.submit(request(conn(kube.url), tenant="other"))
    assert missing.state is AttemptState.FAILED
    assert 'namespaces "suanwang-other" not found' in missing.reason


def test_a_namespace_deleted_by_hand_is_created_again(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    assert backend.submit(request(conn(kube.url))).state is AttemptState.STARTING
    del kube.objects[("v1/namespaces", "", "suanwang-acme")]
    lost = backend.submit(request(conn(kube.url), job="job-bbbbbbbbbbbb"))
    assert lost.state is AttemptState.FAILED
    retried = backend.submit(request(conn(kube.url), job="job-bbbbbbbbbbbb", attempt=2))
    assert retried.state is AttemptState.STARTING
    assert ("v1/namespaces", "", "suanwang-acme") in kube.objects


def test_a_job_api_the_cluster_does_not_serve_makes_it_unhealthy(
    kube: FakeKube, backend: KubernetesBackend
) -> None:
    kube.node("n1", {"huawei.com/Ascend910B": "8"})
    kube.unserved = {"jobset.x-k8s.io/v1alpha2", "batch.volcano.sh/v1alpha1"}
    assert backend.capacity("k8s", conn(kube.url)).healthy
    for api in (KubeJobApi.JOBSET, KubeJobApi.VOLCANO):
        health = backend.capacity("k8s", conn(kube.url, api))
        assert not health.healthy
        assert f"job_api {api.value}: the cluster does not serve" in health.reason
