"""The load tester against a real server on loopback: scenarios, SLOs, bad input, record/replay."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from careline.loadtest.clips import Clip
from careline.loadtest.load_plan import TokenConfig
from careline.loadtest.load_run import RunOptions, exit_code, run_load
from careline.loadtest.recording import read_recording
from careline.loadtest.scenario import ScenarioError, load_scenario, parse_scenario
from careline.loadtest.session_replay import ReplayOptions, replay_recording
from careline.loadtest.target_check import TargetUnreachable
from careline.loadtest.visit_client import VisitClient
from careline.loadtest.wire_client import WireClient
from careline.server.settings import Settings
from careline.signaling.identity import Role
from tests.support import SECRET, RunningServer, free_port, make_settings, running_server

ORDER_SECRET = "order-secret-" + "z" * 40
SCENARIOS = Path(__file__).parents[2] / "loadtest" / "scenarios"
TOKENS = TokenConfig(secret=SECRET, order_secret=ORDER_SECRET)


def _settings(data_dir: Path, **overrides: Any) -> Settings:
    return make_settings(
        data_dir,
        **{
            "media.host_addresses": ["127.0.0.1"],
            "hotline.order_secret": ORDER_SECRET,
            "hotline.wrap_up_seconds": 0.0,
            **overrides,
        },
    )


@pytest.fixture
async def target(tmp_path: Path) -> AsyncIterator[RunningServer]:
    """A real server for the load tester, with the hotline's order key known."""
    async with running_server(_settings(tmp_path / "data")) as server:
        yield server


def _options(server: RunningServer, **overrides: Any) -> RunOptions:
    values: dict[str, Any] = {
        "target": server.url,
        "tokens": TOKENS,
        "progress": False,
        "handle_sigint": False,
    }
    values.update(overrides)
    return RunOptions(**values)


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("[video]\nvisits = 1\nbogus = 2\n", "unknown field `bogus` - at `$.video`"),
        ("[video]\nvisits = 1\nparticipants = 1\n", "$.video.participants"),
        ("[messages]\nthreads = 1\nsenders = 3\n", "$.messages.senders"),
        ("[messages]\nthreads = 2\nattachment_share = 1.5\n", "$.messages.attachment_share"),
        ("[hotline]\nkiosks = 1\n[slo]\ndispatch_ms_p99 = -5\n", "$.slo.dispatch_ms_p99"),
        ("duration_seconds = 0\n[video]\nvisits = 1\n", "$.duration_seconds"),
        ("name = 'x'\n", "no traffic"),
        ("[video\n", "not valid TOML"),
    ],
)
def test_bad_scenarios_are_refused_naming_the_key(text: str, named: str) -> None:
    with pytest.raises(ScenarioError) as caught:
        parse_scenario(text)
    assert named in str(caught.value)
    assert caught.value.code == "loadtest.scenario"


def test_the_example_scenarios_are_valid() -> None:
    names = {load_scenario(path).name for path in SCENARIOS.glob("*.toml")}
    assert {"smoke", "clinic-morning", "kiosk-opening"} <= names


async def test_an_unreachable_target_fails_fast() -> None:
    scenario = parse_scenario("[messages]\nthreads = 1\n")
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(TargetUnreachable) as caught:
        await run_load(scenario, RunOptions(target=url, tokens=TOKENS, progress=False))
    assert time.monotonic() - started < 5
    assert f"cannot reach {url}" in caught.value.message


# -- scenarios against a real server ---------------------------------------------------------


@pytest.mark.usefixtures("loopback")
async def test_the_smoke_scenario_passes_its_slos(
    target: RunningServer, clip_dir: Path, tmp_path: Path
) -> None:
    scenario = await asyncio.to_thread(load_scenario, SCENARIOS / "smoke.toml")
    report = tmp_path / "report"
    summary = await run_load(scenario, _options(target, report_dir=report, clip_cache=clip_dir))
    assert summary.passed, summary.reasons
    assert exit_code(summary) == 0
    assert summary.counters["joins_ok"] == scenario.video.visits * scenario.video.participants
    assert summary.counters["messages_acked"] > 0
    assert summary.counters["calls_answered"] > 0
    assert {
        "join_ms",
        "first_frame_ms",
        "relay_ms",
        "chat_ack_ms",
        "fanout_ms",
        "dispatch_ms",
    } <= set(summary.latency_ms)
    assert summary.generator_cpu is not None
    written = json.loads((report / "summary.json").read_text())
    assert written["passed"] is True
    html = (report / "report.html").read_text()
    assert "<svg" in html
    assert "<script" not in html
    assert "http://" not in html.replace(target.url, "").replace("http://www.w3.org/2000/svg", "")


async def test_an_impossible_slo_exits_non_zero_with_the_reason(
    target: RunningServer, tmp_path: Path
) -> None:
    scenario = tmp_path / "impossible.toml"
    scenario.write_text(
        "name = 'impossible'\nduration_seconds = 2\n"
        "[messages]\nthreads = 1\nrate_per_second = 4\n"
        "[slo]\nchat_ack_ms_p99 = 0.001\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "careline.server",
        "loadtest",
        "run",
        str(scenario),
        "--target",
        target.url,
        "--secret",
        SECRET,
        "--quiet",
        "--report",
        str(tmp_path / "out"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, _ = await process.communicate()
    assert process.returncode == 1
    assert "FAILED" in out.decode()
    assert "reason: chat_ack_ms_p99: p99" in out.decode()
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["passed"] is False
    assert [check["key"] for check in written["slo"] if not check["passed"]] == ["chat_ack_ms_p99"]


async def test_a_media_address_that_is_not_an_ip_is_refused_before_anything_starts(
    target: RunningServer,
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "careline.server",
        "loadtest",
        "run",
        str(SCENARIOS / "smoke.toml"),
        "--target",
        target.url,
        "--secret",
        SECRET,
        "--media-address",
        "eth0",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await process.communicate()
    assert process.returncode == 2
    assert "--media-address 'eth0' is not an IP address" in err.decode()


async def test_ctrl_c_still_writes_the_partial_report(
    target: RunningServer, tmp_path: Path
) -> None:
    scenario = tmp_path / "long.toml"
    scenario.write_text(
        "name = 'long'\nduration_seconds = 60\n[messages]\nthreads = 2\nrate_per_second = 20\n"
    )
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "careline.server",
        "loadtest",
        "run",
        str(scenario),
        "--target",
        target.url,
        "--secret",
        SECRET,
        "--quiet",
        "--report",
        str(tmp_path / "out"),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    # Wait until messages are being acknowledged, then press Ctrl-C (SIGINT) once.
    deadline = time.monotonic() + 30
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            async with http.get(target.url + "/metrics") as response:
                text = await response.text()
            if any(
                line.startswith('careline_thread_entries_total{kind="message",outcome="stored"}')
                and not line.endswith(" 0.0")
                for line in text.splitlines()
            ):
                break
            await asyncio.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = await asyncio.wait_for(process.communicate(), timeout=60)
    assert process.returncode == 130, err.decode()[-2000:]
    written = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert written["interrupted"] is True
    assert written["passed"] is False
    assert written["elapsed_seconds"] < 50  # stopped well before the scenario's 60 s
    assert written["latency_ms"]["chat_ack_ms"]["count"] > 0  # what ran before is kept
    assert (tmp_path / "out" / "report.html").is_file()


# -- record and replay -----------------------------------------------------------------------


async def _real_sessions(server: RunningServer, clip: Clip) -> None:
    """A short visit (join, admit, media) and a thread exchange, as real clients do them."""
    headers = {"Authorization": f"Bearer {server.token(Role.CLINICIAN, 'doc-1')}"}
    async with aiohttp.ClientSession(headers=headers) as http:
        async with http.post(
            server.url + "/api/visits", json={"participants": [{"kind": "parent"}]}
        ) as reply:
            created = await reply.json()
        parent_token = server.token(Role.PARENT, "fam-1")
        async with http.post(
            server.url + "/api/threads",
            json={"patient_ref": "pat-1"},
            headers={"Authorization": f"Bearer {parent_token}"},
        ) as reply:
            thread_id = (await reply.json())["thread"]["thread_id"]
        async with http.post(server.url + f"/api/threads/{thread_id}/assign", json={}) as reply:
            assert reply.status == 200
    visit_id = created["visit"]["visit_id"]
    doctor = VisitClient(server.url, created["invited"][0]["token"], video=clip)
    parent = VisitClient(server.url, created["invited"][1]["token"], video=clip)
    family = WireClient(server.url, parent_token, namespace="/threads")
    clinician = WireClient(server.url, server.token(Role.CLINICIAN, "doc-1"), namespace="/threads")
    try:
        await doctor.connect()
        await doctor.join(visit_id)
        await parent.connect()
        joined = await parent.join(visit_id)
        await doctor.call("visit.admit", {"participant_id": joined["participant_id"]})
        await parent.wait_event("visit.admitted")
        await doctor.start_media()
        await parent.start_media()
        await parent.frames_from(str(doctor.participant_id), 5)
        await family.connect()
        await clinician.connect()
        for n, (writer, text) in enumerate(
            [(family, "it itches"), (clinician, "since when?"), (family, "two days")]
        ):
            body = {"thread_id": thread_id, "client_msg_id": f"m-{n}", "text": text}
            await writer.call("thread.send", body)
            await asyncio.sleep(0.1)
        await clinician.call("thread.read", {"thread_id": thread_id, "seq": 4})
        await doctor.call("visit.end")
    finally:
        for client in (doctor, parent, family, clinician):
            await client.close()


def _sequences(path: Path) -> list[tuple[str, str, list[str]]]:
    """Each session's events, without `media.answer`: answers follow the server's offers,
    whose number depends on when the other side's tracks arrived, not on the client."""
    sessions = read_recording(path)
    return sorted(
        (s.namespace, s.role, [e for e in s.event_names if e != "media.answer"]) for s in sessions
    )


@pytest.mark.usefixtures("loopback")
async def test_a_recording_replayed_at_speed_2_reproduces_the_event_sequence(
    tmp_path: Path, vp8_clip: Clip, clip_dir: Path
) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    settings = _settings(tmp_path / "a", **{"server.record_sessions_dir": str(first)})
    async with running_server(settings) as server:
        await _real_sessions(server, vp8_clip)
    [recording] = first.glob("*.msgpack")
    raw = recording.read_bytes()
    for personal in (b"it itches", b"two days", b"doc-1", b"fam-1", b"m=audio", b"eyJ"):
        assert personal not in raw

    settings = _settings(tmp_path / "b", **{"server.record_sessions_dir": str(second)})
    async with running_server(settings) as server:
        options = ReplayOptions(
            target=server.url,
            tokens=TOKENS,
            speed=2.0,
            progress=False,
            handle_sigint=False,
            clip_cache=clip_dir,
        )
        summary = await replay_recording(recording, options)
    assert summary.errors == {}
    assert summary.counters.get("events_mismatched", 0) == 0
    [replayed] = second.glob("*.msgpack")
    original = _sequences(recording)
    assert any("thread.send" in names for _, _, names in original)
    assert any("media.start" in names for _, _, names in original)
    assert _sequences(replayed) == original
