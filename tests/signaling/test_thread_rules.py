"""The message-visit domain rules, without I/O: scopes, visibility, changes, transitions."""

from __future__ import annotations

import msgspec
import pytest

from careline.signaling.errors import SignalingError
from careline.signaling.identity import Principal, Role
from careline.signaling.thread import (
    WRITABLE,
    Change,
    Message,
    MessageDraft,
    MessageKind,
    Refusal,
    SystemEvent,
    Thread,
    ThreadState,
    apply_change,
    assign_change,
    can_view,
    check_access,
    check_scope,
    check_transition,
    close_change,
    fingerprint,
    member_subs,
    message_change,
    new_thread_id,
    refusal,
    reopen_change,
    require_visible,
    revise,
    target_refusal,
)

DAY = 86_400.0


def who(
    role: Role, sub: str = "s-1", *, thread: str | None = None, visit: str | None = None
) -> Principal:
    return Principal(
        sub=sub, role=role, token_id="j", expires_at=1e10, thread_id=thread, visit_id=visit
    )


PARENT = who(Role.PARENT, "fam-1")
DOCTOR = who(Role.CLINICIAN, "doc-1")
OTHER_DOCTOR = who(Role.CLINICIAN, "doc-2")
ADMIN = who(Role.ADMIN, "adm-1")


def thread(
    state: ThreadState = ThreadState.OPEN, assigned: str | None = None, **kw: object
) -> Thread:
    base = Thread(
        thread_id="t-1",
        family_sub="fam-1",
        patient_ref="pat-1",
        state=state,
        assigned_to=assigned,
        created_by="fam-1",
        created_at=10.0,
        updated_at=20.0,
        closed_at=100.0 if state is ThreadState.CLOSED else None,
        last_seq=5,
        version=3,
    )
    return msgspec.structs.replace(base, **kw)


def code_of(work: object, *args: object) -> str:
    assert callable(work)
    with pytest.raises(SignalingError) as caught:
        work(*args)
    return caught.value.code


def test_roles_and_scopes_that_may_use_threads() -> None:
    for role in (Role.PARENT, Role.CLINICIAN, Role.ADMIN):
        check_scope(who(role))
    assert code_of(check_scope, who(Role.KIOSK)) == "thread.forbidden"
    assert code_of(check_scope, who(Role.PHARMACIST)) == "thread.forbidden"
    assert code_of(check_scope, who(Role.PARENT, visit="v-1")) == "thread.not_granted"
    scoped = who(Role.PARENT, "fam-1", thread="t-1")
    check_scope(scoped, "t-1")
    assert code_of(check_scope, scoped, "t-2") == "thread.not_granted"


@pytest.mark.parametrize(
    ("principal", "state", "assigned", "visible"),
    [
        (PARENT, ThreadState.OPEN, None, True),
        (who(Role.PARENT, "fam-2"), ThreadState.OPEN, None, False),
        (DOCTOR, ThreadState.OPEN, None, True),
        (DOCTOR, ThreadState.ASSIGNED, "doc-1", True),
        (DOCTOR, ThreadState.CLOSED, "doc-1", True),
        (OTHER_DOCTOR, ThreadState.ASSIGNED, "doc-1", False),
        (ADMIN, ThreadState.CLOSED, "doc-1", True),
        (who(Role.KIOSK), ThreadState.OPEN, None, False),
        (who(Role.PHARMACIST), ThreadState.OPEN, None, False),
        (who(Role.PARENT, "fam-1", thread="t-9"), ThreadState.OPEN, None, False),
        (who(Role.CLINICIAN, "doc-1", thread="t-1"), ThreadState.ASSIGNED, "doc-1", True),
    ],
)
def test_who_sees_a_thread(
    principal: Principal, state: ThreadState, assigned: str | None, visible: bool
) -> None:
    assert can_view(principal, thread(state, assigned)) is visible


def test_invisible_threads_are_not_found_and_wrong_scopes_not_granted() -> None:
    assert require_visible(PARENT, thread()).thread_id == "t-1"
    assert code_of(require_visible, PARENT, None) == "thread.not_found"
    assert code_of(require_visible, who(Role.PARENT, "fam-2"), thread()) == "thread.not_found"
    stranger = who(Role.PARENT, "fam-1", thread="t-9")
    assert code_of(require_visible, stranger, thread()) == "thread.not_granted"


def test_members_are_the_family_and_the_assignee() -> None:
    assert member_subs(thread()) == ("fam-1",)
    assert member_subs(thread(ThreadState.ASSIGNED, "doc-1")) == ("fam-1", "doc-1")


def test_who_writes_and_what_a_message_moves() -> None:
    parent = message_change(PARENT)
    assert parent.family == "fam-1"
    assert parent.allowed == WRITABLE
    doctor = message_change(DOCTOR)
    assert doctor.assignee == "doc-1"
    assert ThreadState.OPEN not in doctor.allowed
    assert code_of(message_change, ADMIN) == "thread.forbidden"
    answered = apply_change(thread(ThreadState.ASSIGNED, "doc-1"), doctor, 6, 30.0)
    assert (answered.state, answered.version, answered.last_seq) == (ThreadState.ANSWERED, 4, 6)
    follow_up = apply_change(answered, parent, 7, 31.0)
    assert (follow_up.state, follow_up.version) == (ThreadState.ASSIGNED, 5)
    again = apply_change(follow_up, parent, 8, 32.0)
    assert (again.state, again.version, again.updated_at) == (ThreadState.ASSIGNED, 5, 32.0)


def test_assignment_rules() -> None:
    picked = assign_change(DOCTOR, thread(), None)
    assert (picked.assign_to, picked.expected_version) == ("doc-1", 3)
    after = apply_change(thread(), picked, 6, 40.0)
    assert (after.state, after.assigned_to, after.version) == (ThreadState.ASSIGNED, "doc-1", 4)
    taken = thread(ThreadState.ASSIGNED, "doc-2")
    assert code_of(assign_change, DOCTOR, taken, None) == "thread.already_assigned"
    assert code_of(assign_change, DOCTOR, thread(ThreadState.CLOSED), None) == "thread.closed"
    assert code_of(assign_change, DOCTOR, thread(), "doc-2") == "thread.forbidden"
    assert code_of(assign_change, PARENT, thread(), None) == "thread.forbidden"
    assert code_of(assign_change, ADMIN, thread(), None) == "thread.forbidden"
    moved = apply_change(taken, assign_change(ADMIN, taken, "doc-3"), 6, 40.0)
    assert (moved.state, moved.assigned_to, moved.version) == (ThreadState.ASSIGNED, "doc-3", 4)


def test_closing_rules() -> None:
    mine = thread(ThreadState.ANSWERED, "doc-1")
    closed = apply_change(mine, close_change(DOCTOR, mine), 6, 50.0)
    assert (closed.state, closed.closed_at, closed.version) == (ThreadState.CLOSED, 50.0, 4)
    assert close_change(ADMIN, thread()).expected_version == 3
    assert code_of(close_change, OTHER_DOCTOR, mine) == "thread.forbidden"
    assert code_of(close_change, PARENT, mine) == "thread.forbidden"
    assert code_of(close_change, DOCTOR, thread(ThreadState.CLOSED, "doc-1")) == "thread.closed"


def test_reopening_rules() -> None:
    closed = thread(ThreadState.CLOSED, "doc-1")  # closed at 100
    change = reopen_change(PARENT, closed, 100 + DAY, window=7 * DAY)
    reopened = apply_change(closed, change, 6, 100 + DAY)
    assert (reopened.state, reopened.closed_at) == (ThreadState.ASSIGNED, 100.0)
    unassigned = thread(ThreadState.CLOSED)
    assert apply_change(unassigned, reopen_change(ADMIN, unassigned, 0, 0), 6, 1).state is (
        ThreadState.OPEN
    )
    late = 100 + 8 * DAY
    assert code_of(reopen_change, PARENT, closed, late, 7 * DAY) == "thread.reopen_window_passed"
    assert reopen_change(ADMIN, closed, late, 7 * DAY).moves
    assert code_of(reopen_change, OTHER_DOCTOR, closed, 101, DAY) == "thread.forbidden"
    open_thread = thread(ThreadState.ASSIGNED, "doc-1")
    assert code_of(reopen_change, DOCTOR, open_thread, 101, DAY) == "thread.bad_transition"


def test_transitions_say_what_was_expected() -> None:
    check_transition(ThreadState.OPEN, ThreadState.ASSIGNED)
    with pytest.raises(SignalingError) as caught:
        check_transition(ThreadState.OPEN, ThreadState.ANSWERED)
    assert caught.value.code == "thread.bad_transition"
    assert "expected one of assigned, closed, got open" in caught.value.message
    assert code_of(check_transition, ThreadState.CLOSED, ThreadState.ANSWERED) == "thread.closed"


def test_refusals_map_to_codes() -> None:
    assert refusal(Refusal.NO_THREAD, None).code == "thread.not_found"  # type: ignore[attr-defined]
    cases = {
        (Refusal.NOT_FAMILY, ThreadState.OPEN): "thread.not_found",
        (Refusal.NOT_ASSIGNEE, ThreadState.OPEN): "thread.not_assigned",
        (Refusal.NOT_ASSIGNEE, ThreadState.ASSIGNED): "thread.not_found",
        (Refusal.STALE, ThreadState.OPEN): "thread.stale",
        (Refusal.STATE, ThreadState.CLOSED): "thread.closed",
        (Refusal.STATE, ThreadState.OPEN): "thread.bad_state",
    }
    for (reason, state), code in cases.items():
        error = refusal(reason, state)
        assert isinstance(error, SignalingError)
        assert error.code == code
    guard = Change(allowed=WRITABLE, family="fam-2")
    assert code_of(check_access, thread(), guard) == "thread.not_found"
    stale = Change(allowed=WRITABLE, expected_version=1)
    assert code_of(apply_change, thread(), stale, 6, 1.0) == "thread.stale"


def _draft(**kw: object) -> MessageDraft:
    base = MessageDraft(
        thread_id="t-1",
        client_msg_id="c-1",
        kind=MessageKind.MESSAGE,
        sender="fam-1",
        sender_role=Role.PARENT,
        created_at=1.0,
        text="hello",
    )
    return msgspec.structs.replace(base, **kw)


def test_fingerprints_cover_content_not_time() -> None:
    assert fingerprint(_draft()) == fingerprint(_draft(created_at=99.0))
    for change in ({"text": "hello!"}, {"sender": "x"}, {"attachment_ids": ("a-1",)}):
        assert fingerprint(_draft(**change)) != fingerprint(_draft())


def test_fingerprints_stay_what_databases_hold() -> None:
    # Digests of msgpack.packb's bytes, as earlier versions stored them: a retry of a message
    # stored before an upgrade must still match it.
    assert fingerprint(_draft()) == "cf095cffdf6d20ecac90f7de0ce582f1"
    long = _draft(text="héllo 😀" * 300, attachment_ids=("a-1", "a-2"))
    assert fingerprint(long) == "858f72deb53d6831a607d8f4df5fad72"
    edit = _draft(kind=MessageKind.EDIT, sender="cl-1", text="new", target_seq=70000)
    assert fingerprint(edit) == "78daf2720b5997b980c9e85c22310bd6"
    system = _draft(
        kind=MessageKind.SYSTEM,
        sender="cl-1",
        text=None,
        event=SystemEvent.ASSIGNED,
        subject="cl-1",
    )
    assert fingerprint(system) == "41349c9e81e75a6bb68a0e46ac64673c"


def test_thread_ids_are_stable_per_client_id() -> None:
    assert new_thread_id("fam-1", "c-1") == new_thread_id("fam-1", "c-1")
    assert new_thread_id("fam-1", "c-1") != new_thread_id("fam-2", "c-1")
    assert new_thread_id("fam-1", None) != new_thread_id("fam-1", None)


def test_edits_and_deletions_revise_the_target() -> None:
    target = Message(
        thread_id="t-1",
        seq=3,
        kind=MessageKind.MESSAGE,
        sender="fam-1",
        sender_role=Role.PARENT,
        client_msg_id="c-0",
        created_at=1.0,
        fingerprint="f",
        text="old",
    )
    edit = _draft(kind=MessageKind.EDIT, text="new", target_seq=3, created_at=9.0)
    assert target_refusal(target, edit) is None
    edited = revise(target, edit)
    assert (edited.text, edited.version, edited.edited_at) == ("new", 2, 9.0)
    deleted = revise(edited, _draft(kind=MessageKind.DELETE, text=None, target_seq=3))
    assert (deleted.text, deleted.deleted, deleted.version) == ("", True, 3)
    codes = [
        target_refusal(None, edit),
        target_refusal(target, _draft(kind=MessageKind.EDIT, sender="x", target_seq=3)),
        target_refusal(msgspec.structs.replace(target, kind=MessageKind.SYSTEM), edit),
        target_refusal(deleted, edit),
    ]
    assert [getattr(c, "code", None) for c in codes] == [
        "thread.message_not_found",
        "thread.not_sender",
        "thread.not_editable",
        "thread.message_deleted",
    ]
