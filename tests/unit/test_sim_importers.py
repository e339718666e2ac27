"""The Philly/Gavel importer: speeds per fleet, node splitting, windows and errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from suanwang.domain.ids import ChipName
from suanwang.simulator.errors import TraceError
from suanwang.simulator.importers import FleetKind, import_philly_gavel

TRACE = """job_id,tenant,submit_s,gpus,duration_s,gpu_type,job_type
0,vc1,0.0,1,1000.0,,ResNet-50 (batch size 128)
1,vc2,10.0,8,2000.0,,ResNet-50 (batch size 128)
2,vc1,20.0,1,3000.0,,Recommendation (batch size 512)
"""
MATRIX = """job_type,gpus,v100_steps_per_s,p100_steps_per_s,k80_steps_per_s
ResNet-50 (batch size 128),1,2.5,1.25,0.5
ResNet-50 (batch size 128),8,10.0,8.0,0.0
Recommendation (batch size 512),1,20.0,40.0,30.0
"""


@pytest.fixture
def files(tmp_path: Path) -> tuple[Path, Path]:
    trace, matrix = tmp_path / "trace.csv", tmp_path / "matrix.csv"
    trace.write_text(TRACE, encoding="utf-8")
    matrix.write_text(MATRIX, encoding="utf-8")
    return trace, matrix


def test_gavel_speeds_relative_to_v100(files: tuple[Path, Path]) -> None:
    first, multi, rec = import_philly_gavel(*files, FleetKind.GAVEL, checkpoint_interval_s=600)
    assert first.speed == {"nvidia-v100": 1.0, "nvidia-p100": 0.5, "nvidia-k80": 0.2}
    assert first.chips == ("any",)
    assert (first.cards, first.nodes, first.duration_s) == (1, 1, 1000.0)
    assert first.checkpoint_interval_s == 600
    assert first.kind == "ResNet-50 (batch size 128)"
    # K80 has no throughput for the 8-GPU job: it may not run there.
    assert multi.chips == ("nvidia-v100", "nvidia-p100")
    assert "nvidia-k80" not in multi.speed
    # 8 GPUs on 4-GPU nodes: two whole nodes.
    assert (multi.cards, multi.nodes) == (4, 2)
    assert rec.speed[ChipName("nvidia-p100")] == 2.0


def test_demo_speeds_capped_by_generation_gain(files: tuple[Path, Path]) -> None:
    first, multi, rec = import_philly_gavel(*files, FleetKind.DEMO)
    # ResNet-50 gains 2x from P100 to V100: 910B (280 TFLOPS, 2.24x V100) is capped at 2.
    assert first.speed[ChipName("ascend-910b")] == 2.0
    assert first.speed[ChipName("nvidia-h20")] == pytest.approx(148 / 125, abs=1e-6)
    # 8 GPUs fit one 8-card node of the demo fleet.
    assert (multi.cards, multi.nodes) == (8, 1)
    assert multi.speed[ChipName("ascend-910b")] == pytest.approx(1.25)
    # Recommendation is faster on a P100 than a V100: no gain from newer chips.
    assert set(rec.speed.values()) == {1.0}
    assert set(rec.speed) == {"ascend-910b", "hygon-k100", "metax-c500", "nvidia-h20"}


def test_window_and_max_jobs(files: tuple[Path, Path]) -> None:
    jobs = import_philly_gavel(*files, FleetKind.GAVEL, window_start_s=5.0, max_jobs=1)
    assert [(j.job_id, j.submit_s) for j in jobs] == [("1", 5.0)]


def test_missing_matrix_entry_names_line(files: tuple[Path, Path]) -> None:
    trace, matrix = files
    trace.write_text(TRACE + "3,vc1,30.0,2,10.0,,A3C\n", encoding="utf-8")
    with pytest.raises(TraceError) as caught:
        import_philly_gavel(trace, matrix, FleetKind.GAVEL)
    assert (caught.value.line, caught.value.field_name) == (5, "job_type")


def test_bad_number_in_philly_trace(files: tuple[Path, Path]) -> None:
    trace, matrix = files
    trace.write_text(TRACE.replace("3000.0", "soon"), encoding="utf-8")
    with pytest.raises(TraceError, match=r":4: field 'duration_s': bad number"):
        import_philly_gavel(trace, matrix, FleetKind.GAVEL)
