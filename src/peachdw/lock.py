"""One writer at a time: an exclusive lock beside the database for the length of a sync.

The lock is `flock(2)` on `<database>.lock`. The kernel drops it when the holder exits, so a
sync killed outright leaves no lock to clean up: the next one takes it at once and marks the
dead one's history row `interrupted`. The file's text names the holder for the message the
refused sync prints.
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from types import TracebackType

from peachdw.db import utc_now
from peachdw.errors import PeachDWError


class SyncLockedError(PeachDWError):
    """Another sync holds the write lock on this database."""

    def __init__(self, path: Path, holder: dict):
        self.path = path
        self.holder = holder
        pid = holder.get("pid", "?")
        started = holder.get("started_at", "an unknown time")
        command = holder.get("command", "a sync")
        super().__init__(
            f"Another sync is running on this database: process {pid}, started {started} "
            f"({command}). This one changed nothing; wait for it to finish, or stop "
            f"process {pid} if it hangs."
        )


class SyncLock:
    """Hold the database's sync lock, or raise `SyncLockedError` at once."""

    def __init__(self, database: Path, command: str = "peachdw sync"):
        self.path = Path(f"{database}.lock")
        self.command = command
        self._handle: int | None = None

    def acquire(self) -> SyncLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(handle)
            os.close(handle)
            raise SyncLockedError(self.path, holder) from None

        record = {"pid": os.getpid(), "started_at": utc_now(), "command": self.command}
        os.ftruncate(handle, 0)
        os.pwrite(handle, json.dumps(record).encode(), 0)
        self._handle = handle
        return self

    def release(self) -> None:
        if self._handle is None:
            return
        os.ftruncate(self._handle, 0)
        fcntl.flock(self._handle, fcntl.LOCK_UN)
        os.close(self._handle)
        self._handle = None

    def __enter__(self) -> SyncLock:
        return self.acquire()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.release()


def _read_holder(handle: int) -> dict:
    """The holder's record; a holder that has just taken the lock may not have written it
    yet, so an empty file is read again for up to half a second."""
    for _ in range(10):
        try:
            text = os.pread(handle, 4096, 0)
        except OSError:
            return {}
        if text:
            try:
                return json.loads(text)
            except ValueError:
                pass
        time.sleep(0.05)
    return {}
