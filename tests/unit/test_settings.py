"""Worker settings (DESIGN §4): flag > COROQ_* env > TOML file > default, checked early."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from producer.connection import DEFAULT_REDIS_URL, redact_url
from worker.settings import SettingsError, WorkerSettings, load_settings


def toml_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "worker.toml"
    path.write_text(text, encoding="utf-8")
    return path


def settings_error(*args: object, **kwargs: object) -> str:
    with pytest.raises(SettingsError) as caught:
        load_settings(*args, **kwargs)  # type: ignore[arg-type]
    return str(caught.value)


def test_defaults_apply_when_nothing_is_given() -> None:
    settings = load_settings()
    assert settings.redis_url == DEFAULT_REDIS_URL
    assert settings.prefix == "coroq"
    assert settings.queues == ["default"]
    assert settings.concurrency == 100
    assert settings.tasks == []
    assert settings.log_level == "info"
    assert settings.log_format == "auto"
    assert settings.shutdown_grace == 30.0
    assert settings.result_ttl == 7 * 24 * 3600
    assert settings.default_max_attempts == 3
    assert re.fullmatch(r"[A-Za-z0-9_.@-]+", settings.worker_id)


def test_each_source_overrides_the_ones_below_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = toml_file(
        tmp_path,
        'concurrency = 5\nlog_level = "debug"\nresult_ttl = 60\nqueues = ["from-file"]\n'
        'log_format = "console"\n',
    )
    monkeypatch.setenv("COROQ_CONCURRENCY", "7")
    monkeypatch.setenv("COROQ_LOG_LEVEL", "warning")
    monkeypatch.setenv("COROQ_QUEUES", "from-env")
    settings = load_settings(path, concurrency=9, queues=None)
    assert settings.concurrency == 9  # flag
    assert settings.queues == ["from-env"]  # env (the flag was not given)
    assert settings.log_level == "warning"  # env
    assert settings.result_ttl == 60  # file
    assert settings.log_format == "console"  # file
    assert settings.shutdown_grace == 30.0  # default


def test_the_config_file_can_be_named_by_coroq_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COROQ_CONFIG", str(toml_file(tmp_path, "result_ttl = 42\n")))
    assert load_settings().result_ttl == 42


def test_an_explicit_config_file_wins_over_coroq_config(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COROQ_CONFIG", str(tmp_path / "missing.toml"))
    assert load_settings(toml_file(tmp_path, "result_ttl = 43\n")).result_ttl == 43


def test_comma_separated_lists_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COROQ_QUEUES", "a, b ,,a")
    monkeypatch.setenv("COROQ_TASKS", "app.tasks,app.more")
    settings = load_settings()
    assert settings.queues == ["a", "b"]
    assert settings.tasks == ["app.tasks", "app.more"]


def test_a_comma_separated_flag_is_split_too() -> None:
    assert load_settings(queues="x,y").queues == ["x", "y"]


@pytest.mark.parametrize(
    ("overrides", "setting"),
    [
        ({"concurrency": 0}, "concurrency"),
        ({"log_format": "xml"}, "log_format"),
        ({"log_level": "verbose"}, "log_level"),
        ({"queues": "a,{b}"}, "queues"),
        ({"queues": ","}, "queues"),
        ({"redis_url": "http://x"}, "redis_url"),
        ({"poll_timeout": 61}, "poll_timeout"),
        ({"shutdown_grace": -1}, "shutdown_grace"),
        ({"prefix": "a{b}"}, "prefix"),
        ({"worker_id": "has space"}, "worker_id"),
    ],
)
def test_an_invalid_value_is_an_error_naming_the_setting(
    overrides: dict[str, object], setting: str
) -> None:
    message = settings_error(**overrides)
    assert f"invalid setting {setting} " in message
    assert f"COROQ_{setting.upper()}" in message


def test_an_invalid_environment_value_is_an_error_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COROQ_CONCURRENCY", "many")
    assert "invalid setting concurrency" in settings_error()


def test_an_invalid_value_in_the_file_names_the_setting_and_the_file(tmp_path: Path) -> None:
    path = toml_file(tmp_path, 'log_format = "xml"\n')
    message = settings_error(path)
    assert "invalid setting log_format" in message
    assert str(path) in message


def test_an_unknown_key_in_the_config_file_is_rejected_naming_the_key(tmp_path: Path) -> None:
    message = settings_error(toml_file(tmp_path, "concurency = 5\n"))
    assert "concurency" in message


def test_a_missing_config_file_is_named_in_the_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    assert str(missing) in settings_error(missing)


def test_a_missing_config_file_from_coroq_config_is_named_in_the_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "nope.toml"
    monkeypatch.setenv("COROQ_CONFIG", str(missing))
    assert str(missing) in settings_error()


def test_a_malformed_config_file_is_an_error_naming_it(tmp_path: Path) -> None:
    path = toml_file(tmp_path, "concurrency = [\n")
    assert str(path) in settings_error(path)


@pytest.mark.parametrize(
    "url",
    ["http://admin:s3cretpw@example.com:6379/0", "ftp://:s3cretpw@example.com/"],
)
def test_the_redis_password_never_appears_in_a_settings_error(url: str) -> None:
    message = settings_error(redis_url=url)
    assert "invalid setting redis_url" in message
    assert "s3cretpw" not in message


def test_the_redis_password_never_appears_in_a_settings_error_from_the_file(
    tmp_path: Path,
) -> None:
    path = toml_file(tmp_path, 'redis_url = "http://admin:s3cretpw@example.com/0"\n')
    assert "s3cretpw" not in settings_error(path)


def test_the_settings_repr_and_redacted_url_hide_the_password() -> None:
    settings = load_settings(redis_url="redis://admin:s3cretpw@example.com:6379/0")
    assert "s3cretpw" not in repr(settings)
    assert "s3cretpw" not in str(settings)
    assert settings.redacted_redis_url == "redis://admin:***@example.com:6379/0"


def test_settings_are_frozen() -> None:
    settings = WorkerSettings(_env_file=None)
    with pytest.raises(ValueError, match="frozen"):
        settings.concurrency = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("url", "redacted"),
    [
        ("redis://:pw@host:6379/0", "redis://:***@host:6379/0"),
        ("redis://user:pw@host/0", "redis://user:***@host/0"),
        ("rediss://user:p%40ss@host:6380/1", "rediss://user:***@host:6380/1"),
        ("redis://host:6379/0", "redis://host:6379/0"),
        ("redis://user@host:6379/0", "redis://user@host:6379/0"),
        ("unix://:pw@/run/redis.sock?db=1", "unix://:***@/run/redis.sock?db=1"),
    ],
)
def test_redact_url_hides_only_the_password(url: str, redacted: str) -> None:
    assert redact_url(url) == redacted


def test_redact_url_keeps_an_ipv6_host_in_brackets() -> None:
    # urlsplit's `hostname` drops the brackets, and redact_url rebuilds the netloc from it:
    # 'redis://:***@::1:6379/0' is no longer a usable or even readable URL.
    assert redact_url("redis://:pw@[::1]:6379/0") == "redis://:***@[::1]:6379/0"


def test_a_redis_url_with_a_bad_port_is_refused_as_a_setting() -> None:
    # The validator checks only the scheme, so this URL is accepted; then every use of
    # `redacted_redis_url` (worker start, `worker check`) raises ValueError from urlsplit's
    # `port` and the worker dies with a traceback instead of a SettingsError.
    message = settings_error(redis_url="redis://:s3cretpw@127.0.0.1:port/0")
    assert "invalid setting redis_url" in message
    assert "s3cretpw" not in message
