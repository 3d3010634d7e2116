"""What every command shares: the group, global options, settings, logging, errors."""

from __future__ import annotations

import logging
import os
import re
import sqlite3
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any, TypeVar

import click
from click.exceptions import NoArgsIsHelpError
from rich.console import Console
from rich.logging import RichHandler

from peachdw import __version__, db, rules
from peachdw.client import PeachClient
from peachdw.config import Settings, load_settings
from peachdw.errors import ConfigError, PeachDWError

log = logging.getLogger("peachdw")
# Without a terminal (cron, a pipe) Rich would assume 80 columns and cut tables short:
# 120 unless COLUMNS says otherwise.
# markup=False: campaign names and patterns are full of [brackets] that are not markup.
console = Console(
    highlight=False,
    markup=False,
    width=None if sys.stdout.isatty() or os.environ.get("COLUMNS") else 120,
)
#: Where the demo keeps its data unless --db-path says otherwise.
DEMO_DB_PATH = Path("data/datawarehouse.db")
F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class Options:
    """The global options, given before or after the command name."""

    config: Path | None = None
    db_path: Path | None = None
    api_url: str | None = None
    api_token: str | None = None
    verbose: bool = False
    dry_run: bool = False
    #: The settings `setup` read, so that an error can say where a key was set.
    settings: Settings | None = None


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    options = ctx.ensure_object(Options)
    if value not in (None, False):
        setattr(options, param.name, value)
    return value


_GLOBAL_OPTIONS: tuple[tuple[tuple[str, ...], dict[str, Any]], ...] = (
    (
        ("--config",),
        {
            "type": click.Path(path_type=Path, dir_okay=False),
            "help": "Settings file (default: config/settings.yaml if it exists).",
        },
    ),
    (
        ("--db-path",),
        {
            "type": click.Path(path_type=Path, dir_okay=False),
            "help": "SQLite file (default: database.path, data/datawarehouse.db).",
        },
    ),
    (("--api-url",), {"help": "Base URL of the Peach AI admin API (api.base_url)."}),
    (
        ("--api-token",),
        {
            "help": "API bearer token; PEACHAI_API_TOKEN keeps it out of the process list."
        },
    ),
    (("--verbose", "-v"), {"is_flag": True, "help": "Debug logs and stack traces."}),
    (
        ("--dry-run",),
        {"is_flag": True, "help": "Show what would happen, write nothing."},
    ),
)


def global_options(command: F) -> F:
    """Accept the global options on a command as well as on the group."""
    for decls, settings in reversed(_GLOBAL_OPTIONS):
        option = click.option(
            *decls, expose_value=False, callback=_remember, **settings
        )
        command = option(command)
    return command


class _Group(click.Group):
    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        try:
            return super().parse_args(ctx, args)
        except NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            _fail_usage(ctx, exc)
            raise  # pragma: no cover - _fail_usage exits

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except NoArgsIsHelpError:
            raise
        except click.UsageError as exc:
            _fail_usage(ctx, exc)
        except ConfigError as exc:
            _fail(ctx, _with_source(ctx, exc), exc.exit_code)
        except PeachDWError as exc:
            _fail(ctx, str(exc), exc.exit_code)
        except sqlite3.Error as exc:
            _fail(
                ctx,
                f"Database error: {exc}. Check the file at --db-path, or run "
                "`peachdw init`.",
                1,
            )


def _with_source(ctx: click.Context, exc: ConfigError) -> str:
    """The message, and where its key was set when that is not already said: a rule
    from an environment variable is not found by reading the settings file."""
    message = str(exc)
    options = ctx.find_object(Options)
    settings = options.settings if options else None
    source = settings.source_of(exc.key) if settings and exc.key else None
    if exc.source or source is None or source in message:
        return message
    return f"{message} ({exc.key} is set by {source}.)"


def _fail_usage(ctx: click.Context, exc: click.UsageError) -> None:
    # One line, like every other error: what was wrong, then where the help is.
    where = exc.ctx.command_path if exc.ctx else ctx.command_path
    message = exc.format_message().rstrip()
    if not message.endswith((".", "?")):
        message += "."
    _fail(ctx, f"{message} See `{where} --help`.", exc.exit_code)


def _fail(ctx: click.Context, message: str, code: int) -> None:
    options = ctx.find_object(Options)
    if options and options.verbose:
        traceback.print_exc()
    click.echo(f"Error: {message}", err=True)
    ctx.exit(code)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@global_options
@click.version_option(__version__, prog_name="peachdw")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Sync the Peach AI admin API into SQLite, check it and export reports.

    Daily run: `peachdw sync`, then `peachdw status` and `peachdw export --format csv`.
    Try it on the built-in sandbox API with `peachdw demo`.
    """
    ctx.ensure_object(Options)


def setup(ctx: click.Context) -> tuple[Options, Settings]:
    """Read the settings with every layer and configure logging."""
    options = ctx.ensure_object(Options)
    configure_logging(options.verbose)
    settings = load_settings(
        options.config,
        overrides={
            "database.path": options.db_path,
            "api.base_url": options.api_url,
            "api.bearer_token": options.api_token,
        },
    )
    options.settings = settings
    return options, settings


def configure_logging(verbose: bool) -> None:
    root = logging.getLogger()
    if getattr(root, "_peachdw_configured", False):
        root.setLevel(logging.DEBUG if verbose else logging.INFO)
        return
    if sys.stderr.isatty():
        handler: logging.Handler = RichHandler(
            console=Console(stderr=True), show_path=False, markup=False
        )
        handler.setFormatter(logging.Formatter("%(message)s"))
    else:
        # Under cron: plain lines with a timestamp, one per phase or window.
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        )
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # httpx logs every request at INFO; keep that for --verbose.
    logging.getLogger("httpx").setLevel(logging.INFO if verbose else logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    # The Google client's transport logs each of its own retries; our message says it.
    logging.getLogger("urllib3").setLevel(logging.DEBUG if verbose else logging.ERROR)
    root._peachdw_configured = True  # type: ignore[attr-defined]


def open_db(settings: Settings, *, dry_run: bool = False) -> sqlite3.Connection:
    """Open the warehouse, creating and migrating it when needed.

    A dry run on a machine with no database yet works on an empty one in memory, so it
    creates no file.
    """
    path = settings.database.path
    if dry_run and not path.exists():
        path = Path(":memory:")
    conn = db.connect(path, busy_timeout_ms=settings.database.busy_timeout_ms)
    db.migrate(conn)
    if not dry_run:
        # A new release may ship changed default rules: bring them in and remap.
        with db.transaction(conn):
            _, updated = rules.load_default_rules(conn)
            if updated:
                rules.map_campaigns(conn)
    return conn


def make_client(settings: Settings) -> PeachClient:
    token = settings.token()
    if not token:
        raise ConfigError(
            "No API token: set PEACHAI_API_TOKEN, pass --api-token, or set "
            "api.bearer_token in config/settings.yaml.",
            key="api.bearer_token",
        )
    api = settings.api
    return PeachClient(
        api.base_url,
        token,
        token_source=settings.token_source,
        timeout=api.timeout,
        max_attempts=api.max_attempts,
        max_rate_limit_retries=api.max_rate_limit_retries,
        max_retry_wait=api.max_retry_wait,
        backoff_base=api.backoff_base,
        per_page=api.per_page,
    )


class CampaignId(click.ParamType):
    """A campaign's id as the API gives it: a whole number from 1 up."""

    name = "campaign_id"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 1:
            return value
        text = str(value).strip()
        if text.isdigit() and int(text) >= 1:
            return int(text)
        self.fail(
            f"{value!r} is not a campaign id; give the number from `peachdw status` or "
            "the exports",
            param,
            ctx,
        )


CAMPAIGN_ID = CampaignId()


DAY_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}")


def parse_day(value: str | None, flag: str) -> date | None:
    if value is None:
        return None
    try:
        # fromisoformat also takes 20250801 and 2025-W31-5; the help promises one form.
        if not DAY_FORMAT.fullmatch(value):
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not a date; use YYYY-MM-DD.", param_hint=flag
        ) from None


def count_noun(number: int, noun: str) -> str:
    """`1 campaign`, `2 campaigns`."""
    return f"{number} {noun}{'' if number == 1 else 's'}"
