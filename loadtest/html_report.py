"""The report a person reads: `summary.json` and a self-contained `report.html` in one directory.

The HTML has no script and fetches nothing: styles inline, charts as inline SVG (svg_plot):
the SLO verdicts first, then latency over time (p50 and p99 per time bucket), the percentiles
of every latency, throughput over time, counters and errors by code. Writing is file I/O:
async callers use `asyncio.to_thread(write_report, ...)`.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from html import escape
from pathlib import Path

import msgspec

from careline.loadtest.load_metrics import LATENCIES, LoadMetrics
from careline.loadtest.percentiles import percentile
from careline.loadtest.run_summary import RunSummary
from careline.loadtest.svg_plot import line_chart, percentile_bars

#: Time buckets of the over-time charts (at most this many).
BUCKETS = 60
#: Sample series whose count per second is a throughput.
_THROUGHPUT = {
    "chat_ack_ms": "messages acked/s",
    "fanout_ms": "pushes/s",
    "join_ms": "joins/s",
    "dispatch_ms": "calls dispatched/s",
}
_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em auto;max-width:800px;color:#111827}
h1{font-size:1.5em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #e5e7eb}
table{border-collapse:collapse;margin:.5em 0}td,th{padding:.2em .8em;text-align:right}
th{background:#f3f4f6}td:first-child,th:first-child{text-align:left}
.pass{color:#15803d;font-weight:bold}.fail{color:#b91c1c;font-weight:bold}
.verdict{font-size:1.3em;padding:.5em 1em;border-radius:6px;display:inline-block}
.ok{background:#dcfce7}.bad{background:#fee2e2}svg{margin:.5em 0}
"""


def bucketed(
    samples: Sequence[tuple[float, float]], elapsed: float
) -> dict[str, list[tuple[float, float]]]:
    """p50 and p99 lines of (time, value) samples in at most BUCKETS time buckets."""
    width = max(1.0, math.ceil(max(elapsed, 1.0) / BUCKETS))
    buckets: dict[int, list[float]] = {}
    for moment, value in samples:
        buckets.setdefault(int(moment // width), []).append(value)
    p50, p99 = [], []
    for index in sorted(buckets):
        values = buckets[index]
        middle = (index + 0.5) * width
        p50.append((middle, percentile(values, 0.5)))
        p99.append((middle, percentile(values, 0.99)))
    return {"p50": p50, "p99": p99}


def throughput(samples: Sequence[tuple[float, float]], elapsed: float) -> list[tuple[float, float]]:
    """Samples per second, per time bucket."""
    width = max(1.0, math.ceil(max(elapsed, 1.0) / BUCKETS))
    counts: dict[int, int] = {}
    for moment, _ in samples:
        counts[int(moment // width)] = counts.get(int(moment // width), 0) + 1
    last = int(elapsed // width)
    return [((index + 0.5) * width, counts.get(index, 0) / width) for index in range(last + 1)]


def render_html(summary: RunSummary, metrics: LoadMetrics) -> str:
    """The whole report page."""
    verdict = "PASSED" if summary.passed else "FAILED"
    klass = "ok" if summary.passed else "bad"
    out = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
        f"<title>Careline load test: {escape(summary.scenario)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>Load test <code>{escape(summary.scenario)}</code></h1>",
        f"<p>Target {escape(summary.target)} · {summary.elapsed_seconds:.1f} s · "
        f"{summary.workers} generator process(es)</p>",
        f"<p class='verdict {klass}'>{verdict}</p>",
    ]
    if summary.reasons:
        out.append("<ul>" + "".join(f"<li>{escape(r)}</li>" for r in summary.reasons) + "</ul>")
    out.append(_slo_table(summary))
    out.append(_latency_table(summary))
    for name in LATENCIES:
        samples = metrics.samples(name)
        if samples:
            lines = bucketed(samples, summary.elapsed_seconds)
            title = f"{name.removesuffix('_ms')} latency over time"
            out.append(line_chart(title, lines, dashed=("p99",)))
    if summary.latency_ms:
        rows = {
            name: {"p50": s.p50, "p90": s.p90, "p99": s.p99, "max": s.max}
            for name, s in summary.latency_ms.items()
        }
        out.append("<h2>Percentiles</h2>" + percentile_bars("latency percentiles", rows))
    rates = {
        label: throughput(metrics.samples(name), summary.elapsed_seconds)
        for name, label in _THROUGHPUT.items()
        if metrics.samples(name)
    }
    if rates:
        out.append("<h2>Throughput</h2>" + line_chart("throughput", rates, y_label="per second"))
    out.append(_pairs_table("Counters", summary.counters))
    out.append(_pairs_table("Rates", {k: v for k, v in summary.rates.items() if v is not None}))
    out.append(_pairs_table("Errors by code", summary.errors or {"none": 0}))
    cpu = summary.generator_cpu
    if cpu is not None:
        cpu_rows: dict[str, object] = {
            "generator total (% of one core)": cpu.total_pct,
            "per process": ", ".join(f"{p:.1f}" for p in cpu.per_process_pct),
            "whole host": cpu.host_pct,
            "cores": cpu.cpu_count,
        }
        if cpu.server_pct is not None:
            cpu_rows["server process"] = cpu.server_pct
        out.append(_pairs_table("Generator CPU", cpu_rows))
    out.append("</body></html>\n")
    return "".join(out)


def _slo_table(summary: RunSummary) -> str:
    if not summary.slo:
        return "<p>No SLO set in the scenario.</p>"
    rows = "".join(
        f"<tr><td>{escape(c.key)}</td><td>{c.limit:g}</td>"
        f"<td>{'-' if c.actual is None else f'{c.actual:g}'}</td>"
        f"<td class='{'pass' if c.passed else 'fail'}'>{'pass' if c.passed else 'FAIL'}</td></tr>"
        for c in summary.slo
    )
    return (
        "<h2>SLOs</h2><table><tr><th>threshold</th><th>limit</th><th>measured</th>"
        f"<th></th></tr>{rows}</table>"
    )


def _latency_table(summary: RunSummary) -> str:
    rows = "".join(
        f"<tr><td>{escape(name)}</td><td>{s.count}</td><td>{s.p50:g}</td><td>{s.p90:g}</td>"
        f"<td>{s.p99:g}</td><td>{s.max:g}</td></tr>"
        for name, s in summary.latency_ms.items()
    )
    return (
        "<h2>Latency (ms)</h2><table><tr><th>metric</th><th>samples</th><th>p50</th>"
        f"<th>p90</th><th>p99</th><th>max</th></tr>{rows}</table>"
    )


def _pairs_table(title: str, pairs: Mapping[str, object]) -> str:
    rows = "".join(
        f"<tr><td>{escape(str(k))}</td><td>{escape(str(v))}</td></tr>" for k, v in pairs.items()
    )
    return f"<h2>{escape(title)}</h2><table>{rows}</table>"


def write_report(directory: Path, summary: RunSummary, metrics: LoadMetrics) -> None:
    """Write summary.json and report.html into `directory` (created), each atomically."""
    directory.mkdir(parents=True, exist_ok=True)
    _write(directory / "summary.json", msgspec.json.format(msgspec.json.encode(summary)) + b"\n")
    _write(directory / "report.html", render_html(summary, metrics).encode())


def _write(path: Path, data: bytes) -> None:
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}-", delete=False) as f:
        f.write(data)
    os.chmod(f.name, 0o644)
    os.replace(f.name, path)
