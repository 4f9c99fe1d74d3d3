"""What an uploaded file is, judged by its first bytes (never by its name or declared type).

Message visits accept photos: JPEG, PNG and HEIC/HEIF (iPhone photos). Anything else, a PDF
renamed to .jpg included, is refused.
"""

from __future__ import annotations

from careline.signaling.errors import UnsupportedMedia

JPEG = "image/jpeg"
PNG = "image/png"
HEIC = "image/heic"
HEIF = "image/heif"

#: Content types an attachment may have.
ACCEPTED = frozenset({JPEG, PNG, HEIC, HEIF})

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs"})
_HEIF_BRANDS = frozenset({b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})


def sniff(data: bytes) -> str | None:
    """The image type of `data` by its magic bytes, or None."""
    if data[:3] == b"\xff\xd8\xff":
        return JPEG
    if data[:8] == _PNG_SIGNATURE and len(data) >= 33 and data[12:16] == b"IHDR":
        return PNG
    return _iso_bmff_image(data)


def content_type_of(data: bytes) -> str:
    """The accepted content type of `data`, or UnsupportedMedia with a thread code."""
    found = sniff(data)
    if found is None:
        raise UnsupportedMedia(
            "attachments must be JPEG, PNG or HEIC images (judged by content)",
            code="thread.unsupported_attachment",
        )
    return found


def _iso_bmff_image(data: bytes) -> str | None:
    """HEIC/HEIF: an ISO-BMFF `ftyp` box first, with an image brand (major or compatible)."""
    if len(data) < 16 or data[4:8] != b"ftyp":
        return None
    size = int.from_bytes(data[0:4], "big")
    if size < 16 or size > min(len(data), 4096) or size % 4:
        return None
    brands = {data[8:12]} | {data[i : i + 4] for i in range(16, size, 4)}
    if brands & _HEIC_BRANDS:
        return HEIC
    if brands & _HEIF_BRANDS and not brands & _AVIF_BRANDS:
        return HEIF
    return None
