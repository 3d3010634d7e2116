"""The sandbox API, and the demo that runs the main job on it."""

from __future__ import annotations

import secrets
import sqlite3
import threading
from datetime import date, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import click

from peachdw import db
from peachdw.cli.base import (
    DEMO_DB_PATH,
    cli,
    console,
    global_options,
    make_client,
    open_db,
    setup,
)
from peachdw.cli.exports import run_export
from peachdw.cli.reports import show_status
from peachdw.cli.warehouse import print_sync, settings_sync_options
from peachdw.config import Settings
from peachdw.errors import PeachDWError, SyncError
from peachdw.hours import current_hour
from peachdw.quality import short_days
from peachdw.report import ReportPeriod, held_days
from peachdw.sync import (
    run_sync,
)

# -- sandbox and demo -----------------------------------------------------------------


def _quirk_rate(ctx: click.Context, param: click.Parameter, value: float) -> float:
    from peachdw.sandbox.quirks import check_rate

    try:
        return check_rate("the rate", value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def _quirk_field(
    ctx: click.Context, param: click.Parameter, value: str | None
) -> str | None:
    from peachdw.sandbox.quirks import check_field_name

    if value is None:
        return None
    try:
        return check_field_name(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@cli.command()
@global_options
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8765,
    show_default=True,
    help="Port on 127.0.0.1 (0: any free port).",
)
@click.option(
    "--token",
    help="Bearer token the sandbox accepts (default: --api-token, "
    "PEACHAI_API_TOKEN, or 'sandbox-token').",
)
@click.option(
    "--seed", type=int, default=42, show_default=True, help="Data and fault seed."
)
@click.option(
    "--campaigns", type=click.IntRange(1, 100_000), default=230, show_default=True
)
@click.option(
    "--faults",
    default="",
    help="KIND:RATE list, e.g. 429:0.1,500:0.1; kinds: "
    "429, 500, timeout, trickle, malformed, duplicate, badvalue.",
)
@click.option(
    "--latency", type=click.FloatRange(0), default=0.0, help="Seconds per response."
)
@click.option(
    "--drop-hours",
    metavar="RATE",
    type=float,
    default=0.0,
    callback=_quirk_rate,
    help="Share (0 to 1) of the campaign hours with activity that /admin/metrics "
    "leaves out; /admin/reports still counts them.",
)
@click.option(
    "--skew-report",
    metavar="RATE",
    type=float,
    default=0.0,
    callback=_quirk_rate,
    help="Share (0 to 1) of the campaign days whose hourly data gets an amount added "
    "to one hour, so it no longer adds up to /admin/reports.",
)
@click.option(
    "--extra-field",
    metavar="NAME",
    callback=_quirk_field,
    help="A new integer field on every /admin/metrics row (schema drift), "
    "e.g. video_views.",
)
@click.option(
    "--implausible",
    metavar="RATE",
    type=float,
    default=0.0,
    callback=_quirk_rate,
    help="Share (0 to 1) of the hourly rows that break one plausibility rule "
    "(an account or chat total, or registrations above sessions).",
)
@click.option(
    "--quirk-seed",
    metavar="N",
    type=int,
    help="Seed for which hours and days the quirks pick (default: --seed).",
)
@click.pass_context
def sandbox(
    ctx: click.Context,
    port: int,
    token: str | None,
    seed: int,
    campaigns: int,
    faults: str,
    latency: float,
    drop_hours: float,
    skew_report: float,
    extra_field: str | None,
    implausible: float,
    quirk_seed: int | None,
) -> None:
    """Serve a deterministic Peach AI admin API on 127.0.0.1 until interrupted.

    Faults break how answers arrive; quirks (--drop-hours, --skew-report,
    --extra-field, --implausible) break what the data says, for the warehouse's checks.
    """
    from peachdw.sandbox import Dataset, FaultPlan, Quirks, SandboxServer, parse_faults

    options, settings = setup(ctx)
    try:
        rates = parse_faults(faults)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None
    quirks = Quirks(
        drop_hours=drop_hours,
        skew_report=skew_report,
        extra_field=extra_field,
        implausible=implausible,
        seed=seed if quirk_seed is None else quirk_seed,
    )
    token = token or settings.token() or "sandbox-token"
    server = SandboxServer(
        Dataset(seed=seed, campaigns=campaigns),
        token,
        port=port,
        faults=FaultPlan(rates, seed=seed),
        quirks=quirks,
        latency=latency,
    )
    if options.dry_run:
        console.print(
            f"Would serve {campaigns} campaigns on 127.0.0.1:{port} "
            f"(quirks: {quirks.describe()})."
        )
        return
    try:
        server.start()
    except OSError as exc:
        raise PeachDWError(
            f"Cannot listen on 127.0.0.1:{port}: {exc.strerror}. Choose another --port."
        ) from exc
    console.print(
        f"Sandbox API on {server.url} ({campaigns} campaigns, seed {seed}, "
        f"faults: {faults or 'none'}, quirks: {quirks.describe()}). Stop with Ctrl-C."
    )
    console.file.flush()  # a log file or pipe should see the address at once
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


@cli.command()
@global_options
@click.pass_context
def demo(ctx: click.Context) -> None:
    """Start the sandbox API, sync it into the warehouse, show status, export CSV."""
    from peachdw.sandbox import Dataset, SandboxServer

    options, settings = setup(ctx)
    # The demo's own file, not database.path: sandbox data must never reach a real warehouse.
    settings.database.path = options.db_path or DEMO_DB_PATH
    settings.export.directory = Path("exports")
    _refuse_real_warehouse(settings.database.path)
    if options.dry_run:
        console.print(
            f"Would start the sandbox API, sync into {settings.database.path} and export "
            f"CSV under {settings.export.directory}."
        )
        return

    token = secrets.token_urlsafe(24)
    with SandboxServer(Dataset(seed=42), token) as server:
        console.rule("1. Sandbox API")
        console.print(f"Serving the Peach AI admin API contract on {server.url}")
        settings.api.base_url = server.url
        settings.api.bearer_token = token  # type: ignore[assignment]
        settings._token_source = "the demo's sandbox"

        console.rule("2. Init")
        conn = open_db(settings)
        console.print(f"Database ready at {settings.database.path}")

        console.rule("3. Sync")
        with make_client(settings) as client:
            result = run_sync(
                conn,
                client,
                settings_sync_options(settings),
            )
        print_sync(result)
        if result.status != "success":
            raise SyncError(
                f"The demo sync ended {result.status}: {result.error_message}"
            )
        conn.close()

    console.rule("4. Status")
    show_status(settings)

    console.rule("5. Export")
    first, last = _whole_days(settings)
    if first is not None:
        console.print(
            f"The days the syncs read whole, {first} to {last} (the first sync starts "
            "at the hour it ran, and today is not over):",
            soft_wrap=True,
        )
    run_export(settings, first, last, fmt="xlsx")
    run_export(settings, first, last, fmt="csv", tabs=("Summary",))
    console.print(
        "Demo finished. Next: `.venv/bin/peachdw status`, "
        "`.venv/bin/peachdw export --format xlsx --start-date YYYY-MM-DD`, "
        "or the README's daily runbook."
    )


def _whole_days(settings: Settings) -> tuple[date | None, date | None]:
    """The first and last day of what the warehouse holds that every sync window read
    whole; (None, None), every day held, when no day is whole."""
    conn = db.open_warehouse(settings.database.path)
    zone = settings.reporting.zone()
    held = held_days(conn, zone)
    if held is None:
        conn.close()
        return None, None
    short = {
        item.day for item in short_days(conn, ReportPeriod(*held, zone), current_hour())
    }
    conn.close()
    whole = [
        held[0] + timedelta(days=n)
        for n in range((held[1] - held[0]).days + 1)
        if held[0] + timedelta(days=n) not in short
    ]
    return (whole[0], whole[-1]) if whole else (None, None)


def _refuse_real_warehouse(path: Path) -> None:
    """Stop the demo before it mixes sandbox data into a file synced from a real API."""
    if not path.exists():
        return
    conn = db.connect(path)
    try:
        urls = [
            row[0]
            for row in conn.execute(
                "SELECT DISTINCT api_base_url FROM sync_history "
                "WHERE api_base_url IS NOT NULL"
            )
        ]
    except sqlite3.OperationalError:
        urls = []
    finally:
        conn.close()
    real = [
        url for url in urls if urlsplit(url).hostname not in ("127.0.0.1", "localhost")
    ]
    if real:
        raise PeachDWError(
            f"{path} holds data synced from {real[0]}; the demo loads sandbox data, so "
            "give it another file with --db-path."
        )
