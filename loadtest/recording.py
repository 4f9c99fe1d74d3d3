"""A session recording (`careline serve --record-sessions`), read back: sessions and their events.

The file is a stream of msgpack maps: a header `{"format": "careline-sessions/1", ...}`, then
records `{"t", "s", "e", ...}` (see server/session_recorder.py for what each carries). Ids in it
are aliases (`v1`, `p2`, `s3`); secrets and text are `{"redacted": length}`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack

from careline.loadtest.errors import LoadtestError

FORMAT = "careline-sessions/1"


class RecordingError(LoadtestError):
    """The recording is unreadable or not a Careline session recording."""

    code = "loadtest.recording"


@dataclass(frozen=True, slots=True)
class RecordedEvent:
    """One client event: when (seconds since the recording started), what, and its ack."""

    at: float
    event: str
    data: Any
    ack: Any


@dataclass(slots=True)
class RecordedSession:
    """One socket: its namespace, role, aliased subject and scopes, events, and its end."""

    number: int
    namespace: str
    role: str
    sub: str
    scope: dict[str, str]
    connected_at: float
    events: list[RecordedEvent] = field(default_factory=list)
    disconnected_at: float | None = None

    @property
    def event_names(self) -> list[str]:
        """The names of its events, in order."""
        return [event.event for event in self.events]


def read_recording(path: Path) -> list[RecordedSession]:
    """Every session of the file, by connect time (blocking: file I/O)."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise RecordingError(f"cannot read {path}: {exc.strerror or exc}") from None
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(raw)
    try:
        records = list(unpacker)
    except (ValueError, msgpack.UnpackException) as exc:
        raise RecordingError(f"{path} is not a msgpack stream: {exc}") from None
    if not records or not isinstance(records[0], dict) or records[0].get("format") != FORMAT:
        raise RecordingError(f"{path} is not a Careline session recording ({FORMAT})")
    sessions: dict[int, RecordedSession] = {}
    for record in records[1:]:
        if not isinstance(record, dict):
            continue
        number, event, at = record.get("s"), record.get("e"), record.get("t")
        if not isinstance(number, int) or not isinstance(at, int | float):
            continue
        if event == "connect":
            sessions[number] = RecordedSession(
                number=number,
                namespace=str(record.get("ns")),
                role=str(record.get("role")),
                sub=str(record.get("sub")),
                scope=dict(record.get("scope") or {}),
                connected_at=float(at),
            )
            continue
        session = sessions.get(number)
        if session is None:
            continue
        if event == "disconnect":
            session.disconnected_at = float(at)
        else:
            session.events.append(
                RecordedEvent(float(at), str(event), record.get("data"), record.get("ack"))
            )
    return sorted(sessions.values(), key=lambda s: (s.connected_at, s.number))
