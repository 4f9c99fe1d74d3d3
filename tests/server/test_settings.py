"""Settings: defaults < TOML < environment < command line; unknown keys and bad values named."""

from __future__ import annotations

from pathlib import Path

import pytest

from careline.server.errors import SettingsError
from careline.server.settings import load_settings


def test_defaults_are_embedded_sqlite_on_loopback() -> None:
    settings = load_settings(env={})
    assert settings.server.host == "127.0.0.1"
    assert settings.server.port == 8080
    assert settings.store.backend == "sqlite"
    assert settings.sqlite_path == Path("data") / "careline.sqlite3"


def test_precedence_defaults_toml_env_cli(tmp_path: Path) -> None:
    config = tmp_path / "careline.toml"
    config.write_text(
        '[server]\nport = 9001\nhost = "127.0.0.2"\nlog_level = "debug"\n'
        '[store]\nbackend = "redis"\n'
    )
    env = {"CARELINE_SERVER_PORT": "9002", "CARELINE_SERVER_LOG_LEVEL": "warning"}
    settings = load_settings(config, {"server.port": 9003}, env=env)
    assert settings.server.port == 9003  # command line beats environment
    assert settings.server.log_level == "warning"  # environment beats file
    assert settings.server.host == "127.0.0.2"  # file beats default
    assert settings.store.backend == "redis"
    assert settings.auth.audience == "careline"  # default


def test_config_file_from_environment(tmp_path: Path) -> None:
    config = tmp_path / "c.toml"
    config.write_text("[auth]\ndefault_ttl_seconds = 60\n")
    settings = load_settings(env={"CARELINE_CONFIG": str(config)})
    assert settings.auth.default_ttl_seconds == 60


def test_settings_are_frozen() -> None:
    settings = load_settings(env={})
    with pytest.raises(AttributeError):
        settings.server.port = 1  # type: ignore[misc]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"CARELINE_SERVER_PORTS": "1"}, "unknown setting server.ports"),
        ({"CARELINE_NOPE_X": "1"}, "unknown setting CARELINE_NOPE_X"),
        ({"CARELINE_PORT": "tcp://10.0.0.1:80"}, "unknown setting CARELINE_PORT"),
        ({"CARELINE_SERVER_PORT": "70000"}, "server.port (from environment variable"),
        ({"CARELINE_SERVER_PORT": "eighty"}, "bad value for setting server.port"),
        ({"CARELINE_STORE_BACKEND": "mongo"}, "store.backend"),
        ({"CARELINE_AUTH_SECRET": "short"}, "auth.secret"),
        ({"CARELINE_AUTH_LEEWAY_SECONDS": "-1"}, "auth.leeway_seconds"),
        (
            {"CARELINE_STORE_BACKEND": "redis", "CARELINE_STORE_REDIS_URL": "http://x"},
            "store.redis_url",
        ),
    ],
)
def test_bad_environment_is_named(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message.replace("(", r"\(")):
        load_settings(env=env)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[server]\nprot = 1\n", "unknown setting server.prot"),
        ("[servr]\nport = 1\n", r"unknown setting section \[servr\]"),
        ('[server]\nport = "x"\n', "bad value for setting server.port"),
        ("server = 3\n", "must be a table"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_bad_file_is_named(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.toml"
    config.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_settings(config, env={})


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read config file"):
        load_settings(tmp_path / "missing.toml", env={})


def test_ttl_order_is_checked() -> None:
    env = {"CARELINE_AUTH_DEFAULT_TTL_SECONDS": "100", "CARELINE_AUTH_MAX_TTL_SECONDS": "50"}
    with pytest.raises(SettingsError, match="default_ttl_seconds"):
        load_settings(env=env)


def test_unrelated_environment_is_ignored() -> None:
    assert load_settings(env={"PATH": "/bin", "CARELINEX": "1"}).server.port == 8080
