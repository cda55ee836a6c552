"""Decoders and the two network-server formats: hand-built payloads, analytic heads, same readings."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from sensor_helpers import KREFELD_PARKING

from twin.errors import ConfigError
from twin.sensors.devices import load_catalogue
from twin.sensors.ingest import Ingestor
from twin.sensors.profiles import DecodeError, load_profiles
from twin.sensors.simulate import simulate, stream
from twin.sensors.store import SQLiteStore
from twin.sensors.synthetic import write_synthetic_catalogue
from twin.sensors.uplink import parse_uplink, render_chirpstack, render_tts
from twin.sensors.validate import FROM_DECODED

PROFILES = load_profiles()
WELL = {"reference_height_m": 35.9, "well_depth_m": 20.0}
T0 = 1717200000.0  # 2024-06-01T00:00:00Z


@pytest.fixture
def catalogue(tmp_path: Path):
    wells, stations = write_synthetic_catalogue(tmp_path / "cat", n_wells=12, n_stations=4)
    return load_catalogue(wells, stations, KREFELD_PARKING)


def test_level_payload_decodes_to_head_below_reference():
    # 5825 mm = 0x16C1, 11.08 degC = 1108 = 0x0454, 3.532 V = 3532 mV = 0x0DCC (big-endian)
    payload = bytes.fromhex("16C104540DCC")
    p = PROFILES.profiles["groundwater-logger"]
    fields = p.layout(1).unpack(payload)
    values = p.derive(1, fields, WELL)
    assert values["groundwater_head"] == pytest.approx(35.9 - 5.825, abs=1e-9)
    assert values["water_temperature"] == pytest.approx(11.08, abs=1e-9)
    assert values["battery_voltage"] == pytest.approx(3.532, abs=1e-9)
    assert p.layout(1).pack(fields) == payload


def test_pressure_payload_gives_hydrostatic_head():
    # 98000 Pa = 0x00017ED0; the probe hangs 0.5 m above the bottom of a 20 m well
    payload = bytes.fromhex("00017ED004540DCC")
    p = PROFILES.profiles["groundwater-logger"]
    values = p.derive(2, p.layout(2).unpack(payload), WELL)
    probe = 35.9 - (20.0 - 0.5)
    assert values["groundwater_head"] == pytest.approx(probe + 98000 / (999.7 * 9.81), abs=1e-9)


def test_climate_payload_with_and_without_optional_sensors():
    p = PROFILES.profiles["climate-station"]
    # flags 3: radiation and wind present
    full = bytes.fromhex("03FDF31FD6000C0E1009C901B008CA")
    v = p.derive(1, p.layout(1).unpack(full), {})
    expected = {"air_temperature": -5.25, "relative_humidity": 81.5, "precipitation": 1.2,
                "battery_voltage": 3.6, "global_radiation": 250.5, "wind_speed": 4.32,
                "wind_direction": 225.0}  # fmt: skip
    assert v == pytest.approx(expected, abs=1e-9)
    bare = p.derive(1, p.layout(1).unpack(full[:9].replace(b"\x03", b"\x00", 1)), {})
    assert set(bare) == {"air_temperature", "relative_humidity", "precipitation", "battery_voltage"}
    with pytest.raises(DecodeError, match="ends before field .global_radiation."):
        p.layout(1).unpack(full[:9])  # flags say radiation and wind follow, the bytes do not


def test_parking_bit_and_short_payload():
    p = PROFILES.profiles["parking-sensor"]
    assert p.derive(1, p.layout(1).unpack(bytes.fromhex("010E10")), {})["occupied"] == 1.0
    assert p.derive(1, p.layout(1).unpack(bytes.fromhex("FE0E10")), {})["occupied"] == 0.0
    with pytest.raises(DecodeError, match="ends before field 'battery'"):
        p.layout(1).unpack(b"\x01\x0e")
    with pytest.raises(DecodeError, match="no layout for f_port 9"):
        p.layout(9)


def test_bad_profiles_file_names_the_key(tmp_path: Path):
    bad = tmp_path / "p.toml"
    bad.write_text(
        '[quantities.x]\nunits = "m"\nvalid_min = 0\nvalid_max = 1\n'
        '[profiles.a]\ncatalogue = "wells"\n[profiles.a.ports.1]\nname = "n"\n'
        'fields = [{ name = "f", type = "u17" }]\nquantities = []\n'
    )
    with pytest.raises(ConfigError, match=r"profiles\.a\.ports\.1\.fields\[0\]\.type"):
        load_profiles(bad)


def test_both_formats_parse_to_the_same_uplink():
    kw = dict(dev_eui="0011223344000001", device_id="gwm-001", f_cnt=17, f_port=1,
              time=T0 + 0.123456, payload=bytes.fromhex("16C104540DCC"), decoded=None)  # fmt: skip
    a = parse_uplink(json.loads(json.dumps(render_tts(**kw))))
    b = parse_uplink(json.loads(json.dumps(render_chirpstack(**kw))))
    for key in ("dev_eui", "f_cnt", "f_port", "time", "payload", "rssi"):
        assert getattr(a, key) == getattr(b, key), key
    assert (a.format, b.format) == ("tts", "chirpstack")
    assert a.time == pytest.approx(T0 + 0.123456, abs=1e-6)


def test_tts_omits_zero_frame_counter():
    msg = render_tts(dev_eui="0011223344000001", device_id="x", f_cnt=0, f_port=1, time=T0,
                     payload=b"\x00", decoded=None)  # fmt: skip
    assert "f_cnt" not in msg["uplink_message"]
    assert parse_uplink(msg).f_cnt == 0
    assert base64.b64decode(msg["uplink_message"]["frm_payload"]) == b"\x00"


def _readings(store: SQLiteStore) -> list[tuple]:
    rows = store._conn.execute(
        "SELECT device_id, quantity, time, value, flags FROM readings ORDER BY device_id, quantity, time"
    ).fetchall()
    return rows


def test_tts_and_chirpstack_streams_give_the_same_readings(tmp_path: Path, catalogue):
    events = simulate(catalogue, PROFILES, start=T0, minutes=60, seed=5, clean=True)
    stores = {}
    for fmt in ("tts", "chirpstack"):
        store = SQLiteStore(tmp_path / f"{fmt}.sqlite")
        ing = Ingestor(store, catalogue, PROFILES, now=lambda: T0 + 3600)
        outcomes = ing.ingest([body for _, _, body in stream(events, fmt, "binary")], fmt)
        assert {o.status for o in outcomes} == {"stored"}
        stores[fmt] = _readings(store)
        store.close()
    assert len(stores["tts"]) > 500
    assert stores["tts"] == stores["chirpstack"]


def test_decoded_payload_gives_the_same_values_as_the_binary(tmp_path: Path, catalogue):
    events = simulate(catalogue, PROFILES, start=T0, minutes=30, seed=9, clean=True)
    got = {}
    for mode in ("binary", "decoded"):
        store = SQLiteStore(tmp_path / f"{mode}.sqlite")
        Ingestor(store, catalogue, PROFILES, now=lambda: T0 + 1800).ingest(
            [body for _, _, body in stream(events, "chirpstack", mode)]
        )
        got[mode] = _readings(store)
        store.close()
    assert len(got["binary"]) == len(got["decoded"]) > 100
    for b, d in zip(got["binary"], got["decoded"], strict=True):
        assert b[:3] == d[:3]
        assert d[3] == pytest.approx(b[3], rel=0, abs=1e-9)
        assert d[4] == b[4] | FROM_DECODED


def test_a_simulated_stream_can_start_from_given_base_heads(tmp_path: Path, catalogue):
    """Given base heads (a model's steady state), each logger's heads lie around them: within the
    simulator's river wave (0.9 m), pumping drawdown (0.6 m) and trend; the other draws unchanged."""
    wells = catalogue.of_kind("wells")
    base = {w.id: 20.0 + i for i, w in enumerate(wells)}
    heads = {}
    for given in (None, base):
        events = simulate(catalogue, PROFILES, start=T0, minutes=180, seed=5, clean=True,
                          base_heads=given)  # fmt: skip
        store = SQLiteStore(tmp_path / f"{given is None}.sqlite")
        Ingestor(store, catalogue, PROFILES, now=lambda: T0 + 3 * 3600).ingest(
            [body for _, _, body in stream(events, "tts")]
        )
        heads[given is None] = [r for r in _readings(store) if r[1] == "groundwater_head"]
        store.close()
    assert len(heads[False]) == len(heads[True]) > 3 * len(wells)  # the same uplinks
    for device, _, _, value, _ in heads[False]:
        assert abs(value - base[device]) < 1.6, (device, value)
    assert any(abs(v - base[d]) > 2.0 for d, _, _, v, _ in heads[True])  # not by chance
