"""Heat outputs: GeoTIFF round trip, hot spots named by street, running statistics against a direct
computation on a stored series, maps that show their pattern, the energy-balance table and plot."""

from __future__ import annotations

import csv
import math
from datetime import UTC, date, datetime

import numpy as np
import pytest
import rasterio
import shapely
from matplotlib import colormaps
from PIL import Image
from rasterio.transform import from_origin

from twin.city.vector import write_gpkg
from twin.geo import wgs84_to_utm
from twin.heat import outputs as o

X0, Y0, CELL = 330000.0, 5690000.0, 10.0
TRANSFORM = from_origin(X0, Y0, CELL, CELL)


def _centre(r: int, c: int) -> tuple[float, float]:
    return X0 + (c + 0.5) * CELL, Y0 - (r + 0.5) * CELL


def _rgb(path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB")).astype(int)


def _map_part(img: np.ndarray) -> np.ndarray:
    """The image left of the colour bar (which holds every colour of the scale)."""
    return img[:, : int(0.88 * img.shape[1])]


def _near(img: np.ndarray, rgba, tol: int = 3) -> np.ndarray:
    target = np.round(np.asarray(rgba[:3]) * 255).astype(int)
    return np.all(np.abs(img - target) <= tol, axis=-1)


# -- GeoTIFF --------------------------------------------------------------------------------------------


def test_geotiff_round_trip_keeps_values_transform_crs_and_nan(tmp_path):
    rng = np.random.default_rng(1)
    a = 25 + 5 * rng.random((30, 40))
    a[3, 4] = np.nan
    path = o.write_raster(tmp_path / "t_air_max.tif", a, TRANSFORM)
    with rasterio.open(path) as src:
        assert src.crs.to_string() == "EPSG:25832"
        assert tuple(src.transform)[:6] == pytest.approx(tuple(TRANSFORM)[:6], abs=1e-9)
        assert src.shape == (30, 40) and src.dtypes[0] == "float32"
        assert math.isnan(src.nodata)
        back = src.read(1)
    assert np.isnan(back[3, 4]) and np.isnan(back).sum() == 1
    finite = np.isfinite(a)
    np.testing.assert_allclose(back[finite], a[finite], rtol=1e-6)  # float32 storage


def test_geotiff_refuses_a_rotated_transform(tmp_path):
    rotated = rasterio.Affine(10.0, 1.0, X0, 0.0, -10.0, Y0)
    with pytest.raises(ValueError, match="north-up"):
        o.write_raster(tmp_path / "x.tif", np.zeros((3, 3)), rotated)


# -- hot spots ------------------------------------------------------------------------------------------


@pytest.fixture
def streets_gpkg(tmp_path):
    """Three lines: a named east-west street through the north, a named north-south street in the
    east, an unnamed road and a railway near the south-west corner (never used as a name)."""
    xa, ya = _centre(10, 10)
    lines = [
        shapely.LineString([(X0, ya + 25.0), (X0 + 900.0, ya + 25.0)]),  # 25 m north of A
        shapely.LineString([(X0 + 600.0, Y0), (X0 + 600.0, Y0 - 600.0)]),  # x = 600 m
        shapely.LineString([(X0, Y0 - 560.0), (X0 + 200.0, Y0 - 560.0)]),  # unnamed road
        shapely.LineString([(X0, Y0 - 590.0), (X0 + 900.0, Y0 - 590.0)]),  # railway
    ]
    path = tmp_path / "streets.gpkg"
    write_gpkg(path, "streets", "EPSG:25832", np.array(lines, dtype=object), {
        "name": np.array(["Nordstraße", "Ostweg", "", "Bahnstrecke"], dtype=object),
        "highway": np.array(["primary", "residential", "service", ""], dtype=object),
        "railway": np.array(["", "", "", "rail"], dtype=object),
    })  # fmt: skip
    return path


def _peaks() -> np.ndarray:
    a = np.full((60, 90), 20.0) + 0.01 * np.arange(90)[None, :]  # weak west-east gradient
    a[10, 10] = 40.0  # A
    a[11, 12] = 39.0  # B, 22 m from A
    a[40, 60] = 38.0  # C, 5 m east of Ostweg
    a[55, 5] = 37.0  # D, in the south-west, nearest to the unnamed road and the railway
    a[0, 0] = np.nan
    return a


def test_hotspots_are_ranked_separated_and_named_by_nearest_named_street(streets_gpkg):
    rows = o.hotspots(_peaks(), TRANSFORM, n=5, min_separation_m=300.0, streets=streets_gpkg)
    assert [r["rank"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["value"] for r in rows[:3]] == [40.0, 38.0, 37.0]  # B is within 300 m of A
    values = [r["value"] for r in rows]
    assert values == sorted(values, reverse=True)
    xy = np.array([(r["x"], r["y"]) for r in rows])
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    assert d[np.triu_indices(len(rows), 1)].min() >= 300.0
    assert (rows[0]["x"], rows[0]["y"]) == _centre(10, 10)
    assert rows[0]["street"] == "Nordstraße"
    assert rows[0]["street_distance_m"] == pytest.approx(25.0, abs=1e-6)
    assert rows[1]["street"] == "Ostweg"
    assert rows[1]["street_distance_m"] == pytest.approx(5.0, abs=1e-6)
    # D: the unnamed road (5 m) and the railway are nearer; the nearest named street is Nordstraße
    xd, yd = _centre(55, 5)
    assert rows[2]["street"] == "Nordstraße"
    assert rows[2]["street_distance_m"] == pytest.approx((Y0 - 10.5 * CELL + 25.0) - yd)
    for r in rows:  # lon/lat are the same point in WGS84
        x, y = wgs84_to_utm(r["lon"], r["lat"])
        assert float(x) == pytest.approx(r["x"], abs=1e-4)
        assert float(y) == pytest.approx(r["y"], abs=1e-4)
        assert 6.0 < r["lon"] < 7.0 and 51.0 < r["lat"] < 52.0


def test_hotspots_mask_and_missing_streets():
    a = _peaks()
    mask = np.ones(a.shape, bool)
    mask[10, 10] = False  # A is a building cell
    rows = o.hotspots(a, TRANSFORM, n=2, min_separation_m=300.0, mask=mask)
    assert [r["value"] for r in rows] == [39.0, 38.0]
    assert rows[0]["street"] == "" and math.isnan(rows[0]["street_distance_m"])
    # fewer eligible cells than asked for: all of them, no more
    few = np.full((5, 5), np.nan)
    few[1, 1], few[3, 4] = 30.0, 31.0
    assert [r["value"] for r in o.hotspots(few, TRANSFORM, n=10, min_separation_m=0)] == [31, 30]


def test_hotspots_csv(tmp_path, streets_gpkg):
    rows = o.hotspots(_peaks(), TRANSFORM, n=3, streets=streets_gpkg)
    path = o.write_hotspots_csv(tmp_path / "hotspots.csv", rows)
    with path.open(encoding="utf-8") as f:
        back = list(csv.DictReader(f))
    assert list(back[0]) == list(o.HOTSPOT_COLUMNS)
    assert [b["street"] for b in back] == [r["street"] for r in rows]
    assert float(back[0]["value"]) == 40.0 and float(back[0]["street_distance_m"]) == 25.0


# -- running statistics ---------------------------------------------------------------------------------

T0 = datetime(2026, 7, 1, tzinfo=UTC).timestamp()  # 02:00 CEST; no DST change in the period
DT = 600.0


def _series():
    """Five days of 10-minute fields on 3 x 4 cells: a diurnal cycle (min at 04 UTC = 06 CEST) whose
    nightly minimum differs per cell and per night, so tropical-night counts range over 0..4."""
    n = int(5 * 86400 / DT)
    t = T0 + DT * np.arange(1, n + 1)
    hour = (t - T0) / 3600.0 % 24
    day = (t - T0) // 86400
    base = np.linspace(17.0, 23.0, 12).reshape(3, 4)
    night_shift = np.array([0.0, -1.5, 1.0, -0.5, 0.5, 0.0])[day.astype(int)]
    cycle = 6.0 * (1 - np.cos(2 * np.pi * (hour - 4.0) / 24)) / 2  # 0 at 04 UTC, 6 at 16 UTC
    t_air = base[None] + night_shift[:, None, None] + cycle[:, None, None]
    # cold dips just outside the nights (17:50 and 06:10 CEST) must not count; one just inside
    # (05:50 CEST on 3 July) must
    minute = np.round((t - T0) / 60.0) % 1440
    t_air[(minute == 15 * 60 + 50) | (minute == 4 * 60 + 10)] -= 10.0
    t_air[np.isclose(t, datetime(2026, 7, 3, 3, 50, tzinfo=UTC).timestamp())] -= 2.0
    utci = t_air + 8.0 * np.sin(np.pi * np.clip((hour - 4.0) / 14.0, 0, 1))[:, None, None]
    tmrt = utci + 10.0
    tmrt[:, 0, 0] = np.nan  # a building cell
    return t, t_air, utci, tmrt


def test_running_stats_match_a_direct_computation():
    t, t_air, utci, tmrt = _series()
    stats = o.RunningStats((3, 4), thresholds={"utci": 32.0, "tmrt": (40.0, 45.5)})
    for k in range(len(t)):
        stats.update(t[k], DT, {"t_air": t_air[k], "utci": utci[k], "tmrt": tmrt[k]})
    res = stats.result()

    np.testing.assert_allclose(res["t_air_max"], t_air.max(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(res["t_air_min"], t_air.min(axis=0), rtol=0, atol=1e-12)
    np.testing.assert_allclose(res["utci_max"], utci.max(axis=0), rtol=0, atol=1e-12)
    assert np.isnan(res["tmrt_max"][0, 0])
    np.testing.assert_allclose(res["tmrt_max"][1:], tmrt[:, 1:].max(axis=0), atol=1e-12)

    hours = (utci > 32.0).sum(axis=0) * DT / 3600.0
    np.testing.assert_allclose(res["hours_utci_above_32"], hours, rtol=0, atol=1e-9)
    assert hours.min() < hours.max()  # the threshold separates cells
    np.testing.assert_allclose(res["hours_tmrt_above_45p5"][1:],
                               ((tmrt[:, 1:] > 45.5).sum(axis=0) * DT / 3600.0), atol=1e-9)  # fmt: skip
    assert np.isnan(res["hours_tmrt_above_40"][0, 0])

    # direct: CEST = UTC+2, so local 18:00-06:00 is 16:00-04:00 UTC; a step belongs to the night of
    # its midpoint. Full nights: the evenings of 1..4 July (the run starts at 02:00 and ends at
    # 02:00 local, so the first and last nights are partial and not counted).
    mid = t - DT / 2
    minima = []
    for d in range(1, 5):
        start = datetime(2026, 7, d, 16, tzinfo=UTC).timestamp()
        sel = (mid >= start) & (mid < start + 12 * 3600)
        assert sel.sum() == 72
        minima.append(t_air[sel].min(axis=0))
    direct = (np.array(minima) >= 20.0).sum(axis=0)
    assert set(direct.ravel().tolist()) >= {0, 4} and len(set(direct.ravel().tolist())) >= 3
    np.testing.assert_array_equal(res["tropical_nights"], direct)
    np.testing.assert_array_equal(o.count_tropical_nights(np.array(minima)), direct)
    assert stats.nights() == [date(2026, 7, d) for d in range(1, 5)]
    assert stats.nights_skipped == [date(2026, 6, 30)]


def test_night_follows_local_time_across_dst():
    def at(y, mo, d, h, mi=0):
        return datetime(y, mo, d, h, mi, tzinfo=UTC).timestamp()

    assert o.night_of(at(2026, 7, 2, 3, 30)) == date(2026, 7, 1)  # 05:30 CEST
    assert o.night_of(at(2026, 7, 2, 4, 30)) is None  # 06:30 CEST
    assert o.night_of(at(2026, 10, 25, 4, 30)) == date(2026, 10, 24)  # 05:30 CET (after the change)
    assert o.night_of(at(2026, 7, 1, 16), dt_s=600) is None  # step 15:50-16:00 UTC: 17:55 CEST
    assert o.night_of(at(2026, 7, 1, 16, 10), dt_s=600) == date(2026, 7, 1)  # midpoint 18:05


def test_count_tropical_nights_ignores_nan():
    m = np.array([[[20.0, 19.9]], [[np.nan, 21.0]], [[25.0, 20.0]]])
    np.testing.assert_array_equal(o.count_tropical_nights(m), [[2, 2]])


# -- maps -----------------------------------------------------------------------------------------------


def _pattern() -> np.ndarray:
    a = np.tile(np.linspace(20.0, 30.0, 60), (40, 1))  # warmer to the east
    a[:10, 45:] = 35.0  # hot block, north-east
    a[30:, :15] = 15.0  # cold block, south-west
    return a


def test_heat_map_is_not_blank_and_shows_its_pattern(tmp_path, streets_gpkg):
    a = _pattern()
    buildings = np.zeros(a.shape, bool)
    buildings[20:24, 20:30] = True
    hs = o.hotspots(a, TRANSFORM, n=3, streets=streets_gpkg)
    path = o.plot_heat_map(tmp_path / "t_air_max.png", a, TRANSFORM, title="Air temperature",
                           units="°C", cmap="RdYlBu_r", streets=streets_gpkg, hotspots=hs,
                           buildings_mask=buildings)  # fmt: skip
    img = _rgb(path)
    assert img.shape[1] >= 1000
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 200
    cmap = colormaps["RdYlBu_r"]
    img = _map_part(img)
    hot, cold = _near(img, cmap(1.0)), _near(img, cmap(0.0))
    grey = _near(img, (0x8C / 255, 0x8C / 255, 0x8C / 255), tol=2)
    assert hot.sum() > 2000 and cold.sum() > 2000 and grey.sum() > 500
    hy, hx = np.argwhere(hot).mean(axis=0)
    cy, cx = np.argwhere(cold).mean(axis=0)
    assert hx > cx + 200 and hy < cy - 100  # hot to the east and north of cold: north up


def test_difference_map_has_symmetric_limits_centred_on_zero(tmp_path):
    assert o.map_limits(np.array([-1.0, 3.0]), diverging=True) == (-3.0, 3.0)
    assert o.map_limits(np.array([-1.0, 3.0]), vmin=-2.0, vmax=1.0, diverging=True) == (-2.0, 2.0)
    assert o.map_limits(np.array([-1.0, 3.0])) == (-1.0, 3.0)
    d = np.zeros((40, 60))
    d[:, :20] = -1.0
    d[:, 40:] = 3.0  # the middle third is 0
    path = o.plot_heat_map(tmp_path / "diff.png", d, TRANSFORM, title="variant - baseline",
                           units="K", diverging=True)  # fmt: skip
    meta = Image.open(path).text["Description"]
    assert "vmin=-3;" in meta and "vmax=3;" in meta
    img = _map_part(_rgb(path))
    cmap = colormaps["RdBu_r"]
    zero = _near(img, cmap(0.5), tol=2)  # the neutral colour, not the white page (255)
    red = _near(img, cmap(1.0))
    assert zero.sum() > 0.25 * red.sum() > 2000  # zero third drawn neutral as big as the +3 third
    assert not _near(img, cmap(0.0)).any()  # -1 is light blue, not the end of the scale


# -- energy balance -------------------------------------------------------------------------------------


def test_energy_balance_csv_and_plot(tmp_path):
    rows = []
    for k in range(48):
        t = T0 + 1800.0 * k
        q = 400.0 * max(0.0, math.sin(math.pi * (k % 48 - 10) / 28)) - 60.0
        shape = (4, 5)
        rows.append(o.energy_balance_row(
            t, net_radiation=np.full(shape, q), sensible=np.full(shape, 0.3 * q),
            latent=np.full(shape, 0.2 * q), storage=np.full(shape, 0.4 * q),
            ground=np.full(shape, 0.1 * q + 5.0), anthropogenic=5.0))  # fmt: skip
    path = o.energy_balance_csv(tmp_path / "energy_balance.csv", rows)
    back = o.read_energy_balance_csv(path)
    assert tuple(back[0]) == o.ENERGY_COLUMNS
    assert back[0]["time"] == "2026-07-01T00:00:00Z" and back[1]["time"] == "2026-07-01T00:30:00Z"
    assert max(abs(r["residual"]) for r in back) < 1e-3
    assert back[0]["net_radiation"] == pytest.approx(rows[0]["net_radiation"], abs=1e-3)
    png = o.plot_energy_balance(tmp_path / "energy_balance.png", back)
    img = _rgb(png)
    assert len(np.unique(img.reshape(-1, 3), axis=0)) > 100
    assert _near(img, (0xD6 / 255, 0x27 / 255, 0x28 / 255), tol=2).sum() > 200  # the Q* line
