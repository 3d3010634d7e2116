from __future__ import annotations

from pathlib import Path

import pytest

from peachdw.config import load_settings
from peachdw.errors import ConfigError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_without_a_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(environ={})
    assert settings.database.path == Path("data/datawarehouse.db")
    assert settings.sync.lookback_hours == 48
    assert settings.api.timeout == 3.0
    assert settings.token() is None


def test_flag_beats_environment_beats_file(tmp_path):
    config = write(
        tmp_path / "s.yaml",
        "api:\n  base_url: http://file\n  bearer_token: from-file\n"
        "sync:\n  lookback_hours: 12\n",
    )
    environ = {
        "PEACHDW_API_BASE_URL": "http://env",
        "PEACHDW_SYNC_LOOKBACK_HOURS": "24",
    }

    from_env = load_settings(config, environ=environ)
    assert from_env.api.base_url == "http://env"
    assert from_env.sync.lookback_hours == 24
    assert from_env.token() == "from-file"
    assert from_env.token_source == str(config)

    from_flag = load_settings(
        config, environ=environ, overrides={"api.base_url": "http://flag"}
    )
    assert from_flag.api.base_url == "http://flag"


def test_token_precedence_and_source(tmp_path):
    config = write(tmp_path / "s.yaml", "api:\n  bearer_token: from-file\n")
    env = load_settings(config, environ={"PEACHAI_API_TOKEN": "from-env"})
    assert env.token() == "from-env"
    assert env.token_source == "environment variable PEACHAI_API_TOKEN"

    flag = load_settings(
        config,
        environ={"PEACHAI_API_TOKEN": "from-env"},
        overrides={"api.bearer_token": "from-flag"},
    )
    assert flag.token() == "from-flag"
    assert flag.token_source == "--api-token"


def test_token_is_hidden_in_repr(tmp_path):
    settings = load_settings(None, environ={"PEACHAI_API_TOKEN": "s3cret-token"})
    assert "s3cret-token" not in repr(settings)
    assert "s3cret-token" not in settings.model_dump_json()


def test_unknown_key_names_key_and_file(tmp_path):
    config = write(tmp_path / "s.yaml", "api:\n  base_ulr: http://x\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    message = str(caught.value)
    assert "api.base_ulr" in message
    assert str(config) in message
    assert "\n" not in message


def test_unknown_section_is_refused(tmp_path):
    config = write(tmp_path / "s.yaml", "reportz:\n  x: 1\n")
    with pytest.raises(ConfigError, match="'reportz'"):
        load_settings(config, environ={})


def test_wrong_type_names_key_and_source(tmp_path):
    config = write(tmp_path / "s.yaml", "sync:\n  lookback_hours: lots\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    assert caught.value.key == "sync.lookback_hours"
    assert str(config) in str(caught.value)


def test_wrong_type_from_environment_names_the_variable():
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={"PEACHDW_SYNC_WINDOW_HOURS": "500"})
    assert "PEACHDW_SYNC_WINDOW_HOURS" in str(caught.value)
    assert caught.value.key == "sync.window_hours"


def test_missing_explicit_file_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="Cannot read settings file"):
        load_settings(tmp_path / "absent.yaml", environ={})


def test_invalid_yaml_names_the_line(tmp_path):
    config = write(tmp_path / "s.yaml", "api:\n  base_url: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML at line"):
        load_settings(config, environ={})


def test_example_file_is_valid_and_complete():
    example = Path(__file__).resolve().parents[1] / "config" / "settings.example.yaml"
    settings = load_settings(example, environ={})
    assert settings.api.max_retry_wait == 60
    text = example.read_text()
    for section, model in settings:
        for key in type(model).model_fields:
            assert f"{key}:" in text, f"{section}.{key} is not documented"


def test_unknown_environment_variable_is_refused():
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={"PEACHDW_SYNC_LOOKBAK_HOURS": "72"})
    assert "PEACHDW_SYNC_LOOKBAK_HOURS" in str(caught.value)


def test_misspelt_section_names_the_file(tmp_path):
    config = write(tmp_path / "s.yaml", "synk:\n  lookback_hours: 3\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(config, environ={})
    assert str(config) in str(caught.value)
    assert "'synk'" in str(caught.value)


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        pytest.param("127.0.0.1:8765", "http:// or https://", id="no-scheme"),
        pytest.param("htp://host", "http:// or https://", id="bad-scheme"),
        pytest.param(
            "https://user:t0ken@host", "must not carry credentials", id="userinfo"
        ),
    ],
)
def test_base_url_must_be_a_plain_http_url(url, problem):
    with pytest.raises(ConfigError) as caught:
        load_settings(None, environ={}, overrides={"api.base_url": url})
    message = str(caught.value)
    assert problem in message
    assert "--api-url" in message
    assert "t0ken" not in message


@pytest.mark.parametrize("zone", ["Europe/Berln", "localtime", "CEST"])
def test_reporting_zone_must_be_a_place(zone):
    with pytest.raises(ConfigError, match="is not a time zone name"):
        load_settings(None, environ={"PEACHDW_REPORTING_TIMEZONE": zone})


def test_reporting_zone_accepts_iana_names():
    settings = load_settings(
        None, environ={"PEACHDW_REPORTING_TIMEZONE": "Europe/Berlin"}
    )
    assert settings.reporting.zone().key == "Europe/Berlin"


def test_list_settings_from_the_environment():
    rules = (
        "registrations <= sessions; total_accounts = email_accounts + google_accounts"
    )
    settings = load_settings(
        environ={
            "PEACHDW_QUALITY_PLAUSIBILITY": rules,
            "PEACHDW_SHEETS_SHARE_WITH": "ana@example.com, bo@example.com",
        }
    )
    assert settings.quality.plausibility == [
        "registrations <= sessions",
        "total_accounts = email_accounts + google_accounts",
    ]
    assert settings.sheets.share_with == ["ana@example.com", "bo@example.com"]
    listed = load_settings(
        environ={"PEACHDW_QUALITY_PLAUSIBILITY": '["sessions >= media"]'}
    )
    assert listed.quality.plausibility == ["sessions >= media"]
    # The settings check a rule's form only: its names may be metrics added to the
    # warehouse, and are checked against it (tests/test_metrics.py).
    added = load_settings(
        environ={"PEACHDW_QUALITY_PLAUSIBILITY": "visits <= sessions"}
    )
    assert added.quality.plausibility == ["visits <= sessions"]
    with pytest.raises(ConfigError, match="is not of the form") as caught:
        load_settings(environ={"PEACHDW_QUALITY_PLAUSIBILITY": "visits => sessions"})
    assert str(caught.value).endswith("(or <=, >=, <, >); fix the value.")


@pytest.mark.parametrize("days", ["0", "-3"], ids=["zero", "negative"])
def test_reconcile_days_below_one_is_refused(days):
    with pytest.raises(ConfigError) as caught:
        load_settings(environ={"PEACHDW_QUALITY_RECONCILE_DAYS": days})
    assert str(caught.value) == (
        "Setting 'quality.reconcile_days' from environment variable "
        f"PEACHDW_QUALITY_RECONCILE_DAYS is invalid: {days} days is too few; status "
        "reconciles and checks, and sync --heal reads, the last reconcile_days days "
        "ending yesterday, so give 1 to 90; fix the value."
    )
