"""Connection blocks in the fleet file: one per engine cluster, matching its backend, checked
field by field (errors name the fleet-file path), stored and read back unchanged."""

from __future__ import annotations

import pytest

from suanwang.domain.connections import (
    KubeJobApi,
    KubernetesConnection,
    RayConnection,
    SlurmConnection,
    Toleration,
    backend_of,
    connection_data,
    connection_from_data,
)
from suanwang.domain.errors import ValidationError
from suanwang.services.catalogue import default_catalogue
from suanwang.services.fleet_file import parse_fleet_yaml

CAT = default_catalogue()
HEAD = "regions: [{name: r1}]\nclusters:\n"
NODES = "nodes: [{name: n1, chip: ascend-910b, cards: 8}]"


def one(cluster: str) -> str:
    return f"{HEAD}  - {{name: c1, region: r1, kind: real, {NODES}, {cluster}}}\n"


ENGINES = """
regions: [{name: r1}]
clusters:
  - name: ray1
    region: r1
    kind: real
    backend: ray
    nodes: [{name: n1, chip: ascend-910b, cards: 8}]
    ray: {address: 'http://10.0.0.5:8265'}
  - name: slurm1
    region: r1
    kind: real
    backend: slurm
    nodes: [{name: n1, chip: ascend-910b, cards: 8}]
    slurm: {partition: gpu, account: lab, qos: high, bin_dir: /opt/slurm/bin}
  - name: k8s1
    region: r1
    kind: real
    nodes: [{name: n1, chip: ascend-910b, cards: 8}]
    kubernetes:
      kubeconfig: /etc/suanwang/kubeconfig
      context: prod
      job_api: kueue
      kueue_queue: team-a
      node_selector: {accelerator: ascend}
      tolerations: [{key: npu, operator: Exists, effect: NoSchedule}]
      hami: true
  - name: here
    region: r1
    kind: real
    nodes: [{name: n1, chip: ascend-910b, cards: 8}]
"""


def test_each_engine_block_parses_into_its_typed_connection() -> None:
    text = ENGINES
    clusters = {c.name: c for c in parse_fleet_yaml(text, CAT).clusters}
    assert clusters["ray1"].connection == RayConnection("http://10.0.0.5:8265")
    assert clusters["slurm1"].connection == SlurmConnection(
        "gpu", account="lab", qos="high", bin_dir="/opt/slurm/bin"
    )
    assert clusters["k8s1"].backend == "kubernetes"  # implied by the block
    assert clusters["k8s1"].connection == KubernetesConnection(
        kubeconfig="/etc/suanwang/kubeconfig",
        context="prod",
        job_api=KubeJobApi.KUEUE,
        kueue_queue="team-a",
        node_selector=(("accelerator", "ascend"),),
        tolerations=(Toleration("npu", "Exists", "", "NoSchedule"),),
        hami=True,
    )
    assert clusters["here"].backend == "local"
    assert clusters["here"].connection is None


@pytest.mark.parametrize(
    ("cluster", "field"),
    [
        ("backend: ray", "clusters[0].ray"),
        ("backend: slurm", "clusters[0].slurm"),
        ("backend: kubernetes", "clusters[0].kubernetes"),
        ("backend: local, ray: {address: 'http://h:8265'}", "clusters[0].ray"),
        ("backend: nomad", "clusters[0].backend"),
        ("backend: slurm, ray: {address: 'http://h:8265'}", "clusters[0].ray"),
        ("ray: {address: 'http://h:8265'}, slurm: {partition: p}", "clusters[0].slurm"),
        ("ray: {address: 'h:8265'}", "clusters[0].ray.address"),
        ("ray: {address: 'ftp://h:8265'}", "clusters[0].ray.address"),
        ("ray: {address: 'http://user:pw@h:8265'}", "clusters[0].ray.address"),
        ("ray: {address: 'http://h:99999'}", "clusters[0].ray.address"),
        ("ray: {}", "clusters[0].ray.address"),
        ("ray: {address: 'http://h:8265', token: x}", "clusters[0].ray.token"),
        ("ray: {address: 'http://h:8265', bwrap: bwrap}", "clusters[0].ray.bwrap"),
        ("ray: {address: 'http://h:8265', worker_uid: 0}", "clusters[0].ray.worker_uid"),
        ("ray: {address: 'http://h:8265', worker_uid: '1;x'}", "clusters[0].ray.worker_uid"),
        ("kubernetes: {dataset_claim: '../host'}", "clusters[0].kubernetes.dataset_claim"),
        ("slurm: {partition: 'gpu;rm -rf /'}", "clusters[0].slurm.partition"),
        ("slurm: {partition: ''}", "clusters[0].slurm.partition"),
        ("slurm: {partition: p, account: 'a b'}", "clusters[0].slurm.account"),
        ("slurm: {partition: p, bin_dir: bin}", "clusters[0].slurm.bin_dir"),
        ("slurm: {partition: p, slurmrestd_url: 'unix:/x'}", "clusters[0].slurm.slurmrestd_url"),
        ("kubernetes: {kubeconfig: relative/path}", "clusters[0].kubernetes.kubeconfig"),
        ("kubernetes: {namespace_prefix: 'Bad_'}", "clusters[0].kubernetes.namespace_prefix"),
        ("kubernetes: {job_api: kueue}", "clusters[0].kubernetes.kueue_queue"),
        (
            "kubernetes: {job_api: kueue, kueue_queue: 'Team_A'}",
            "clusters[0].kubernetes.kueue_queue",
        ),
        ("kubernetes: {hami: maybe}", "clusters[0].kubernetes.hami"),
        ("kubernetes: {job_api: slurm}", "clusters[0].kubernetes.job_api"),
        ("kubernetes: {node_selector: {'a b': c}}", "clusters[0].kubernetes.node_selector"),
        (
            "kubernetes: {tolerations: [{key: k, operator: Maybe}]}",
            "clusters[0].kubernetes.tolerations[0]",
        ),
        ("kubernetes: {api_url: 'http://'}", "clusters[0].kubernetes.api_url"),
        ("kubernetes: {service_cidr: '10.96.0.1/12'}", "clusters[0].kubernetes.service_cidr"),
        ("kubernetes: {service_cidr: cluster}", "clusters[0].kubernetes.service_cidr"),
    ],
)
def test_bad_blocks_name_the_field(cluster: str, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        parse_fleet_yaml(one(cluster), CAT)
    assert err.value.field == field


def test_simulated_clusters_take_no_connection() -> None:
    text = one("ray: {address: 'http://h:8265'}").replace("kind: real", "kind: simulated")
    with pytest.raises(ValidationError) as err:
        parse_fleet_yaml(text, CAT)
    assert err.value.field == "clusters[0].ray"


CONNECTIONS = [
    RayConnection("https://ray.example:8265"),
    RayConnection("https://ray.example:8265", bwrap="/opt/bin/bwrap"),
    RayConnection("https://ray.example:8265", worker_uid=1500),
    SlurmConnection("p", "acct", "qos", "/usr/bin", "http://127.0.0.1:6820"),
    KubernetesConnection(),
    KubernetesConnection(
        kubeconfig="/k",
        context="c",
        namespace_prefix="sw-",
        job_api=KubeJobApi.VOLCANO,
        node_selector=(("a", "b"), ("c", "d")),
        tolerations=(Toleration("k", "Equal", "v", "NoExecute"),),
        api_url="http://127.0.0.1:1",
        dataset_claim="suanwang-storage",
        service_cidr="10.96.0.0/12",
    ),
]


@pytest.mark.parametrize("connection", CONNECTIONS, ids=lambda c: type(c).__name__)
def test_stored_form_round_trips(connection: RayConnection) -> None:
    data = connection_data(connection)
    assert list(data) == [backend_of(connection)]
    assert connection_from_data(data) == connection


def test_stored_form_rejects_what_it_did_not_write() -> None:
    for bad in ({}, {"ray": {}, "slurm": {}}, {"nomad": {}}, {"ray": "x"}):
        with pytest.raises((ValueError, KeyError)):
            connection_from_data(bad)
