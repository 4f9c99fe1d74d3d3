"""CPU time and resident memory of a process on this host, read from Linux /proc.

A benchmark samples a process twice and turns the CPU-time delta into "% of one core" over the
wall-clock interval (100 % = one core busy the whole time; a process using two cores can reach
200 %). CPU time is utime + stime of /proc/<pid>/stat, which covers every thread of the process;
resident memory is VmRSS of /proc/<pid>/status. The host's busy CPU time (every core, from the
first line of /proc/stat) is sampled too, so a report can tell how much CPU processes other than
the measured ones used meanwhile.

The readers are plain file reads of procfs (kernel memory, no disk), but they are still system
calls: async callers use `await asyncio.to_thread(sample, pids)`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "CpuSample",
    "cpu_percent",
    "host_cpu_percent",
    "parse_host_busy_ticks",
    "parse_rss_kb",
    "parse_stat_cpu_ticks",
    "read_cpu_seconds",
    "read_rss_kb",
    "sample_cpu",
]

_PROC = Path("/proc")
_UTIME_FIELD = 13  # 1-based field 14 of /proc/<pid>/stat; fields after "(comm)" start at 3


@dataclass(frozen=True, slots=True)
class CpuSample:
    """CPU seconds used so far by each process, taken at `taken_at` (time.monotonic()).

    `host_seconds` is the busy time of every core of the host so far.
    """

    taken_at: float
    cpu_seconds: Mapping[int, float]
    host_seconds: float = 0.0


def parse_stat_cpu_ticks(stat: str) -> int:
    """utime + stime, in clock ticks, from the text of /proc/<pid>/stat.

    The command name (field 2) is in parentheses and may itself contain spaces and
    parentheses, so fields are counted after the last ")".
    """
    end = stat.rfind(")")
    if end == -1:
        raise ValueError("not a /proc/<pid>/stat line: no ')' after the command name")
    fields = stat[end + 1 :].split()
    # fields[0] is field 3 (state): utime (14) and stime (15) are fields[11] and fields[12].
    first = _UTIME_FIELD - 2
    if len(fields) < first + 2:
        raise ValueError("not a /proc/<pid>/stat line: too few fields")
    return int(fields[first]) + int(fields[first + 1])


def parse_host_busy_ticks(stat: str) -> int:
    """Busy clock ticks of every core (user, nice, system, irq, softirq, steal) from /proc/stat.

    Idle and iowait are not busy; guest time is already counted in user and nice.
    """
    for line in stat.splitlines():
        fields = line.split()
        if fields and fields[0] == "cpu":
            if len(fields) < 9:
                raise ValueError("the cpu line of /proc/stat has too few fields")
            user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, fields[1:9])
            return user + nice + system + irq + softirq + steal
    raise ValueError("no cpu line in /proc/stat")


def parse_rss_kb(status: str) -> int:
    """VmRSS in kB from the text of /proc/<pid>/status."""
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            parts = line.split()
            if len(parts) >= 2 and parts[1].isdigit():
                return int(parts[1])
    raise ValueError("no VmRSS line in /proc/<pid>/status (a kernel thread or a zombie?)")


def read_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system, all threads) process `pid` has used (blocking: procfs)."""
    text = (_PROC / str(pid) / "stat").read_text(encoding="ascii", errors="replace")
    return parse_stat_cpu_ticks(text) / _clock_ticks()


def read_rss_kb(pid: int) -> int:
    """Resident set size of process `pid` in kB (blocking: procfs)."""
    text = (_PROC / str(pid) / "status").read_text(encoding="ascii", errors="replace")
    return parse_rss_kb(text)


def sample_cpu(pids: Iterable[int]) -> CpuSample:
    """CPU seconds of each process now (blocking: procfs). A vanished process raises OSError."""
    seconds = {pid: read_cpu_seconds(pid) for pid in pids}
    host = parse_host_busy_ticks((_PROC / "stat").read_text(encoding="ascii", errors="replace"))
    return CpuSample(
        taken_at=time.monotonic(), cpu_seconds=seconds, host_seconds=host / _clock_ticks()
    )


def cpu_percent(before: CpuSample, after: CpuSample, pid: int) -> float:
    """CPU used by `pid` between two samples, in % of one core."""
    elapsed = after.taken_at - before.taken_at
    if elapsed <= 0:
        raise ValueError("the second sample must be taken after the first")
    used = after.cpu_seconds[pid] - before.cpu_seconds[pid]
    return 100.0 * used / elapsed


def host_cpu_percent(before: CpuSample, after: CpuSample) -> float:
    """CPU the whole host used between two samples, in % of one core (up to 100 x cores)."""
    elapsed = after.taken_at - before.taken_at
    if elapsed <= 0:
        raise ValueError("the second sample must be taken after the first")
    return 100.0 * (after.host_seconds - before.host_seconds) / elapsed


def _clock_ticks() -> int:
    return os.sysconf("SC_CLK_TCK")
