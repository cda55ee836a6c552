"""The sensor feed's replay of a JSONL uplink file: when each message is taken in.

The stream is the sensor simulator's (three synthetic wells, a reading every 15 minutes each), in
time order, with one message carrying the simulator's ``clock_skew`` fault (a server clock two
days ahead of its gateways') in the middle.
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from twin.sensors.devices import load_catalogue
from twin.sensors.feed import SensorFeed
from twin.sensors.profiles import load_profiles
from twin.sensors.simulate import simulate, stream
from twin.sensors.store import SQLiteStore
from twin.sensors.synthetic import write_synthetic_catalogue
from twin.sensors.uplink import message_time

START = "2024-03-01T00:00:00Z"
T0 = datetime(2024, 3, 1, tzinfo=UTC).timestamp()
STEP = 300.0  # the feed's time step (s)
HOURS = 4


def _replay(folder: Path, *, skew_at: int | None) -> tuple[Path, object, list[bytes]]:
    """A stream of the wells over HOURS, time-ordered; the message ``skew_at`` clock-skewed."""
    wells, stations = write_synthetic_catalogue(folder / "cat", n_wells=3, n_stations=0)
    catalogue = load_catalogue(wells, stations, None)
    events = simulate(catalogue, load_profiles(), start=T0, minutes=HOURS * 60, seed=2, clean=True)
    events.sort(key=lambda e: e.time)  # no backlog: every message's arrival is its own time
    if skew_at is not None:
        events[skew_at] = replace(events[skew_at], fault="clock_skew")
    bodies = [body for _, _, body in stream(events, "tts")]
    path = folder / "uplinks.jsonl"
    path.write_bytes(b"\n".join(bodies) + b"\n")
    return path, catalogue, bodies


def _run(folder: Path, path: Path, catalogue: object) -> tuple[list[tuple[float, bytes]], dict]:
    """Step the feed through the window; (first seen, body) of every message and the counts."""
    feed = SensorFeed()
    store = folder / "feed.sqlite"
    feed.initialize({"replay": path, "store": store, "catalogue": catalogue, "start": START,
                     "quantities": ["groundwater_head"], "time_step": STEP,
                     "max_age_s": 1800.0})  # fmt: skip
    try:
        t = 0.0
        while t < HOURS * 3600.0:
            t += STEP
            feed.update_until(t)
            if t >= 1200.0:  # once each well has reported: a reading of every well is offered
                assert np.all(np.isfinite(feed.get_value("groundwater_head"))), t
        counts = feed.replay_counts()
    finally:
        feed.finalize()
    with SQLiteStore(store, readonly=True) as db:
        seen = [(first, body) for first, _, body in db.raw_messages()]
        reasons = [q.reason for q in db.quarantine()]
    return seen, {**counts, "reasons": reasons}


def _step_at_or_after(t: float) -> float:
    """The first feed time (epoch seconds) at or after ``t``."""
    return T0 + math.ceil((t - T0) / STEP - 1e-9) * STEP


def test_a_clock_skewed_message_holds_back_no_later_message(tmp_path: Path):
    middle = 24  # of about 48 messages
    path, catalogue, bodies = _replay(tmp_path, skew_at=middle)
    skewed = message_time(json.loads(bodies[middle]))
    before = message_time(json.loads(bodies[middle - 1]))
    assert skewed - before > 1.9 * 86400  # the fault: two days ahead of the stream
    seen, counts = _run(tmp_path, path, catalogue)
    # every message was taken in: the skewed one quarantined for its clock, the rest stored
    assert counts["taken_in"] == counts["messages"] == len(bodies)
    assert counts["reasons"] == ["clock_skew"]
    assert counts["stored"] == len(bodies) - 1
    first_seen = dict((body, first) for first, body in seen)
    for i, body in enumerate(bodies):
        if i == middle:  # taken in with the message before it
            assert first_seen[body] == _step_at_or_after(before)
            continue
        # every other message, also those after the skewed one, at the first step after its time
        assert first_seen[body] == pytest.approx(
            _step_at_or_after(message_time(json.loads(body)))
        ), i
