"""Settings: defaults, then `config/settings.yaml`, then the environment, then flags.

Each layer overrides the one before it. The file is optional; an unknown key, a value of the
wrong type or an unreadable file is a `ConfigError` that names the key and where it came from.
"""

from __future__ import annotations

import json
import os
from datetime import date
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, available_timezones

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
)

from peachdw.errors import ConfigError

DEFAULT_CONFIG_PATH = Path("config/settings.yaml")
ENV_PREFIX = "PEACHDW_"
#: Variables the test suite uses to steer a process (see sync.hold); never settings.
TEST_ENV_PREFIX = "PEACHDW_TEST_"
#: The command-line flag behind each setting a flag can set, for messages.
FLAG_NAMES = {
    "database.path": "--db-path",
    "api.base_url": "--api-url",
    "api.bearer_token": "--api-token",
}
TOKEN_ENV = "PEACHAI_API_TOKEN"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class ApiSettings(_Section):
    base_url: str = "http://127.0.0.1:8765"
    bearer_token: SecretStr | None = None
    # The contract's limit for one whole attempt, body included.
    timeout: float = Field(3.0, gt=0)
    max_attempts: int = Field(3, ge=1, le=10)
    max_rate_limit_retries: int = Field(5, ge=0, le=50)
    max_retry_wait: float = Field(60.0, ge=0)
    backoff_base: float = Field(0.5, ge=0)
    per_page: int = Field(100, ge=1, le=100)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(
                "must be an http:// or https:// URL, such as https://host/api"
            )
        if parts.username or parts.password:
            # A token in the URL would reach logs; the contract sends it as a header.
            raise ValueError(
                "must not carry credentials; give the token as PEACHAI_API_TOKEN"
            )
        return value


class DatabaseSettings(_Section):
    path: Path = Path("data/datawarehouse.db")
    busy_timeout_ms: int = Field(5000, ge=0)


class SyncSettings(_Section):
    lookback_hours: int = Field(48, ge=0)
    initial_days: int = Field(7, ge=1)
    # The contract allows at most 168 hours per metrics call.
    window_hours: int = Field(168, ge=1, le=168)
    # Where `sync --full` starts; None: initial_days before now.
    start_date: date | None = None


# Zone files that stand for the machine's own setting, not a place.
_MACHINE_ZONES = ("localtime", "posixrules", "Factory")


class ReportingSettings(_Section):
    # Days and months are cut in this zone (an IANA name such as Europe/Berlin).
    timezone: str = "UTC"

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        # Only IANA names: "localtime" would follow the machine's own settings.
        if value not in available_timezones() or value in _MACHINE_ZONES:
            raise ValueError(
                f"{value!r} is not a time zone name; use one like UTC or Europe/Berlin"
            )
        return value

    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class ExportSettings(_Section):
    directory: Path = Path("exports")


class SheetsSettings(_Section):
    # A Google service-account key or an authorized-user (OAuth) file, in JSON.
    credentials: Path | None = None
    # The spreadsheet to write into (the id in its address); a service account needs one.
    spreadsheet_id: str | None = None
    # Email addresses the spreadsheet is shared with, as writers.
    share_with: list[str] = Field(default_factory=list)
    # Longest wait a 429 answer may ask for, and how many 429 answers in a row are
    # waited out before the export fails.
    max_retry_wait: float = Field(60.0, ge=0)
    max_rate_limit_retries: int = Field(5, ge=0, le=50)
    # Google's addresses; tests point them at a local fake.
    api_url: str = "https://sheets.googleapis.com/v4"
    drive_url: str = "https://www.googleapis.com/drive/v3"

    @field_validator("credentials", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        # PEACHDW_SHEETS_CREDENTIALS= (empty) means none, not the current folder.
        return None if value == "" else value

    @field_validator("share_with", mode="before")
    @classmethod
    def _email_list(cls, value: Any) -> Any:
        # From the environment: comma-separated addresses.
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


class QualitySettings(_Section):
    # `status --check` fails when the newest synced hour is older than this.
    max_lag_hours: int = Field(26, ge=1)
    # Days (UTC, the API's reports) that every sync reconciles, ending yesterday.
    reconcile_days: int = Field(7, le=90)
    # A daily sum may differ from the API's report by this share of it (0: not at all).
    tolerance: float = Field(0.0, ge=0, le=1)
    # Rules every stored row must keep: metric (=, <=, >=, <, >) metric [+ metric ...].
    plausibility: list[str] = Field(
        default_factory=lambda: [
            "total_accounts = email_accounts + google_accounts",
            "total_user_chats = companion_chats + chat_room_user_chats",
            "registrations <= sessions",
        ]
    )

    @field_validator("reconcile_days")
    @classmethod
    def _at_least_a_day(cls, value: int) -> int:
        # The days checked end with yesterday: there is no such thing as none of them.
        if value < 1:
            raise ValueError(
                f"{value} days is too few; status reconciles and checks, and sync --heal "
                "reads, the last reconcile_days days ending yesterday, so give 1 to 90"
            )
        return value

    @field_validator("plausibility", mode="before")
    @classmethod
    def _rule_list(cls, value: Any) -> Any:
        # From the environment: a JSON list, or rules separated by ";".
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except ValueError:
                    return value
            return [part.strip() for part in text.split(";") if part.strip()]
        return value

    @field_validator("plausibility")
    @classmethod
    def _rules_parse(cls, value: list[str]) -> list[str]:
        from peachdw.quality import parse_rule

        # The form only: a rule may name a metric added to the warehouse, which the
        # settings cannot know; the checks test the names against it (metrics.of).
        for text in value:
            try:
                parse_rule(text, None)
            except ConfigError as exc:
                raise ValueError(str(exc)) from None
        return value


class Settings(_Section):
    api: ApiSettings = Field(default_factory=ApiSettings)
    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    export: ExportSettings = Field(default_factory=ExportSettings)
    reporting: ReportingSettings = Field(default_factory=ReportingSettings)
    quality: QualitySettings = Field(default_factory=QualitySettings)
    sheets: SheetsSettings = Field(default_factory=SheetsSettings)

    # Where the API token came from, for messages that must not show the token itself.
    _token_source: str = PrivateAttr("none")
    # Where each key set by a file, the environment or a flag came from.
    _origin: dict[str, str] = PrivateAttr(default_factory=dict)

    def source_of(self, key: str) -> str | None:
        """The file, environment variable or flag that set `key`; None for a default."""
        return self._origin.get(key)

    @property
    def token_source(self) -> str:
        return self._token_source

    def token(self) -> str | None:
        secret = self.api.bearer_token
        return secret.get_secret_value() if secret else None


def load_settings(
    path: Path | None = None,
    *,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> Settings:
    """Build the settings from every layer.

    `path` is the settings file; when None, `config/settings.yaml` is read if it exists.
    `overrides` maps dotted keys (`"api.base_url"`) to values given as flags.
    """
    environ = os.environ if environ is None else environ
    explicit = path is not None
    path = path or DEFAULT_CONFIG_PATH

    data: dict[str, Any] = {}
    origin: dict[str, str] = {}
    if path.exists() or explicit:
        for key, value in _flatten(_read_file(path)).items():
            data[key] = value
            origin[key] = origin[key.split(".")[0]] = str(path)

    for key, value in _from_environ(environ).items():
        data[key] = value
        origin[key] = f"environment variable {_env_name(key)}"
    if environ.get(TOKEN_ENV):
        data["api.bearer_token"] = environ[TOKEN_ENV]
        origin["api.bearer_token"] = f"environment variable {TOKEN_ENV}"

    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
            origin[key] = FLAG_NAMES.get(key, "the command line")

    settings = _validate(_nest(data), origin)
    settings._token_source = origin.get("api.bearer_token", "no token configured")
    settings._origin = {key: origin[key] for key in data}
    return settings


def _read_file(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"Cannot read settings file {path}: {exc.strerror or exc}. "
            "Check the path given to --config.",
            source=str(path),
        ) from exc

    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigError(
            f"Settings file {path} is not valid YAML{where}; "
            "compare it with config/settings.example.yaml.",
            source=str(path),
        ) from exc

    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(
            f"Settings file {path} must hold a mapping of sections (api:, database:, ...).",
            source=str(path),
        )
    return loaded


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and not prefix:
            flat.update(_flatten(value, f"{dotted}."))
        else:
            flat[dotted] = value
    return flat


def _nest(flat: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for dotted, value in flat.items():
        section, _, key = dotted.partition(".")
        if not key:
            tree[section] = value
            continue
        tree.setdefault(section, {})
        if isinstance(tree[section], dict):
            tree[section][key] = value
    return tree


def _env_name(dotted: str) -> str:
    return ENV_PREFIX + dotted.replace(".", "_").upper()


def _from_environ(environ: dict[str, str] | os._Environ[str]) -> dict[str, Any]:
    """Read `PEACHDW_<SECTION>_<KEY>` for every known setting.

    A variable with the prefix that names no setting is refused, as an unknown key in the
    file is, so a typo does not pass silently.
    """
    found: dict[str, Any] = {}
    known = set()
    for section_name, field in Settings.model_fields.items():
        section = field.annotation
        if not isinstance(section, type) or not issubclass(section, _Section):
            continue
        for key in section.model_fields:
            dotted = f"{section_name}.{key}"
            known.add(_env_name(dotted))
            value = environ.get(_env_name(dotted))
            if value is not None:
                found[dotted] = value

    unknown = sorted(
        name
        for name in environ
        if name.startswith(ENV_PREFIX)
        and name not in known
        and not name.startswith(TEST_ENV_PREFIX)
    )
    if unknown:
        raise ConfigError(
            f"Environment variable {unknown[0]} is not a known setting; "
            "see config/settings.example.yaml for the valid keys "
            f"({ENV_PREFIX}<SECTION>_<KEY>).",
            key=unknown[0],
            source="environment",
        )
    return found


def _validate(tree: dict[str, Any], origin: dict[str, str]) -> Settings:
    try:
        return Settings.model_validate(tree)
    except ValidationError as exc:
        error = exc.errors()[0]
        dotted = ".".join(str(part) for part in error["loc"])
        source = origin.get(dotted) or origin.get(dotted.split(".")[0], "the settings")
        if error["type"] == "extra_forbidden":
            problem = "is not a known setting"
            remedy = "see config/settings.example.yaml for the valid keys"
        else:
            message = error["msg"].removeprefix("Value error, ").rstrip(".")
            problem = f"is invalid: {message}"
            remedy = "fix the value"
        raise ConfigError(
            f"Setting '{dotted}' from {source} {problem}; {remedy}.",
            key=dotted,
            source=source,
        ) from None
