"""What every command shares: the global options, the consoles and small formatters."""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import quote

import typer
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

from suanwang.cli.client import DEFAULT_URL, ApiClient, CliError, one_line

if TYPE_CHECKING:
    from suanwang.config import Settings

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)


@dataclass(frozen=True, slots=True)
class State:
    """The global options of one invocation."""

    url: str
    key: str | None
    json: bool

    def client(self) -> ApiClient:
        """An API client for ``--url`` with ``--key`` (or the local operator key file)."""
        return ApiClient(self.url, self.key or local_operator_key())


JsonOpt = Annotated[bool, typer.Option("--json", help="print raw JSON (for scripts)")]


def state(ctx: typer.Context, as_json: bool = False) -> State:
    """The :class:`State` stored by the app callback; ``as_json`` is a command's own ``--json``."""
    found = ctx.find_object(State)
    if found is None:  # a sub-app invoked on its own (tests): environment defaults
        found = State(url=DEFAULT_URL, key=None, json=False)
    return replace(found, json=found.json or as_json)


def load_settings(**overrides: Any) -> Settings:
    """``Settings()`` from the environment, or a CliError naming the bad variable."""
    from pydantic import ValidationError

    from suanwang.config import Settings

    given = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**given)
    except ValidationError as exc:
        first = exc.errors()[0]
        field = "_".join(str(p) for p in first["loc"])
        name = f"--{field}" if field in given else f"SUANWANG_{field.upper()}"
        raise CliError(f"{name}: {first['msg']}", field=name) from None


LOG_LEVELS = ("critical", "error", "warning", "info", "debug")


def log_level(settings: Settings) -> str:
    """``SUANWANG_LOG_LEVEL`` in lower case, or a CliError listing the levels."""
    level = settings.log_level.lower()
    if level not in LOG_LEVELS:
        raise CliError(
            f"SUANWANG_LOG_LEVEL {settings.log_level!r} is not a log level",
            field="SUANWANG_LOG_LEVEL",
            hint=", ".join(LOG_LEVELS),
        )
    return level


def local_operator_key() -> str | None:
    """The operator key written by ``suanwang init``, when this machine has one."""
    path = load_settings().operator_key_file
    try:
        key = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CliError(
            f"cannot read the operator key file {path}: {exc.strerror}",
            hint="pass --key or set SUANWANG_API_KEY",
        ) from None
    return key or None


def emit_json(data: Any) -> None:
    """Print ``data`` as indented JSON on stdout, unwrapped and uncoloured."""
    out.out(json.dumps(data, indent=2, ensure_ascii=False), highlight=False)


def emit_line(text: str) -> None:
    """Print one plain line on stdout (no markup, no wrapping)."""
    out.out(text, highlight=False)


def say(text: str, style: str | None = None) -> None:
    """Print a human message on stdout, without markup so user data cannot inject any."""
    out.print(Text(text, style=style or ""), soft_wrap=True)


def note(text: str, style: str = "dim") -> None:
    """Print a progress or warning message on stderr (keeps stdout clean for scripts)."""
    err.print(Text(text, style=style), soft_wrap=True)


def show_error(error: CliError) -> None:
    """Print ``error`` as its one line on stderr."""
    line = error.line()
    err.print(Text.assemble(("error:", "bold red"), line.removeprefix("error:")), soft_wrap=True)


def parse_pairs(values: Iterable[str], option: str, example: str) -> dict[str, str]:
    """``["a=1", "b=2"]`` as ``{"a": "1", "b": "2"}``; CliError for a value without ``=``."""
    pairs: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name:
            raise CliError(
                f"{option} {value!r} is not NAME=VALUE",
                field=option,
                hint=f"e.g. {option} {example}",
            )
        pairs[name] = rest
    return pairs


def parse_quota(values: Iterable[str]) -> dict[str, Any]:
    """``["ascend=800", "nvidia=64:32:16"]`` as an API quota map; CliError for a bad entry.

    ``FAMILY=N`` is a cap of N cards; ``FAMILY=NOMINAL:BORROW[:LEND]`` is a Kueue-style quota
    for tenants in a cohort (``-`` for no limit).
    """
    quota: dict[str, Any] = {}
    for family, text in parse_pairs(values, "--quota", "ascend=800").items():
        parts = text.split(":")
        try:
            numbers = [None if p == "-" else int(p) for p in parts]
        except ValueError:
            numbers = []
        if not 1 <= len(numbers) <= 3 or numbers[0] is None:
            raise CliError(
                f"--quota {family}={text!r}: expected CARDS or NOMINAL:BORROW[:LEND]",
                field="--quota",
                hint="e.g. --quota ascend=800 or --quota ascend=800:200:400 ('-' = no limit)",
            )
        if len(numbers) == 1:
            quota[family] = numbers[0]
        else:
            lend = numbers[2] if len(numbers) == 3 else None
            quota[family] = {
                "nominal": numbers[0],
                "borrowing_limit": numbers[1],
                "lending_limit": lend,
            }
    return quota


def segment(value: str) -> str:
    """``value`` escaped as one URL path segment (slashes and dots cannot change the route)."""
    return quote(value, safe="").replace(".", "%2E")


def when(ts: float | None, *, short: bool = False) -> str:
    """A Unix time as local ``YYYY-MM-DD HH:MM:SS`` ("-" for None).

    With ``short``, today's times are only ``HH:MM:SS`` and other days ``YYYY-MM-DD HH:MM``.
    """
    if ts is None:
        return "-"
    moment = datetime.fromtimestamp(ts).astimezone()
    if not short:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    today = moment.date() == datetime.now().astimezone().date()
    return moment.strftime("%H:%M:%S" if today else "%Y-%m-%d %H:%M")


def duration(start: float | None, end: float | None) -> str:
    """``end - start`` as ``12.3s``, ``4m05s`` or ``2h03m`` ("-" when either is missing)."""
    if start is None or end is None:
        return "-"
    seconds = max(0.0, end - start)
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    return f"{minutes // 60}h{minutes % 60:02d}m"


def cards_by_chip(cards: Mapping[str, int], sep: str = "\n") -> str:
    """``{"ascend-910b": 10000}`` as ``ascend-910b: 10,000``, one chip per line by default."""
    return sep.join(f"{chip}: {n:,}" for chip, n in sorted(cards.items())) or "-"


def quota_text(quota: Mapping[str, int]) -> str:
    """A quota map as ``family=N`` pairs, or ``unlimited`` when empty."""
    return ", ".join(f"{k}={v:,}" for k, v in sorted(quota.items())) or "unlimited"


def cell(value: Any) -> Text:
    """A table cell that shows user data literally (no Rich markup, lines kept)."""
    if value is None:
        return Text("-")
    return Text("\n".join(one_line(line) for line in str(value).splitlines()))


def new_table(
    title: str,
    columns: Iterable[str],
    *,
    numbers: Collection[str] = (),
    wrap: Collection[str] = (),
) -> Table:
    """A compact table. ``numbers`` columns are right-aligned; only ``wrap`` columns (free
    text) wrap when the terminal is narrow, folding long words so no text is lost.
    """
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,
    )
    for name in columns:
        if name in wrap:
            table.add_column(name, overflow="fold", min_width=8)
        else:
            table.add_column(name, justify="right" if name in numbers else "left", no_wrap=True)
    return table
