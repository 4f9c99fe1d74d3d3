"""Read, move, store and retry: how every hotline change is made, recorded and announced.

A change is built by a pure move (hotline_moves) from the records just read and stored with the
store's compare-and-set; when another request or node got there first (`hotline.stale`) it is
built again from fresh records, up to eight times. Every stored change is then recorded (audit
trail, metrics) and handed to a ChangeListener (the pushes to sockets).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Protocol

from careline.signaling.audit_writer import AuditWriter
from careline.signaling.errors import Conflict, NotFound
from careline.signaling.hotline_call import Call, CallState
from careline.signaling.hotline_observer import HotlineObserver
from careline.signaling.hotline_record import call_steps
from careline.signaling.hotline_store import HotlineChange, HotlineStore
from careline.signaling.presence import Presence

#: How many times a change is rebuilt from fresh records before `hotline.stale` is returned.
TRIES = 8


class ChangeListener(Protocol):
    """Told of every stored change, call by call, then presence by presence."""

    async def call_changed(self, old: Call | None, new: Call, label: str | None) -> None:
        """A call was stored at a new version (`old`: as it was read, None if new)."""

    async def presence_changed(self, presence: Presence) -> None:
        """A presence was stored at a new version."""


class HotlineChanges:
    """Makes changes to calls and presences; see the module docstring.

    Concurrency: any number of concurrent changes; the store's version checks order them.
    """

    def __init__(
        self,
        store: HotlineStore,
        audit: AuditWriter,
        observer: HotlineObserver,
        clock: Callable[[], float],
    ) -> None:
        self._store = store
        self._audit = audit
        self._observer = observer
        self._clock = clock
        self._listener: ChangeListener | None = None

    def listen(self, listener: ChangeListener) -> None:
        """Tell `listener` of every stored change from now on."""
        self._listener = listener

    async def change_call(
        self,
        call_id: str,
        make: Callable[[Call, Presence | None], HotlineChange | None],
        *,
        sub: str | None = None,
        label: str | None = None,
    ) -> Call:
        """Read, move and store one call (and its pharmacist's presence), retrying on stale."""
        for _ in range(TRIES):
            call = await self._store.get_call(call_id)
            if call is None:
                raise NotFound("no such call", code="hotline.call_not_found")
            who = sub or call.pharmacist
            presence = await self._store.get_presence(who) if who is not None else None
            change = make(call, presence)
            if not change:
                return call
            try:
                await self.apply(change, {call.call_id: call}, label)
            except Conflict as exc:
                if exc.code == "hotline.stale":
                    continue
                raise
            return next((c for c in change.calls if c.call_id == call_id), call)
        raise Conflict("the call kept changing; try again", code="hotline.stale")

    async def change_presence(
        self,
        sub: str,
        make: Callable[[Presence | None], Presence | None],
        *,
        create: bool = False,
    ) -> Presence | None:
        """Read, move and store one presence, retrying on stale; None if nothing changed."""
        for _ in range(TRIES):
            presence = await self._store.get_presence(sub)
            if presence is None and not create:
                return None
            changed = make(presence)
            if changed is None:
                return None
            try:
                await self.apply(HotlineChange(presences=(changed,)), {})
            except Conflict as exc:
                if exc.code == "hotline.stale":
                    continue
                raise
            return changed
        raise Conflict("the presence kept changing; try again", code="hotline.stale")

    async def apply(
        self, change: HotlineChange, before: Mapping[str, Call], label: str | None = None
    ) -> None:
        """Store a change, then record, count and announce what it did."""
        await self._store.apply(change)
        await self.stored(change, before, label)

    async def stored(
        self, change: HotlineChange, before: Mapping[str, Call], label: str | None = None
    ) -> None:
        """Record, count and announce a change already stored (`before`: the calls as read)."""
        now = self._clock()
        for call in change.calls:
            old = before.get(call.call_id)
            await self._record_call(old, call, now, label)
            if self._listener is not None:
                await self._listener.call_changed(old, call, label)
        for presence in change.presences:
            if self._listener is not None:
                await self._listener.presence_changed(presence)

    async def _record_call(
        self, old: Call | None, new: Call, now: float, label: str | None
    ) -> None:
        """Audit and count the steps a stored change of a call made."""
        if old is not None and old.state is not new.state:
            if new.state is CallState.RINGING and new.offers == 1:
                self._observer.dispatched(now - new.enqueued_at)
            elif new.state is CallState.CONNECTED:
                self._observer.answered(now - new.enqueued_at)
        for step in call_steps(old, new, label):
            if step.metric is not None:
                self._observer.call_event(step.metric)
            await self._audit.record(new.call_id, new.kiosk_id, step.action, step.detail, now)
