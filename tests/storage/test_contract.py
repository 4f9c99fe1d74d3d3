"""Contract of signaling.stores, run against every backend."""

from __future__ import annotations

import asyncio

from careline.signaling.stores import AuditValue, Storage


async def test_ping_answers(storage: Storage) -> None:
    await storage.ping()


async def test_close_is_idempotent(storage: Storage) -> None:
    await storage.close()
    await storage.close()


async def test_audit_assigns_gap_free_seq_per_scope(storage: Storage) -> None:
    first = await storage.audit.append("visit-a", "sub-1", "joined", {"device": "d1"}, at=10.0)
    second = await storage.audit.append("visit-a", "sub-2", "admitted", {}, at=11.0)
    other = await storage.audit.append("visit-b", "sub-1", "joined", {}, at=12.0)
    assert (first.seq, second.seq, other.seq) == (1, 2, 1)


async def test_audit_round_trips_every_field(storage: Storage) -> None:
    detail: dict[str, AuditValue] = {
        "reason": "network",
        "attempt": 3,
        "ratio": 0.5,
        "flag": True,
        "none": None,
    }
    await storage.audit.append("scope-x", "actor-1", "left", detail, at=1234.5)
    [event] = await storage.audit.list("scope-x")
    assert event.scope == "scope-x"
    assert event.seq == 1
    assert event.at == 1234.5
    assert event.actor == "actor-1"
    assert event.action == "left"
    assert dict(event.detail) == detail


async def test_audit_concurrent_appends_never_skip_or_repeat(storage: Storage) -> None:
    appended = await asyncio.gather(
        *(storage.audit.append("busy", f"a{i}", "tick", {"i": i}, at=float(i)) for i in range(60))
    )
    assert sorted(e.seq for e in appended) == list(range(1, 61))
    listed = await storage.audit.list("busy", limit=1000)
    assert [e.seq for e in listed] == list(range(1, 61))
    by_seq = {e.seq: e.actor for e in appended}
    assert all(by_seq[e.seq] == e.actor for e in listed)


async def test_audit_list_pages_with_after_seq_and_limit(storage: Storage) -> None:
    for i in range(7):
        await storage.audit.append("paged", "actor", f"a{i}", {}, at=float(i))
    page = await storage.audit.list("paged", after_seq=2, limit=3)
    assert [e.seq for e in page] == [3, 4, 5]
    assert [e.action for e in page] == ["a2", "a3", "a4"]
    assert [e.seq for e in await storage.audit.list("paged", after_seq=5)] == [6, 7]
    assert await storage.audit.list("paged", after_seq=7) == []
    assert await storage.audit.list("no-such-scope") == []


async def test_revocation_holds_until_its_time(storage: Storage) -> None:
    assert not await storage.revocations.is_revoked(["jti:abc"], now=100.0)
    await storage.revocations.revoke("jti:abc", until=2_000_000_000.0)
    assert await storage.revocations.is_revoked(["jti:other", "jti:abc"], now=100.0)
    assert not await storage.revocations.is_revoked(["jti:abc"], now=2_000_000_001.0)
    assert not await storage.revocations.is_revoked([], now=100.0)


async def test_revocation_later_until_wins(storage: Storage) -> None:
    await storage.revocations.revoke("sub:k1", until=2_000_000_500.0)
    await storage.revocations.revoke("sub:k1", until=2_000_000_100.0)
    assert await storage.revocations.is_revoked(["sub:k1"], now=2_000_000_200.0)


async def test_revocations_are_kept_apart(storage: Storage) -> None:
    await storage.revocations.revoke("scope:v1:sub:p1", until=2_000_000_000.0)
    assert not await storage.revocations.is_revoked(["scope:v2:sub:p1", "sub:p1"], now=1.0)
