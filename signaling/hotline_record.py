"""The steps of a call's record (pure): what a stored change of a call means for its audit trail.

Each step is an audit event (action and detail: opaque ids, counters and reasons only) and,
where it names a bounded call event, the label counted in metrics.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from careline.signaling.hotline_call import Call, CallState
from careline.signaling.stores import AuditValue


@dataclass(frozen=True, slots=True)
class CallStep:
    """One step of a call: its audit action and detail, and its metric event (or None)."""

    action: str
    detail: dict[str, AuditValue] = field(default_factory=dict)
    metric: str | None = None


def call_steps(old: Call | None, new: Call, reason: str | None = None) -> list[CallStep]:
    """The steps from `old` (None: a new call) to `new`; `reason` names why a call re-queued."""
    if old is None:
        return [CallStep("enqueued", {"kiosk": new.kiosk_id, "order": new.order_id}, "enqueued")]
    if old.state is not new.state:
        if new.state is CallState.RINGING:
            detail: dict[str, AuditValue] = {"pharmacist": new.pharmacist, "offer": new.offers}
            return [CallStep("offered", detail, "offered")]
        if new.state is CallState.CONNECTED:
            return [CallStep("accepted", {"pharmacist": new.pharmacist}, "accepted")]
        if new.state is CallState.QUEUED:
            why = reason or "requeued"
            return [CallStep("requeued", {"pharmacist": old.pharmacist, "reason": why}, why)]
        ended = None if new.end_reason is None else new.end_reason.value
        return [CallStep(new.state.value, {"reason": ended}, new.state.value)]
    steps: list[CallStep] = []
    if old.callback_offered_at is None and new.callback_offered_at is not None:
        steps.append(CallStep("callback_offered", metric="callback_offered"))
    if old.detached_at is None and new.detached_at is not None:
        steps.append(CallStep("kiosk_detached"))
    if old.detached_at is not None and new.detached_at is None:
        steps.append(CallStep("kiosk_resumed"))
    return steps
