"""How a sync shows its progress: a bar on a terminal, one log line per window under cron."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from peachdw.client import ApiStats
from peachdw.sync import SyncResult

log = logging.getLogger(__name__)


class WindowProgress:
    """Report windows done and total, rows per second, API retries and the time left.

    Use as a context manager and pass `update` as the sync's `on_window`.
    """

    def __init__(self, stats: ApiStats, *, terminal: bool | None = None):
        self.stats = stats
        self.terminal = sys.stderr.isatty() if terminal is None else terminal
        self.started = time.monotonic()
        self._bar: Progress | None = None
        self._task: int | None = None

    def __enter__(self) -> WindowProgress:
        if self.terminal:
            self._bar = Progress(
                TextColumn("[bold]windows"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>8} rows/s"),
                TextColumn("{task.fields[retries]} retries"),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=False,
            )
            self._bar.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        if self._bar is not None:
            self._bar.stop()

    def update(self, result: SyncResult) -> None:
        done = result.windows_done + len(result.failed_windows)
        elapsed = max(time.monotonic() - self.started, 1e-6)
        rate = result.counts["records_processed"] / elapsed
        left = elapsed / done * (result.windows_total - done) if done else 0.0

        if self._bar is not None:
            if self._task is None:
                self._task = self._bar.add_task(
                    "sync", total=result.windows_total, rate="-", retries=0
                )
            self._bar.update(
                self._task,
                completed=done,
                rate=f"{rate:,.0f}",
                retries=self.stats.retries,
            )
            return

        log.info(
            "Windows %d/%d done (%d failed): %s rows/s, %d API retries, about %s left",
            done,
            result.windows_total,
            len(result.failed_windows),
            f"{rate:,.0f}",
            self.stats.retries,
            _duration(left),
        )


def _duration(seconds: float) -> str:
    """`45 s`, `3 min 05 s`, `2 h 10 min`."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"
