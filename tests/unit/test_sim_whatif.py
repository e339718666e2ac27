"""What-if changes to a fleet, built-in fleets and quota files."""

from __future__ import annotations

from pathlib import Path

import pytest

from suanwang.domain.ids import ChipFamily, ChipName, RegionName, TenantId
from suanwang.scheduler.snapshot import FlavorQuota
from suanwang.simulator.errors import SimulationError
from suanwang.simulator.fleet import load_fleet, load_quotas, quota_caps
from suanwang.simulator.metrics import PolicyMetrics, Summary
from suanwang.simulator.whatif import (
    AddCards,
    LinkBandwidth,
    RemoveCards,
    apply_changes,
    deltas,
    parse_cards_change,
    parse_link_change,
)

DEMO = load_fleet("demo")


def test_builtin_fleets() -> None:
    assert DEMO.cards_by_chip() == {
        "ascend-910b": 10_000,
        "hygon-k100": 512,
        "metax-c500": 1_024,
        "nvidia-h20": 1_000,
    }
    assert "local" not in DEMO.regions()
    assert set(load_fleet("gavel-hetero").cards_by_chip().values()) == {36}
    assert set(load_fleet("gavel-hetero-768").cards_by_chip().values()) == {256}


def test_add_cards_as_whole_nodes_of_the_existing_size() -> None:
    change = parse_cards_change("800:ascend-910b:shanghai-lingang", "--add-cards")
    assert change == AddCards(800, ChipName("ascend-910b"), RegionName("shanghai-lingang"))
    after = apply_changes(DEMO, [change])
    assert after.cards_by_chip()[ChipName("ascend-910b")] == 10_800
    assert len(after.node_views()) == len(DEMO.node_views()) + 100


def test_add_a_new_chip_type_creates_a_cluster() -> None:
    after = apply_changes(
        DEMO, [AddCards(16, ChipName("nvidia-a100"), RegionName("ningxia-zhongwei"))]
    )
    assert after.cards_by_chip()[ChipName("nvidia-a100")] == 16
    assert after.spec.clusters[-1].name == "whatif-ningxia-zhongwei-nvidia-a100"


def test_remove_cards() -> None:
    after = apply_changes(
        DEMO, [parse_cards_change("512:hygon-k100:ningxia-zhongwei", "--remove-cards")]
    )
    assert "hygon-k100" not in after.cards_by_chip()


def test_link_bandwidth() -> None:
    after = apply_changes(DEMO, [parse_link_change("ningxia-zhongwei:shanghai-lingang:25")])
    assert after.spec.wan_links[0].bandwidth_gbps == 25


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            AddCards(12, ChipName("ascend-910b"), RegionName("shanghai-lingang")),
            "whole number of 8-card nodes",
        ),
        (AddCards(8, ChipName("ascend-910b"), RegionName("mars")), "unknown region"),
        (AddCards(8, ChipName("nvidia-b300"), RegionName("shanghai-lingang")), "unknown chip"),
        (RemoveCards(8, ChipName("ascend-910b"), RegionName("ningxia-zhongwei")), "cannot remove"),
        (LinkBandwidth(RegionName("shanghai-lingang"), RegionName("mars"), 1), "no WAN link"),
    ],
)
def test_bad_changes(change: AddCards | RemoveCards | LinkBandwidth, message: str) -> None:
    with pytest.raises(SimulationError, match=message):
        apply_changes(DEMO, [change])


@pytest.mark.parametrize("text", ["800", "x:ascend-910b:r", "0:ascend-910b:r"])
def test_bad_cards_syntax(text: str) -> None:
    with pytest.raises(SimulationError, match="CARDS:CHIP:REGION"):
        parse_cards_change(text, "--add-cards")


def test_bad_link_syntax() -> None:
    with pytest.raises(SimulationError, match="GBPS > 0"):
        parse_link_change("a:b:fast")


def test_quota_file(tmp_path: Path) -> None:
    path = tmp_path / "quotas.yaml"
    path.write_text(
        "default: {cohort: all, quotas: {nvidia: {nominal: 8, borrowing_limit: 8}}}\n"
        "tenants:\n  big: {weight: 2, quotas: {nvidia: {nominal: 32, borrowing_limit: null}}}\n",
        encoding="utf-8",
    )
    plan = load_quotas(path, [ChipFamily("nvidia")])
    queues = plan.queues_for([TenantId("small"), TenantId("big")])
    small, big = queues[TenantId("small")], queues[TenantId("big")]
    assert small.quotas[ChipFamily("nvidia")] == FlavorQuota(8, 8, None)
    assert small.cohort == "all"
    assert big.weight == 2
    assert quota_caps(queues, [ChipFamily("nvidia"), ChipFamily("ascend")]) == {
        "big": {"ascend": 0},
        "small": {"ascend": 0, "nvidia": 16},
    }


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("tenants: {a: {quotas: {ascend: {nominal: 1}}}}\n", "tenants.a.quotas.ascend"),
        ("tenants: {a: {quotas: {nvidia: {nominal: -1}}}}\n", "tenants.a.quotas.nvidia.nominal"),
        ("tenant: {}\n", "tenant"),
    ],
)
def test_bad_quota_file(tmp_path: Path, text: str, field: str) -> None:
    path = tmp_path / "quotas.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(SimulationError) as caught:
        load_quotas(path, [ChipFamily("nvidia")])
    assert caught.value.field == field


def _metrics(avg_jct: float, utilisation: float) -> PolicyMetrics:
    summary = Summary(avg_jct, avg_jct, avg_jct)
    return PolicyMetrics(
        "p",
        1,
        1,
        0,
        summary,
        summary,
        summary,
        10.0,
        {ChipName("c"): utilisation},
        (),
        {},
        (),
        1.0,
        0,
        0.0,
        0.0,
        0.0,
        0,
        0,
        0.0,
        0,
        1.0,
        0.0,
    )


def test_deltas_are_relative() -> None:
    diff = deltas(_metrics(100, 0.5), _metrics(80, 0.4))
    assert diff["avg_jct"] == pytest.approx(-0.2)
    assert diff["utilisation"] == {"c": pytest.approx(-0.1)}
