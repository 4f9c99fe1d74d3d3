"""Store Protocols the domain needs from outside; server/ implements them per backend.

Every backend (SQLite, Redis) implements the same Protocols and passes the same contract suite
(tests/storage/). Methods raise signaling.errors.StoreUnavailable when the backend cannot be
reached, and never leave a half-applied change.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from careline.signaling.hotline_store import HotlineStore
from careline.signaling.thread_store import BlobStore, ThreadStore
from careline.signaling.visit_store import VisitStore

#: Values allowed in an audit record's detail: opaque ids, counters and flags only.
AuditValue = str | int | float | bool | None


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """One stored audit record of a scope (a visit, thread or hotline call id)."""

    scope: str
    seq: int
    at: float
    actor: str
    action: str
    detail: Mapping[str, AuditValue] = field(default_factory=dict)


class AuditStore(Protocol):
    """Append-only audit trail per scope with a gap-free increasing `seq` starting at 1."""

    async def append(
        self, scope: str, actor: str, action: str, detail: Mapping[str, AuditValue], at: float
    ) -> AuditEvent:
        """Store an event durably and return it with its assigned seq."""
        ...

    async def list(self, scope: str, after_seq: int = 0, limit: int = 100) -> Sequence[AuditEvent]:
        """Events of `scope` with seq > after_seq, oldest first, at most `limit`."""
        ...


class RevocationStore(Protocol):
    """Revoked credentials: token ids or (scope, subject) keys, each kept until it would expire."""

    async def revoke(self, key: str, until: float) -> None:
        """Mark `key` revoked until the unix time `until` (idempotent; a later `until` wins)."""
        ...

    async def is_revoked(self, keys: Sequence[str], now: float) -> bool:
        """True if any of `keys` is revoked at time `now`."""
        ...


class Storage(Protocol):
    """One backend's set of stores plus its lifecycle. Later steps add threads and the hotline."""

    @property
    def backend(self) -> str:
        """The backend's name ("sqlite" or "redis"), for /readyz and metrics."""
        ...

    @property
    def audit(self) -> AuditStore: ...

    @property
    def revocations(self) -> RevocationStore: ...

    @property
    def visits(self) -> VisitStore: ...

    @property
    def threads(self) -> ThreadStore: ...

    @property
    def blobs(self) -> BlobStore: ...

    @property
    def hotline(self) -> HotlineStore: ...

    async def open(self) -> None:
        """Connect and prepare (migrations); raises StoreUnavailable if the backend is unusable."""
        ...

    async def ping(self) -> None:
        """Round-trip to the backend; raises StoreUnavailable if it cannot be reached."""
        ...

    async def close(self) -> None:
        """Release connections and threads; safe to call twice."""
        ...
