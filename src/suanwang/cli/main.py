"""The ``suanwang`` Typer app and its entry point :func:`run`.

Every expected failure (an API error, bad input, an unreachable server) ends as one line
``error: …`` on stderr with exit code 1; a traceback means a bug.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

# Typer vendors Click (``typer._click``); its usage errors are not re-exported publicly.
from typer._click.exceptions import NoArgsIsHelpError, UsageError

from suanwang.cli import server as server_cmds
from suanwang.cli.agent import agent_app
from suanwang.cli.agents import agents_app
from suanwang.cli.apps import apps_app
from suanwang.cli.audit import audit
from suanwang.cli.billing import bills_app, usage
from suanwang.cli.client import DEFAULT_URL, CliError
from suanwang.cli.common import JsonOpt, State, out, show_error
from suanwang.cli.corpus import corpus_app
from suanwang.cli.data import data_app
from suanwang.cli.external import external_app
from suanwang.cli.fleet import demo_app, fleet_app
from suanwang.cli.gateway import gateway
from suanwang.cli.jobs import jobs_app
from suanwang.cli.kb import kb_app
from suanwang.cli.limits import key_limits, tenant_limits
from suanwang.cli.models import deployments_app, models_app
from suanwang.cli.sim import sim_app
from suanwang.cli.tenants import keys_app, tenants_app

app = typer.Typer(
    name="suanwang",
    help="算网 suanwang: one control plane for heterogeneous AI compute.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(fleet_app, name="fleet")
app.add_typer(demo_app, name="demo")
app.add_typer(tenants_app, name="tenants")
app.add_typer(keys_app, name="keys")
app.add_typer(jobs_app, name="jobs")
app.add_typer(data_app, name="data")
app.add_typer(agents_app, name="agents")
app.add_typer(corpus_app, name="corpus")
app.add_typer(kb_app, name="kb")
app.add_typer(apps_app, name="apps")
models_app.add_typer(external_app, name="external")
app.add_typer(models_app, name="models")
app.add_typer(deployments_app, name="deployments")
app.add_typer(sim_app, name="sim")
app.add_typer(bills_app, name="bills")
app.add_typer(agent_app, name="agent")
app.command("usage")(usage)
app.command("server")(server_cmds.server)
app.command("gateway")(gateway)
tenants_app.command("limits")(tenant_limits)
keys_app.command("limits")(key_limits)
app.command("init")(server_cmds.init)
app.command("top")(server_cmds.top)
app.command("audit")(audit)


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str, typer.Option(envvar="SUANWANG_URL", help="the suanwang server")
    ] = DEFAULT_URL,
    key: Annotated[
        str | None,
        typer.Option(
            envvar="SUANWANG_API_KEY",
            show_default=False,
            help="API key (default: the operator key file written by 'suanwang init', if readable)",
        ),
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """算网 suanwang: fleet, tenants, keys and jobs on heterogeneous AI compute."""
    ctx.obj = State(url=url, key=key or None, json=as_json)


def exit_code(argv: list[str] | None = None) -> int:
    """Run the CLI on ``argv`` (default: ``sys.argv[1:]``) and return the exit code."""
    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="suanwang", standalone_mode=False)
    except CliError as exc:
        show_error(exc)
        return 1
    except NoArgsIsHelpError as exc:  # Rich help is already printed; plain help is the message
        if exc.format_message():
            out.out(exc.format_message(), highlight=False)
        return 0
    except UsageError as exc:
        where = exc.ctx.command_path if exc.ctx else "suanwang"
        show_error(CliError(exc.format_message(), hint=f"see '{where} --help'"))
        return 1
    except typer.TyperException as exc:
        show_error(CliError(exc.format_message()))
        return 1
    except typer.Abort:
        return 130
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point (``suanwang``)."""
    sys.exit(exit_code())


if __name__ == "__main__":
    run()
