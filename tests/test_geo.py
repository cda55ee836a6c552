"""Tests for twin.geo against closed-form geodesy, an independent UTM series and published points."""

from __future__ import annotations

import numpy as np
import pytest

from twin import geo
from twin.errors import TwinError

# WGS84 and GRS80 ellipsoids (semi-major axis a, flattening f).
WGS84_A, WGS84_F = 6378137.0, 1 / 298.257223563
GRS80_A, GRS80_F = 6378137.0, 1 / 298.257222101

# Points spread over Krefeld (lon, lat): city centre, Uerdingen/Rhine port, the four corners.
KREFELD_LON = np.array([6.569444, 6.66469, 6.45, 6.72, 6.45, 6.72, 6.5588])
KREFELD_LAT = np.array([51.325833, 51.34228, 51.26, 51.26, 51.42, 51.42, 51.3343])


def ecef_closed_form(lon_deg, lat_deg, h, a=WGS84_A, f=WGS84_F):
    """Geodetic -> ECEF with the textbook formulas (prime-vertical radius N)."""
    lam, phi = np.radians(lon_deg), np.radians(lat_deg)
    e2 = f * (2 - f)
    n = a / np.sqrt(1 - e2 * np.sin(phi) ** 2)
    return (
        (n + h) * np.cos(phi) * np.cos(lam),
        (n + h) * np.cos(phi) * np.sin(lam),
        (n * (1 - e2) + h) * np.sin(phi),
    )


def utm32_krueger(lon_deg, lat_deg, a=GRS80_A, f=GRS80_F):
    """UTM zone 32 by the Krueger series to 6th order in n (Karney 2011, J. Geodesy 85, eq. 35)."""
    n = f / (2 - f)
    big_a = a / (1 + n) * (1 + n**2 / 4 + n**4 / 64 + n**6 / 256)
    alpha = [
        n / 2 - 2 / 3 * n**2 + 5 / 16 * n**3 + 41 / 180 * n**4 - 127 / 288 * n**5
        + 7891 / 37800 * n**6,
        13 / 48 * n**2 - 3 / 5 * n**3 + 557 / 1440 * n**4 + 281 / 630 * n**5
        - 1983433 / 1935360 * n**6,
        61 / 240 * n**3 - 103 / 140 * n**4 + 15061 / 26880 * n**5 + 167603 / 181440 * n**6,
        49561 / 161280 * n**4 - 179 / 168 * n**5 + 6601661 / 7257600 * n**6,
        34729 / 80640 * n**5 - 3418889 / 1995840 * n**6,
        212378941 / 319334400 * n**6,
    ]  # fmt: skip
    e = 2 * np.sqrt(n) / (1 + n)
    phi, dlam = np.radians(lat_deg), np.radians(np.asarray(lon_deg) - 9.0)
    t = np.sinh(np.arctanh(np.sin(phi)) - e * np.arctanh(e * np.sin(phi)))
    xi = np.arctan2(t, np.cos(dlam))
    eta = np.arctanh(np.sin(dlam) / np.sqrt(1 + t**2))
    east, north = eta, xi
    for j, aj in enumerate(alpha, start=1):
        east = east + aj * np.cos(2 * j * xi) * np.sinh(2 * j * eta)
        north = north + aj * np.sin(2 * j * xi) * np.cosh(2 * j * eta)
    k0 = 0.9996
    return 500000.0 + k0 * big_a * east, k0 * big_a * north


# --- ECEF -------------------------------------------------------------------------------------


def test_wgs84_to_ecef_matches_closed_form_to_1mm():
    lon = np.concatenate([KREFELD_LON, [0.0, -75.0, 139.7, 10.0]])
    lat = np.concatenate([KREFELD_LAT, [0.0, 40.7, 35.7, -89.0]])
    h = np.linspace(-50.0, 3000.0, lon.size)
    got = geo.wgs84_to_ecef(lon, lat, h)
    want = ecef_closed_form(lon, lat, h)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-3)


def test_ecef_to_wgs84_round_trip():
    h = np.array([0.0, 30.0, 45.4, 120.0, -10.0, 500.0, 1000.0])
    lon, lat, h2 = geo.ecef_to_wgs84(*geo.wgs84_to_ecef(KREFELD_LON, KREFELD_LAT, h))
    np.testing.assert_allclose(lon, KREFELD_LON, rtol=0, atol=1e-9)
    np.testing.assert_allclose(lat, KREFELD_LAT, rtol=0, atol=1e-9)
    np.testing.assert_allclose(h2, h, rtol=0, atol=1e-3)


# Geodetic reference points of the Bavarian survey (ldbv.bayern.de, "Geodätischer Referenzpunkt"):
# ETRS89 lat, lon (deg), ellipsoidal h (m), X, Y, Z (m), UTM 32 E, N (m); published to 1 cm.
BAVARIAN_POINTS = [
    # Augsburg, Königsplatz
    (48.36651699, 10.89443123, 535.81, 4169180.41, 802437.37, 4744449.79, 640309.21, 5358772.36),
    # Landau a. d. Isar
    (48.66575341, 12.66050596, 391.90, 4118053.21, 925061.09, 4766385.36, 769502.33, 5396768.61),
    # Schwanstetten
    (49.29620631, 11.11410287, 386.04, 4089603.90, 803393.81, 4812398.86, 653706.62, 5462534.68),
]


@pytest.mark.parametrize("lat, lon, h, X, Y, Z, E, N", BAVARIAN_POINTS)
def test_published_reference_points_to_2cm(lat, lon, h, X, Y, Z, E, N):
    # Published to 1 cm, lat/lon to 1e-8 deg (~1 mm): 2 cm tolerance.
    np.testing.assert_allclose(geo.wgs84_to_ecef(lon, lat, h), (X, Y, Z), rtol=0, atol=0.02)
    np.testing.assert_allclose(geo.wgs84_to_utm(lon, lat), (E, N), rtol=0, atol=0.02)


# --- UTM --------------------------------------------------------------------------------------


def test_wgs84_to_utm_matches_krueger_series_to_1mm():
    lon = np.linspace(6.45, 6.72, 7)[:, None] + np.zeros((1, 6))
    lat = np.linspace(51.26, 51.42, 6)[None, :] + np.zeros((7, 1))
    x, y = geo.wgs84_to_utm(lon, lat)
    x_ref, y_ref = utm32_krueger(lon, lat)
    assert x.shape == (7, 6)
    np.testing.assert_allclose(x, x_ref, rtol=0, atol=1e-3)
    np.testing.assert_allclose(y, y_ref, rtol=0, atol=1e-3)


def test_krueger_reference_itself_is_sane():
    # On the central meridian at the equator the series gives exactly the false easting and 0.
    x, y = utm32_krueger(9.0, 0.0)
    assert x == pytest.approx(500000.0, abs=1e-9) and y == pytest.approx(0.0, abs=1e-9)


def test_utm_round_trip_to_1mm():
    x0, y0 = utm32_krueger(KREFELD_LON, KREFELD_LAT)
    x1, y1 = geo.wgs84_to_utm(*geo.utm_to_wgs84(x0, y0))
    np.testing.assert_allclose(x1, x0, rtol=0, atol=1e-3)
    np.testing.assert_allclose(y1, y0, rtol=0, atol=1e-3)


def test_kuladig_rhine_port_point():
    # KuLaDig KLD-328356 states UTM32 337350.83 E 5690477.94 N and 51.34228 N 6.66469 E; the
    # degrees have 5 decimals (half a unit = 0.56 m north, 0.35 m east), so the tolerance is ~1 m.
    lon, lat = geo.utm_to_wgs84(337350.83, 5690477.94)
    assert lon == pytest.approx(6.66469, abs=1e-5)
    assert lat == pytest.approx(51.34228, abs=1e-5)
    x, y = geo.wgs84_to_utm(6.66469, 51.34228)
    assert np.hypot(x - 337350.83, y - 5690477.94) < 1.0


# --- heights ----------------------------------------------------------------------------------


def test_utm_ecef_round_trip_and_height_relation():
    x = np.array([330657.26, 337350.83, 322000.0, 340000.0])
    y = np.array([5688864.73, 5690477.94, 5681000.0, 5697000.0])
    H = np.array([38.5, 30.0, 45.0, 29.0])
    X, Y, Z = geo.utm_to_ecef(x, y, H)
    x2, y2, H2 = geo.ecef_to_utm(X, Y, Z)
    np.testing.assert_allclose(x2, x, rtol=0, atol=1e-3)
    np.testing.assert_allclose(y2, y, rtol=0, atol=1e-3)
    np.testing.assert_allclose(H2, H, rtol=0, atol=1e-3)
    # The ECEF point lies H + GEOID_HEIGHT_M above the ellipsoid, along the ellipsoid normal.
    lon, lat = geo.utm_to_wgs84(x, y)
    np.testing.assert_allclose(
        (X, Y, Z), ecef_closed_form(lon, lat, H + geo.GEOID_HEIGHT_M), rtol=0, atol=1e-3
    )


@pytest.mark.parametrize(
    "lat, lon, h, H",
    [
        (51.1676546, 6.4454264, 101.7, 56.37),  # Mönchengladbach-Rheydt, Marktplatz
        (51 + 25 / 60 + 24.65 / 3600, 6 + 52 / 60 + 34.12 / 3600, 83.6, 38.1),  # Mülheim a. d. R.
    ],
)
def test_geoid_height_agrees_with_nearby_published_points(lat, lon, h, H):
    # Public GNSS reference points around Krefeld stating both heights (h rounded to 0.1 m):
    # their height anomaly h - H must match the constant within 0.25 m.
    assert abs((h - H) - geo.GEOID_HEIGHT_M) < 0.25


# --- local ENU frame --------------------------------------------------------------------------


@pytest.fixture
def frame():
    return geo.LocalFrame(6.569444, 51.325833, 80.0)


def test_enu_origin_and_vertical(frame):
    np.testing.assert_allclose(frame.ecef_to_enu(frame.origin_ecef), [0, 0, 0], atol=1e-6)
    above = np.array(geo.wgs84_to_ecef(frame.lon, frame.lat, frame.h + 100.0))
    np.testing.assert_allclose(frame.ecef_to_enu(above), [0, 0, 100.0], atol=1e-3)


def test_enu_point_east_along_parallel_matches_closed_form(frame):
    # Moving by dlam along the parallel (radius r = (N + h) cos phi) gives, exactly,
    # e = r sin(dlam), n = (N + h) sin(phi) cos(phi) (1 - cos dlam), u = -r cos(phi)(1 - cos dlam).
    dlam = np.radians(0.015)  # ~1 km
    phi = np.radians(frame.lat)
    nu = WGS84_A / np.sqrt(1 - WGS84_F * (2 - WGS84_F) * np.sin(phi) ** 2) + frame.h
    p = np.array(geo.wgs84_to_ecef(frame.lon + np.degrees(dlam), frame.lat, frame.h))
    e, n, u = frame.ecef_to_enu(p)
    assert e > 1000.0
    assert e == pytest.approx(nu * np.cos(phi) * np.sin(dlam), abs=1e-6)
    assert n == pytest.approx(nu * np.sin(phi) * np.cos(phi) * (1 - np.cos(dlam)), abs=1e-6)
    assert u == pytest.approx(-nu * np.cos(phi) ** 2 * (1 - np.cos(dlam)), abs=1e-6)
    assert abs(n) < 2e-4 * e  # ~zero north: second order in dlam (0.11 m at 1 km)


def test_rotation_is_orthonormal_and_right_handed(frame):
    r = frame.rotation
    np.testing.assert_allclose(r @ r.T, np.eye(3), rtol=0, atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0, abs=1e-12)


def test_ecef_enu_round_trip(frame):
    rng = np.random.default_rng(7)
    xyz = frame.origin_ecef + rng.uniform(-20000.0, 20000.0, size=(50, 3))
    np.testing.assert_allclose(frame.enu_to_ecef(frame.ecef_to_enu(xyz)), xyz, rtol=0, atol=1e-6)


def test_matrix_and_tileset_transform(frame):
    rng = np.random.default_rng(3)
    enu = rng.uniform(-5000.0, 5000.0, size=(20, 3))
    m = frame.enu_to_ecef_matrix()
    homogeneous = np.hstack([enu, np.ones((20, 1))])
    np.testing.assert_allclose((homogeneous @ m.T)[:, :3], frame.enu_to_ecef(enu), atol=1e-6)
    np.testing.assert_array_equal(m[3], [0, 0, 0, 1])
    t = frame.tileset_transform()
    assert len(t) == 16 and all(type(v) is float for v in t)
    assert t == list(m.flatten(order="F"))
    assert t[12:15] == list(frame.origin_ecef)  # translation sits in the last column


def test_frame_from_utm_and_utm_enu_round_trip():
    frame = geo.LocalFrame.from_utm(330657.26, 5688864.73, 38.5)
    assert frame.h == pytest.approx(38.5 + geo.GEOID_HEIGHT_M)
    np.testing.assert_allclose(frame.utm_to_enu(330657.26, 5688864.73, 38.5), 0, atol=1e-6)
    x = np.array([330000.0, 331500.0, 329000.0])
    y = np.array([5688000.0, 5690000.0, 5687500.0])
    H = np.array([35.0, 40.0, 50.0])
    enu = frame.utm_to_enu(x, y, H)
    assert enu.shape == (3, 3)
    np.testing.assert_allclose(frame.enu_to_utm(enu), (x, y, H), rtol=0, atol=1e-3)


# --- broadcasting and errors ------------------------------------------------------------------


def test_scalars_give_scalar_shapes_and_arrays_keep_shape():
    for out in (
        geo.wgs84_to_utm(6.5, 51.3),
        geo.utm_to_wgs84(330000.0, 5688000.0),
        geo.wgs84_to_ecef(6.5, 51.3, 40.0),
        geo.ecef_to_wgs84(4.0e6, 4.5e5, 4.96e6),
        geo.utm_to_ecef(330000.0, 5688000.0, 40.0),
        geo.ecef_to_utm(4.0e6, 4.5e5, 4.96e6),
    ):
        assert all(isinstance(v, np.ndarray) and v.shape == () for v in out)
    n = KREFELD_LON.size
    for out in (
        geo.wgs84_to_utm(KREFELD_LON, KREFELD_LAT),
        geo.wgs84_to_ecef(KREFELD_LON, KREFELD_LAT, 0.0),  # scalar h broadcasts
        geo.utm_to_ecef(*geo.wgs84_to_utm(KREFELD_LON, KREFELD_LAT), 40.0),
    ):
        assert all(v.shape == (n,) for v in out)


def test_bad_input_raises_twin_error():
    with pytest.raises(TwinError, match="'lat'"):
        geo.wgs84_to_utm(6.5, "north")
    with pytest.raises(TwinError, match="broadcast"):
        geo.wgs84_to_ecef([1.0, 2.0], [1.0, 2.0, 3.0], 0.0)
    with pytest.raises(TwinError, match=r"\(N, 3\)"):
        geo.LocalFrame(6.5, 51.3, 0.0).ecef_to_enu(np.zeros((4, 2)))
