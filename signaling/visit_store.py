"""The durable store of video visits and their participants (implemented per backend)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from careline.signaling.visit import Participant, Visit


class VisitStore(Protocol):
    """Visits and participants. Writes are durable when they return; StoreUnavailable otherwise."""

    async def create(self, visit: Visit, participants: Sequence[Participant]) -> None:
        """Store a new visit with its invitees, all or nothing (Conflict if the id exists)."""
        ...

    async def get(self, visit_id: str) -> Visit | None:
        """The visit, or None."""
        ...

    async def participants(self, visit_id: str) -> Sequence[Participant]:
        """The visit's participants in invitation order."""
        ...

    async def update_visit(self, visit: Visit, expected_version: int) -> Visit:
        """Replace the stored visit if its version is still `expected_version` (else Conflict)."""
        ...

    async def upsert_participant(self, participant: Participant) -> None:
        """Store a participant's new state (it must belong to an existing visit)."""
        ...
