"""Redis lost while three nodes run, and Redis killed and restarted with its AOF.

Each test has a private redis-server (appendonly yes, appendfsync always) that it stops
(SIGSTOP), kills (SIGKILL) and starts again on the same port and data dir. The nodes are real
`careline serve` processes; the participants are real aiortc peers.
"""

from __future__ import annotations

import asyncio
import functools
import re
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from careline.loadtest.clips import Clip
from careline.loadtest.visit_client import VisitClient, VisitError
from careline.signaling.identity import Role
from tests.cluster.conftest import (
    Cluster,
    assert_stored_once,
    in_call,
    new_thread,
    send,
    thread_socket,
    three_nodes,
)
from tests.hotline.conftest import poll
from tests.support import RedisServer, redis_server

pytestmark = pytest.mark.redis

#: Guards against a hang, not speed limits: a request during the outage must be answered.
ANSWERED_WITHIN = 10.0
#: The loops that log an outage: one "failing" and one "working again" line each, per node.
LOOPS = {
    "heartbeat",
    "hotline sweep",
    "room relay subscription",
    "hotline node bus subscription",
}


@pytest.fixture
async def private(tmp_path: Path) -> AsyncIterator[tuple[Cluster, RedisServer]]:
    """Three nodes on a redis-server of this test's own (AOF always), short leases."""
    with redis_server(appendonly=True) as redis:
        async with three_nodes(
            tmp_path,
            redis,
            CARELINE_CLUSTER_NODE_LEASE_SECONDS="3",
            CARELINE_THREADS_SEND_RATE_PER_SECOND="1000",
            CARELINE_THREADS_SEND_BURST="1000",
        ) as cluster:
            yield cluster, redis


async def readyz(cluster: Cluster, on: int) -> tuple[int, dict[str, Any]]:
    async with asyncio.timeout(ANSWERED_WITHIN):
        async with cluster.http.get(cluster.urls[on] + "/readyz") as response:
            return response.status, await response.json()


async def media_flows(clients: list[tuple[VisitClient, str]]) -> None:
    """Each client receives 5 more frames from the other (on its current connection)."""

    async def more_frames(client: VisitClient, publisher: str) -> None:
        mid = client.mid_of(publisher)
        assert mid is not None
        await client.frames_from(publisher, client.frames.count(mid) + 5, within=ANSWERED_WITHIN)

    await asyncio.gather(*(more_frames(c, p) for c, p in clients))


def outage_lines(log: Path) -> tuple[Counter[str], Counter[str]]:
    """How often each loop logged "failing" and "working again"."""
    failing: Counter[str] = Counter()
    back: Counter[str] = Counter()
    for line in log.read_text().splitlines():
        for loop in LOOPS:
            if re.search(rf"{loop} failing \(", line):
                failing[loop] += 1
            elif re.search(rf"{loop} working again", line):
                back[loop] += 1
    return failing, back


async def test_nodes_keep_media_refuse_stored_work_and_recover_when_redis_returns(
    private: tuple[Cluster, RedisServer], clip: Clip
) -> None:
    cluster, redis = private
    visit_id, ids, doctor, parent = await in_call(cluster, clip, doctor_on=1, parent_on=2)
    pairs = [(doctor, ids["parent"]), (parent, ids["clinician"])]
    thread_id = await new_thread(cluster, "fam-1")
    member = await thread_socket(cluster, on=2, sub="fam-1")
    sender = await thread_socket(cluster, on=0, sub="fam-1", thread_id=thread_id)
    newcomer = cluster.visit_client(
        cluster.token(Role.CLINICIAN, "c-1", visit_id=visit_id), on=0, video=None
    )
    await newcomer.connect()
    relayed: list[str] = []
    member.on(
        "thread.message",
        lambda data: relayed.append(data["message"]["client_msg_id"]),
        namespace="/threads",
    )
    try:
        # Redis stops answering (SIGSTOP: connections stay open, nothing comes back).
        redis.pause()
        for on in range(3):
            status, body = await readyz(cluster, on)
            assert status == 503
            assert body["error"]["code"] == "store_unavailable"
        reply = await send(sender, thread_id, "m-during")
        assert reply["error"]["code"] == "store_unavailable", reply
        assert await newcomer.error("visit.join", {"visit_id": visit_id}) == "store_unavailable"
        await media_flows(pairs)

        # Redis dies, then comes back on the same port with its AOF.
        redis.kill()
        assert (await readyz(cluster, 0))[0] == 503
        await media_flows(pairs)
        restarted_at = time.time()
        redis.restart()

        for on in range(3):
            await poll(functools.partial(readyz, cluster, on), lambda r: r[0] == 200, within=15)
        # Every node heartbeats (is registered) again.
        await poll(
            lambda: cluster.rest("GET", "/api/cluster/nodes"),
            lambda listed: (
                len([n for n in listed["nodes"] if n["heartbeat_at"] > restarted_at]) == 3
            ),
            within=10,
        )
        # The room relay listens again: a message sent on A reaches the member on C.
        for attempt in range(20):
            reply = await send(sender, thread_id, f"m-after-{attempt}")
            assert reply["ok"] is True, reply
            await asyncio.sleep(0.5)
            if relayed:
                break
        assert relayed
        assert relayed[0].startswith("m-after-")
        await media_flows(pairs)
        # The visit stayed where its media is: a new join is sent to the same node.
        async with asyncio.timeout(15):
            while True:
                try:
                    await newcomer.join(visit_id)
                    break
                except VisitError as exc:
                    if exc.code != "store_unavailable":  # settling: try again
                        raise
                    await asyncio.sleep(0.25)
        assert newcomer.url == doctor.url
    finally:
        await sender.disconnect()
        await member.disconnect()

    # One line per state change: each loop logged its outage once and its recovery once.
    for log in cluster.logs:
        failing, back = outage_lines(log)
        assert set(failing) == LOOPS, (log.name, failing)
        assert set(failing.values()) == {1}, (log.name, failing)
        assert back == failing, (log.name, failing, back)


#: Messages each sender gets acknowledged; Redis is killed once this many are acknowledged.
PER_SENDER = 20
KILL_AFTER = 30


async def test_no_acknowledged_message_is_lost_when_redis_is_killed_and_restarted(
    private: tuple[Cluster, RedisServer],
) -> None:
    cluster, redis = private
    families = ["fam-a", "fam-b"]
    threads = {sub: await new_thread(cluster, sub) for sub in families}
    senders = [
        (sub, on, await thread_socket(cluster, on=on, sub=sub, thread_id=threads[sub]))
        for sub in families
        for on in range(3)
    ]
    acked: dict[tuple[str, str], int] = {}
    refused: Counter[str] = Counter()
    enough = asyncio.Event()

    async def keep_sending(sub: str, on: int, client: Any) -> None:
        for i in range(PER_SENDER):
            client_msg_id = f"{sub}-{on}-{i}"
            while True:  # retried with the same id until acknowledged
                reply = await send(client, threads[sub], client_msg_id)
                if reply["ok"]:
                    acked[(threads[sub], client_msg_id)] = reply["data"]["message"]["seq"]
                    break
                refused[reply["error"]["code"]] += 1
                await asyncio.sleep(0.1)
            if len(acked) >= KILL_AFTER:
                enough.set()
            await asyncio.sleep(0.02)

    async def kill_and_restart() -> None:
        await enough.wait()
        redis.kill()
        await asyncio.sleep(1.0)
        await asyncio.to_thread(redis.restart)

    try:
        async with asyncio.timeout(60):
            await asyncio.gather(
                kill_and_restart(), *(keep_sending(sub, on, c) for sub, on, c in senders)
            )
    finally:
        for _, _, client in senders:
            await client.disconnect()

    # The kill hit the stream (some sends were refused), and every sender finished after it.
    assert len(acked) == len(senders) * PER_SENDER
    assert refused, "Redis was killed after every send"
    assert set(refused) <= {"store_unavailable", "no_ack"}, refused
    await assert_stored_once(cluster, threads, acked)
