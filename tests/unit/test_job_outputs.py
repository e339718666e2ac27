"""Reading a finished job's output directory: regular files only, no link followed anywhere,
nothing outside the job's own directory."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from suanwang.adapters.job_outputs import LocalJobOutputs
from suanwang.domain.errors import ValidationError
from suanwang.domain.jobs import JobSpec, output_parts


def job_dir(tmp_path: Path) -> tuple[LocalJobOutputs, Path]:
    work = tmp_path / "runs" / "job-1" / "work"
    (work / "out" / "sub").mkdir(parents=True)
    (work / "out" / "a.jsonl").write_text("a\n")
    (work / "out" / "sub" / "b.json").write_text("{}")
    (tmp_path / "secret").write_text("not yours")
    return LocalJobOutputs(tmp_path / "runs"), work


def test_regular_files_are_listed_and_read(tmp_path: Path) -> None:
    outputs, _ = job_dir(tmp_path)
    assert outputs.files("local", "job-1", ("out",)) == [("a.jsonl", 2), ("sub/b.json", 2)]
    assert b"".join(outputs.read("local", "job-1", ("out",), "sub/b.json")) == b"{}"


@pytest.mark.parametrize("kind", ["file-link", "dir-link", "fifo", "base-link", "empty"])
def test_links_special_files_and_empty_outputs_are_refused(tmp_path: Path, kind: str) -> None:
    outputs, work = job_dir(tmp_path)
    out = work / "out"
    if kind == "file-link":
        (out / "stolen.jsonl").symlink_to(tmp_path / "secret")
    elif kind == "dir-link":
        (out / "sub" / "up").symlink_to(tmp_path)
    elif kind == "fifo":
        os.mkfifo(out / "pipe")
    elif kind == "base-link":
        (work / "link").symlink_to(tmp_path)
        out = work / "link"
    else:
        (work / "void").mkdir()
        out = work / "void"
    with pytest.raises(ValidationError) as err:
        outputs.files("local", "job-1", (out.name,))
    assert err.value.field == "output_path"


def test_reading_never_follows_a_link(tmp_path: Path) -> None:
    outputs, work = job_dir(tmp_path)
    (work / "out" / "a.jsonl").unlink()
    (work / "out" / "a.jsonl").symlink_to(tmp_path / "secret")
    with pytest.raises(OSError, match="symbolic links"):
        b"".join(outputs.read("local", "job-1", ("out",), "a.jsonl"))


@pytest.mark.parametrize(
    ("backend", "job", "parts"),
    [("slurm", "job-1", ("out",)), ("local", "..", ("out",)), ("local", "job-1", ("..",))],
)
def test_other_backends_and_escapes_are_refused(
    tmp_path: Path, backend: str, job: str, parts: tuple[str, ...]
) -> None:
    outputs, _ = job_dir(tmp_path)
    with pytest.raises(ValidationError):
        outputs.files(backend, job, parts)


def test_output_parts_of_a_spec() -> None:
    spec = JobSpec(name="j", command=("true",), output_dataset="out")
    assert output_parts(spec) == ("output",)
    spec = JobSpec(name="j", command=("true",), output_dataset="out", output_path="/job/a/b")
    assert output_parts(spec) == ("a", "b")
    assert output_parts(JobSpec(name="j", command=("true",))) == ()
    for bad in (
        JobSpec(name="j", command=("true",), output_path="x"),
        JobSpec(name="j", command=("true",), output_dataset="Bad Name"),
        JobSpec(name="j", command=("true",), output_dataset="o", output_path="../x"),
    ):
        with pytest.raises(ValidationError) as err:
            output_parts(bad)
        assert err.value.field in ("output_path", "output_dataset")
