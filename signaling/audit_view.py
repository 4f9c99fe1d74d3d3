"""How an audit trail looks on the wire: the same records for visits, threads and hotline calls.

Ids, times and numbers only (AuditStore keeps nothing else): never names or message text.
"""

from __future__ import annotations

import msgspec

from careline.signaling.stores import AuditEvent


class AuditEventView(msgspec.Struct, frozen=True, kw_only=True):
    """One audit record: its seq in the trail, when, who caused it, what, and its numbers."""

    seq: int
    at: float
    actor: str
    action: str
    detail: dict[str, str | int | float | bool | None]


class AuditTrail(msgspec.Struct, frozen=True, kw_only=True):
    """Reply to `GET /api/visits/{id}/audit` and `GET /api/threads/{id}/audit`."""

    events: list[AuditEventView]


def audit_event_view(event: AuditEvent) -> AuditEventView:
    """One stored audit record as the wire shows it."""
    return AuditEventView(
        seq=event.seq,
        at=event.at,
        actor=event.actor,
        action=event.action,
        detail=dict(event.detail),
    )
