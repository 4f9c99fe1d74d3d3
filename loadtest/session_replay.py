"""`careline loadtest replay`: a session recording played again, faster and many times over.

Every recorded session is replayed `multiply` times (copies), with its times divided by
`speed`. A copy is a world of its own: new subjects (`lt-<run>-<copy>-<alias>`), and the
resources the recording's sessions used but which were made over HTTP (not recorded) are made
again before the first event: a visit per visit id (invitees: the sessions that joined it),
a thread per thread id (owned by the first parent that used it, picked up by the first
clinician), a kiosk per kiosk session. Ids the server makes while replaying (participants,
calls) are learned from the acks, matched field by field against the recorded acks, so later
events that name them get the replay's ids. Media events run real WebRTC with the clip of a
small VP8 profile (`media.answer` is sent by the client itself, so the recorded one is
skipped); redacted text is replaced by as many "x", order tokens are minted.

Measured: ack latency of every replayed event (`replay_ack_ms`), errors by code, and how many
acks differed in outcome from the recorded ones (`events_mismatched`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from careline.loadtest.clips import Clip
from careline.loadtest.errors import LoadtestError
from careline.loadtest.generator import profile_clips, token_source
from careline.loadtest.ice import restrict_host_addresses
from careline.loadtest.load_metrics import LoadMetrics
from careline.loadtest.load_plan import TokenConfig
from careline.loadtest.load_run import LoadSession, RunOptions
from careline.loadtest.message_traffic import tiny_png
from careline.loadtest.recording import RecordedSession, read_recording
from careline.loadtest.run_summary import RunSummary
from careline.loadtest.scenario import MediaProfile
from careline.loadtest.target_check import check_target, normalize_target
from careline.loadtest.token_source import TokenError
from careline.loadtest.traffic_context import TrafficContext
from careline.loadtest.wire_client import WireClient

log = logging.getLogger(__name__)

#: Keys whose values are ids (besides `*_id` and `*_ids`), as the recorder aliases them.
ID_KEYS = frozenset(
    {"sub", "publisher", "pharmacist", "sender", "assignee", "assigned_to", "family_sub"}
)
#: Ids the client makes up: a replay makes fresh ones instead of waiting to learn them.
CLIENT_IDS = frozenset({"client_msg_id", "client_thread_id"})
_LEARN_WAIT = 5.0
_MEDIA_NAMESPACES = ("/visit", "/hotline")
_PROFILE = MediaProfile(codec="vp8", bitrate_kbps=150, width=160, height=120, fps=15)
_FAMILY_KINDS = ("parent", "second_parent", "interpreter")
_PNG = tiny_png()


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """How to replay a recording."""

    target: str
    tokens: TokenConfig
    speed: float = 1.0
    multiply: int = 1
    report_dir: Path | None = None
    clip_cache: Path | None = None
    progress: bool = True
    handle_sigint: bool = True
    server_pid: int | None = None
    #: Addresses the replayed peers gather ICE host candidates on (loopback by default).
    media_addresses: tuple[str, ...] = ("127.0.0.1",)


def is_id_key(key: str) -> bool:
    """Whether values under `key` are opaque ids (aliased in recordings)."""
    return key in ID_KEYS or key.endswith("_id") or key.endswith("_ids")


async def replay_recording(path: Path, options: ReplayOptions) -> RunSummary:
    """Replay the recording at `path`; RecordingError, TargetUnreachable, TokenError first."""
    url = normalize_target(options.target)
    await check_target(url)
    sessions = await asyncio.to_thread(read_recording, path)
    if not (options.tokens.secret or options.tokens.admin_token):
        raise TokenError("tokens need --secret or --admin-token")
    if any(s.role == "kiosk" for s in sessions) and not options.tokens.order_secret:
        raise TokenError("the recording has kiosk calls: pass --order-secret")
    last = max(
        (s.disconnected_at or (s.events[-1].at if s.events else s.connected_at) for s in sessions),
        default=0.0,
    )
    duration = last / options.speed + 1.0
    run_options = RunOptions(
        target=url,
        tokens=options.tokens,
        report_dir=options.report_dir,
        clip_cache=options.clip_cache,
        progress=options.progress,
        handle_sigint=options.handle_sigint,
        server_pid=options.server_pid,
    )

    async def job(metrics: LoadMetrics, stopping: asyncio.Event) -> None:
        restrict_host_addresses(options.media_addresses)
        video, _ = await profile_clips(_PROFILE, options.clip_cache)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            ctx = TrafficContext(
                url=url,
                http=http,
                tokens=token_source(options.tokens, http, url),
                metrics=metrics,
                run_id=f"{int(time.time()) % 100_000:05d}",
                ends_at=metrics.started_at + duration,
                stopping=stopping,
            )
            copies = [
                _Copy(ctx, sessions, n, options.speed, video) for n in range(options.multiply)
            ]
            await asyncio.gather(*(copy.run() for copy in copies))

    name = f"replay-{path.stem}"
    return await LoadSession(run_options, url, job=(name, duration, job)).run()


class _Copy:
    """One replay of every recorded session, with its own subjects and ids."""

    def __init__(
        self,
        ctx: TrafficContext,
        sessions: list[RecordedSession],
        number: int,
        speed: float,
        video: Clip,
    ) -> None:
        self._ctx = ctx
        self._sessions = sessions
        self._speed = speed
        self._video = video
        self._prefix = f"lt-{ctx.run_id}-{number}"
        self._ids: dict[str, str] = {}
        self._learned = asyncio.Event()
        self._tokens: dict[int, str] = {}
        #: Calls offered to each pharmacist session, newest last: a replayed pharmacist
        #: answers the call it is offered (routing may give it another copy's call).
        self._offers: dict[int, list[str]] = {}

    def _sub(self, alias: str) -> str:
        return f"{self._prefix}-{alias}"

    async def run(self) -> None:
        """Make the resources, then replay every session side by side."""
        try:
            await self._set_up()
        except LoadtestError as exc:
            self._ctx.metrics.error(exc.code)
            return
        started = time.monotonic()
        await asyncio.gather(*(self._replay(session, started) for session in self._sessions))

    async def _set_up(self) -> None:
        ctx = self._ctx
        admin = await ctx.tokens.token("admin", "loadtest-admin")
        for session in self._sessions:
            self._ids[session.sub] = self._sub(session.sub)
        visits: dict[str, list[RecordedSession]] = {}
        threads: dict[str, list[RecordedSession]] = {}
        for session in self._sessions:
            for event in session.events:
                data = event.data if isinstance(event.data, dict) else {}
                if event.event == "visit.join" and isinstance(data.get("visit_id"), str):
                    members = visits.setdefault(data["visit_id"], [])
                    if session not in members:
                        members.append(session)
                elif event.event.startswith("thread.") and isinstance(data.get("thread_id"), str):
                    users = threads.setdefault(data["thread_id"], [])
                    if session not in users:
                        users.append(session)
        for alias, members in visits.items():
            await self._make_visit(admin, alias, members)
        for alias, users in threads.items():
            await self._make_thread(alias, users)
        for session in self._sessions:
            if session.number in self._tokens:
                continue
            if session.role == "kiosk":
                kiosk_id = self._sub(session.sub)
                made = await ctx.post("/api/kiosks", admin, {"kiosk_id": kiosk_id})
                issued = await ctx.post(
                    f"/api/kiosks/{kiosk_id}/token", admin, {"secret": made["secret"]}
                )
                self._tokens[session.number] = str(issued["token"])
            else:
                scope = {k: self._ids.get(v, v) for k, v in session.scope.items()}
                self._tokens[session.number] = await ctx.tokens.token(
                    session.role,
                    self._sub(session.sub),
                    visit_id=scope.get("visit_id"),
                    thread_id=scope.get("thread_id"),
                )

    async def _make_visit(self, admin: str, alias: str, members: list[RecordedSession]) -> None:
        invitees = []
        for index, member in enumerate(members):
            kind = "clinician" if member.role == "clinician" else _FAMILY_KINDS[index % 3]
            invitees.append({"kind": kind, "sub": self._sub(member.sub)})
        created = await self._ctx.post("/api/visits", admin, {"participants": invitees})
        self._ids[alias] = str(created["visit"]["visit_id"])
        tokens = {str(p["sub"]): str(p["token"]) for p in created["invited"]}
        for member in members:
            self._tokens[member.number] = tokens[self._sub(member.sub)]

    async def _make_thread(self, alias: str, users: list[RecordedSession]) -> None:
        ctx = self._ctx
        family = next((u for u in users if u.role == "parent"), None)
        if family is None:
            return  # nobody to own it: its events will fail, as they would on any server
        parent = await ctx.tokens.token("parent", self._sub(family.sub))
        body = {"patient_ref": "lt-replay", "client_thread_id": f"{self._prefix}-{alias}"}
        created = await ctx.post("/api/threads", parent, body)
        thread_id = self._ids[alias] = str(created["thread"]["thread_id"])
        clinician = next((u for u in users if u.role == "clinician"), None)
        if clinician is not None:
            token = await ctx.tokens.token("clinician", self._sub(clinician.sub))
            await ctx.post(f"/api/threads/{thread_id}/assign", token, {})

    async def _replay(self, session: RecordedSession, started: float) -> None:
        ctx, metrics = self._ctx, self._ctx.metrics
        video = self._video if session.namespace in _MEDIA_NAMESPACES else None
        client = WireClient(
            ctx.url, self._tokens[session.number], video=video, namespace=session.namespace
        )
        offers: list[str] = []

        def on_push(name: str, data: Any) -> None:
            client.events.clear()  # keep memory flat
            if name == "hotline.offer" and isinstance(data, dict):
                offers.append(str(data.get("call_id")))

        client.on_push = on_push
        self._offers[session.number] = offers
        try:
            if not await ctx.sleep_until(started + session.connected_at / self._speed):
                return
            await client.connect()
            metrics.count("sessions_replayed")
            for event in session.events:
                if not await ctx.sleep_until(started + event.at / self._speed):
                    return
                if event.event == "media.answer":
                    continue  # the client answers the server's offers itself
                await self._send(client, session, event.event, event.data, event.ack)
            if session.disconnected_at is not None:
                await ctx.sleep_until(started + session.disconnected_at / self._speed)
        except LoadtestError as exc:
            metrics.error(exc.code)
        finally:
            await client.close()

    async def _send(
        self, client: WireClient, session: RecordedSession, event: str, data: Any, ack: Any
    ) -> None:
        metrics = self._ctx.metrics
        recorded_ok = isinstance(ack, dict) and bool(ack.get("ok"))
        metrics.count("events_sent")
        sent = time.monotonic()
        reply: Any = None
        try:
            if event == "media.start":
                await client.start_media()
            elif event == "media.restart":
                await client.restart_media()
            else:
                payload = await self._resolve(data)
                if event in ("hotline.accept", "hotline.decline") and isinstance(payload, dict):
                    offered = await self._offered(session.number)
                    if offered is not None:
                        payload["call_id"] = offered
                if isinstance(payload, dict) and payload.get("attachment_ids"):
                    payload["attachment_ids"] = [
                        await self._upload(str(payload.get("thread_id")), session)
                        for _ in payload["attachment_ids"]
                    ]
                reply = await client.call(event, payload)
            metrics.latency("replay_ack_ms", (time.monotonic() - sent) * 1000)
            ok = True
        except LoadtestError as exc:
            metrics.error(exc.code)
            ok = False
        if ok != recorded_ok:
            metrics.count("events_mismatched")
        if ok and isinstance(ack, dict):
            self._learn(ack.get("data"), reply)

    async def _resolve(self, value: Any, key: str = "") -> Any:
        """A recorded payload with the replay's ids, tokens and text."""
        if isinstance(value, dict):
            if set(value) == {"redacted"} and isinstance(value["redacted"], int):
                return self._unredact(key, value["redacted"])
            return {k: await self._resolve(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [await self._resolve(item, key) for item in value]
        if isinstance(value, str) and is_id_key(key) and key != "attachment_ids":
            return await self._real_id(key, value)
        return value

    def _unredact(self, key: str, length: int) -> str:
        if key == "order_token":
            return self._ctx.tokens.order_token(f"{self._prefix}-o{length}")
        return "x" * length

    async def _real_id(self, key: str, alias: str) -> str:
        if key in CLIENT_IDS:
            return self._ids.setdefault(alias, f"{self._prefix}-{alias}")
        deadline = time.monotonic() + _LEARN_WAIT
        while alias not in self._ids and time.monotonic() < deadline:
            self._learned.clear()
            try:
                async with asyncio.timeout(max(0.0, deadline - time.monotonic())):
                    await self._learned.wait()
            except TimeoutError:
                break
        return self._ids.get(alias, alias)

    async def _offered(self, session: int) -> str | None:
        """The newest call offered to a pharmacist session (waiting a little for one)."""
        offers = self._offers.get(session, [])
        for _ in range(int(_LEARN_WAIT / 0.02)):
            if offers:
                return offers.pop()
            await asyncio.sleep(0.02)
        return None

    async def _upload(self, thread_id: str, session: RecordedSession) -> str:
        """A fresh photo for a recorded attachment (uploads are HTTP, so not recorded)."""
        reply = await self._ctx.post(
            f"/api/threads/{thread_id}/attachments", self._tokens[session.number], raw=_PNG
        )
        return str(reply["attachment_id"])

    def _learn(self, recorded: Any, real: Any) -> None:
        """Map the aliases in a recorded ack to the ids in the replay's ack."""
        for alias, value in _pairs(recorded, real):
            if alias not in self._ids:
                self._ids[alias] = value
                self._learned.set()


def _pairs(recorded: Any, real: Any, key: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(recorded, dict) and isinstance(real, dict):
        for k, v in recorded.items():
            if k in real:
                yield from _pairs(v, real[k], str(k))
    elif isinstance(recorded, list) and isinstance(real, list):
        for a, b in zip(recorded, real, strict=False):
            yield from _pairs(a, b, key)
    elif isinstance(recorded, str) and isinstance(real, str) and is_id_key(key):
        yield recorded, real
