"""Pure domain rules: chip selectors, fleet validation and totals, job validation and states,
tenant names, quotas and scopes."""

from __future__ import annotations

import pytest

from suanwang.domain.changes import changed_fields
from suanwang.domain.chips import selector_matches
from suanwang.domain.deployments import ReplicaChange
from suanwang.domain.errors import Conflict, ValidationError
from suanwang.domain.fleet import (
    ClusterKind,
    ClusterSpec,
    FleetSpec,
    NodeCapacity,
    NodeSpec,
    RegionSpec,
    WanLinkSpec,
    fleet_totals,
    validate_fleet,
)
from suanwang.domain.ids import ChipName, ClusterName, RegionName
from suanwang.domain.jobs import (
    JobSpec,
    JobState,
    Resources,
    check_transition,
    spec_from_dict,
    spec_to_dict,
    validate_job,
)
from suanwang.domain.records import JobChange, KeyRecord
from suanwang.domain.tenancy import Principal, Scope, check_quota, check_tenant_name
from suanwang.services.catalogue import default_catalogue

CAT = default_catalogue()
R1, R2 = RegionName("r1"), RegionName("r2")


def cluster(
    name: str = "c",
    kind: ClusterKind = ClusterKind.SIMULATED,
    backend: str = "simulated",
    nodes: tuple[NodeSpec, ...] = (NodeSpec("n1", ChipName("ascend-910b"), 8),),
    region: RegionName = R1,
) -> ClusterSpec:
    return ClusterSpec(ClusterName(name), region, kind, backend, nodes)


def fleet(*clusters: ClusterSpec, links: tuple[WanLinkSpec, ...] = ()) -> FleetSpec:
    return FleetSpec((RegionSpec(R1, "one"), RegionSpec(R2, "two")), clusters, links)


def test_catalogue_has_the_chips_of_the_brief() -> None:
    wanted = {
        "ascend-910b",
        "ascend-310p",
        "metax-c500",
        "hygon-k100",
        "cambricon-mlu370",
        "cambricon-mlu590",
        "kunlunxin-p800",
        "nvidia-a100",
        "nvidia-h100",
        "nvidia-h20",
        "nvidia-l20",
        "nvidia-rtx-4090",
        "cpu",
    }
    assert wanted <= set(CAT.chips)
    assert {c.stack for c in CAT.chips.values()} >= {
        "CANN",
        "MACA",
        "DTK",
        "Neuware",
        "XPU",
        "CUDA",
    }
    assert CAT.get("ascend-910b").hami_resource.startswith("huawei.com/")


@pytest.mark.parametrize(
    ("selector", "chip", "ok"),
    [
        ("any", "nvidia-h20", True),
        ("nvidia", "nvidia-h20", True),
        ("nvidia-h20", "nvidia-h20", True),
        ("ascend", "nvidia-h20", False),
        ("nvidia-a100", "nvidia-h20", False),
    ],
)
def test_selectors(selector: str, chip: str, ok: bool) -> None:
    assert selector_matches(selector, CAT.get(chip)) is ok


def test_unknown_selector_and_chip_are_rejected_with_hints() -> None:
    with pytest.raises(ValidationError, match="unknown chip or chip family") as err:
        CAT.check_selector("tpu")
    assert err.value.field == "resources.chip"
    with pytest.raises(ValidationError) as err2:
        CAT.get("tpu-v5")
    assert err2.value.hint
    assert "ascend-910b" in err2.value.hint


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (fleet(cluster(region=RegionName("nowhere"))), "clusters[0].region"),
        (fleet(cluster(), cluster()), "clusters"),
        (fleet(cluster(kind=ClusterKind.REAL, backend="simulated")), "clusters[0].backend"),
        (fleet(cluster(nodes=(NodeSpec("n", ChipName("nope"), 8),))), "clusters[0].nodes[0].chip"),
        (fleet(cluster(nodes=(NodeSpec("n", ChipName("cpu"), 0),))), "clusters[0].nodes[0].cards"),
        (fleet(cluster(nodes=(NodeSpec("n", ChipName("cpu"), 1),) * 2)), "clusters[0].nodes"),
        (fleet(links=(WanLinkSpec(R1, R1, 1, 1, 1),)), "wan_links[0]"),
        (fleet(links=(WanLinkSpec(R1, RegionName("x"), 1, 1, 1),)), "wan_links[0]"),
        (fleet(links=(WanLinkSpec(R1, R2, 0, 1, 1),)), "wan_links[0]"),
    ],
)
def test_fleet_validation(spec: FleetSpec, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        validate_fleet(spec, CAT)
    assert err.value.field == field


def test_fleet_totals_per_region() -> None:
    nodes = [
        NodeCapacity(R1, ClusterKind.SIMULATED, ChipName("ascend-910b"), 8),
        NodeCapacity(R2, ClusterKind.REAL, ChipName("cpu"), 2),
        NodeCapacity(R1, ClusterKind.SIMULATED, ChipName("nvidia-h100"), 8),
    ]
    overall, regions = fleet_totals(nodes, CAT)
    assert overall.cards_by_chip == {"ascend-910b": 8, "cpu": 2, "nvidia-h100": 8}
    assert overall.pflops_fp16 == pytest.approx((8 * 280 + 8 * 989) / 1000)
    assert (overall.simulated_cards, overall.real_cards) == (16, 2)
    assert [r.scope for r in regions] == ["r1", "r2"]


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (JobSpec("j", ("x",), Resources(cards_per_node=-1)), "resources.cards_per_node"),
        (JobSpec("j", ("x",), Resources(cards_per_node=0)), "resources.cards_per_node"),
        (JobSpec("j", ("x",), Resources(nodes=0)), "resources.nodes"),
        (JobSpec("j", ("x",), priority=5000), "priority"),
        (JobSpec("j", ("x",), retries=11), "retries"),
        (JobSpec("j", ("x",), max_runtime_s=0), "max_runtime_s"),
        (JobSpec("j", ()), "command"),
        (JobSpec("j", ("a\x00b",)), "command"),
        (JobSpec("j", ("x",) * 2000), "command"),
        (JobSpec("j", ("x",), env=(("A=B", "1"),)), "env"),
        (JobSpec("j", (), simulate_duration_s=0), "simulate.duration_s"),
    ],
)
def test_job_validation(spec: JobSpec, field: str) -> None:
    with pytest.raises(ValidationError) as err:
        validate_job(spec)
    assert err.value.field == field


def test_valid_jobs() -> None:
    assert validate_job(JobSpec("j", ("true",))).resources.total_cards == 1
    assert validate_job(
        JobSpec("j", (), Resources(cards_per_node=0), simulate_duration_s=5)
    ).simulated


@pytest.mark.parametrize(
    ("current", "target", "ok"),
    [
        (JobState.QUEUED, JobState.ADMITTED, True),
        (JobState.ADMITTED, JobState.RUNNING, True),
        (JobState.RUNNING, JobState.SUCCEEDED, True),
        (JobState.RUNNING, JobState.QUEUED, True),
        (JobState.SUCCEEDED, JobState.QUEUED, False),
        (JobState.CANCELLED, JobState.RUNNING, False),
        (JobState.QUEUED, JobState.SUCCEEDED, False),
    ],
)
def test_state_machine(current: JobState, target: JobState, ok: bool) -> None:
    if ok:
        check_transition(current, target)
    else:
        with pytest.raises(Conflict):
            check_transition(current, target)
    assert JobState.FAILED.terminal
    assert not JobState.RUNNING.terminal


def test_a_spec_survives_its_stored_form_and_old_stored_specs_get_defaults() -> None:
    spec = JobSpec(
        name="t",
        command=("python", "train.py"),
        resources=Resources(chip="ascend", cards_per_node=2, nodes=3, cluster="c"),
        env=(("A", "1"), ("B", "2")),
        kind="resnet",
        speed=(("ascend-910b", 2.0), ("nvidia-h20", 1.0)),
        priority_class="batch",
        preemptible=False,
    )
    assert spec_from_dict(spec_to_dict(spec)) == spec
    stored_by_an_older_server = {
        "name": "old",
        "command": ["true"],
        "resources": {"chip": "any", "cards_per_node": 1, "nodes": 1, "cluster": None,
                      "region": None},
        "env": {},
        "working_dir": None,
        "priority": 5,
        "max_runtime_s": None,
        "retries": 1,
        "simulate_duration_s": None,
    }  # fmt: skip
    assert spec_from_dict(stored_by_an_older_server) == JobSpec(
        name="old", command=("true",), priority=5, retries=1
    )


def test_a_change_sets_only_the_fields_it_names_and_none_is_a_value() -> None:
    assert changed_fields(JobChange()) == {}
    finished = JobChange(state=JobState.FAILED, reason="exited 1", preempt_reason=None)
    assert changed_fields(finished) == {
        "state": JobState.FAILED,
        "reason": "exited 1",
        "preempt_reason": None,
    }
    assert changed_fields(ReplicaChange(port=None, failures=0)) == {"port": None, "failures": 0}


@pytest.mark.parametrize("name", ["ab", "A-corp", "9lives", "x" * 41, "bad_name", "end-"])
def test_bad_tenant_names(name: str) -> None:
    with pytest.raises(ValidationError):
        check_tenant_name(name)


def test_quota_and_scopes() -> None:
    assert check_quota({"nvidia": 8, "ascend": 0}, CAT.families) == {"ascend": 0, "nvidia": 8}
    with pytest.raises(ValidationError, match="unknown chip family"):
        check_quota({"tpu": 1}, CAT.families)
    with pytest.raises(ValidationError):
        check_quota({"cpu": -1}, CAT.families)
    assert Scope.OPERATOR.covers(Scope.TENANT_ADMIN)
    assert not Scope.TENANT_MEMBER.covers(Scope.TENANT_ADMIN)
    assert Principal("k", Scope.TENANT_ADMIN, None).can_see_tenant("x") is False
    assert Principal("k", Scope.OPERATOR, None).can_see_tenant("x")


def test_key_usability() -> None:
    key = KeyRecord("k", "sw_x", "h", "t", Scope.READ_ONLY, "", "", 0.0, 10.0, None)
    assert key.usable_at(5.0)
    assert not key.usable_at(10.0)
