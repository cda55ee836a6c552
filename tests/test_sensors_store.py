"""The store's queries (latest, window, resampling) against plain-Python references, and the feed
model offering the readings at coupler times."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from twin.core import Clock, Coupler, Model, Variable
from twin.sensors.devices import load_catalogue
from twin.sensors.feed import MISSING, SensorFeed
from twin.sensors.ingest import Ingestor
from twin.sensors.profiles import load_profiles
from twin.sensors.store import SQLiteStore, Store
from twin.sensors.synthetic import write_synthetic_catalogue
from twin.sensors.uplink import render_tts

PROFILES = load_profiles()
T0 = 1717200000.0  # 2024-06-01T00:00:00Z


@pytest.fixture
def filled(tmp_path: Path):
    """Two wells with irregular readings; the third well never reports."""
    wells, stations = write_synthetic_catalogue(tmp_path / "cat", n_wells=3, n_stations=1)
    catalogue = load_catalogue(wells, stations, None)
    store = SQLiteStore(tmp_path / "s.sqlite")
    ingestor = Ingestor(store, catalogue, PROFILES, now=lambda: T0 + 86400)
    rng = np.random.default_rng(3)
    truth: dict[str, list[tuple[float, float]]] = {}
    bodies = []
    for w in catalogue.of_kind("wells")[:2]:
        times = np.sort(T0 + rng.uniform(0, 7200, 40)).round(3)
        for n, t in enumerate(times):
            level_mm = 4000 + 10 * n + int(rng.integers(0, 50))
            payload = level_mm.to_bytes(2, "big") + bytes.fromhex("04540DCC")
            bodies.append(json.dumps(render_tts(dev_eui=w.dev_eui, device_id=w.id, f_cnt=n,
                                                f_port=1, time=float(t), payload=payload,
                                                decoded=None)).encode())  # fmt: skip
            truth.setdefault(w.id, []).append(
                (float(t), w.attrs["reference_height_m"] - level_mm / 1000)
            )
    ingestor.ingest(bodies)
    yield store, catalogue, truth
    store.close()


def test_sqlite_store_implements_the_store_protocol(filled):
    store, _, _ = filled
    assert isinstance(store, Store)


def test_latest_and_window_match_a_plain_reference(filled):
    store, _, truth = filled
    at = T0 + 3600
    got = {r.device_id: (r.time, r.value) for r in store.latest("groundwater_head", at=at)}
    for dev, rows in truth.items():
        before = [r for r in rows if r[0] <= at]
        assert got[dev][0] == pytest.approx(max(before)[0], abs=1e-6)
        assert got[dev][1] == pytest.approx(max(before)[1], abs=1e-9)
    assert store.latest("groundwater_head", at=T0 - 1) == []
    recent = store.latest("groundwater_head", at=at, max_age=60)
    for r in recent:
        assert at - 60 <= r.time <= at
    win = store.window("groundwater_head", T0 + 1000, T0 + 2000)
    expected = sorted((d, t) for d, rows in truth.items() for t, _ in rows if 1000 <= t - T0 < 2000)
    assert [(r.device_id, pytest.approx(r.time, abs=1e-6)) for r in win] == expected


@pytest.mark.parametrize("how", ["mean", "min", "max", "count", "last"])
def test_resample_matches_a_plain_reference(filled, how):
    store, _, truth = filled
    step = 900.0
    out = store.resample("groundwater_head", T0, T0 + 7200, step, how)
    assert set(out) == set(truth)
    for dev, rows in truth.items():
        times, values = out[dev]
        assert np.allclose(times, T0 + step * np.arange(8))
        for b in range(8):
            inside = [(t, v) for t, v in rows if b * step <= t - T0 < (b + 1) * step]
            vals = [v for _, v in inside]
            ref = {
                "mean": np.mean(vals) if vals else math.nan,
                "min": min(vals, default=math.nan),
                "max": max(vals, default=math.nan),
                "count": float(len(vals)),
                "last": max(inside)[1] if inside else math.nan,
            }[how]
            assert values[b] == pytest.approx(ref, abs=1e-9, nan_ok=True)


class _Sink(Model):
    """A stand-in ground-water model that keeps what it is given."""

    def __init__(self, grid) -> None:
        super().__init__()
        self.grid = grid
        self.seen: list[tuple[float, np.ndarray]] = []

    def _initialize(self, config):
        self.time_step = 1800.0
        self.inputs = (Variable("observed_head", "m", self.grid, "groundwater__hydraulic_head"),)
        self.outputs = ()

    def _set_value(self, name, values):
        self.seen.append((self.current_time, values))

    def _get_value(self, name):
        raise KeyError(name)

    def _step(self, dt):
        return None


def test_feed_offers_latest_readings_at_coupler_times(filled):
    store, catalogue, truth = filled
    coupler = Coupler(Clock("2024-06-01T00:00:00Z", "2024-06-01T02:00:00Z"))
    feed = coupler.add("sensors", SensorFeed(store), {"quantities": ["groundwater_head"],
                                                     "time_step": 600, "max_age_s": 1800})  # fmt: skip
    var = feed.output_variable("groundwater_head")
    ids = feed.device_ids("groundwater_head")
    assert ids == [d.id for d in catalogue.of_kind("wells")]
    xy = np.array([[d.x, d.y] for d in catalogue.of_kind("wells")])
    assert np.allclose(var.grid.coordinates, xy)
    sink = coupler.add("gw", _Sink(var.grid))
    coupler.link(("sensors", "groundwater_head"), ("gw", "observed_head"))
    coupler.step_to("2024-06-01T02:00:00Z")
    assert [t for t, _ in sink.seen] == [0.0, 1800.0, 3600.0, 5400.0]
    for t, values in sink.seen:
        at = T0 + t
        for i, dev in enumerate(ids):
            rows = [r for r in truth.get(dev, []) if at - 1800 <= r[0] <= at]
            if rows:
                assert values[i] == pytest.approx(max(rows)[1], abs=1e-9)
            else:
                assert np.isnan(values[i])
    quality = feed.get_value("groundwater_head_quality")
    assert quality[2] == MISSING  # the well that never reported
    age = feed.get_value("groundwater_head_age")
    assert np.isnan(age[2]) and (age[:2] >= 0).all() and (age[:2] <= 1800).all()
    coupler.close()
