"""How a scenario's traffic is split over the generator's processes.

Video-visit slots and message-visit families are dealt round-robin, so each process carries an
even share; a visit stays whole in one process (relay latency matches a subscriber's frames to
its publisher's send record), and the hotline runs in the first process only (its dispatch
latency is measured from the kiosk's emit to the pharmacist's push, on one clock).
"""

from __future__ import annotations

import random

import msgspec

from careline.loadtest.scenario import Scenario
from careline.loadtest.video_traffic import join_offsets


class TokenConfig(msgspec.Struct, frozen=True):
    """Where tokens come from (secrets travel to workers on their stdin, never on argv)."""

    secret: str | None = None
    admin_token: str | None = None
    order_secret: str | None = None
    issuer: str = "careline"
    audience: str = "careline"


class LoadShare(msgspec.Struct, frozen=True):
    """One process's part of the traffic."""

    video_slots: list[int] = msgspec.field(default_factory=list)
    video_offsets: list[float] = msgspec.field(default_factory=list)
    families: list[int] = msgspec.field(default_factory=list)
    hotline: bool = False

    @property
    def empty(self) -> bool:
        """Nothing to generate."""
        return not (self.video_slots or self.families or self.hotline)


def split_load(scenario: Scenario, processes: int, seed: int) -> list[LoadShare]:
    """`processes` shares (at least one) of the scenario's traffic."""
    count = max(1, processes)
    offsets = join_offsets(scenario.video, scenario.video.visits, random.Random(seed))
    slots: list[list[int]] = [[] for _ in range(count)]
    for slot in range(scenario.video.visits):
        slots[slot % count].append(slot)
    families: list[list[int]] = [[] for _ in range(count)]
    senders = scenario.messages.senders if scenario.messages.threads else 0
    for family in range(senders):
        families[family % count].append(family)
    return [
        LoadShare(
            video_slots=slots[index],
            video_offsets=[offsets[slot] for slot in slots[index]],
            families=families[index],
            hotline=index == 0 and scenario.hotline.kiosks > 0,
        )
        for index in range(count)
    ]
