"""The simulator's weather override: with a given weather series the climate stations' decoded air
temperatures follow it (plus each station's urban offset) within the noise, the DWD reference row
has no urban offset, and without a series the stream is the one it always was."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from twin.errors import DataError
from twin.sensors.devices import load_catalogue
from twin.sensors.ingest import Ingestor
from twin.sensors.profiles import load_profiles
from twin.sensors.simulate import STATION_NOISE, simulate, stream
from twin.sensors.store import SQLiteStore

ROOT = Path(__file__).resolve().parents[1]
STATIONS = ROOT / "data" / "krefeld" / "sensors" / "climate_stations.csv"
PROFILES = load_profiles()
T0 = 1751328000.0  # 2025-07-01T00:00:00Z
HOURS = 6
CENTRE = (330400.0, 5689500.0)  # where the simulator's urban heat island peaks


def _weather(hours: float = HOURS) -> dict[str, np.ndarray]:
    """A made-up warm afternoon: 10-minute steps, 24 -> 34 degC and back, veering wind."""
    t = T0 - 600.0 + np.arange(0.0, hours * 3600.0 + 1800.0, 600.0)
    phase = np.pi * (t - t[0]) / (t[-1] - t[0])
    return {
        "time": t,
        "t_air_c": 24.0 + 10.0 * np.sin(phase),
        "rh_percent": 70.0 - 30.0 * np.sin(phase),
        "global_radiation": 400.0 + 300.0 * np.sin(phase),
        "wind_speed": 2.0 + np.sin(phase),
        "wind_from_deg": (330.0 + 60.0 * (t - t[0]) / (t[-1] - t[0])) % 360.0,  # across north
    }


def _decoded(tmp_path: Path, events, catalogue) -> dict[str, dict[str, np.ndarray]]:
    """Readings per quantity and device id, as the ingest stores them from the binary payloads."""
    store = SQLiteStore(tmp_path / "w.sqlite")
    try:
        ing = Ingestor(store, catalogue, PROFILES, now=lambda: T0 + HOURS * 3600.0)
        outcomes = ing.ingest([body for _, _, body in stream(events, "tts", "binary")], "tts")
        assert {o.status for o in outcomes} == {"stored"}
        out: dict[str, dict[str, np.ndarray]] = {}
        for q in ("air_temperature", "relative_humidity", "global_radiation", "wind_direction"):
            rows: dict[str, list[tuple[float, float]]] = {}
            for r in store.window(q, T0 - 1.0, T0 + HOURS * 3600.0 + 1.0):
                rows.setdefault(r.device_id, []).append((r.time, r.value))
            out[q] = {k: np.array(v) for k, v in rows.items()}
        return out
    finally:
        store.close()


@pytest.fixture(scope="module")
def catalogue():
    return load_catalogue(None, STATIONS, None)


def test_station_temperatures_follow_the_weather_within_the_noise(tmp_path: Path, catalogue):
    w = _weather()
    events = simulate(catalogue, PROFILES, start=T0, minutes=HOURS * 60, seed=4, clean=True,
                      weather=w)  # fmt: skip
    got = _decoded(tmp_path, events, catalogue)["air_temperature"]
    sigma = STATION_NOISE["air_temperature"]
    assert sigma == 0.1
    assert set(got) == {d.id for d in catalogue}
    for d in catalogue:
        tv = got[d.id]
        assert tv.shape[0] > 60  # a reading every 5 minutes, a few frames lost
        offset = (
            0.0
            if d.id.startswith("DWD-")
            else 1.8 * math.exp(-math.hypot(d.x - CENTRE[0], d.y - CENTRE[1]) / 2000.0)
        )
        resid = tv[:, 1] - (np.interp(tv[:, 0], w["time"], w["t_air_c"]) + offset)
        # noise of 0.1 K and 0.01 K payload steps: the mean within 4 standard errors, the spread
        # within 30 % of 0.1 K, no reading beyond 5 sigma
        assert abs(resid.mean()) < 4 * sigma / math.sqrt(resid.size) + 0.005, d.id
        assert 0.7 * sigma < resid.std() < 1.3 * sigma, d.id
        assert np.max(np.abs(resid)) < 5 * sigma, d.id
    # the series' own swing is there: 10 K between the ends and the middle of the window
    kli = got["KLI-001"]
    assert kli[:, 1].max() - kli[:, 1].min() > 8.0


def test_the_dwd_row_has_no_urban_offset_and_reads_all_quantities(tmp_path: Path, catalogue):
    w = _weather()
    events = simulate(catalogue, PROFILES, start=T0, minutes=HOURS * 60, seed=4, clean=True,
                      weather=w)  # fmt: skip
    got = _decoded(tmp_path, events, catalogue)
    tv = got["air_temperature"]["DWD-05064"]
    resid = tv[:, 1] - np.interp(tv[:, 0], w["time"], w["t_air_c"])
    assert abs(resid.mean()) < 0.04
    # a central station (Theaterplatz, 380 m from the centre): warmer by 1.8 exp(-0.19) = 1.49 K
    centre = got["air_temperature"]["KLI-001"]
    warm = centre[:, 1] - np.interp(centre[:, 0], w["time"], w["t_air_c"])
    assert 1.45 < warm.mean() < 1.53
    # its humidity: the same vapour pressure in warmer air, so lower than the series'
    rh = got["relative_humidity"]["KLI-001"]
    assert np.mean(rh[:, 1] - np.interp(rh[:, 0], w["time"], w["rh_percent"])) < -3.0
    rh_ref = got["relative_humidity"]["DWD-05064"]
    assert abs(np.mean(rh_ref[:, 1] - np.interp(rh_ref[:, 0], w["time"], w["rh_percent"]))) < 0.5
    # the reference reports radiation and wind; direction crosses north as the series does
    g = got["global_radiation"]["DWD-05064"]
    assert abs(np.mean(g[:, 1] - np.interp(g[:, 0], w["time"], w["global_radiation"]))) < 2.0
    wd = got["wind_direction"]["DWD-05064"]
    expected = np.interp(wd[:, 0], w["time"], np.unwrap(np.radians(w["wind_from_deg"])))
    diff = (wd[:, 1] - np.degrees(expected) + 180.0) % 360.0 - 180.0
    assert abs(diff.mean()) < 2.0 and diff.std() < 1.3 * STATION_NOISE["wind_direction"]


def test_an_object_with_forcing_attributes_works_too(catalogue):
    w = _weather(1)
    obj = SimpleNamespace(times=w.pop("time"), **w)
    a = simulate(catalogue, PROFILES, start=T0, minutes=60, seed=1, clean=True, weather=obj)
    b = simulate(catalogue, PROFILES, start=T0, minutes=60, seed=1, clean=True,
                 weather=dict(w, time=obj.times))  # fmt: skip
    assert [e.payload for e in a] == [e.payload for e in b]
    plain = simulate(catalogue, PROFILES, start=T0, minutes=60, seed=1, clean=True)
    assert [e.payload for e in a] != [e.payload for e in plain]


# The stream of the simulator as it was before the weather option (stations of the shipped
# catalogue, 2 h from T0, seed 3, with malformed messages, both server formats): 1552 messages.
PINNED = "4cf73e490092af00bfdadc60d90f754d3f948e57f895fb5fdc4808f07cb8b3b4"


def test_without_weather_the_stream_is_unchanged(catalogue):
    h = hashlib.sha256()
    n = 0
    events = simulate(catalogue, PROFILES, start=T0, minutes=120, seed=3)
    for fmt in ("tts", "chirpstack"):
        for _, topic, body in stream(events, fmt):
            h.update(topic.encode())
            h.update(body)
            n += 1
    assert n == 1552
    assert h.hexdigest() == PINNED


def test_a_series_that_does_not_cover_the_window_or_lacks_a_key_is_an_error(catalogue):
    short = _weather(1)
    with pytest.raises(DataError, match=r"simulate: the weather series covers .* the stream needs"):
        simulate(catalogue, PROFILES, start=T0, minutes=180, seed=1, weather=short)
    w = _weather(1)
    del w["rh_percent"]
    with pytest.raises(DataError, match=r"simulate: the weather series lacks 'rh_percent'"):
        simulate(catalogue, PROFILES, start=T0, minutes=60, seed=1, weather=w)
