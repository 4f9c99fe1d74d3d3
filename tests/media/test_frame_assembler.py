"""FrameAssembler: releases frames when complete, survives reordering, gives up on holes."""

from __future__ import annotations

from aiortc.rtp import RtpPacket

from careline.media.frame_assembler import FrameAssembler


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def packet(seq: int, ts: int, data: bytes, marker: bool = False) -> RtpPacket:
    p = RtpPacket(payload_type=96, sequence_number=seq % 65536, timestamp=ts, marker=int(marker))
    p._data = data  # type: ignore[attr-defined]
    return p


def frame_packets(first_seq: int, ts: int, parts: list[bytes]) -> list[RtpPacket]:
    return [
        packet(first_seq + i, ts, part, marker=i == len(parts) - 1) for i, part in enumerate(parts)
    ]


def test_frame_is_released_on_its_marker_packet() -> None:
    assembler = FrameAssembler("video")
    a, b, c = frame_packets(10, 3000, [b"a", b"b", b"c"])
    assert assembler.add(a) == (False, None)
    assert assembler.add(b) == (False, None)
    pli, frame = assembler.add(c)
    assert not pli
    assert frame is not None
    assert (frame.data, frame.timestamp) == (b"abc", 3000)


def test_reordered_packets_complete_when_the_gap_fills() -> None:
    assembler = FrameAssembler("video")
    a, b, c = frame_packets(65534, 9000, [b"1", b"2", b"3"])  # wraps around 65535 -> 0
    assembler.add(a)
    assert assembler.add(c) == (False, None)
    _, frame = assembler.add(b)
    assert frame is not None
    assert frame.data == b"123"
    # The next frame starts right after, across the wrap.
    d, e = frame_packets(1, 12000, [b"4", b"5"])
    assembler.add(d)
    _, frame = assembler.add(e)
    assert frame is not None
    assert frame.data == b"45"


def test_late_and_duplicate_packets_are_ignored() -> None:
    assembler = FrameAssembler("video")
    for p in frame_packets(100, 0, [b"x", b"y"]):
        assembler.add(p)
    assert assembler.add(packet(100, 0, b"x")) == (False, None)
    assert assembler.add(packet(101, 0, b"y", marker=True)) == (False, None)


def test_a_hole_is_given_up_after_the_timeout() -> None:
    clock = Clock()
    assembler = FrameAssembler("video", hole_timeout=0.2, clock=clock)
    first = frame_packets(0, 0, [b"k1", b"k2", b"k3"])
    second = frame_packets(3, 3000, [b"d1", b"d2"])
    third = frame_packets(5, 6000, [b"e1", b"e2"])
    assembler.add(first[0])
    assembler.add(first[2])  # first[1] is lost for good
    assert assembler.add(second[0]) == (False, None)
    clock.now += 0.1
    assert assembler.add(second[1]) == (False, None)  # still waiting for a retransmission
    clock.now += 0.15
    pli, frame = assembler.add(third[0])
    assert pli is True  # gave up: ask for a keyframe
    assert assembler.skipped == 1
    # The frame after the broken one comes out intact, then the next.
    assert frame is not None
    assert frame.data == b"d1d2"
    _, frame = assembler.add(third[1])
    assert frame is not None
    assert frame.data == b"e1e2"
    assert assembler.add(packet(2, 0, b"late")) == (False, None)


def test_a_retransmission_before_the_timeout_saves_the_frame() -> None:
    clock = Clock()
    assembler = FrameAssembler("video", hole_timeout=0.2, clock=clock)
    a, b, c = frame_packets(50, 0, [b"a", b"b", b"c"])
    assembler.add(a)
    assembler.add(c)
    clock.now += 0.15
    _, frame = assembler.add(b)
    assert frame is not None
    assert frame.data == b"abc"


def test_far_ahead_packets_resynchronise_on_the_next_boundary() -> None:
    assembler = FrameAssembler("video", capacity=16)
    assembler.add(packet(0, 0, b"a"))
    pli, frame = assembler.add(packet(100, 9000, b"z", marker=True))
    assert pli is True
    assert frame is None
    _, frame = assembler.add(packet(101, 12000, b"n", marker=True))
    assert frame is not None
    assert frame.data == b"n"


def test_audio_passes_through_in_order() -> None:
    assembler = FrameAssembler("audio")
    _, first = assembler.add(packet(7, 960, b"o1"))
    _, second = assembler.add(packet(9, 2880, b"o3"))
    _, late = assembler.add(packet(8, 1920, b"o2"))
    assert first is not None
    assert second is not None
    assert (first.data, second.data, late) == (b"o1", b"o3", None)
