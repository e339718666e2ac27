"""``fleet import`` over a fake engine: the file it writes parses, keeps the engine's node
names and card counts, carries the connection block, and bad answers are refused."""

from __future__ import annotations

import pytest
from fakes import FakeBackend, FakeClock

from suanwang.domain.connections import RayConnection
from suanwang.domain.errors import ValidationError
from suanwang.domain.fleet import MAX_CARDS_PER_NODE, NodeSpec
from suanwang.domain.ids import ChipName
from suanwang.ports import ClusterCapacity
from suanwang.services.catalogue import default_catalogue
from suanwang.services.fleet_file import parse_fleet_yaml
from suanwang.services.fleet_import import ImportRequest, import_cluster

CAT = default_catalogue()
RAY = ImportRequest("ray", "bj-ray", "bj", "Beijing", {"ray": {"address": "http://h:8265"}})


def engine(*nodes: NodeSpec, healthy: bool = True, reason: str = "") -> FakeBackend:
    backend = FakeBackend(FakeClock())
    backend.health = ClusterCapacity(healthy, reason, tuple(nodes))
    return backend


def test_the_written_file_is_the_engines_nodes_and_parses_back() -> None:
    nodes = [NodeSpec(f"node-{i:04d}", ChipName("ascend-910b"), 8) for i in range(1250)]
    nodes.append(NodeSpec("cpu-head", ChipName("cpu"), 16))
    backend = engine(*nodes)
    result = import_cluster(RAY, backend, CAT)
    assert backend.capacity_calls == [("bj-ray", RayConnection("http://h:8265"))]
    assert result.cards_by_chip == {"ascend-910b": 10_000, "cpu": 16}
    spec = parse_fleet_yaml(result.text, CAT)
    (cluster,) = spec.clusters
    assert (cluster.name, cluster.region, cluster.backend) == ("bj-ray", "bj", "ray")
    assert cluster.connection == RayConnection("http://h:8265")
    assert [n.name for n in cluster.nodes] == [n.name for n in nodes]
    assert spec.regions[0].display_name == "Beijing"
    assert result.text.startswith("# written by 'suanwang fleet import --from ray'")


def test_a_cpu_node_larger_than_a_fleet_node_is_capped() -> None:
    result = import_cluster(RAY, engine(NodeSpec("big", ChipName("cpu"), 256)), CAT)
    assert result.cards_by_chip == {"cpu": MAX_CARDS_PER_NODE}


@pytest.mark.parametrize(
    ("backend", "field", "words"),
    [
        (engine(healthy=False, reason="connection refused"), "connection", "connection refused"),
        (engine(), "connection", "no nodes"),
        (engine(NodeSpec("n", ChipName("tpu-v5"), 4)), "nodes.n.chip", "unknown chip"),
        (engine(NodeSpec("Bad Name", ChipName("cpu"), 4)), "clusters[0].nodes[0].name", "pattern"),
        (
            engine(NodeSpec("n", ChipName("ascend-910b"), 65)),
            "clusters[0].nodes[0].cards",
            "less than or equal",
        ),
    ],
)
def test_bad_engine_answers_are_refused(backend: FakeBackend, field: str, words: str) -> None:
    with pytest.raises(ValidationError, match=words) as err:
        import_cluster(RAY, backend, CAT)
    assert err.value.field == field


def test_bad_connection_flags_fail_before_the_engine_is_asked() -> None:
    backend = engine(NodeSpec("n", ChipName("cpu"), 4))
    bad = ImportRequest("ray", "c", "r", "", {"ray": {"address": "not a url"}})
    with pytest.raises(ValidationError) as err:
        import_cluster(bad, backend, CAT)
    assert err.value.field == "clusters[0].ray.address"
    assert backend.capacity_calls == []
