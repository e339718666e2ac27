"""Hostile tenant text in a Kubernetes manifest (issue 12: isolation on Kubernetes).

Whatever a tenant puts in its job's env values and command, the rendered object keeps the
same structure (only those string values differ), stays in the tenant's namespace, keeps
the restricted pod profile and mounts no service-account token; names, namespaces, label
values and env names that are not what Kubernetes allows are refused, never escaped into
something else. No control plane needed: these are the pure renderers the backend uses.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from suanwang.adapters.backends.kube_render import (
    KubeRun,
    namespace_of,
    render_run,
)
from suanwang.domain.connections import KubeJobApi, KubernetesConnection
from suanwang.domain.errors import ValidationError

BASE = KubeRun(
    name="suanwang-job-3f9c1a2b7d4e-1",
    namespace="suanwang-acme",
    job_id="job-3f9c1a2b7d4e",
    attempt=1,
    tenant="acme",
    image="python:3.12-slim",
    command=("python", "train.py"),
    env=(("A", "1"),),
    chip="ascend-910b",
    nodes=2,
    cards_per_node=8,
)
NASTY = [
    '"}, "securityContext": {"privileged": true}, "x": {"',
    "$(cat /var/run/secrets/kubernetes.io/serviceaccount/token)",
    "; rm -rf / #",
    "a\nkind: Pod\nmetadata:\n  namespace: kube-system",
    "`id`",
    "\x00\x1b[31m",
    "namespace=kube-system,app=x",
]


def shape(value: Any, path: str = "") -> set[str]:
    """Every key path of ``value`` (list items by index) with the type at the leaf."""
    if isinstance(value, dict):
        return {p for k, v in value.items() for p in shape(v, f"{path}/{k}")} | {path}
    if isinstance(value, list):
        return {p for i, v in enumerate(value) for p in shape(v, f"{path}[{i}]")} | {path}
    return {f"{path}:{type(value).__name__}"}


def render(api: KubeJobApi, **changes: Any) -> dict[str, Any]:
    fields = {f: getattr(BASE, f) for f in BASE.__dataclass_fields__}
    fields.update(changes)
    queue = "team-a" if api is KubeJobApi.KUEUE else ""
    return render_run(KubeRun(**fields), KubernetesConnection(job_api=api, kueue_queue=queue))


def pods(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    if manifest["kind"] == "JobSet":
        return [
            r["template"]["spec"]["template"]["spec"] for r in manifest["spec"]["replicatedJobs"]
        ]
    if "tasks" in manifest["spec"]:
        return [t["template"]["spec"] for t in manifest["spec"]["tasks"]]
    return [manifest["spec"]["template"]["spec"]]


text = st.one_of(st.sampled_from(NASTY), st.text(max_size=200))


@pytest.mark.parametrize("api", list(KubeJobApi))
@given(values=st.lists(text, min_size=1, max_size=3), argv=st.lists(text, min_size=1, max_size=4))
def test_tenant_text_cannot_change_the_manifest(
    api: KubeJobApi, values: list[str], argv: list[str]
) -> None:
    env = tuple((f"V{i}", v) for i, v in enumerate(values))
    plain = render(api, env=tuple((k, "x") for k, _ in env), command=tuple("x" for _ in argv))
    hostile = render(api, env=env, command=tuple(argv))
    assert shape(hostile) == shape(plain)
    assert hostile["metadata"]["namespace"] == "suanwang-acme"
    for pod in pods(hostile):
        (container,) = pod["containers"]
        assert container["command"] == argv  # an argv, never handed to a shell
        assert [e["value"] for e in container["env"]] == values
        assert pod["automountServiceAccountToken"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize(
    "tenant", ["kube-system", "../kube-system", "acme,x", "ACME", "a" * 64, "acme\n", ""]
)
def test_a_tenant_name_cannot_reach_another_namespace(tenant: str) -> None:
    connection = KubernetesConnection()
    try:
        namespace = namespace_of(connection, tenant)
    except ValidationError:
        return
    assert namespace == f"suanwang-{tenant}"  # always under the prefix, never kube-system


@pytest.mark.parametrize(
    "changes",
    [
        {"name": "suanwang-x,app=y"},
        {"name": "Suanwang-job"},
        {"namespace": "kube-system/../x"},
        {"tenant": "acme,suanwang.io/job=other"},
        {"job_id": "job-1 ,x=y"},
        {"env": (("A=B", "1"),)},
        {"env": (("", "1"),)},
    ],
)
def test_bad_names_and_labels_are_refused_not_escaped(changes: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        render(KubeJobApi.JOB, **changes)
