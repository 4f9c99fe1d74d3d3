"""CPU and memory of a process from /proc: parsing, deltas, and this very process."""

from __future__ import annotations

import os
import time

import pytest

from careline.loadtest.proc_stats import (
    CpuSample,
    cpu_percent,
    host_cpu_percent,
    parse_host_busy_ticks,
    parse_rss_kb,
    parse_stat_cpu_ticks,
    read_cpu_seconds,
    read_rss_kb,
    sample_cpu,
)

# A real line of /proc/<pid>/stat, with utime 1234 and stime 56 (fields 14 and 15).
STAT = (
    "4242 (python3) S 1 4242 4242 0 -1 4194560 3162 0 0 0 1234 56 0 0 20 0 3 0 "
    "8201 455639040 24575 18446744073709551615 1 1 0 0 0 0 0 16781312 16386 0 0 0 17 1 0 0 0 0 0"
)


def test_cpu_ticks_are_utime_plus_stime() -> None:
    assert parse_stat_cpu_ticks(STAT) == 1234 + 56


def test_a_command_name_with_spaces_and_parentheses_does_not_shift_fields() -> None:
    tricky = STAT.replace("(python3)", "(we ird) (name)")
    assert parse_stat_cpu_ticks(tricky) == 1290


@pytest.mark.parametrize("text", ["", "4242 python3 S 1", "4242 (python3) S 1 2 3"])
def test_malformed_stat_lines_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match="stat"):
        parse_stat_cpu_ticks(text)


def test_rss_is_read_from_the_vmrss_line() -> None:
    status = "Name:\tpython3\nVmPeak:\t  500000 kB\nVmRSS:\t   98304 kB\nThreads:\t3\n"
    assert parse_rss_kb(status) == 98304
    with pytest.raises(ValueError, match="VmRSS"):
        parse_rss_kb("Name:\tkthreadd\nThreads:\t1\n")


def test_cpu_percent_is_the_delta_over_wall_time_in_percent_of_one_core() -> None:
    before = CpuSample(taken_at=100.0, cpu_seconds={1: 5.0, 2: 0.0})
    after = CpuSample(taken_at=110.0, cpu_seconds={1: 6.5, 2: 15.0})
    assert cpu_percent(before, after, 1) == pytest.approx(15.0)
    assert cpu_percent(before, after, 2) == pytest.approx(150.0)  # two cores, 75 % each
    with pytest.raises(ValueError, match="after"):
        cpu_percent(after, before, 1)


def test_host_busy_time_leaves_out_idle_and_iowait() -> None:
    stat = "cpu  100 5 30 9000 40 1 2 3 0 0\ncpu0 50 2 15 4500 20 1 1 1 0 0\nintr 1 2\n"
    assert parse_host_busy_ticks(stat) == 100 + 5 + 30 + 1 + 2 + 3
    with pytest.raises(ValueError, match="cpu line"):
        parse_host_busy_ticks("intr 1 2\n")
    before = CpuSample(taken_at=0.0, cpu_seconds={}, host_seconds=10.0)
    after = CpuSample(taken_at=2.0, cpu_seconds={}, host_seconds=13.0)
    assert host_cpu_percent(before, after) == pytest.approx(150.0)


def test_this_process_is_measured() -> None:
    pid = os.getpid()
    assert read_rss_kb(pid) > 1000
    before = sample_cpu([pid])
    deadline = time.process_time() + 0.2
    while time.process_time() < deadline:
        pass  # burn 0.2 s of CPU
    after = sample_cpu([pid])
    assert after.cpu_seconds[pid] - before.cpu_seconds[pid] >= 0.15
    # No lower bound on the share: other processes may have had the core part of the time.
    assert 0.0 < cpu_percent(before, after, pid) <= 100.0 * (os.cpu_count() or 1) + 5
    assert read_cpu_seconds(pid) >= after.cpu_seconds[pid]
    assert host_cpu_percent(before, after) >= cpu_percent(before, after, pid) - 10


def test_a_vanished_process_raises() -> None:
    with pytest.raises(FileNotFoundError):
        read_cpu_seconds(2**22 + 12345)  # above the largest pid Linux hands out
