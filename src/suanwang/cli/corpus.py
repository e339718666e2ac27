"""``suanwang corpus clean DATASET``: submit the corpus cleaner as a job on one of your datasets.

The job runs ``python -m suanwang.corpus clean`` (docs/corpus.md) with the dataset read-only
at ``/data/input`` and writes the cleaned files, ``report.json`` and ``report.md`` into
``/job/<output>`` of its own directory. Without ``--input`` every ``.jsonl``, ``.json`` and
``.parquet`` file of the dataset is cleaned. ``--score-with-model`` adds the LLM step, which
calls the gateway with ``--api-key`` (billed to that key's tenant): the job then gets
``network: gateway``. This module only builds and submits the job; the cleaning code is not
imported here.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Annotated, Any

import typer

from suanwang.cli.client import ApiClient, CliError
from suanwang.cli.common import JsonOpt, segment, state
from suanwang.cli.jobs import _finish, _report_submitted, submit_body, wait_for

corpus_app = typer.Typer(help="Corpus cleaning jobs (docs/corpus.md).", no_args_is_help=True)
MOUNT = "/data/input"
CLEANABLE = (".jsonl", ".json", ".parquet")


def cleaner_command(
    inputs: list[str], output: str, config: str | None, model: str | None
) -> list[str]:
    """The job's argv: paths are inside the dataset (relative to its root)."""
    argv = ["python", "-m", "suanwang.corpus", "clean"]
    for path in inputs:
        argv += ["--input", _inside(path, "--input")]
    argv += ["--output", str(PurePosixPath("/job", _relative(output, "--output")))]
    if config is not None:
        argv += ["--config", _inside(config, "--config")]
    if model is not None:
        argv += ["--score-with-model", model]
    return argv


def _relative(path: str, option: str) -> str:
    parts = PurePosixPath(path).parts
    if not parts or path.startswith("/") or ".." in parts:
        raise CliError(
            f"{option} {path!r} must be a relative path without '..'",
            field=option,
            hint="paths are relative to the dataset's root (or to the job's directory)",
        )
    return path


def _inside(path: str, option: str) -> str:
    return str(PurePosixPath(MOUNT, _relative(path, option)))


def dataset_inputs(api: ApiClient, dataset: str) -> list[str]:
    """Every cleanable file of the dataset's manifest; CliError if there is none."""
    shown: dict[str, Any] = api.call("GET", f"/api/v1/datasets/{segment(dataset)}")
    found = sorted(e["path"] for e in shown["manifest"] if e["path"].endswith(CLEANABLE))
    if not found:
        raise CliError(
            f"dataset {dataset} has no .jsonl, .json or .parquet file",
            field="--input",
            hint="name the files with --input PATH",
        )
    return found


@corpus_app.command("clean")
def clean(
    ctx: typer.Context,
    dataset: Annotated[str, typer.Argument(help="one of your ready datasets")],
    inputs: Annotated[
        list[str] | None,
        typer.Option(
            "--input", help="a file of the dataset, repeatable (default: every .jsonl/.parquet)"
        ),
    ] = None,
    output: Annotated[str, typer.Option(help="directory under the job's own /job")] = "cleaned",
    output_dataset: Annotated[
        str | None,
        typer.Option(help="register the cleaned output as this new dataset of yours on success"),
    ] = None,
    config: Annotated[
        str | None, typer.Option(help="a TOML or JSON config file of the dataset")
    ] = None,
    score_with_model: Annotated[
        str | None, typer.Option(help="add the LLM quality score with this gateway model")
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option(
            envvar="OPENAI_API_KEY",
            help="the gateway key the LLM step uses (billed to its tenant)",
            show_default=False,
        ),
    ] = None,
    chip: Annotated[str, typer.Option(help="the chip (slot) to run on")] = "cpu",
    region: Annotated[str | None, typer.Option(help="only this region")] = None,
    max_runtime: Annotated[int | None, typer.Option(help="seconds before it is stopped")] = None,
    wait: Annotated[bool, typer.Option("--wait", help="wait until the job ends")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="print only the job id")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Submit a cleaning job on DATASET (output in the job's directory, see its logs)."""
    if score_with_model is not None and not api_key:
        raise CliError(
            "--score-with-model needs a gateway key",
            field="--api-key",
            hint="pass --api-key sk-… or set OPENAI_API_KEY",
        )
    st = state(ctx, as_json)
    with st.client() as api:
        files = inputs or dataset_inputs(api, dataset)
        command = cleaner_command(files, output, config, score_with_model)
        opts = _options(dataset, chip, region, max_runtime, score_with_model)
        body = submit_body(command, opts)
        if output_dataset is not None:
            body |= {"output_dataset": output_dataset, "output_path": _relative(output, "--output")}
        if score_with_model is not None:
            body["env"] = {"OPENAI_API_KEY": api_key}
        job = api.call("POST", "/api/v1/jobs", json=body)
        _report_submitted(job, quiet=quiet, as_json=st.json and not wait)
        if wait:
            _finish(wait_for(api, job["id"]), quiet=quiet, as_json=st.json)


def _options(
    dataset: str, chip: str, region: str | None, max_runtime: int | None, model: str | None
) -> dict[str, Any]:
    return {
        "name": f"clean-{dataset}", "chip": [chip], "cards": 1, "nodes": 1, "cluster": None,
        "region": region, "priority": 0, "max_runtime": max_runtime, "retries": 0, "env": [],
        "workdir": None, "simulate_duration": None, "expected_duration": None,
        "checkpoint_interval": None, "kind": "corpus-clean", "speed": [],
        "priority_class": None, "network": "gateway" if model else "none", "dataset": dataset,
    }  # fmt: skip
