"""One exception tree for the whole package.

The library raises these; the command line turns them into one line with a remedy and a
non-zero exit. Each error keeps its inputs as attributes so callers can inspect them.
"""

from __future__ import annotations


class PeachDWError(Exception):
    """Base of every error peachdw raises on purpose."""

    #: Exit status the command line uses for this family.
    exit_code = 1


class ConfigError(PeachDWError):
    """The settings file, an environment variable or a flag is wrong."""

    exit_code = 2

    def __init__(
        self, message: str, *, key: str | None = None, source: str | None = None
    ):
        self.key = key
        self.source = source
        super().__init__(message)


class ApiError(PeachDWError):
    """A call to the Peach AI admin API failed."""

    #: Whether trying the same call again may succeed.
    transient = False

    def __init__(
        self, message: str, *, path: str | None = None, status: int | None = None
    ):
        self.path = path
        self.status = status
        super().__init__(message)


class TransientApiError(ApiError):
    """A failure that a retry may cure: 5xx, a timeout, a dropped connection, bad JSON."""

    transient = True


class RateLimitedError(TransientApiError):
    """The API answered 429 and asked to wait `retry_after` seconds."""

    def __init__(self, message: str, *, retry_after: float, path: str | None = None):
        self.retry_after = retry_after
        super().__init__(message, path=path, status=429)


class RetryWaitTooLongError(ApiError):
    """The API asked to wait longer than `api.max_retry_wait` allows."""


class AuthError(ApiError):
    """The API refused the token (401 or 403); retrying cannot help."""


class RequestRejectedError(ApiError):
    """The API refused the request itself (400); retrying cannot help."""


class PayloadError(TransientApiError):
    """A response body that is not the JSON the contract describes."""


class ListingChangedError(ApiError):
    """The campaign listing changed under the client twice in a row."""


class StorageError(PeachDWError):
    """The SQLite file cannot be opened, migrated or written."""


class SyncError(PeachDWError):
    """A sync could not finish; finished windows are kept."""


class ExportError(PeachDWError):
    """An export could not be written; nothing partial is left behind."""


class MetricNameError(PeachDWError):
    """A name that cannot become a new metric: malformed, reserved or taken."""

    exit_code = 2

    def __init__(self, message: str, *, name: str):
        self.name = name
        super().__init__(message)
