"""Media-plane events as sent to clients, the same on /visit and /hotline."""

from __future__ import annotations

import dataclasses
from typing import Any

from careline.signaling.media_gateway import MediaOffer, TrackInfo


def offer_payload(offer: MediaOffer) -> dict[str, Any]:
    """A `media.offer` push: the server's SDP, its track map and what the client publishes."""
    return {
        "sdp": offer.sdp,
        "tracks": [dataclasses.asdict(t) for t in offer.tracks],
        "publish": dict(offer.publish),
    }


def tracks_payload(tracks: tuple[TrackInfo, ...]) -> dict[str, Any]:
    """A `media.tracks` push: which publisher each m-line now carries."""
    return {"tracks": [dataclasses.asdict(t) for t in tracks]}
