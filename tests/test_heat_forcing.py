"""Heat-model forcing: CSV round trip, EPW reading (UTC times, units), one-line errors naming file,
line and field, interpolation (wind direction across north), and the synthetic heat wave's shape."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import pvlib
import pytest

from twin.app.readings import station_readings
from twin.errors import DataError
from twin.heat.forcing import (
    Forcing,
    clear_sky_ghi,
    forcing_from_store,
    read_forcing,
    reference_station,
    synthetic_heat_wave,
    write_forcing_csv,
)
from twin.heat.sun import solar_position

ROOT = Path(__file__).resolve().parents[1]
STATIONS = ROOT / "data" / "krefeld" / "sensors" / "climate_stations.csv"
BERLIN = ZoneInfo("Europe/Berlin")
START = datetime(2026, 7, 1, tzinfo=BERLIN).timestamp()  # local midnight, 2026-06-30T22:00Z


def _forcing(times, t, speed, direction) -> Forcing:
    n = len(times)
    return Forcing(times=np.array(times, float), t_air_c=np.array(t, float),
                   rh_percent=np.full(n, 50.0), wind_speed=np.array(speed, float),
                   wind_from_deg=np.array(direction, float), global_radiation=np.zeros(n),
                   pressure_hpa=np.full(n, 1000.0), source="test forcing")  # fmt: skip


# -- CSV ----------------------------------------------------------------------------------------------


def test_csv_round_trip_is_exact_and_keeps_provenance(tmp_path: Path):
    wave = synthetic_heat_wave(START, station=reference_station(STATIONS))
    path = write_forcing_csv(wave, tmp_path / "wave.csv")
    back = read_forcing(path)
    for name in ("times", "t_air_c", "rh_percent", "wind_speed", "wind_from_deg",
                 "global_radiation", "pressure_hpa"):  # fmt: skip
        np.testing.assert_array_equal(getattr(back, name), getattr(wave, name), err_msg=name)
    assert back.source == f"CSV file wave.csv ({wave.source})"
    assert back.source.startswith("CSV file wave.csv (synthetic heat wave (")
    assert back.station == wave.station
    assert back.station["id"] == "DWD-05064" and back.station["height"] == pytest.approx(39.0)


def test_csv_without_pressure_takes_the_standard_atmosphere(tmp_path: Path):
    path = tmp_path / "f.csv"
    path.write_text(
        "time,t_air_c,rh_percent,wind_speed,wind_from_deg,global_radiation\n"
        "2026-07-01T12:00:00+02:00,30.5,40,2.5,90,800\n"
        "2026-07-01T11:00:00Z,31.5,38,3.5,100,780\n",
        encoding="utf-8",
    )
    f = read_forcing(path)
    assert f.times.tolist() == [datetime(2026, 7, 1, 10, tzinfo=UTC).timestamp(),
                                datetime(2026, 7, 1, 11, tzinfo=UTC).timestamp()]  # fmt: skip
    np.testing.assert_array_equal(f.pressure_hpa, [1013.25, 1013.25])
    assert f.source == "CSV file f.csv" and f.station is None


# -- EPW ----------------------------------------------------------------------------------------------

EPW_HEADER = [
    "LOCATION,Testdorf,NW,DEU,SRC,105050,51.30,6.45,1.0,37.0",
    "DESIGN CONDITIONS,0",
    "TYPICAL/EXTREME PERIODS,0",
    "GROUND TEMPERATURES,0",
    "HOLIDAYS/DAYLIGHT SAVINGS,No,0,0,0",
    "COMMENTS 1,written by a test",
    "COMMENTS 2,",
    "DATA PERIODS,1,1,Data,Wednesday, 7/ 1,7/ 3",
]


def _epw_row(y, mo, d, h, *, t=20.0, rh=60.0, p=101000.0, ghi=0.0, wd=180.0, ws=2.0) -> str:
    f = ["9999"] * 35
    f[:6] = [str(y), str(mo), str(d), str(h), "60", "?9?9?9?9E0?9?9?9"]
    f[6], f[7], f[8], f[9] = f"{t:.1f}", "10.0", f"{rh:.0f}", f"{p:.0f}"
    f[13], f[20], f[21] = f"{ghi:.0f}", f"{wd:.0f}", f"{ws:.1f}"
    return ",".join(f)


def _write_epw(path: Path, days: int = 3, **override) -> list[dict]:
    rows, values = [], []
    for d in range(1, days + 1):
        for h in range(1, 25):
            v = {"t": 15.0 + 10.0 * np.sin(np.pi * (h - 6) / 12) + d, "rh": 50.0 + h,
                 "p": 100500.0 + 10 * h, "ghi": max(0.0, 800 * np.sin(np.pi * (h - 5) / 16)),
                 "wd": (10.0 * h) % 360, "ws": 1.0 + 0.1 * h}  # fmt: skip
            v = {k: round(x, 1 if k in ("t", "ws") else 0) for k, x in v.items()}
            values.append(v)
            rows.append(_epw_row(2026, 7, d, h, **v))
    for i, text in override.items():
        rows[int(i[1:])] = text
    path.write_text("\n".join(EPW_HEADER + rows) + "\n", encoding="utf-8")
    return values


def test_epw_reads_utc_times_and_units(tmp_path: Path):
    path = tmp_path / "test.epw"
    values = _write_epw(path)
    f = read_forcing(path)
    # hour 1 of 1 July in standard time UTC+1 ends at 01:00+01:00 = 00:00 UTC
    t0 = datetime(2026, 7, 1, tzinfo=UTC).timestamp()
    np.testing.assert_array_equal(f.times, t0 + 3600.0 * np.arange(72))
    np.testing.assert_allclose(f.t_air_c, [v["t"] for v in values], atol=1e-12)
    np.testing.assert_allclose(f.rh_percent, [v["rh"] for v in values], atol=1e-12)
    np.testing.assert_allclose(f.pressure_hpa, [v["p"] / 100.0 for v in values], atol=1e-9)
    np.testing.assert_allclose(f.wind_speed, [v["ws"] for v in values], atol=1e-12)
    np.testing.assert_allclose(f.wind_from_deg, [v["wd"] for v in values], atol=1e-12)
    # radiation: each hour's mean, placed at the stamp as the mean of the hours either side
    ghi = np.array([v["ghi"] for v in values])
    np.testing.assert_allclose(f.global_radiation[:-1], 0.5 * (ghi[:-1] + ghi[1:]), atol=1e-9)
    assert f.global_radiation[-1] == ghi[-1]
    assert f.source == "EPW file test.epw"
    assert f.station["id"] == "105050" and f.station["name"] == "Testdorf"
    assert f.station["time_zone_h"] == 1.0 and f.station["height"] == 37.0
    # x/y: the LOCATION's latitude/longitude in EPSG:25832, near Tönisvorst (~321-322 km E)
    assert 320000 < f.station["x"] < 324000 and 5683000 < f.station["y"] < 5687000


def test_epw_times_and_values_agree_with_pvlib(tmp_path: Path):
    path = tmp_path / "test.epw"
    _write_epw(path)
    data, meta = pvlib.iotools.read_epw(str(path))
    ours = read_forcing(path)
    theirs = data.index.tz_convert("UTC").as_unit("s").asi8.astype(float)
    # pvlib labels an hour by its start (0-23), the forcing by its end (the EPW stamp 1-24)
    np.testing.assert_array_equal(ours.times, theirs + 3600.0)
    np.testing.assert_allclose(ours.t_air_c, data["temp_air"].to_numpy(), atol=1e-12)
    np.testing.assert_allclose(ours.pressure_hpa, data["atmospheric_pressure"] / 100, atol=1e-9)
    np.testing.assert_allclose(ours.wind_speed, data["wind_speed"].to_numpy(), atol=1e-12)
    assert meta["TZ"] == ours.station["time_zone_h"]


def test_typical_year_epw_needs_a_year(tmp_path: Path):
    path = tmp_path / "tmy.epw"
    # a typical-year file: rows from different source years (here its last two hours from 2005)
    _write_epw(path, days=2, r47=_epw_row(2005, 7, 2, 24), r46=_epw_row(2005, 7, 2, 23))
    with pytest.raises(DataError, match=r"tmy\.epw: line 55: .*read it with year="):
        read_forcing(path)
    f = read_forcing(path, year=2026)
    assert f.times[-1] == datetime(2026, 7, 2, 23, tzinfo=UTC).timestamp()


BAD_CSV = {
    "bad number": ("2026-07-01T12:00:00Z,30,x,2,90,800\n", r"line 2, column 'rh_percent'.*got 'x'"),
    "out of range": ("2026-07-01T12:00:00Z,30,140,2,90,800\n", r"line 2, column 'rh_percent'"),
    "no zone": ("2026-07-01T12:00:00,30,40,2,90,800\n", r"line 2, column 'time'.*with zone"),
    "short row": ("2026-07-01T12:00:00Z,30,40\n", r"line 2: expected 6 fields"),
    "descending": (
        "2026-07-01T12:00:00Z,30,40,2,90,800\n2026-07-01T11:00:00Z,30,40,2,90,800\n",
        r"line 3, column 'time'.*not after",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CSV))
def test_bad_csv_gives_one_line_naming_file_line_and_column(tmp_path: Path, case: str):
    rows, pattern = BAD_CSV[case]
    path = tmp_path / "bad.csv"
    path.write_text(
        "time,t_air_c,rh_percent,wind_speed,wind_from_deg,global_radiation\n" + rows,
        encoding="utf-8",
    )
    with pytest.raises(DataError, match=r"bad\.csv: " + pattern) as err:
        read_forcing(path)
    assert "\n" not in str(err.value)


def test_csv_missing_column_is_named(tmp_path: Path):
    path = tmp_path / "bad.csv"
    path.write_text("time,t_air_c,rh_percent,wind_speed\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.csv: line 1: .*wind_from_deg, global_radiation"):
        read_forcing(path)


BAD_EPW = {
    "missing value": ({"r5": _epw_row(2026, 7, 1, 6, ghi=9999)},
                      r"line 14, field 14 \(global horizontal radiation\): missing value"),
    "short row": ({"r2": "2026,7,1,3,60,x,20.0"}, r"line 11: expected an EPW data row"),
    "bad number": ({"r0": _epw_row(2026, 7, 1, 1).replace(",20.0,", ",warm,", 1)},
                   r"line 9, field 7 \(dry bulb temperature\): expected a number, got 'warm'"),
    "bad hour": ({"r3": _epw_row(2026, 7, 1, 25)}, r"line 12, field 4 \(hour\): expected 1..24"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_EPW))
def test_bad_epw_gives_one_line_naming_file_line_and_field(tmp_path: Path, case: str):
    override, pattern = BAD_EPW[case]
    path = tmp_path / "bad.epw"
    _write_epw(path, days=1, **override)
    with pytest.raises(DataError, match=r"bad\.epw: " + pattern) as err:
        read_forcing(path)
    assert "\n" not in str(err.value)


def test_epw_without_location_header(tmp_path: Path):
    path = tmp_path / "bad.epw"
    path.write_text("\n".join(["NOT A LOCATION"] + EPW_HEADER[1:] + [_epw_row(2026, 7, 1, 1)]))
    with pytest.raises(DataError, match=r"bad\.epw: line 1: expected the EPW LOCATION header"):
        read_forcing(path)


def test_unknown_suffix_and_missing_file(tmp_path: Path):
    with pytest.raises(DataError, match=r"x\.txt: forcing file must end in \.epw or \.csv"):
        read_forcing(tmp_path / "x.txt")
    with pytest.raises(DataError, match=r"nothere\.csv: cannot read forcing file"):
        read_forcing(tmp_path / "nothere.csv")


# -- interpolation and windows ---------------------------------------------------------------------


def test_at_interpolates_linearly():
    f = _forcing([0.0, 3600.0, 7200.0], [10.0, 20.0, 14.0], [2.0, 4.0, 4.0], [90.0, 90.0, 90.0])
    got = f.at(900.0)
    assert got["t_air_c"] == pytest.approx(12.5, abs=1e-12)
    assert got["wind_speed"] == pytest.approx(2.5, abs=1e-12)
    assert got["wind_from_deg"] == pytest.approx(90.0, abs=1e-9)
    assert f.at(5400.0)["t_air_c"] == pytest.approx(17.0, abs=1e-12)
    assert set(got) == {"t_air_c", "rh_percent", "wind_speed", "wind_from_deg",
                        "global_radiation", "pressure_hpa"}  # fmt: skip
    assert all(isinstance(v, float) for v in got.values())


def test_wind_direction_interpolates_across_north():
    f = _forcing([0.0, 100.0], [20.0, 20.0], [3.0, 3.0], [350.0, 10.0])
    mid = f.at(50.0)["wind_from_deg"]
    assert min(mid, 360.0 - mid) == pytest.approx(0.0, abs=1e-9)  # north, not south (180)
    # a quarter of the way: the u/v mean of 350 and 10 weighted 3:1 lies at atan(0.5 tan 10 deg)
    quarter = f.at(25.0)["wind_from_deg"]
    assert quarter == pytest.approx(360.0 - np.degrees(np.arctan(0.5 * np.tan(np.radians(10)))),
                                    abs=1e-9)  # fmt: skip
    # a calm sample's direction counts for nothing
    calm = _forcing([0.0, 100.0], [20.0, 20.0], [0.0, 3.0], [180.0, 20.0])
    assert calm.at(40.0)["wind_from_deg"] == pytest.approx(20.0, abs=1e-9)


def test_at_outside_the_forcing_names_the_time_and_range():
    f = _forcing([0.0, 3600.0], [10.0, 20.0], [1.0, 1.0], [0.0, 0.0])
    with pytest.raises(
        DataError,
        match=r"test forcing: no forcing at 1970-01-01T01:00:01Z; it "
        r"covers 1970-01-01T00:00:00Z to 1970-01-01T01:00:00Z",
    ):
        f.at(3601.0)


def test_window_brackets_a_run_or_names_what_is_missing():
    f = _forcing(np.arange(0.0, 36000.0, 3600.0), np.arange(10.0), np.ones(10), np.zeros(10))
    w = f.window(5000.0, 9000.0)
    assert w.times.tolist() == [3600.0, 7200.0, 10800.0]
    assert w.at(5000.0) == f.at(5000.0)
    assert f.window(3600.0, 7200.0).times.tolist() == [3600.0, 7200.0]
    with pytest.raises(DataError, match=r"missing 1970-01-01T09:00:00Z to 1970-01-01T10:00:00Z$"):
        f.window(0.0, 36000.0)
    with pytest.raises(
        DataError, match=r"missing 1969-12-31T23:00:00Z to 1970-01-01T00:00:00Z and"
    ):
        f.window(-3600.0, 40000.0)


def test_forcing_rejects_unsorted_times_and_bad_values():
    with pytest.raises(DataError, match=r"test forcing: forcing times must ascend"):
        _forcing([0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [0.0, 0.0])
    with pytest.raises(DataError, match=r"forcing 'wind_speed' at 1970-01-01T00:00:00Z is -1.0"):
        _forcing([0.0, 1.0], [1.0, 1.0], [-1.0, 1.0], [0.0, 0.0])


# -- synthetic heat wave ---------------------------------------------------------------------------


def _pvlib_altitude(t: np.ndarray, lat: float = 51.33, lon: float = 6.56) -> np.ndarray:
    sp = pvlib.solarposition.get_solarposition(pd.to_datetime(t, unit="s", utc=True), lat, lon)
    return 90.0 - sp["zenith"].to_numpy()


def test_heat_wave_hits_its_extremes_at_the_right_local_hours():
    t_max, t_min = (32.0, 35.0, 37.0), (18.0, 20.0, 21.0)
    f = synthetic_heat_wave(START, days=3, t_max_c=t_max, t_min_c=t_min)
    assert f.source.startswith("synthetic heat wave (3 days") and "not observed" in f.source
    assert f.times[0] == START and f.times[-1] == START + 3 * 86400
    local = [datetime.fromtimestamp(t, BERLIN) for t in f.times]
    for k in range(3):
        day = datetime(2026, 7, 1 + k, tzinfo=BERLIN)
        sel = np.array([day <= x < day + timedelta(days=1) for x in local])
        i_max = np.flatnonzero(sel)[np.argmax(f.t_air_c[sel])]
        assert abs(f.t_air_c[i_max] - t_max[k]) < 0.5
        peak = local[i_max]
        assert abs((peak - (day + timedelta(hours=15))).total_seconds()) <= 600  # one step
        # the minimum: at sunrise (pvlib's geometric sunrise, on a 1-minute grid)
        grid = day.timestamp() + np.arange(0, 12 * 3600, 60.0)
        alt = _pvlib_altitude(grid)
        sunrise = grid[np.flatnonzero(alt > 0)[0]]
        morning = sel & (f.times < day.timestamp() + 12 * 3600)
        i_min = np.flatnonzero(morning)[np.argmin(f.t_air_c[morning])]
        assert abs(f.t_air_c[i_min] - t_min[k]) < 0.5
        assert abs(f.times[i_min] - sunrise) <= 600 + 120
    # humidity lowest at the warmest time, wind strongest then; radiation zero at night
    assert f.rh_percent[np.argmax(f.t_air_c)] == pytest.approx(30.0, abs=0.5)
    assert f.wind_speed[np.argmax(f.t_air_c)] == pytest.approx(3.0, abs=0.05)
    assert np.all(f.global_radiation[_pvlib_altitude(f.times) < -1.0] == 0.0)


def test_heat_wave_radiation_is_haurwitz_clear_sky():
    f = synthetic_heat_wave(START, days=1)
    zenith = 90.0 - solar_position(f.times, 51.33, 6.56)[0]
    theirs = pvlib.clearsky.haurwitz(pd.Series(zenith))["ghi"].to_numpy()
    np.testing.assert_allclose(f.global_radiation, theirs, atol=1e-6)
    assert 850.0 < f.global_radiation.max() < 950.0  # near midsummer noon at 51 N
    np.testing.assert_allclose(clear_sky_ghi(90.0), 1098.0 * np.exp(-0.059), rtol=1e-12)


def test_heat_wave_rejects_too_few_daily_values():
    with pytest.raises(DataError, match=r"4 days need 4 daily maxima and minima, got 3 and 3"):
        synthetic_heat_wave(START, days=4)


def test_heat_wave_can_start_earlier_without_shifting_its_days():
    f = synthetic_heat_wave(START, days=2, t_max_c=(30.0, 33.0), t_min_c=(17.0, 19.0))
    early = synthetic_heat_wave(START, days=2, t_max_c=(30.0, 33.0), t_min_c=(17.0, 19.0),
                                before_s=3600.0)  # fmt: skip
    assert early.times[0] == START - 3600.0 and early.times[-1] == f.times[-1]
    np.testing.assert_array_equal(early.t_air_c[6:], f.t_air_c)
    # the hour before: still falling towards the first sunrise, from a day-before peak of 30 degC
    assert np.all(np.diff(early.t_air_c[:7]) < 0) and early.t_air_c[0] < 30.0


# -- the reference station's readings in a sensor store --------------------------------------------

STATIONS_CSV = Path(__file__).resolve().parents[1] / "data/krefeld/sensors/climate_stations.csv"


def _station_store(tmp_path: Path, weather: Forcing, hours: float, *, drop=None,
                   first: int | None = None) -> Path:  # fmt: skip
    """A sensor store of the climate stations' simulated readings following ``weather``, as the
    ingest stores them from the uplinks; ``drop(event)`` leaves uplinks out; ``first``: only the
    catalogue's first stations and the DWD row (the simulator gives a station radiation and wind
    by its place in the catalogue, which this keeps)."""
    from twin.sensors.devices import load_catalogue
    from twin.sensors.ingest import Ingestor
    from twin.sensors.profiles import load_profiles
    from twin.sensors.simulate import simulate, stream
    from twin.sensors.store import SQLiteStore

    stations = STATIONS_CSV
    if first is not None:
        lines = STATIONS_CSV.read_text(encoding="utf-8").splitlines(keepends=True)
        stations = tmp_path / "stations.csv"
        stations.write_text("".join(lines[: 1 + first] + [ln for ln in lines if "DWD-" in ln]),
                            encoding="utf-8")  # fmt: skip
    catalogue = load_catalogue(None, stations, None)
    profiles = load_profiles()
    events = simulate(catalogue, profiles, start=weather.start, minutes=hours * 60, seed=5,
                      clean=True, weather=weather)  # fmt: skip
    events = [e for e in events if drop is None or not drop(e)]
    path = tmp_path / "stations.sqlite"
    store = SQLiteStore(path)
    try:
        ing = Ingestor(store, catalogue, profiles, now=lambda: weather.end + 3600.0)
        outcomes = ing.ingest([body for _, _, body in stream(events, "tts")], "tts")
        assert {o.status for o in outcomes} == {"stored"}
    finally:
        store.close()
    return path


def _wave() -> Forcing:
    return synthetic_heat_wave("2026-07-22T04:00:00Z", days=1)


def test_forcing_from_the_stations_readings_follows_its_weather(tmp_path: Path):
    """The DWD row's readings (the weather plus noise of 0.1 K, 1.5 %, 5 W/m2, 0.3 m/s, 8 degrees,
    two readings per 10-minute bin) give back the weather within 4 standard errors of a bin."""
    wave = _wave()
    t0 = wave.start + 3600.0
    store = _station_store(tmp_path, wave, 8.0, first=0)
    station = reference_station(STATIONS_CSV)
    got = forcing_from_store(station_readings, store, station, t0, t0 + 6 * 3600.0)
    assert got.station == station and "DWD-05064" in got.source and store.name in got.source
    assert np.allclose(np.diff(got.times), 600.0) and got.times[0] == t0 and got.times.size == 37
    want = wave.sample(got.times)
    # 4 sigma / sqrt(2) with a sample's interpolation error in a bin
    for name, sigma in (("t_air_c", 0.1), ("rh_percent", 1.5), ("global_radiation", 5.0),
                        ("wind_speed", 0.3)):  # fmt: skip
        err = np.abs(getattr(got, name) - want[name])
        assert err.max() < 4 * sigma / np.sqrt(2) + 0.02 * np.ptp(want[name]), name
    dirs = (got.wind_from_deg - want["wind_from_deg"] + 180.0) % 360.0 - 180.0
    assert np.abs(dirs).max() < 4 * 8.0 / np.sqrt(2)
    assert np.all(got.pressure_hpa == 1013.25)


def test_a_short_silence_is_bridged_a_long_one_is_named(tmp_path: Path):
    wave = _wave()
    t0 = wave.start + 3600.0
    station = reference_station(STATIONS_CSV)

    def silent(a: float, b: float):
        return lambda e: e.device.id == "DWD-05064" and t0 + a <= e.time < t0 + b

    short = _station_store(tmp_path, wave, 8.0, drop=silent(3600.0, 3600.0 + 1800.0), first=0)
    got = forcing_from_store(station_readings, short, station, t0, t0 + 4 * 3600.0)
    want = wave.sample(got.times)
    assert np.abs(got.t_air_c - want["t_air_c"]).max() < 0.5  # a linear bridge over 30 minutes
    (tmp_path / "stations.sqlite").unlink()
    long = _station_store(tmp_path, wave, 8.0, drop=silent(3600.0, 3 * 3600.0), first=0)
    with pytest.raises(DataError, match=r"stations\.sqlite: station DWD-05064: 'air_temperature': "
                       r"no readings from 2026-07-22T06:\d\d:00Z to 2026-07-22T08:\d\d:00Z, longer "
                       r"than the 3600 s"):  # fmt: skip
        forcing_from_store(station_readings, long, station, t0, t0 + 4 * 3600.0)


def test_a_station_without_radiation_cannot_force_the_model(tmp_path: Path):
    wave = _wave()
    store = _station_store(tmp_path, wave, 2.0, first=3)
    no_sensor = reference_station(STATIONS_CSV, "KLI-002")  # reports neither radiation nor wind
    with pytest.raises(DataError, match=r"station KLI-002: 'global_radiation': no readings"):
        forcing_from_store(station_readings, store, no_sensor, wave.start, wave.start + 3600.0)
    with pytest.raises(DataError, match=r"nowhere\.sqlite: no sensor store there"):
        forcing_from_store(
            station_readings, tmp_path / "nowhere.sqlite", no_sensor, wave.start, wave.start + 60.0
        )
