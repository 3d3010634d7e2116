"""The sandbox API, and the demo that runs the main job on it."""

from __future__ import annotations

import secrets
import sqlite3
import threading
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
from peachdw.cli.reports import run_export, show_status
from peachdw.cli.warehouse import print_sync
from peachdw.errors import PeachDWError, SyncError
from peachdw.export import Period
from peachdw.sync import (
    SyncOptions,
    run_sync,
)

# -- sandbox and demo -----------------------------------------------------------------


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
@click.pass_context
def sandbox(
    ctx: click.Context,
    port: int,
    token: str | None,
    seed: int,
    campaigns: int,
    faults: str,
    latency: float,
) -> None:
    """Serve a deterministic Peach AI admin API on 127.0.0.1 until interrupted."""
    from peachdw.sandbox import Dataset, FaultPlan, SandboxServer, parse_faults

    options, settings = setup(ctx)
    try:
        rates = parse_faults(faults)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--faults") from None
    token = token or settings.token() or "sandbox-token"
    server = SandboxServer(
        Dataset(seed=seed, campaigns=campaigns),
        token,
        port=port,
        faults=FaultPlan(rates, seed=seed),
        latency=latency,
    )
    if options.dry_run:
        console.print(f"Would serve {campaigns} campaigns on 127.0.0.1:{port}.")
        return
    try:
        server.start()
    except OSError as exc:
        raise PeachDWError(
            f"Cannot listen on 127.0.0.1:{port}: {exc.strerror}. Choose another --port."
        ) from exc
    console.print(
        f"Sandbox API on {server.url} ({campaigns} campaigns, seed {seed}, "
        f"faults: {faults or 'none'}). Stop with Ctrl-C."
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
                SyncOptions(
                    lookback_hours=settings.sync.lookback_hours,
                    initial_days=settings.sync.initial_days,
                    window_hours=settings.sync.window_hours,
                    zone=settings.reporting.zone(),
                ),
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
    run_export(settings, Period(), daily=False, output=None, dry_run=False)
    console.print(
        "Demo finished. Next: `.venv/bin/peachdw status`, "
        "`.venv/bin/peachdw export --daily`, or the README's daily runbook."
    )


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
