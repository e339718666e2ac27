"""``suanwang fleet import``: read a cluster's nodes from its engine into a fleet file.

Runs on the operator's machine (not through the API): it reaches the engine itself with the
connection given on the command line, using the same backend the control plane would.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Annotated, Any

import typer

from suanwang.cli.client import CliError
from suanwang.cli.common import JsonOpt, emit_json, load_settings, say, state
from suanwang.domain.errors import DomainError


class Source(enum.StrEnum):
    LOCAL = "local"
    RAY = "ray"
    SLURM = "slurm"
    KUBERNETES = "kubernetes"


Opt = typer.Option


def import_command(
    ctx: typer.Context,
    source: Annotated[Source, Opt("--from", help="the engine to read", show_default=False)],
    cluster: Annotated[str, Opt(help="name of the cluster in the fleet", show_default=False)],
    region: Annotated[str, Opt(help="region of the cluster", show_default=False)],
    region_display_name: Annotated[str, Opt(help="the region's display name")] = "",
    address: Annotated[str, Opt(help="ray: dashboard URL, http://head:8265")] = "",
    partition: Annotated[str, Opt(help="slurm: partition")] = "",
    account: Annotated[str, Opt(help="slurm: account")] = "",
    qos: Annotated[str, Opt(help="slurm: QoS")] = "",
    bin_dir: Annotated[str, Opt(help="slurm: directory of sbatch & co.")] = "",
    slurmrestd_url: Annotated[str, Opt(help="slurm: slurmrestd URL")] = "",
    kubeconfig: Annotated[str, Opt(help="kubernetes: kubeconfig path")] = "",
    context: Annotated[str, Opt(help="kubernetes: kubeconfig context")] = "",
    api_url: Annotated[str, Opt(help="kubernetes: API server URL override")] = "",
    output: Annotated[
        Path | None, Opt("-o", "--output", help="write the fleet file here (default: stdout)")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Read nodes, chips and card counts from an engine and write a fleet file for them."""
    block = _block(
        source,
        {
            "address": address,
            "partition": partition,
            "account": account,
            "qos": qos,
            "bin_dir": bin_dir,
            "slurmrestd_url": slurmrestd_url,
            "kubeconfig": kubeconfig,
            "context": context,
            "api_url": api_url,
        },
    )
    from suanwang.bootstrap import discovery_backend
    from suanwang.services.catalogue import default_catalogue
    from suanwang.services.fleet_import import ImportRequest, draft_cluster, import_cluster

    request = ImportRequest(source.value, cluster, region, region_display_name, block)
    try:
        draft_cluster(request, default_catalogue())  # bad flags fail before the engine is asked
        backend = discovery_backend(load_settings(), source.value)
        result = import_cluster(request, backend, default_catalogue())
    except DomainError as exc:
        raise CliError(exc.message, field=_flag(exc.field), hint=exc.hint) from None
    if output is not None:
        try:
            output.write_text(result.text, encoding="utf-8")
        except OSError as exc:
            raise CliError(f"cannot write {output}: {exc.strerror}", field="--output") from None
    st = state(ctx, as_json)
    nodes = len(result.spec.clusters[0].nodes)
    if st.json:
        emit_json({"nodes": nodes, "cards_by_chip": result.cards_by_chip, "output": str(output)})
    elif output is None:
        typer.echo(result.text, nl=False)
    else:
        cards = ", ".join(f"{n:,} {chip}" for chip, n in result.cards_by_chip.items())
        say(f"wrote {output}: cluster {cluster}, {nodes:,} nodes ({cards})")


_FLAGS = {
    Source.LOCAL: (),
    Source.RAY: ("address",),
    Source.SLURM: ("partition", "account", "qos", "bin_dir", "slurmrestd_url"),
    Source.KUBERNETES: ("kubeconfig", "context", "api_url"),
}


def _flag(field: str | None) -> str | None:
    """``clusters[0].ray.address`` -> ``--address``: errors name the option given."""
    if field and field.startswith("clusters[0].") and field.count(".") == 2:
        return "--" + field.rsplit(".", 1)[1].replace("_", "-")
    return field


def _block(source: Source, given: dict[str, str]) -> dict[str, Any] | None:
    """The connection block from the flags that belong to ``source`` (others refused)."""
    wrong = [k for k, v in given.items() if v and k not in _FLAGS[source]]
    if wrong:
        flag = "--" + wrong[0].replace("_", "-")
        raise CliError(f"{flag} does not apply to --from {source.value}", field=flag)
    if source is Source.LOCAL:
        return None
    return {source.value: {k: given[k] for k in _FLAGS[source] if given[k]}}
