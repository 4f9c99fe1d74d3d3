"""Contract of signaling.thread_store (ThreadStore, BlobStore), run against every backend."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools

import pytest

from careline.signaling.errors import SignalingError
from careline.signaling.identity import Role
from careline.signaling.stores import Storage
from careline.signaling.thread import (
    WRITABLE,
    Attachment,
    Change,
    MessageDraft,
    MessageKind,
    SystemEvent,
    Thread,
    ThreadQuery,
    ThreadState,
)

FAMILY = "fam-1"
CLINICIAN = "doc-1"
_counter = itertools.count(1)

PARENT_WRITES = Change(
    allowed=WRITABLE,
    family=FAMILY,
    moves=((ThreadState.ANSWERED, ThreadState.ASSIGNED),),
)
CLINICIAN_WRITES = Change(
    allowed=frozenset({ThreadState.ASSIGNED, ThreadState.ANSWERED}),
    assignee=CLINICIAN,
    moves=((ThreadState.ASSIGNED, ThreadState.ANSWERED),),
)


def new_thread(thread_id: str = "t-1", family: str = FAMILY, at: float = 100.0) -> Thread:
    return Thread(
        thread_id=thread_id,
        family_sub=family,
        patient_ref="pat-1",
        state=ThreadState.OPEN,
        assigned_to=None,
        created_by=family,
        created_at=at,
        updated_at=at,
        closed_at=None,
        last_seq=0,
        version=1,
    )


def draft(
    thread_id: str = "t-1",
    text: str | None = "hello",
    *,
    sender: str = FAMILY,
    role: Role = Role.PARENT,
    cmid: str | None = None,
    kind: MessageKind = MessageKind.MESSAGE,
    at: float | None = None,
    attachments: tuple[str, ...] = (),
    target: int | None = None,
    event: SystemEvent | None = None,
    subject: str | None = None,
) -> MessageDraft:
    n = next(_counter)
    return MessageDraft(
        thread_id=thread_id,
        client_msg_id=cmid or f"c-{n}",
        kind=kind,
        sender=sender,
        sender_role=role,
        created_at=at if at is not None else 1000.0 + n,
        text=text,
        attachment_ids=attachments,
        event=event,
        subject=subject,
        target_seq=target,
    )


def opened(thread: Thread) -> MessageDraft:
    return draft(
        thread.thread_id,
        None,
        sender=thread.family_sub,
        kind=MessageKind.SYSTEM,
        event=SystemEvent.OPENED,
        cmid="system:opened",
        at=thread.created_at,
    )


async def make(storage: Storage, thread_id: str = "t-1", family: str = FAMILY) -> Thread:
    thread = new_thread(thread_id, family)
    created, fresh = await storage.threads.create(thread, opened(thread))
    assert fresh
    return created


async def assign(storage: Storage, thread_id: str = "t-1", to: str = CLINICIAN) -> Thread:
    thread = await storage.threads.get(thread_id)
    assert thread is not None
    change = Change(
        allowed=WRITABLE,
        expected_version=thread.version,
        moves=((ThreadState.OPEN, ThreadState.ASSIGNED),),
        assign_to=to,
    )
    system = draft(
        thread_id,
        None,
        sender=to,
        role=Role.CLINICIAN,
        kind=MessageKind.SYSTEM,
        event=SystemEvent.ASSIGNED,
        subject=to,
    )
    return (await storage.threads.append(system, change)).thread


async def close(storage: Storage, thread_id: str = "t-1", at: float = 5000.0) -> Thread:
    thread = await storage.threads.get(thread_id)
    assert thread is not None
    change = Change(
        allowed=WRITABLE,
        expected_version=thread.version,
        moves=tuple((s, ThreadState.CLOSED) for s in WRITABLE),
    )
    system = draft(
        thread_id,
        None,
        sender=CLINICIAN,
        role=Role.CLINICIAN,
        kind=MessageKind.SYSTEM,
        event=SystemEvent.CLOSED,
        at=at,
    )
    return (await storage.threads.append(system, change)).thread


async def refused(code: str, work: object) -> None:
    assert asyncio.iscoroutine(work)
    with pytest.raises(SignalingError) as caught:
        await work
    assert caught.value.code == code


# -- creation ------------------------------------------------------------------------------------


async def test_create_starts_the_timeline_with_an_opened_entry(storage: Storage) -> None:
    thread = await make(storage)
    assert thread.last_seq == 1
    assert await storage.threads.get("t-1") == thread
    [entry] = await storage.threads.messages("t-1")
    assert (entry.seq, entry.kind, entry.event) == (1, MessageKind.SYSTEM, SystemEvent.OPENED)
    assert await storage.threads.get("t-missing") is None


async def test_create_is_idempotent_and_refuses_another_family(storage: Storage) -> None:
    first = await make(storage)
    again, fresh = await storage.threads.create(new_thread(), opened(new_thread()))
    assert not fresh
    assert again == first
    other = new_thread(family="fam-2")
    await refused("thread.duplicate_mismatch", storage.threads.create(other, opened(other)))
    assert len(await storage.threads.messages("t-1")) == 1


# -- appends -------------------------------------------------------------------------------------


async def test_append_assigns_gap_free_seqs_and_moves_the_sender_horizon(storage: Storage) -> None:
    await make(storage)
    results = [await storage.threads.append(draft(text=f"m{i}"), PARENT_WRITES) for i in range(3)]
    assert [r.message.seq for r in results] == [2, 3, 4]
    assert all(not r.duplicate for r in results)
    assert results[-1].thread.last_seq == 4
    assert results[-1].thread.updated_at == results[-1].message.created_at
    assert await storage.threads.read_seq("t-1", FAMILY) == 4
    listed = await storage.threads.messages("t-1")
    assert [m.seq for m in listed] == [1, 2, 3, 4]
    assert [m.text for m in listed[1:]] == ["m0", "m1", "m2"]
    assert listed[1] == results[0].message


async def test_retry_returns_the_original_and_a_changed_retry_is_refused(storage: Storage) -> None:
    await make(storage)
    first = await storage.threads.append(draft(cmid="same", text="hi", at=2000.0), PARENT_WRITES)
    retry = await storage.threads.append(draft(cmid="same", text="hi", at=2500.0), PARENT_WRITES)
    assert retry.duplicate
    assert retry.message == first.message
    assert retry.message.created_at == 2000.0
    await refused(
        "thread.duplicate_mismatch",
        storage.threads.append(draft(cmid="same", text="changed"), PARENT_WRITES),
    )
    assert [m.seq for m in await storage.threads.messages("t-1")] == [1, 2]


async def test_concurrent_appends_never_skip_or_repeat(storage: Storage) -> None:
    await make(storage)
    results = await asyncio.gather(
        *(
            storage.threads.append(draft(text=f"n{i}", cmid=f"k{i}"), PARENT_WRITES)
            for i in range(80)
        )
    )
    assert sorted(r.message.seq for r in results) == list(range(2, 82))
    listed = await storage.threads.messages("t-1", limit=1000)
    assert [m.seq for m in listed] == list(range(1, 82))
    by_cmid = {r.message.client_msg_id: r.message.seq for r in results}
    assert all(by_cmid[m.client_msg_id] == m.seq for m in listed[1:])


async def test_access_is_checked_before_anything_else(storage: Storage) -> None:
    await make(storage)
    stranger = dataclasses.replace(PARENT_WRITES, family="fam-2")
    await refused("thread.not_found", storage.threads.append(draft(sender="fam-2"), stranger))
    await refused("thread.not_found", storage.threads.append(draft("t-none"), PARENT_WRITES))
    await refused(
        "thread.not_assigned",
        storage.threads.append(draft(sender=CLINICIAN, role=Role.CLINICIAN), CLINICIAN_WRITES),
    )
    await assign(storage, to="doc-2")
    await refused(
        "thread.not_found",
        storage.threads.append(draft(sender=CLINICIAN, role=Role.CLINICIAN), CLINICIAN_WRITES),
    )
    thread = await storage.threads.get("t-1")
    assert thread is not None
    assert thread.last_seq == 2


async def test_answers_and_replies_move_the_state(storage: Storage) -> None:
    await make(storage)
    assigned = await assign(storage)
    assert (assigned.state, assigned.assigned_to, assigned.version) == (
        ThreadState.ASSIGNED,
        CLINICIAN,
        2,
    )
    answer = await storage.threads.append(
        draft(sender=CLINICIAN, role=Role.CLINICIAN, text="answer"), CLINICIAN_WRITES
    )
    assert (answer.thread.state, answer.thread.version) == (ThreadState.ANSWERED, 3)
    follow_up = await storage.threads.append(draft(text="thanks, but"), PARENT_WRITES)
    assert follow_up.thread.state is ThreadState.ASSIGNED
    more = await storage.threads.append(draft(text="and also"), PARENT_WRITES)
    assert (more.thread.state, more.thread.version) == (ThreadState.ASSIGNED, 4)


async def test_stale_version_and_closed_thread_are_refused(storage: Storage) -> None:
    await make(storage)
    stale = Change(allowed=WRITABLE, expected_version=99, assign_to=CLINICIAN)
    await refused("thread.stale", storage.threads.append(draft(), stale))
    await assign(storage)
    closed = await close(storage, at=5000.0)
    assert (closed.state, closed.closed_at) == (ThreadState.CLOSED, 5000.0)
    await refused("thread.closed", storage.threads.append(draft(), PARENT_WRITES))
    thread = await storage.threads.get("t-1")
    assert thread == closed


async def test_a_retry_after_close_still_returns_the_original(storage: Storage) -> None:
    await make(storage)
    first = await storage.threads.append(draft(cmid="before-close"), PARENT_WRITES)
    await assign(storage)
    await close(storage)
    retry = await storage.threads.append(
        draft(cmid="before-close", text=first.message.text), PARENT_WRITES
    )
    assert retry.duplicate
    assert retry.message == first.message


# -- attachments -----------------------------------------------------------------------------------


def upload(
    aid: str, uploader: str = FAMILY, at: float = 50.0, thread_id: str = "t-1"
) -> Attachment:
    return Attachment(
        thread_id=thread_id,
        attachment_id=aid,
        content_type="image/png",
        size=123,
        uploader=uploader,
        created_at=at,
    )


async def test_attachments_bind_to_one_message(storage: Storage) -> None:
    await make(storage)
    await storage.threads.add_attachment(upload("a-1"))
    await storage.threads.add_attachment(upload("a-2"))
    sent = await storage.threads.append(draft(text="", attachments=("a-1", "a-2")), PARENT_WRITES)
    assert [r.attachment_id for r in sent.message.attachments] == ["a-1", "a-2"]
    assert sent.message.attachments[0].content_type == "image/png"
    stored = await storage.threads.attachment("t-1", "a-1")
    assert stored is not None
    assert stored.seq == sent.message.seq
    assert stored.size == 123
    [listed] = await storage.threads.get_messages("t-1", [sent.message.seq])
    assert listed == sent.message
    await refused(
        "thread.attachment_in_use",
        storage.threads.append(draft(attachments=("a-1",)), PARENT_WRITES),
    )


async def test_a_refused_attachment_leaves_nothing_half_written(storage: Storage) -> None:
    await make(storage)
    await storage.threads.add_attachment(upload("a-good"))
    await storage.threads.add_attachment(upload("a-theirs", uploader=CLINICIAN))
    for bad in ("a-missing", "a-theirs"):
        await refused(
            "thread.attachment_not_found",
            storage.threads.append(draft(attachments=("a-good", bad)), PARENT_WRITES),
        )
    good = await storage.threads.attachment("t-1", "a-good")
    assert good is not None
    assert good.seq is None
    thread = await storage.threads.get("t-1")
    assert thread is not None
    assert thread.last_seq == 1
    assert await storage.threads.attachment("t-1", "a-nope") is None
    await refused("thread.not_found", storage.threads.add_attachment(upload("x", thread_id="t-0")))


# -- edits and deletions ---------------------------------------------------------------------------


async def test_edit_replaces_the_text_and_leaves_a_stub(storage: Storage) -> None:
    await make(storage)
    original = (await storage.threads.append(draft(text="rash on arm"), PARENT_WRITES)).message
    edit = draft(text="rash on leg", kind=MessageKind.EDIT, target=original.seq, at=3000.0)
    result = await storage.threads.append(edit, PARENT_WRITES)
    assert result.message.kind is MessageKind.EDIT
    assert result.message.text is None
    assert result.message.target_seq == original.seq
    assert result.target is not None
    assert (result.target.text, result.target.version, result.target.edited_at) == (
        "rash on leg",
        2,
        3000.0,
    )
    [stored] = await storage.threads.get_messages("t-1", [original.seq])
    assert stored == result.target
    assert stored.created_at == original.created_at
    retry = await storage.threads.append(edit, PARENT_WRITES)
    assert retry.duplicate
    assert retry.message == result.message
    assert retry.target == stored


async def test_delete_empties_the_message_and_drops_its_attachments(storage: Storage) -> None:
    await make(storage)
    await storage.threads.add_attachment(upload("a-9"))
    original = (
        await storage.threads.append(draft(text="see", attachments=("a-9",)), PARENT_WRITES)
    ).message
    result = await storage.threads.append(
        draft(text=None, kind=MessageKind.DELETE, target=original.seq), PARENT_WRITES
    )
    assert result.target is not None
    assert (result.target.deleted, result.target.text, result.target.attachments) == (
        True,
        "",
        (),
    )
    assert result.dropped_blobs == ("t-1/a-9",)
    assert await storage.threads.attachment("t-1", "a-9") is None
    await refused(
        "thread.message_deleted",
        storage.threads.append(
            draft(text="x", kind=MessageKind.EDIT, target=original.seq), PARENT_WRITES
        ),
    )


async def test_edits_are_refused_for_the_wrong_target(storage: Storage) -> None:
    await make(storage)
    await assign(storage)
    answer = (
        await storage.threads.append(
            draft(sender=CLINICIAN, role=Role.CLINICIAN, text="answer"), CLINICIAN_WRITES
        )
    ).message
    edit = draft(text="x", kind=MessageKind.EDIT, target=answer.seq)
    await refused("thread.not_sender", storage.threads.append(edit, PARENT_WRITES))
    await refused(
        "thread.not_editable",
        storage.threads.append(draft(text="x", kind=MessageKind.EDIT, target=1), PARENT_WRITES),
    )
    await refused(
        "thread.message_not_found",
        storage.threads.append(draft(text="x", kind=MessageKind.EDIT, target=99), PARENT_WRITES),
    )
    thread = await storage.threads.get("t-1")
    assert thread is not None
    assert thread.last_seq == answer.seq


# -- reading -------------------------------------------------------------------------------------


async def test_messages_page_forward_and_backward(storage: Storage) -> None:
    await make(storage)
    for i in range(9):
        await storage.threads.append(draft(text=f"m{i}"), PARENT_WRITES)
    assert [m.seq for m in await storage.threads.messages("t-1", after_seq=3, limit=4)] == [
        4,
        5,
        6,
        7,
    ]
    assert [m.seq for m in await storage.threads.messages("t-1", after_seq=10)] == []
    assert [m.seq for m in await storage.threads.messages("t-1", before_seq=6, limit=3)] == [
        3,
        4,
        5,
    ]
    assert [m.seq for m in await storage.threads.messages("t-1", before_seq=3, limit=5)] == [1, 2]
    found = await storage.threads.get_messages("t-1", [7, 2, 99, 2])
    assert [m.seq for m in found] == [2, 7]
    assert await storage.threads.messages("t-none") == []


async def test_read_horizon_only_rises_and_stays_in_range(storage: Storage) -> None:
    await make(storage)
    for _ in range(4):
        await storage.threads.append(draft(), PARENT_WRITES)
    assert await storage.threads.read_seq("t-1", CLINICIAN) == 0
    assert await storage.threads.mark_read("t-1", CLINICIAN, 3) == 3
    assert await storage.threads.mark_read("t-1", CLINICIAN, 2) == 3
    assert await storage.threads.mark_read("t-1", CLINICIAN, 5) == 5
    await refused("thread.seq_out_of_range", storage.threads.mark_read("t-1", CLINICIAN, 6))
    await refused("thread.not_found", storage.threads.mark_read("t-none", CLINICIAN, 1))
    assert await storage.threads.read_seq("t-1", CLINICIAN) == 5


async def test_listing_follows_the_query(storage: Storage) -> None:
    await make(storage, "t-a")
    await make(storage, "t-b")
    await make(storage, "t-c", family="fam-2")
    await assign(storage, "t-b")
    await assign(storage, "t-c", to="doc-2")
    await storage.threads.append(draft("t-a", text="newest"), PARENT_WRITES)

    def ids(summaries: object) -> list[str]:
        assert isinstance(summaries, list | tuple)
        return [s.thread.thread_id for s in summaries]

    mine = await storage.threads.list_threads(ThreadQuery(viewer=FAMILY, family=FAMILY))
    assert ids(mine) == ["t-a", "t-b"]
    assert [s.unread for s in mine] == [0, 1]
    queue = await storage.threads.list_threads(ThreadQuery(viewer=CLINICIAN, clinician=CLINICIAN))
    assert ids(queue) == ["t-a", "t-b"]
    assert [s.unread for s in queue] == [2, 0]
    everything = await storage.threads.list_threads(ThreadQuery(viewer="admin-1"))
    assert sorted(ids(everything)) == ["t-a", "t-b", "t-c"]
    assigned = await storage.threads.list_threads(
        ThreadQuery(viewer="admin-1", states=frozenset({ThreadState.ASSIGNED}))
    )
    assert ids(assigned) == ["t-c", "t-b"] or ids(assigned) == ["t-b", "t-c"]
    assert len(ids(assigned)) == 2
    one = await storage.threads.list_threads(ThreadQuery(viewer=FAMILY, family=FAMILY, only="t-b"))
    assert ids(one) == ["t-b"]
    first = await storage.threads.list_threads(ThreadQuery(viewer=FAMILY, family=FAMILY, limit=1))
    assert ids(first) == ["t-a"]
    rest = await storage.threads.list_threads(
        ThreadQuery(viewer=FAMILY, family=FAMILY, before=first[0].thread.updated_at)
    )
    assert ids(rest) == ["t-b"]


async def test_listing_many_threads_with_a_state_filter(storage: Storage) -> None:
    for i in range(70):
        await make(storage, f"t-{i:03d}")
    for i in range(0, 70, 10):
        await assign(storage, f"t-{i:03d}")
    found = await storage.threads.list_threads(
        ThreadQuery(
            viewer=CLINICIAN,
            clinician=CLINICIAN,
            states=frozenset({ThreadState.ASSIGNED}),
            limit=5,
        )
    )
    assert [s.thread.thread_id for s in found] == ["t-060", "t-050", "t-040", "t-030", "t-020"]


# -- retention -----------------------------------------------------------------------------------


async def test_purge_removes_old_closed_threads_and_unsent_uploads(storage: Storage) -> None:
    for name in ("t-old", "t-new", "t-open"):
        await make(storage, name)
    await storage.threads.add_attachment(upload("a-sent", thread_id="t-old"))
    await storage.threads.append(draft("t-old", attachments=("a-sent",)), PARENT_WRITES)
    await storage.threads.add_attachment(upload("a-stale", thread_id="t-open", at=10.0))
    await storage.threads.add_attachment(upload("a-fresh", thread_id="t-open", at=9000.0))
    for name, at in (("t-old", 1000.0), ("t-new", 8000.0)):
        await assign(storage, name)
        await close(storage, name, at=at)
    result = await storage.threads.purge(closed_before=5000.0, orphans_before=5000.0)
    assert result.threads == ("t-old",)
    assert sorted(result.blob_keys) == ["t-old/a-sent", "t-open/a-stale"]
    assert result.attachments == 2
    assert await storage.threads.get("t-old") is None
    assert await storage.threads.messages("t-old") == []
    assert await storage.threads.get("t-new") is not None
    assert await storage.threads.attachment("t-open", "a-stale") is None
    assert await storage.threads.attachment("t-open", "a-fresh") is not None
    everything = await storage.threads.list_threads(ThreadQuery(viewer="admin"))
    assert sorted(s.thread.thread_id for s in everything) == ["t-new", "t-open"]
    again = await storage.threads.purge(closed_before=5000.0, orphans_before=5000.0)
    assert again.threads == ()
    assert again.blob_keys == ()


# -- blobs -----------------------------------------------------------------------------------------


async def test_blobs_round_trip(storage: Storage) -> None:
    data = bytes(range(256)) * 1000
    await storage.blobs.put("t-1/a-1", data)
    assert await storage.blobs.get("t-1/a-1") == data
    assert await storage.blobs.get("t-1/a-2") is None
    await storage.blobs.put("../../etc/passwd", b"contained")
    assert await storage.blobs.get("../../etc/passwd") == b"contained"
    await storage.blobs.delete(["t-1/a-1", "t-1/missing"])
    assert await storage.blobs.get("t-1/a-1") is None
    await storage.blobs.delete([])
