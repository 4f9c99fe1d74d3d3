"""Service-level figures of the hotline from call records (pure): ASA, abandonment, service level.

Definitions (those of contact-centre practice):
- average speed of answer (ASA): mean of accepted_at - enqueued_at over answered calls;
- abandonment rate: abandoned / (answered + abandoned);
- service level: calls answered within the threshold / (answered + abandoned);
- estimated wait of the caller at position P: ceil(P / staffed pharmacists) x average handle time
  (talk time plus wrap-up), unknown while nobody is staffed.
Calls count in the window they were placed in. Callbacks count neither as answered nor abandoned.
A pharmacist's own figures (`own_figures`) come from the same records: the calls rung to them,
answered by them, and missed by them (a ring that ended without their accept).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from careline.signaling.hotline_call import Call, CallState
from careline.signaling.presence import STAFFED_STATES, Presence, PresenceState


@dataclass(frozen=True, slots=True)
class OwnFigures:
    """One pharmacist's figures over the stats window (`mine` in `GET /api/hotline/stats`)."""

    offered: int
    answered: int
    missed: int
    completed: int
    average_handle_seconds: float | None
    talk_seconds: float


@dataclass(frozen=True, slots=True)
class HotlineStats:
    """What `GET /api/hotline/stats` returns and /metrics exports."""

    window_seconds: float
    service_level_seconds: float
    calls: int
    answered: int
    abandoned: int
    callbacks: int
    completed: int
    asa_seconds: float | None
    abandonment_rate: float | None
    service_level: float | None
    average_handle_seconds: float | None
    queue_length: int
    longest_wait_seconds: float
    pharmacists: dict[str, int] = field(default_factory=dict)
    mine: OwnFigures | None = None


def summarize(
    records: Iterable[Call],
    open_calls: Sequence[Call],
    presences: Sequence[Presence],
    now: float,
    *,
    window_seconds: float,
    service_level_seconds: float,
    wrap_up_seconds: float,
) -> HotlineStats:
    """The figures over calls placed in the last `window_seconds`, and the queue as it is now."""
    since = now - window_seconds
    placed = [c for c in records if c.enqueued_at >= since]
    answered = [c for c in placed if c.accepted_at is not None]
    abandoned = [c for c in placed if c.state is CallState.ABANDONED and c.accepted_at is None]
    handled = [
        c.ended_at - c.accepted_at
        for c in placed
        if c.state is CallState.COMPLETED and c.ended_at is not None and c.accepted_at is not None
    ]
    waits = [c.accepted_at - c.enqueued_at for c in answered if c.accepted_at is not None]
    offered = len(answered) + len(abandoned)
    within = sum(1 for wait in waits if wait <= service_level_seconds)
    queued = [c for c in open_calls if c.state is CallState.QUEUED]
    counts = {state.value: 0 for state in PresenceState}
    for presence in presences:
        counts[presence.state.value] += 1
    return HotlineStats(
        window_seconds=window_seconds,
        service_level_seconds=service_level_seconds,
        calls=len(placed),
        answered=len(answered),
        abandoned=len(abandoned),
        callbacks=sum(1 for c in placed if c.state is CallState.CALLBACK),
        completed=len(handled),
        asa_seconds=_mean(waits),
        abandonment_rate=len(abandoned) / offered if offered else None,
        service_level=within / offered if offered else None,
        average_handle_seconds=(
            None if not handled else (sum(handled) / len(handled)) + wrap_up_seconds
        ),
        queue_length=len(queued),
        longest_wait_seconds=max((now - c.enqueued_at for c in queued), default=0.0),
        pharmacists=counts,
    )


def own_figures(records: Iterable[Call], sub: str, since: float) -> OwnFigures:
    """The figures of pharmacist `sub` over calls placed at or after `since`.

    Offered: every ring of theirs (missed ones, plus the call rung to or answered by them);
    handle time is talk time only (accepted to ended, completed calls; no wrap-up).
    """
    offered = answered = missed = 0
    talks: list[float] = []
    for call in records:
        if call.enqueued_at < since:
            continue
        misses = call.missed_by.count(sub)
        missed += misses
        offered += misses + (1 if call.pharmacist == sub and call.offered_at is not None else 0)
        if call.pharmacist != sub or call.accepted_at is None:
            continue
        answered += 1
        if call.state is CallState.COMPLETED and call.ended_at is not None:
            talks.append(call.ended_at - call.accepted_at)
    return OwnFigures(
        offered=offered,
        answered=answered,
        missed=missed,
        completed=len(talks),
        average_handle_seconds=_mean(talks),
        talk_seconds=sum(talks),
    )


def staffed(presences: Sequence[Presence]) -> int:
    """Pharmacists on shift: available, ringing, busy or wrapping up."""
    return sum(1 for p in presences if p.state in STAFFED_STATES)


def estimate_wait(position: int, staffed_count: int, handle_seconds: float) -> float | None:
    """Seconds the caller at `position` (1-based) may still wait; None if nobody is staffed."""
    if staffed_count <= 0:
        return None
    return math.ceil(position / staffed_count) * handle_seconds


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None
