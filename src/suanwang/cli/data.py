"""``suanwang data``: upload, list, show and delete datasets; a tenant's storage quota."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from suanwang.cli.client import ApiClient, CliError
from suanwang.cli.common import (
    JsonOpt,
    cell,
    emit_json,
    new_table,
    note,
    out,
    say,
    segment,
    state,
    when,
)
from suanwang.domain.errors import ValidationError
from suanwang.domain.rates import format_rate, parse_rate

data_app = typer.Typer(help="Datasets: upload, list, show, delete.", no_args_is_help=True)
CHUNK = 1 << 20
POLL_S = 0.5
FORMATS = ("jsonl", "parquet", "text", "binary")


@dataclass(frozen=True, slots=True)
class LocalFile:
    source: Path
    path: str
    """Where it goes inside the dataset."""
    size: int


def collect(paths: list[Path]) -> list[LocalFile]:
    """The files to upload: a file as its own name, a directory's files (symlinks skipped)
    relative to the directory. CliError for a missing path or two files of one name."""
    found: dict[str, LocalFile] = {}
    for given in paths:
        if given.is_symlink() or not given.exists():
            raise CliError(f"{given}: no such file or directory (links are not followed)")
        if given.is_file():
            _add(found, LocalFile(given, given.name, given.stat().st_size))
            continue
        for root, dirs, files in os.walk(given):
            dirs[:] = sorted(d for d in dirs if not Path(root, d).is_symlink())
            for name in sorted(files):
                source = Path(root, name)
                if source.is_symlink() or not source.is_file():
                    note(f"skipped {source} (a link or not a regular file)")
                    continue
                inside = source.relative_to(given).as_posix()
                _add(found, LocalFile(source, inside, source.stat().st_size))
    if not found:
        raise CliError("nothing to upload", hint="name files or directories that hold files")
    return list(found.values())


def _add(found: dict[str, LocalFile], item: LocalFile) -> None:
    if item.path in found:
        raise CliError(
            f"two files would be {item.path!r} in the dataset: {found[item.path].source} "
            f"and {item.source}",
            hint="upload them into separate datasets or rename one",
        )
    found[item.path] = item


def sha256_of(source: Path) -> str:
    digest = hashlib.sha256()
    with source.open("rb") as f:
        while block := f.read(CHUNK):
            digest.update(block)
    return digest.hexdigest()


def _chunks(source: Path, advance: Callable[[int], None]) -> Iterator[bytes]:
    with source.open("rb") as f:
        while block := f.read(CHUNK):
            advance(len(block))
            yield block


def _check_headroom(api: ApiClient, total: int) -> None:
    """Refuse before sending anything when the files cannot fit the storage quota."""
    tenant = api.call("GET", "/api/v1/whoami").get("tenant")
    if tenant is None:
        raise CliError("datasets belong to a tenant; use a tenant key", field="--key")
    storage = api.call("GET", f"/api/v1/tenants/{segment(tenant)}/storage")
    free = storage["quota_bytes"] - storage["used_bytes"]
    if total > free:
        raise CliError(
            f"{total} bytes do not fit tenant {tenant}'s storage quota "
            f"({storage['used_bytes']} of {storage['quota_bytes']} bytes used)",
            field="storage_quota",
            hint="delete datasets you no longer need, or ask the operator for more",
        )


@data_app.command("upload")
def upload(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", show_default=False)],
    paths: Annotated[list[Path], typer.Argument(metavar="PATH...", help="files and directories")],
    fmt: Annotated[str, typer.Option("--format", help="jsonl, parquet, text or binary")] = "binary",
    region: Annotated[
        str | None, typer.Option(help="region to store it in (default: the only one)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create dataset NAME from files, stream them up (hashed both ends), then seal it."""
    if fmt not in FORMATS:
        raise CliError(f"--format {fmt!r}: not one of {', '.join(FORMATS)}", field="--format")
    files = collect(paths)
    total = sum(f.size for f in files)
    st = state(ctx, as_json)
    with st.client() as api:
        _check_headroom(api, total)
        body = {"name": name, "format": fmt, "region": region}
        created = api.call("POST", "/api/v1/datasets", json=body)
        base = f"/api/v1/datasets/{segment(created['id'])}"
        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=out,
            disable=st.json,
        ) as bar:
            task = bar.add_task(f"uploading {name}", total=total)
            for item in files:
                headers = {"X-Content-SHA256": sha256_of(item.source)}
                chunks = _chunks(item.source, lambda n: bar.advance(task, n))
                api.upload(f"{base}/files", chunks, params={"path": item.path}, headers=headers)
        sealed = api.call("POST", f"{base}/seal")
    if st.json:
        emit_json(sealed)
        return
    say(f"dataset {name} ({sealed['id']}): {len(files)} file(s), {total:,} bytes, sealed")


@data_app.command("list")
def list_datasets(ctx: typer.Context, as_json: JsonOpt = False) -> None:
    """Your datasets (the operator: everyone's)."""
    st = state(ctx, as_json)
    with st.client() as api:
        found = api.call("GET", "/api/v1/datasets")
    if st.json:
        emit_json(found)
        return
    tenants = len({d["tenant"] for d in found}) > 1
    columns = (
        "Name",
        *(("Tenant",) if tenants else ()),
        "Id",
        "State",
        "Files",
        "Bytes",
        "Regions",
    )
    table = new_table(
        "Datasets", columns, numbers=("Files", "Bytes"), wrap=("Name", "Tenant", "Regions")
    )
    for d in found:
        regions = ", ".join(f"{r['region']} ({r['state']})" for r in d["replicas"])
        owner = (cell(d["tenant"]),) if tenants else ()
        table.add_row(
            cell(d["name"]), *owner, d["id"], d["state"], f"{d['files']:,}",
            f"{d['size_bytes']:,}", cell(regions),
        )  # fmt: skip
    if not found:
        table.caption = "no datasets"
    out.print(table)


def _resolve(api: ApiClient, name: str) -> dict[str, Any]:
    """The dataset named NAME (or with id NAME) the key can see."""
    shown: dict[str, Any] = api.call("GET", f"/api/v1/datasets/{segment(name)}")
    return shown


@data_app.command("show")
def show(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", show_default=False)],
    as_json: JsonOpt = False,
) -> None:
    """A dataset: replicas per region, size and its manifest."""
    st = state(ctx, as_json)
    with st.client() as api:
        d = _resolve(api, name)
        transfers = api.call("GET", f"/api/v1/datasets/{segment(d['id'])}/transfers")
    if st.json:
        emit_json(d | {"transfers": transfers})
        return
    say(f"{d['name']} ({d['id']}) of {d['tenant']}: {d['state']}, {d['format']}")
    say(f"{d['files']:,} file(s), {d['size_bytes']:,} bytes, created {when(d['created_at'])}")
    for r in d["replicas"]:
        say(f"replica in {r['region']}: {r['state']}")
    for t in transfers[:5]:
        _say_transfer(t)
    table = new_table("Manifest", ("Path", "Bytes", "SHA-256"), numbers=("Bytes",))
    manifest = d.get("manifest") or []
    for e in manifest[:50]:
        table.add_row(cell(e["path"]), f"{e['size_bytes']:,}", e["sha256"][:16])
    if len(manifest) > 50:
        table.caption = f"and {len(manifest) - 50} more (--json lists all)"
    out.print(table)


@data_app.command("copy")
def copy(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", show_default=False)],
    to: Annotated[str, typer.Option("--to", help="the region to copy it to")],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="follow it to the end")] = True,
    max_rate: Annotated[
        str | None,
        typer.Option(
            help="cap its rate: 200MiB/s, 100M, 1G, 800Mbit/s (the link's cap may be lower)"
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Copy a dataset to another region, agent to agent (progress with rate and ETA)."""
    st = state(ctx, as_json)
    body: dict[str, Any] = {"region": to}
    if max_rate is not None:
        try:
            body["max_bytes_per_s"] = parse_rate(max_rate, "--max-rate")
        except ValidationError as exc:
            raise CliError(str(exc), field="--max-rate", hint=exc.hint) from None
    with st.client() as api:
        transfer = api.call("POST", f"/api/v1/datasets/{segment(name)}/copy", json=body)
        if wait:
            transfer = _follow(api, transfer, quiet=st.json)
    if st.json:
        emit_json(transfer)
        return
    _say_transfer(transfer)
    if transfer["state"] == "failed":
        raise CliError(f"transfer {transfer['id']} failed: {transfer['error']}")


def _follow(api: ApiClient, transfer: dict[str, Any], *, quiet: bool) -> dict[str, Any]:
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[rate]} {task.fields[eta]}"),
        console=out,
        disable=quiet,
    ) as bar:
        label = f"{transfer['source_region']} -> {transfer['target_region']}"
        fields = _rate_eta(transfer)
        task = bar.add_task(label, total=transfer["bytes_total"] or None, **fields)
        while transfer["state"] in ("pending", "running"):
            time.sleep(POLL_S)
            transfer = api.call("GET", f"/api/v1/transfers/{segment(transfer['id'])}")
            fields = _rate_eta(transfer)
            bar.update(
                task, completed=transfer["bytes_done"], total=transfer["bytes_total"], **fields
            )
    return transfer


def _rate_eta(t: dict[str, Any]) -> dict[str, Any]:
    """The rate and ETA the agent measured (the API's, not the bar's own estimate)."""
    rate = format_rate(t["rate_bytes_per_s"]) if t["rate_bytes_per_s"] else "-"
    cap = t.get("max_bytes_per_s")
    eta = t.get("eta_s")
    return {
        "rate": rate + (f" (cap {format_rate(cap)})" if cap else ""),
        "eta": f"ETA {eta:,.0f} s" if eta is not None and t["state"] == "running" else "",
    }


def _say_transfer(t: dict[str, Any]) -> None:
    done = f"{t['bytes_done']:,} of {t['bytes_total']:,} bytes"
    rate = f", {t['rate_bytes_per_s'] / 1e6:,.1f} MB/s" if t["rate_bytes_per_s"] else ""
    eta = f", ETA {t['eta_s']:.0f} s" if t.get("eta_s") else ""
    resent = f", {t['chunks_resent']} chunk(s) re-sent" if t["chunks_resent"] else ""
    cap = t.get("max_bytes_per_s")
    resent += f", capped at {format_rate(cap)}" if cap else ""
    error = f" ({t['error']})" if t["error"] else ""
    say(
        f"transfer {t['id']} {t['source_region']} -> {t['target_region']}: {t['state']}, "
        f"{done}{rate}{eta}{resent}{error}"
    )


@data_app.command("delete")
def delete(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(metavar="NAME", show_default=False)],
) -> None:
    """Delete a dataset (refused while a queued or running job uses it)."""
    with state(ctx).client() as api:
        d = api.call("DELETE", f"/api/v1/datasets/{segment(name)}")
    say(f"deleted dataset {d['name']} ({d['id']}), {d['size_bytes']:,} bytes freed")


@data_app.command("quota")
def quota(
    ctx: typer.Context,
    tenant: Annotated[str, typer.Argument(metavar="TENANT", show_default=False)],
    set_bytes: Annotated[
        int | None, typer.Option("--set", help="new quota in bytes (operator)")
    ] = None,
    default: Annotated[
        bool, typer.Option("--default", help="back to the platform default (operator)")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """A tenant's dataset storage: used and quota; the operator sets it."""
    st = state(ctx, as_json)
    path = f"/api/v1/tenants/{segment(tenant)}/storage"
    with st.client() as api:
        if set_bytes is not None or default:
            found = api.call("PUT", path, json={"bytes": None if default else set_bytes})
        else:
            found = api.call("GET", path)
    if st.json:
        emit_json(found)
        return
    origin = " (default)" if found["default"] else ""
    say(f"{tenant}: {found['used_bytes']:,} of {found['quota_bytes']:,} bytes used{origin}")
