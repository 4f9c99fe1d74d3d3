"""`careline loadtest run`: one scenario against one target, from start to verdict.

Checks the target first (fails fast when it is unreachable), then generates the scenario's
traffic in this process (`workers = 0`) or spread over worker processes, shows live progress,
and at the end (or on the first Ctrl-C: a partial run) merges the measurements, judges the
SLOs, and writes `summary.json` and `report.html`. The generator's own CPU (every process of
it, from their CPU clocks) is reported next to the host's, so a reader can tell whether the
generator, not the server, was the limit. A second Ctrl-C cancels at once.

Exit codes (`RunSummary.exit_code`): 0 passed, 1 an SLO missed, 3 the run failed (setup refused,
a worker died), 130 interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import signal
import time
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from careline.loadtest.errors import LoadtestError
from careline.loadtest.generator import generate
from careline.loadtest.html_report import write_report
from careline.loadtest.live_progress import LiveProgress
from careline.loadtest.load_metrics import LoadMetrics
from careline.loadtest.load_plan import TokenConfig, split_load
from careline.loadtest.load_workers import WorkerPool
from careline.loadtest.proc_stats import cpu_percent, host_cpu_percent, sample_cpu
from careline.loadtest.run_summary import GeneratorCpu, RunSummary, summarize
from careline.loadtest.scenario import Scenario, Slo
from careline.loadtest.slo_check import check_slos
from careline.loadtest.target_check import check_target, normalize_target
from careline.loadtest.token_source import TokenError
from careline.loadtest.worker_messages import WorkerStart

log = logging.getLogger(__name__)

PROGRESS_EVERY = 0.5
#: How long workers get, after the run's end, to wind down and report.
REPORT_WITHIN = 90.0

EXIT_PASSED, EXIT_SLO_MISSED, EXIT_FAILED, EXIT_INTERRUPTED = 0, 1, 3, 130


@dataclass(frozen=True, slots=True)
class RunOptions:
    """How to run a scenario (everything but the scenario itself)."""

    target: str
    tokens: TokenConfig
    workers: int = 0
    report_dir: Path | None = None
    clip_cache: Path | None = None
    progress: bool = True
    handle_sigint: bool = True
    seed: int = 1
    server_pid: int | None = None
    #: Addresses the generator's peers gather ICE host candidates on (loopback by default).
    media_addresses: tuple[str, ...] = ("127.0.0.1",)


def exit_code(summary: RunSummary) -> int:
    """The process exit code a summary calls for."""
    if summary.interrupted:
        return EXIT_INTERRUPTED
    if summary.failure is not None:
        return EXIT_FAILED
    return EXIT_PASSED if summary.passed else EXIT_SLO_MISSED


async def run_load(scenario: Scenario, options: RunOptions) -> RunSummary:
    """Run `scenario`; TargetUnreachable or TokenError before anything starts."""
    url = normalize_target(options.target)
    await check_target(url)
    if not (options.tokens.secret or options.tokens.admin_token):
        raise TokenError("tokens need --secret or --admin-token")
    if scenario.hotline.kiosks and not options.tokens.order_secret:
        raise TokenError("hotline traffic needs the order key: pass --order-secret")
    return await LoadSession(options, url, scenario=scenario).run()


#: Generates traffic in this process until done or `stopping` is set, recording in `metrics`.
Job = Callable[[LoadMetrics, asyncio.Event], Coroutine[Any, Any, None]]


class LoadSession:
    """One run of traffic against a target: progress, Ctrl-C, CPU, SLOs, summary and report.

    With `job`, the traffic is that job, run in this process; without, it is the scenario's,
    in this process or over `options.workers` worker processes.
    """

    def __init__(
        self,
        options: RunOptions,
        url: str,
        *,
        scenario: Scenario | None = None,
        job: tuple[str, float, Job] | None = None,
    ) -> None:
        if (scenario is None) == (job is None):
            raise ValueError("a load session runs a scenario or a job")
        self._scenario = scenario
        self.job: Job | None = None
        if scenario is not None:
            self.name, self.duration, self.slo = (
                scenario.name,
                scenario.duration_seconds,
                scenario.slo,
            )
        else:
            assert job is not None
            self.name, self.duration, self.job = job
            self.slo = Slo()
        self.options = options
        self.url = url
        self.run_id = secrets.token_hex(4)
        self.stopping = asyncio.Event()
        self.interrupted = False
        self.failure: str | None = None
        self.metrics = LoadMetrics(time.monotonic())
        self.progress = LiveProgress(f"loadtest {self.name}", options.progress)

    async def run(self) -> RunSummary:
        loop = asyncio.get_running_loop()
        started_wall = time.time()
        self.metrics = LoadMetrics(time.monotonic())
        main = asyncio.current_task()
        sigint = self.options.handle_sigint
        if sigint:
            loop.add_signal_handler(signal.SIGINT, self._on_sigint, main)
        self.progress.start()
        pids = [os.getpid()] + ([self.options.server_pid] if self.options.server_pid else [])
        before = await asyncio.to_thread(sample_cpu, pids)
        own_cpu = time.process_time()
        try:
            if self.options.workers > 0 and self.job is None:
                worker_cpu = await self._with_workers()
            else:
                worker_cpu = []
                await self._in_process()
        finally:
            self.progress.stop()
            if sigint:
                loop.remove_signal_handler(signal.SIGINT)
        after = await asyncio.to_thread(sample_cpu, pids)
        elapsed = after.taken_at - before.taken_at
        own = 100.0 * (time.process_time() - own_cpu) / elapsed
        per_process = [round(own, 1)] + [round(100.0 * s / elapsed, 1) for s in worker_cpu]
        cpu = GeneratorCpu(
            total_pct=round(sum(per_process), 1),
            per_process_pct=per_process,
            host_pct=round(host_cpu_percent(before, after), 1),
            cpu_count=os.cpu_count() or 1,
            server_pct=(
                round(cpu_percent(before, after, self.options.server_pid), 1)
                if self.options.server_pid
                else None
            ),
        )
        summary = summarize(
            scenario=self.name,
            target=self.url,
            started_at=started_wall,
            elapsed=elapsed,
            workers=self.options.workers if self.job is None else 0,
            metrics=self.metrics,
            cpu=cpu,
            checks=check_slos(self.slo, self.metrics),
            interrupted=self.interrupted,
            failure=self.failure,
        )
        if self.options.report_dir is not None:
            await asyncio.to_thread(write_report, self.options.report_dir, summary, self.metrics)
        return summary

    def _on_sigint(self, main: asyncio.Task[object] | None) -> None:
        if self.stopping.is_set():
            if main is not None:
                main.cancel()
            return
        log.warning("interrupted: winding down and writing a partial report (Ctrl-C again to quit)")
        self.interrupted = True
        self.stopping.set()

    async def _in_process(self) -> None:
        if self.job is not None:
            task = asyncio.create_task(self.job(self.metrics, self.stopping))
        else:
            assert self._scenario is not None
            task = asyncio.create_task(
                generate(
                    self._scenario,
                    split_load(self._scenario, 1, self.options.seed)[0],
                    url=self.url,
                    tokens=self.options.tokens,
                    metrics=self.metrics,
                    run_id=self.run_id,
                    seed=self.options.seed,
                    stopping=self.stopping,
                    clip_cache=self.options.clip_cache,
                    media_addresses=self.options.media_addresses,
                )
            )
        try:
            while not task.done():
                await asyncio.wait([task], timeout=PROGRESS_EVERY)
                self._show(self.metrics.counters, self.metrics.errors)
            task.result()
        except LoadtestError as exc:
            self.failure = f"{exc.code}: {exc.message}"
        finally:
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def _with_workers(self) -> list[float]:
        scenario = self._scenario
        assert scenario is not None
        shares = split_load(scenario, self.options.workers, self.options.seed)
        cache = str(self.options.clip_cache) if self.options.clip_cache else None
        plans = [
            WorkerStart(
                scenario=scenario,
                share=share,
                url=self.url,
                tokens=self.options.tokens,
                run_id=f"{self.run_id}w{index}",
                seed=self.options.seed,
                started_at=self.metrics.started_at,
                clip_cache=cache,
                media_addresses=self.options.media_addresses,
            )
            for index, share in enumerate(shares)
        ]
        pool = WorkerPool()
        try:
            await pool.start(plans)
            ends_at = self.metrics.started_at + self.duration + REPORT_WITHIN
            stop_sent = False
            while not pool.finished and time.monotonic() < ends_at:
                if self.stopping.is_set() and not stop_sent:
                    await pool.stop()
                    stop_sent = True
                counters, errors = pool.progress()
                self._show(counters, errors)
                await asyncio.sleep(PROGRESS_EVERY)
            async with asyncio.timeout(REPORT_WITHIN):
                for state in await pool.wait():
                    self.metrics.merge(state)
            failures = pool.failures()
            if failures:
                self.failure = "; ".join(failures)
            return pool.cpu_seconds()
        finally:
            await pool.close()

    def _show(self, counters: Mapping[str, int], errors: Mapping[str, int]) -> None:
        self.progress.show(self.metrics.elapsed(), self.duration, counters, errors)
