"""This process as a node of a deployment: its id, its public URL, its heartbeats and load.

With the Redis backend every `careline serve` process heartbeats a NodeInfo into the node
registry every third of `cluster.node_lease_seconds`; a node whose heartbeats stop for a lease
is dead, and the visits it held are placed elsewhere at their next join. The node id is also
the hotline's node id (one identity per process). The last list of live nodes read by the
heartbeat is kept for /metrics and for the room relay's "are there peers" check, so neither
asks Redis.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence

from careline.signaling.errors import StoreUnavailable
from careline.signaling.node_registry import NodeInfo, NodeLoad, NodeRegistry
from careline.signaling.outage_log import OutageLog

log = logging.getLogger(__name__)


def new_node_id() -> str:
    """A fresh node id (a process gets a new one at every start)."""
    return f"n-{secrets.token_urlsafe(6)}"


class CpuMeter:
    """This process's CPU use between two readings, in percent of one core."""

    def __init__(self) -> None:
        self._cpu = time.process_time()
        self._wall = time.monotonic()

    def read(self) -> float:
        """CPU percent since the previous reading."""
        cpu, wall = time.process_time(), time.monotonic()
        spent, elapsed = cpu - self._cpu, wall - self._wall
        self._cpu, self._wall = cpu, wall
        return round(100.0 * spent / elapsed, 1) if elapsed > 0 else 0.0


class ClusterNode:
    """Heartbeats this node into the registry until `close`.

    The first heartbeat waits for the public URL: configured, or advertised by whoever started
    listening (the port may be chosen by the OS). Concurrency: one task owned by this object;
    every other method runs on the event loop and never waits for Redis.
    """

    def __init__(
        self,
        node_id: str,
        registry: NodeRegistry,
        *,
        lease_seconds: float,
        load: Callable[[], NodeLoad],
        public_url: str = "",
        clock: Callable[[], float] = time.time,
        after_beat: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        """`after_beat` runs after every successful heartbeat (the visit handover)."""
        self.node_id = node_id
        self._after_beat = after_beat
        self._registry = registry
        self._lease = lease_seconds
        self._load = load
        self._clock = clock
        self._url = public_url
        self._has_url = asyncio.Event()
        if public_url:
            self._has_url.set()
        self._started_at = clock()
        self._last_load = NodeLoad()
        self._live: tuple[NodeInfo, ...] = ()
        self._task: asyncio.Task[None] | None = None
        self._outage = OutageLog(log, f"node {node_id} heartbeat")
        # Until this time (our clock) other nodes' leases are not trusted: every lease may have
        # run out while Redis was away, and the other nodes renew theirs within a third of one.
        self._settled_at = float("-inf")
        self.heartbeats = 0

    @property
    def url(self) -> str:
        """The URL clients use to reach this node ("" until known)."""
        return self._url

    def advertise(self, url: str) -> None:
        """The URL this process listens on; used unless `cluster.public_url` is set."""
        if not self._url:
            self._url = url
            self._has_url.set()

    def info(self) -> NodeInfo:
        """This node's record as of now (with the load of its last heartbeat)."""
        now = self._clock()
        return NodeInfo(
            node_id=self.node_id,
            url=self._url,
            load=self._last_load,
            heartbeat_at=now,
            lease_until=now + self._lease,
            started_at=self._started_at,
        )

    @property
    def live_nodes(self) -> Sequence[NodeInfo]:
        """Live nodes as read by the last heartbeat (this one included once registered)."""
        return self._live

    @property
    def failed_heartbeats(self) -> int:
        """Heartbeats that did not reach Redis."""
        return self._outage.failures

    @property
    def reachable(self) -> bool:
        """Whether the last heartbeat reached Redis."""
        return not self._outage.failing

    def settling(self) -> bool:
        """Whether this node lost Redis within the last lease (or still has): then a node
        missing from the registry may be alive and merely not yet heartbeated again."""
        return self._outage.failing or self._clock() < self._settled_at

    def has_peers(self) -> bool:
        """Whether another node was alive at the last heartbeat."""
        return any(node.node_id != self.node_id for node in self._live)

    def start(self) -> None:
        """Start heartbeating (the task is owned here; `close` stops it)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._beat(), name="careline-node-heartbeat"
            )

    async def heartbeat(self) -> None:
        """One heartbeat: store this node's record, then read who is alive."""
        self._last_load = self._load()
        await self._registry.heartbeat(self.info())
        self._live = tuple(await self._registry.live(self._clock()))
        self.heartbeats += 1

    async def close(self) -> None:
        """Stop heartbeating and leave the registry (best effort); safe twice."""
        task, self._task = self._task, None
        if task is None:
            return
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        if self._has_url.is_set():
            try:
                await self._registry.leave(self.node_id)
            except StoreUnavailable:
                log.warning(
                    "node %s could not leave the registry; its lease will run out", self.node_id
                )

    async def _beat(self) -> None:
        await self._has_url.wait()
        while True:
            try:
                await self.heartbeat()
            except StoreUnavailable as exc:
                self._outage.failed(exc.code)
            except Exception:
                if not self._outage.failing:
                    log.exception("node %s: heartbeat failed", self.node_id)
                self._outage.failed("unexpected error")
            else:
                if self._outage.ok():
                    self._settled_at = self._clock() + self._lease
                await self._run_after_beat()
            await asyncio.sleep(self._lease / 3)

    async def _run_after_beat(self) -> None:
        if self._after_beat is None:
            return
        try:
            await self._after_beat()
        except StoreUnavailable:
            pass  # the next heartbeat says whether Redis is away; this runs again after it
        except Exception:
            log.exception("node %s: after-heartbeat work failed", self.node_id)
