"""`careline serve --record-sessions DIR`: timed signalling of real sessions, scrubbed, as msgpack.

An EventTap on every edge namespace. Each socket becomes a session with a small number; each
record is a msgpack map appended to `DIR/sessions-<unix time>.msgpack` (a stream of maps, the
first a header): `{"t": seconds since the recording started, "s": session, "e": event, ...}`.
A connect carries the namespace, the role and the token's scopes; an event carries its
payload and its ack, scrubbed (`scrub`): no tokens, no message text, no SDP bodies, no TURN
credentials (their lengths remain), every opaque id and subject remapped to a stable alias
(`v1`, `p2`, `s3`...) so the recording links events without naming anyone. Strings that are not
ids or short enum-like words are replaced by "~". `careline loadtest replay` reads the file.

Records are buffered in memory (bounded: beyond MAX_PENDING they are dropped and counted) and
written by a thread once a second and at close, so the event loop never waits on the disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import msgspec
from aiohttp import web

from careline.signaling.identity import Principal

log = logging.getLogger(__name__)

FORMAT = "careline-sessions/1"
MAX_PENDING = 100_000
FLUSH_EVERY = 1.0
#: Keys whose string values are secrets or personal data: only their length is kept.
SECRET_KEYS = frozenset(
    {"sdp", "text", "order_token", "token", "secret", "credential", "username", "link", "message"}
)
#: Keys whose values are opaque ids or subjects (besides every `*_id` key), and their alias
#: prefix.
ID_KEYS = {
    "sub": "s",
    "publisher": "p",
    "pharmacist": "s",
    "sender": "s",
    "assignee": "s",
    "assigned_to": "s",
    "family_sub": "s",
    "subject": "s",
    "actor": "s",
    "waiting": "p",
}
_WORD = re.compile(r"^[a-z][a-z0-9_.]{0,39}$")
_ENCODER = msgspec.msgpack.Encoder()


class Aliases:
    """Stable aliases for opaque ids: the same id always gets the same alias."""

    def __init__(self) -> None:
        self._known: dict[str, str] = {}
        self._counts: dict[str, int] = {}

    def alias(self, value: str, prefix: str) -> str:
        """`prefix<n>` for `value` (the first alias it got, whatever the prefix now)."""
        known = self._known.get(value)
        if known is None:
            count = self._counts[prefix] = self._counts.get(prefix, 0) + 1
            known = self._known[value] = f"{prefix}{count}"
        return known


def _id_prefix(key: str) -> str | None:
    if key in ID_KEYS:
        return ID_KEYS[key]
    if key.endswith("_id") or key.endswith("_ids"):
        return key[0]
    return None


def scrub(value: Any, aliases: Aliases, key: str = "") -> Any:
    """`value` without personal data or secrets (see the module docstring)."""
    if isinstance(value, dict):
        return {str(k): scrub(v, aliases, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [scrub(item, aliases, key) for item in value]
    if isinstance(value, str):
        if key in SECRET_KEYS:
            return {"redacted": len(value)}
        prefix = _id_prefix(key)
        if prefix is not None:
            return aliases.alias(value, prefix)
        return value if _WORD.match(value) else "~"
    if isinstance(value, bytes | bytearray):
        return {"redacted": len(value)}
    if value is None or isinstance(value, bool | int | float):
        return value
    return "~"


class SessionRecorder:
    """An EventTap that records into `directory`. `start()`, then `close()` (safe twice)."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._aliases = Aliases()
        self._sessions: dict[tuple[str, str], int] = {}
        self._pending: list[bytes] = []
        self._dropped = 0
        self._started = time.monotonic()
        self._path: Path | None = None
        self._flusher: asyncio.Task[None] | None = None

    @property
    def path(self) -> Path | None:
        """The recording file, once started."""
        return self._path

    async def start(self) -> None:
        """Create the file (with its header) and start the flusher."""
        self._path = self._directory / f"sessions-{int(time.time())}.msgpack"
        self._started = time.monotonic()
        header = {"format": FORMAT, "started_at": round(time.time(), 3)}
        await asyncio.to_thread(self._create, self._path, _ENCODER.encode(header))
        self._flusher = asyncio.get_running_loop().create_task(self._flush_loop())
        log.info("recording sessions to %s", self._path)

    def connected(self, namespace: str, sid: str, principal: Principal) -> None:
        """A session starts: its namespace, role and (aliased) subject and scopes."""
        session = self._sessions[(namespace, sid)] = len(self._sessions) + 1
        scopes = {"visit_id": principal.visit_id, "thread_id": principal.thread_id}
        self._add(
            {
                "s": session,
                "e": "connect",
                "ns": namespace,
                "role": principal.role.value,
                "sub": self._aliases.alias(principal.sub, "s"),
                "scope": scrub({k: v for k, v in scopes.items() if v}, self._aliases),
            }
        )

    def handled(self, namespace: str, sid: str, event: str, payload: Any, ack: Any) -> None:
        """One client event and its ack, scrubbed."""
        session = self._sessions.get((namespace, sid))
        if session is None:
            return
        self._add(
            {
                "s": session,
                "e": event if _WORD.match(event) else "~",
                "data": scrub(payload, self._aliases),
                "ack": scrub(ack, self._aliases),
            }
        )

    def disconnected(self, namespace: str, sid: str) -> None:
        """The session ends."""
        session = self._sessions.pop((namespace, sid), None)
        if session is not None:
            self._add({"s": session, "e": "disconnect"})

    async def close(self) -> None:
        """Stop the flusher and write what is left."""
        flusher, self._flusher = self._flusher, None
        if flusher is not None:
            flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await flusher
        await self._flush()
        if self._dropped:
            log.warning("session recorder dropped %d records (disk too slow)", self._dropped)

    def _add(self, record: dict[str, Any]) -> None:
        if len(self._pending) >= MAX_PENDING:
            self._dropped += 1
            return
        record["t"] = round(time.monotonic() - self._started, 4)
        self._pending.append(_ENCODER.encode(record))

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_EVERY)
            await self._flush()

    async def _flush(self) -> None:
        if not self._pending or self._path is None:
            return
        chunk, self._pending = b"".join(self._pending), []
        try:
            await asyncio.to_thread(self._append, self._path, chunk)
        except OSError as exc:
            log.warning("session recording write failed: %s", exc.strerror or exc)

    @staticmethod
    def _create(path: Path, header: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(header)

    @staticmethod
    def _append(path: Path, chunk: bytes) -> None:
        with path.open("ab") as handle:
            handle.write(chunk)


def recorder_ctx(recorder: SessionRecorder) -> Any:
    """A cleanup_ctx that starts the recorder with the app and closes it at shutdown."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        await recorder.start()
        try:
            yield
        finally:
            await recorder.close()

    return ctx
