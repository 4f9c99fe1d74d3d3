"""Redis replies and stored fields as text: bytes are decoded (UTF-8), whatever a client that
decodes already gave back is kept."""

from __future__ import annotations

from typing import Any


def text(value: object) -> str:
    """A reply that is text (bytes, or str from a client that decodes); anything else (an
    integer reply) as its str."""
    return value.decode() if isinstance(value, bytes) else str(value)


def decoded(value: Any) -> Any:
    """`value` with bytes decoded; anything else (None, an integer, a str) unchanged."""
    return value.decode() if isinstance(value, bytes) else value
