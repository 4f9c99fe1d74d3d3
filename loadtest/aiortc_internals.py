"""The aiortc release whose private internals the media tools patch, and the check for it.

The client media tools reach into aiortc 1.16 (name-mangled receiver attributes, the module-level
decoder worker, the sender's keyframe hook) and aioice 0.13 (host address discovery). Every seam
calls `require_aiortc_internals` first, so a different release fails loudly at the first use
instead of silently decoding, gathering on real interfaces or dropping keyframe requests.
"""

from __future__ import annotations

import aiortc

from careline.loadtest.errors import AiortcInternalsError

SUPPORTED_AIORTC_SERIES = "1.16."


def require_aiortc_internals(seam: str) -> None:
    """Raise AiortcInternalsError unless the installed aiortc is the audited 1.16 series."""
    version = str(getattr(aiortc, "__version__", "unknown"))
    if not version.startswith(SUPPORTED_AIORTC_SERIES):
        raise AiortcInternalsError(
            f"{seam} patches aiortc {SUPPORTED_AIORTC_SERIES}x internals but aiortc {version} is "
            "installed: re-read aiortc's source and update careline.loadtest"
        )


def require_attribute(owner: object, name: str, seam: str) -> object:
    """`getattr(owner, name)`, or AiortcInternalsError naming the seam when it is missing."""
    try:
        return getattr(owner, name)
    except AttributeError:
        raise AiortcInternalsError(
            f"{seam}: {type(owner).__name__}.{name} is missing from the installed aiortc/aioice; "
            "re-read its source and update careline.loadtest"
        ) from None
