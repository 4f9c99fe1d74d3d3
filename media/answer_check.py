"""The codecs a room allows, and the checks a participant's answer must pass before aiortc sees it.

aiortc applies a remote answer m-line by m-line and raises part way through (an m-line with no
common codec), leaving the earlier m-lines applied: the audio receiver already has its track, so a
later correct answer never fires its "track" event and the participant's audio is never
forwarded. Some malformed descriptions get past its checks and fail later in a background task
(no DTLS fingerprint), or raise bare AssertionError/AttributeError. So every answer is parsed and
checked here first, against the offer it answers; only an answer that passes reaches aiortc.
"""

from __future__ import annotations

from aiortc import RTCRtpSender
from aiortc.codecs import CODECS
from aiortc.rtcpeerconnection import filter_preferred_codecs, find_common_codecs
from aiortc.rtcrtpparameters import RTCRtpCodecCapability
from aiortc.sdp import SessionDescription

from careline.media.errors import BadSdp, CodecNotAllowed

#: What the parser may raise on hostile text (it indexes, splits, asserts and iterates freely).
_PARSE_ERRORS = (
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    AssertionError,
    StopIteration,
)
#: offered direction -> the directions an answer may give it (RFC 3264, section 6.1).
_ANSWER_DIRECTIONS = {
    "sendrecv": frozenset({"sendrecv", "sendonly", "recvonly", "inactive"}),
    "sendonly": frozenset({"recvonly", "inactive"}),
    "recvonly": frozenset({"sendonly", "inactive"}),
    "inactive": frozenset({"inactive"}),
}


def allowed_codecs(kind: str, video_codec: str) -> list[RTCRtpCodecCapability]:
    """The codec preferences of a room's m-lines: Opus for audio, the room's codec for video.

    H264 prefers packetization-mode 1 (the mode the forwarding path packetizes for). RTX
    follows its base codec.
    """
    wanted = "audio/opus" if kind == "audio" else f"video/{video_codec}"
    capabilities = RTCRtpSender.getCapabilities(kind).codecs
    chosen = [c for c in capabilities if c.mimeType.lower() == wanted]
    if kind == "video" and video_codec == "h264":
        chosen = [c for c in chosen if c.parameters.get("packetization-mode") == "1"] or chosen
    rtx = [c for c in capabilities if c.mimeType.lower() == f"{kind}/rtx"]
    return chosen + rtx


def check_answer(offer_sdp: str, answer_sdp: str, video_codec: str) -> None:
    """Raise BadSdp or CodecNotAllowed unless aiortc can apply `answer_sdp` whole."""
    offer = SessionDescription.parse(offer_sdp)  # our own: it parses
    try:
        answer = SessionDescription.parse(answer_sdp)
    except _PARSE_ERRORS as exc:
        raise BadSdp(f"the answer is not a session description: {exc.__class__.__name__}") from None
    offered = [(m.kind, m.rtp.muxId) for m in offer.media]
    answered = [(m.kind, m.rtp.muxId) for m in answer.media]
    if answered != offered:
        expected = ", ".join(f"{kind}:{mid}" for kind, mid in offered)
        raise BadSdp(f"the answer's m-lines do not match the offer's ({expected})")
    for ours, theirs in zip(offer.media, answer.media, strict=True):
        where = f"m-line {theirs.rtp.muxId}"
        if theirs.kind not in ("audio", "video"):
            raise BadSdp(f"{where}: only audio and video are negotiated")
        if theirs.dtls is None or not theirs.dtls.fingerprints:
            raise BadSdp(f"{where}: no DTLS fingerprint and setup role")
        offered_direction = ours.direction or "sendrecv"
        if (theirs.direction or "sendrecv") not in _ANSWER_DIRECTIONS[offered_direction]:
            raise BadSdp(f"{where}: direction {theirs.direction} answers {offered_direction}")
        allowed = allowed_codecs(theirs.kind, video_codec)
        if not filter_preferred_codecs(
            find_common_codecs(CODECS[theirs.kind], theirs.rtp.codecs), allowed
        ):
            names = sorted({c.mimeType.split("/")[1].lower() for c in allowed} - {"rtx"})
            raise CodecNotAllowed(f"{where}: the answer has none of the allowed codecs {names}")
