"""A hotline call: its states, the record kept of it, and its checked transitions.

Pure values and functions, no I/O. A call is placed by a kiosk (queued), offered to one
pharmacist at a time (ringing), answered (connected) and ends as completed; a caller who leaves
before it is answered abandons it, and one who accepts a callback offer ends it as callback.
Every stored change increases `version` by one (optimistic concurrency across nodes).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from careline.signaling.errors import Conflict


class CallState(enum.StrEnum):
    """queued -> ringing -> connected -> completed; queued/ringing -> abandoned or callback."""

    QUEUED = "queued"
    RINGING = "ringing"
    CONNECTED = "connected"
    COMPLETED = "completed"
    ABANDONED = "abandoned"
    CALLBACK = "callback"


class EndReason(enum.StrEnum):
    """Why a call left the queue or ended (bounded: safe as a metric label)."""

    CALLER_CANCELLED = "caller_cancelled"
    KIOSK_HANGUP = "kiosk_hangup"
    PHARMACIST_HANGUP = "pharmacist_hangup"
    KIOSK_DISCONNECTED = "kiosk_disconnected"
    PHARMACIST_DISCONNECTED = "pharmacist_disconnected"
    KIOSK_DISABLED = "kiosk_disabled"
    CALLBACK = "callback"


_C = CallState
#: Legal moves. Ringing falls back to queued (ring timeout, decline, pharmacist gone).
CALL_TRANSITIONS: Mapping[CallState, frozenset[CallState]] = {
    _C.QUEUED: frozenset({_C.RINGING, _C.ABANDONED, _C.CALLBACK}),
    _C.RINGING: frozenset({_C.CONNECTED, _C.QUEUED, _C.ABANDONED, _C.CALLBACK}),
    _C.CONNECTED: frozenset({_C.COMPLETED}),
    _C.COMPLETED: frozenset(),
    _C.ABANDONED: frozenset(),
    _C.CALLBACK: frozenset(),
}

#: States of a call that still holds its kiosk (a kiosk has at most one such call).
OPEN_STATES = frozenset({_C.QUEUED, _C.RINGING, _C.CONNECTED})
#: States in which a call waits for a pharmacist.
WAITING_STATES = frozenset({_C.QUEUED, _C.RINGING})


@dataclass(frozen=True, slots=True)
class Call:
    """The record of one call, by opaque ids only (the order id, never patient data).

    Timestamps are Unix seconds: `enqueued_at` when placed, `offered_at` at the first offer,
    `accepted_at` when answered, `ended_at` when it reached a final state. `pharmacist` is the
    pharmacist it rings or was answered by. `requeued` calls go to the head of the queue.
    `detached_at` is set while the kiosk's socket is gone (its reconnect grace runs).
    `missed_by` lists, once per ring, the pharmacists whose ring ended without an accept (rang
    out, declined, or their console left while it rang).
    """

    call_id: str
    kiosk_id: str
    order_id: str
    skills: tuple[str, ...]
    state: CallState
    version: int
    enqueued_at: float
    kiosk_node: str
    requeued: bool = False
    pharmacist: str | None = None
    passed_by: str | None = None
    offers: int = 0
    offered_at: float | None = None
    ring_deadline: float | None = None
    accepted_at: float | None = None
    ended_at: float | None = None
    end_reason: EndReason | None = None
    detached_at: float | None = None
    callback_offered_at: float | None = None
    kiosk_session: str | None = None
    pharmacist_session: str | None = None
    missed_by: tuple[str, ...] = ()

    @property
    def is_open(self) -> bool:
        """Still holds its kiosk: queued, ringing or connected."""
        return self.state in OPEN_STATES

    def queue_key(self) -> tuple[int, float, str]:
        """Sort key of the queue: re-queued calls first, then the longest waiting."""
        return (0 if self.requeued else 1, self.enqueued_at, self.call_id)


def check_call_transition(current: CallState, target: CallState) -> None:
    """Raise Conflict (hotline.bad_transition) unless a call may move from current to target."""
    if target not in CALL_TRANSITIONS[current]:
        allowed = ", ".join(sorted(s.value for s in CALL_TRANSITIONS[current])) or "nothing"
        raise Conflict(
            f"call cannot become {target.value}: expected one of {allowed}, got {current.value}",
            code="hotline.bad_transition",
        )


def move_call(call: Call, target: CallState, **changes: Any) -> Call:
    """The call in state `target` with `changes`, one version later; Conflict if illegal."""
    check_call_transition(call.state, target)
    return dataclasses.replace(call, state=target, version=call.version + 1, **changes)


def touch_call(call: Call, **changes: Any) -> Call:
    """The call with `changes` in the same state, one version later."""
    return dataclasses.replace(call, version=call.version + 1, **changes)
