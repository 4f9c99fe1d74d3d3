"""The one typed, frozen Settings object: defaults < TOML file < environment (CARELINE_*) < CLI.

This is the only module that reads the environment. Unknown keys and bad values raise
SettingsError naming the key and where it came from, so `careline serve` can exit with one line.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec

from careline.server.errors import SettingsError
from careline.signaling.visit_schemas import MAX_INVITEES

ENV_PREFIX = "CARELINE_"
#: Names the config file; not a setting itself.
CONFIG_ENV = "CARELINE_CONFIG"

Port = Annotated[int, msgspec.Meta(ge=0, le=65535)]
Seconds = Annotated[float, msgspec.Meta(gt=0, le=86_400)]
PositiveInt = Annotated[int, msgspec.Meta(ge=1)]


class _Section(msgspec.Struct, frozen=True, forbid_unknown_fields=True, kw_only=True):
    """Base of every settings section: immutable, rejects unknown keys."""


class ServerSettings(_Section, frozen=True):
    """The HTTP/socket.io listener and process."""

    host: str = "127.0.0.1"
    port: Port = 8080
    data_dir: str = "data"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    shutdown_timeout_seconds: Seconds = 10.0
    max_body_bytes: PositiveInt = 1024 * 1024
    #: Record the scrubbed, timed signalling of every session here (empty: off); see
    #: docs/loadtest.md.
    record_sessions_dir: str = ""


class AuthSettings(_Section, frozen=True):
    """JWT verification. An empty secret means: generate one and keep it in the data dir."""

    secret: str = ""
    public_key_file: str = ""
    audience: str = "careline"
    issuer: str = "careline"
    leeway_seconds: Annotated[float, msgspec.Meta(ge=0, le=300)] = 30.0
    default_ttl_seconds: Annotated[int, msgspec.Meta(ge=1, le=30 * 86_400)] = 3600
    max_ttl_seconds: Annotated[int, msgspec.Meta(ge=1, le=365 * 86_400)] = 7 * 86_400


class StoreSettings(_Section, frozen=True):
    """Which storage backend holds durable state."""

    backend: Literal["sqlite", "redis"] = "sqlite"
    sqlite_file: str = "careline.sqlite3"
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_prefix: str = "careline"


class MediaSettings(_Section, frozen=True):
    """The SFU: where it gathers ICE candidates, the STUN/TURN servers clients get, keyframes."""

    host_addresses: list[str] = msgspec.field(default_factory=list)
    stun_urls: list[str] = msgspec.field(default_factory=list)
    turn_urls: list[str] = msgspec.field(default_factory=list)
    turn_secret: str = ""
    turn_ttl_seconds: Annotated[int, msgspec.Meta(ge=60, le=7 * 86_400)] = 6 * 3600
    keyframe_interval_seconds: Annotated[float, msgspec.Meta(ge=0.05, le=10)] = 0.5
    video_queue_frames: Annotated[int, msgspec.Meta(ge=2, le=600)] = 30
    #: "transcode" (decode once, encode per subscriber) exists only as a benchmark baseline.
    forwarding: Literal["encoded", "transcode"] = "encoded"


class VisitSettings(_Section, frozen=True):
    """Video visits: codecs allowed and how long a dropped participant keeps its place."""

    default_codec: Literal["vp8", "h264"] = "vp8"
    reconnect_grace_seconds: Annotated[float, msgspec.Meta(ge=1, le=3600)] = 60.0
    link_ttl_seconds: Annotated[int, msgspec.Meta(ge=60, le=30 * 86_400)] = 24 * 3600
    #: Most invitees a visit may be created with (a creating clinician joins on top).
    max_participants: Annotated[int, msgspec.Meta(ge=1, le=MAX_INVITEES)] = 8
    #: How often each participant's network quality is measured (and pushed when it changed).
    quality_interval_seconds: Annotated[float, msgspec.Meta(ge=0.1, le=3600)] = 2.0


class ThreadSettings(_Section, frozen=True):
    """Message visits: sizes, the reopen window, retention and per-sender rate limits."""

    max_text_bytes: Annotated[int, msgspec.Meta(ge=1, le=1024 * 1024)] = 8192
    max_attachment_bytes: Annotated[int, msgspec.Meta(ge=1, le=100 * 1024 * 1024)] = (
        10 * 1024 * 1024
    )
    max_attachments_per_message: Annotated[int, msgspec.Meta(ge=1, le=64)] = 8
    reopen_window_seconds: Annotated[float, msgspec.Meta(ge=0, le=365 * 86_400)] = 7 * 86_400.0
    #: Closed threads are purged whole this many days after closing; 0 keeps them forever.
    retention_days: Annotated[float, msgspec.Meta(ge=0, le=36_500)] = 0.0
    purge_interval_seconds: Annotated[float, msgspec.Meta(ge=1, le=86_400)] = 3600.0
    orphan_attachment_seconds: Annotated[float, msgspec.Meta(ge=60, le=30 * 86_400)] = 86_400.0
    send_rate_per_second: Annotated[float, msgspec.Meta(gt=0, le=1_000_000)] = 5.0
    send_burst: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 20
    typing_rate_per_second: Annotated[float, msgspec.Meta(gt=0, le=1000)] = 1.0
    typing_burst: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 3


class HotlineSettings(_Section, frozen=True):
    """The pharmacist hotline: ring, wrap-up and fallback times, queue feedback, kiosk tokens."""

    ring_timeout_seconds: Annotated[float, msgspec.Meta(gt=0, le=600)] = 20.0
    wrap_up_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0
    skill_fallback_seconds: Annotated[float, msgspec.Meta(ge=0, le=86_400)] = 60.0
    callback_after_seconds: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 300.0
    service_level_seconds: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 60.0
    position_update_seconds: Annotated[float, msgspec.Meta(ge=0.5, le=600)] = 5.0
    reconnect_grace_seconds: Annotated[float, msgspec.Meta(ge=0, le=3600)] = 30.0
    kiosk_token_ttl_seconds: Annotated[int, msgspec.Meta(ge=60, le=86_400)] = 900
    #: HS256 key of order tokens (the pharmacy system signs them). Empty: <data_dir>/order-secret.
    order_secret: str = ""
    default_handle_seconds: Annotated[float, msgspec.Meta(gt=0, le=86_400)] = 240.0
    stats_window_seconds: Annotated[float, msgspec.Meta(ge=60, le=30 * 86_400)] = 3600.0
    sweep_seconds: Annotated[float, msgspec.Meta(ge=0.02, le=10)] = 0.25
    node_lease_seconds: Annotated[float, msgspec.Meta(ge=1, le=600)] = 15.0
    max_queue: Annotated[int, msgspec.Meta(ge=1, le=1_000_000)] = 1000
    video_codec: Literal["vp8", "h264"] = "vp8"


class ClusterSettings(_Section, frozen=True):
    """Several processes on one Redis: this node's public URL and its registry lease."""

    #: The URL clients use to reach this node (told to clients sent here by another node);
    #: empty: the URL this process listens on.
    public_url: str = ""
    #: A node whose heartbeats stop for this long is dead (its visits are re-placed);
    #: it heartbeats every third of it.
    node_lease_seconds: Annotated[float, msgspec.Meta(ge=0.5, le=600)] = 6.0
    #: Origins ("https://host[:port]") of pages served elsewhere (a proxy in front of the
    #: nodes) whose sockets this node accepts: the visit page follows `visit.wrong_node` here.
    allowed_origins: list[str] = msgspec.field(default_factory=list)


class Settings(_Section, frozen=True):
    """Every setting of a Careline process, built once at start."""

    server: ServerSettings = msgspec.field(default_factory=ServerSettings)
    auth: AuthSettings = msgspec.field(default_factory=AuthSettings)
    store: StoreSettings = msgspec.field(default_factory=StoreSettings)
    media: MediaSettings = msgspec.field(default_factory=MediaSettings)
    visits: VisitSettings = msgspec.field(default_factory=VisitSettings)
    threads: ThreadSettings = msgspec.field(default_factory=ThreadSettings)
    hotline: HotlineSettings = msgspec.field(default_factory=HotlineSettings)
    cluster: ClusterSettings = msgspec.field(default_factory=ClusterSettings)

    @property
    def data_path(self) -> Path:
        """The data directory as a Path."""
        return Path(self.server.data_dir)

    @property
    def sqlite_path(self) -> Path:
        """The SQLite file, relative paths taken under the data directory."""
        path = Path(self.store.sqlite_file)
        return path if path.is_absolute() else self.data_path / path


_SECTIONS: dict[str, type[_Section]] = {
    "server": ServerSettings,
    "auth": AuthSettings,
    "store": StoreSettings,
    "media": MediaSettings,
    "visits": VisitSettings,
    "threads": ThreadSettings,
    "hotline": HotlineSettings,
    "cluster": ClusterSettings,
}
_PATH_RE = re.compile(r"- at `\$\.([\w.]+)`")
_UNKNOWN_RE = re.compile(r"unknown field `(\w+)`")
_MIN_SECRET_LEN = 32


def load_settings(
    config_file: Path | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> Settings:
    """Build Settings from defaults, then the TOML file, then CARELINE_* variables, then overrides.

    `config_file` defaults to $CARELINE_CONFIG; `overrides` maps "section.key" to a value (the
    CLI's flags); `env` defaults to os.environ.
    """
    environ = os.environ if env is None else env
    merged: dict[str, dict[str, Any]] = {name: {} for name in _SECTIONS}
    sources: dict[str, str] = {}

    if config_file is None and environ.get(CONFIG_ENV):
        config_file = Path(environ[CONFIG_ENV])
    if config_file is not None:
        _merge_toml(config_file, merged, sources)
    _merge_env(environ, merged, sources)
    for dotted, value in (overrides or {}).items():
        section, key = _split_known(dotted, "command line")
        merged[section][key] = value
        sources[dotted] = "command line"

    try:
        settings = msgspec.convert(merged, Settings, strict=False)
    except msgspec.ValidationError as exc:
        raise _explain(exc, sources) from None
    _check(settings, sources)
    return settings


def _merge_toml(path: Path, merged: dict[str, dict[str, Any]], sources: dict[str, str]) -> None:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"cannot read config file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SettingsError(f"config file {path} is not valid TOML: {exc}") from None
    for section, table in data.items():
        if section not in _SECTIONS:
            raise SettingsError(f"unknown setting section [{section}] in {path}")
        if not isinstance(table, dict):
            raise SettingsError(f"setting [{section}] in {path} must be a table")
        for key, value in table.items():
            dotted = f"{section}.{key}"
            _split_known(dotted, str(path))
            merged[section][key] = value
            sources[dotted] = str(path)


def _merge_env(
    environ: Mapping[str, str], merged: dict[str, dict[str, Any]], sources: dict[str, str]
) -> None:
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == CONFIG_ENV:
            continue
        rest = name[len(ENV_PREFIX) :].lower()
        section, _, key = rest.partition("_")
        dotted = f"{section}.{key}"
        if not key or section not in _SECTIONS:
            raise SettingsError(
                f"unknown setting {name} (environment variables are CARELINE_<SECTION>_<KEY>, "
                f"sections: {', '.join(_SECTIONS)})"
            )
        _split_known(dotted, f"environment variable {name}")
        merged[section][key] = _env_value(_SECTIONS[section], key, value)
        sources[dotted] = f"environment variable {name}"


def _env_value(section: type[_Section], key: str, value: str) -> Any:
    """Lists come from the environment comma-separated; everything else as text."""
    field = next(f for f in msgspec.structs.fields(section) if f.name == key)
    if getattr(field.type, "__origin__", None) is list:
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _split_known(dotted: str, source: str) -> tuple[str, str]:
    section, _, key = dotted.partition(".")
    cls = _SECTIONS.get(section)
    if cls is None or key not in cls.__struct_fields__:
        raise SettingsError(f"unknown setting {dotted} (from {source})")
    return section, key


def _explain(exc: msgspec.ValidationError, sources: Mapping[str, str]) -> SettingsError:
    text = str(exc)
    match = _PATH_RE.search(text)
    dotted = match.group(1) if match else "?"
    unknown = _UNKNOWN_RE.search(text)
    if unknown:
        dotted = f"{dotted}.{unknown.group(1)}"
    reason = _PATH_RE.sub("", text).strip().rstrip("-").strip()
    source = sources.get(dotted, "defaults")
    return SettingsError(f"bad value for setting {dotted} (from {source}): {reason}")


def _check(settings: Settings, sources: Mapping[str, str]) -> None:
    secret = settings.auth.secret
    if secret and len(secret) < _MIN_SECRET_LEN:
        source = sources.get("auth.secret", "defaults")
        raise SettingsError(
            f"bad value for setting auth.secret (from {source}): "
            f"must be at least {_MIN_SECRET_LEN} characters"
        )
    if settings.auth.default_ttl_seconds > settings.auth.max_ttl_seconds:
        raise SettingsError(
            "bad value for setting auth.default_ttl_seconds "
            f"(from {sources.get('auth.default_ttl_seconds', 'defaults')}): "
            "must not exceed auth.max_ttl_seconds"
        )
    order_secret = settings.hotline.order_secret
    if order_secret and len(order_secret) < _MIN_SECRET_LEN:
        raise SettingsError(
            "bad value for setting hotline.order_secret "
            f"(from {sources.get('hotline.order_secret', 'defaults')}): "
            f"must be at least {_MIN_SECRET_LEN} characters"
        )
    if settings.media.turn_urls and len(settings.media.turn_secret) < _MIN_SECRET_LEN:
        raise SettingsError(
            "bad value for setting media.turn_secret "
            f"(from {sources.get('media.turn_secret', 'defaults')}): TURN servers need a shared "
            f"secret of at least {_MIN_SECRET_LEN} characters"
        )
    for key, urls, schemes in (
        ("media.stun_urls", settings.media.stun_urls, ("stun:", "stuns:")),
        ("media.turn_urls", settings.media.turn_urls, ("turn:", "turns:")),
    ):
        for url in urls:
            if not url.startswith(schemes):
                raise SettingsError(
                    f"bad value for setting {key} (from {sources.get(key, 'defaults')}): "
                    f"{url!r} must start with {' or '.join(schemes)}"
                )
    if settings.store.backend == "redis" and not settings.store.redis_url.startswith(
        ("redis://", "rediss://", "unix://")
    ):
        raise SettingsError(
            "bad value for setting store.redis_url "
            f"(from {sources.get('store.redis_url', 'defaults')}): "
            "must start with redis://, rediss:// or unix://"
        )
