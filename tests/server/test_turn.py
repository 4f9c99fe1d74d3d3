"""TURN credentials follow coturn's REST scheme; STUN/TURN lists come from settings."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from careline.server.errors import SettingsError
from careline.server.settings import load_settings
from careline.server.turn import ice_servers

SECRET = "t" * 40


def test_turn_credentials_match_coturn_rest_scheme() -> None:
    settings = load_settings(
        env={
            "CARELINE_MEDIA_STUN_URLS": "stun:stun.example.test:3478",
            "CARELINE_MEDIA_TURN_URLS": "turn:turn.example.test:3478?transport=udp,"
            "turns:turn.example.test:5349",
            "CARELINE_MEDIA_TURN_SECRET": SECRET,
            "CARELINE_MEDIA_TURN_TTL_SECONDS": "600",
        }
    )
    stun, turn = ice_servers(settings.media, "p-1", now=1_000_000.0)
    assert stun.urls == ["stun:stun.example.test:3478"]
    assert stun.username is None
    assert turn.urls == [
        "turn:turn.example.test:3478?transport=udp",
        "turns:turn.example.test:5349",
    ]
    assert turn.username == "1000600:p-1"
    expected = base64.b64encode(
        hmac.new(SECRET.encode(), b"1000600:p-1", hashlib.sha1).digest()
    ).decode()
    assert turn.credential == expected


def test_no_servers_by_default() -> None:
    assert ice_servers(load_settings(env={}).media, "p-1", now=0.0) == []


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"CARELINE_MEDIA_TURN_URLS": "turn:x:3478"}, "media.turn_secret"),
        ({"CARELINE_MEDIA_STUN_URLS": "http://x"}, "media.stun_urls"),
        (
            {"CARELINE_MEDIA_TURN_URLS": "stun:x", "CARELINE_MEDIA_TURN_SECRET": SECRET},
            "media.turn_urls",
        ),
    ],
)
def test_bad_ice_settings_are_named(env: dict[str, str], key: str) -> None:
    with pytest.raises(SettingsError, match=key):
        load_settings(env=env)
