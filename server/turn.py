"""ICE servers for clients, with TURN credentials from coturn's REST shared-secret scheme.

coturn (`use-auth-secret`, `static-auth-secret=...`) accepts a username `<expiry>:<id>` with the
password base64(HMAC-SHA1(secret, username)) until `expiry`; no per-user state is kept anywhere.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from careline.server.settings import MediaSettings
from careline.signaling.schemas import IceServerInfo


def turn_credential(secret: str, username: str) -> str:
    """The coturn REST password for `username`."""
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def ice_servers(media: MediaSettings, subject: str, now: float) -> list[IceServerInfo]:
    """The STUN and TURN servers a client should use; TURN credentials expire with the setting."""
    servers: list[IceServerInfo] = []
    if media.stun_urls:
        servers.append(IceServerInfo(urls=list(media.stun_urls)))
    if media.turn_urls:
        username = f"{int(now) + media.turn_ttl_seconds}:{subject}"
        servers.append(
            IceServerInfo(
                urls=list(media.turn_urls),
                username=username,
                credential=turn_credential(media.turn_secret, username),
            )
        )
    return servers
