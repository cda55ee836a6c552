"""Heat model radiation: sun position, shadows, sky view factor, radiation fluxes, Tmrt, UTCI."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twin.errors import DataError
from twin.heat import comfort, radiation, shadow, sun

KREFELD = (51.33, 6.56)
SUNS = [(180.0, 60.0), (135.0, 35.0), (250.0, 12.0), (290.0, 4.0), (0.0, 20.0), (63.0, 8.0)]


def random_city(n: int = 90, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Rough terrain with blocks of buildings and some tree crowns on the ground."""
    rng = np.random.default_rng(seed)
    dsm = rng.uniform(0.0, 2.0, (n, n))
    for _ in range(12):
        i, j = rng.integers(0, n - 15, 2)
        dsm[i : i + rng.integers(4, 15), j : j + rng.integers(4, 15)] += rng.uniform(5, 25)
    canopy = np.where((rng.random((n, n)) < 0.08) & (dsm < 2.0), rng.uniform(4, 14, (n, n)), 0.0)
    return dsm, canopy


# --- sun ---------------------------------------------------------------------------------------


def test_solar_position_matches_pvlib_spa_over_a_year():
    pvlib = pytest.importorskip("pvlib", reason="pvlib (test extra) is needed for this check")
    import pandas as pd

    times = pd.date_range("2025-01-01", "2025-12-31 23:00", freq="h", tz="UTC")
    spa = pvlib.solarposition.get_solarposition(times, *KREFELD, method="nrel_numpy")
    t = np.asarray((times - pd.Timestamp("1970-01-01", tz="UTC")).total_seconds())
    alt, az = sun.solar_position(t, *KREFELD)
    up = spa["elevation"].to_numpy() > -1.0
    d_alt = np.abs(alt - spa["elevation"].to_numpy())[up]
    d_az = np.abs((az - spa["azimuth"].to_numpy() + 180.0) % 360.0 - 180.0)[up]
    assert up.sum() > 4000
    assert d_alt.max() < 0.1 and d_az.max() < 0.1  # deg (measured: 0.012 and 0.016)


def test_solar_position_scalar_and_noon():
    # 2025-06-21 11:36 UTC is solar noon at 6.56 E: sun due south, 90 - 51.33 + 23.44
    alt, az = sun.solar_position(1750505760.0, *KREFELD)
    assert isinstance(alt, float)
    assert alt == pytest.approx(90 - 51.33 + 23.44, abs=0.1) and az == pytest.approx(180, abs=1.0)


# --- shadows -----------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1])
def test_shadow_kernel_equals_reference_on_random_city(seed):
    dsm, canopy = random_city(seed=seed)
    for az, alt in SUNS:
        ours = shadow.shadow_mask(dsm, 2.0, az, alt, canopy=canopy)
        ref = shadow.shadow_mask_reference(dsm, 2.0, az, alt, canopy=canopy)
        assert ours.dtype == np.float32 and ours.shape == dsm.shape
        np.testing.assert_array_equal(ours, ref)  # same sampling: identical in every cell
        assert set(np.unique(ours)) <= {0.0, np.float32(0.03), 1.0}


def test_shadow_of_a_single_wall_is_h_over_tan_alt_long():
    n, h = 80, 10.0
    dsm = np.zeros((n, n))
    dsm[50:60, :] = h  # an east-west wall of buildings, rows 50-59
    for alt in (20.0, 30.0, 45.0):
        mask = shadow.shadow_mask(dsm, 2.0, 180.0, alt)  # sun in the south: shadow to the north
        shaded_rows = int((mask[:50, 40] == 0).sum())
        length = h / math.tan(math.radians(alt))
        assert abs(shaded_rows * 2.0 - length) <= 2.0  # within one cell
        assert np.all(mask[:50, 40][: 50 - shaded_rows] == 1.0)  # the shadow is one piece
        assert np.all(mask[50:60] == 1.0) and np.all(mask[60:] == 1.0)  # roofs, sunny side


def test_shadow_of_a_wall_toward_the_south_east():
    n, h = 100, 12.0
    dsm = np.zeros((n, n))
    dsm[:, 60:70] = h  # a north-south wall; sun in the east (az 90): shadow to the west
    mask = shadow.shadow_mask(dsm, 2.0, 90.0, 25.0)
    length = h / math.tan(math.radians(25.0))
    assert abs((mask[50, :60] == 0).sum() * 2.0 - length) <= 2.0


def test_shadow_sun_down_and_flat_ground():
    dsm, canopy = random_city()
    assert np.all(shadow.shadow_mask(dsm, 2.0, 180.0, -3.0) == 0.0)
    assert np.all(shadow.shadow_mask(np.zeros((20, 30)), 2.0, 200.0, 5.0) == 1.0)


def test_crown_shades_with_transmissivity_and_sun_passes_under_it():
    dsm = np.zeros((60, 60))
    canopy = np.zeros((60, 60))
    canopy[30, 30] = 10.0  # crown from 2.5 m to 10 m
    mask = shadow.shadow_mask(dsm, 2.0, 180.0, 10.0, canopy=canopy, transmissivity=0.05)
    column = mask[:30, 30][::-1]  # cells north of the tree, nearest first
    assert mask[30, 30] == np.float32(0.05)  # the ground under the crown
    tan10 = math.tan(math.radians(10.0))
    for k, value in enumerate(column, start=1):
        z = k * 2.0 * tan10  # height of the beam when it reaches the tree
        expected = 0.05 if 2.5 <= z < 10.0 else 1.0
        assert value == np.float32(expected), k
    assert (column == 1.0).sum() >= 7  # beam under the crown for 7 cells (< 14.2 m)


def test_shadow_rejects_bad_input():
    with pytest.raises(DataError, match="canopy"):
        shadow.shadow_mask(np.zeros((5, 5)), 2.0, 180.0, 30.0, canopy=np.zeros((4, 5)))
    with pytest.raises(DataError, match="dsm"):
        shadow.shadow_mask(np.full((5, 5), np.nan), 2.0, 180.0, 30.0)


# --- sky view factor ---------------------------------------------------------------------------


def test_svf_flat_ground_is_one():
    svf = shadow.sky_view_factor(np.full((30, 40), 35.0), 2.0)
    np.testing.assert_array_equal(svf, 1.0)


def test_svf_kernel_equals_reference():
    dsm, canopy = random_city(60, seed=3)
    for can in (None, canopy):
        ours = shadow.sky_view_factor(dsm, 2.0, canopy=can, n_azimuths=16, max_distance=80.0)
        ref = shadow.sky_view_factor_reference(dsm, 2.0, canopy=can, n_azimuths=16,
                                               max_distance=80.0)  # fmt: skip
        assert np.abs(ours - ref).max() < 1e-6
        assert ours.min() >= 0.0 and ours.max() <= 1.0
    with_trees = shadow.sky_view_factor(dsm, 2.0, canopy=canopy, n_azimuths=16, max_distance=80.0)
    bare = shadow.svf_buildings(dsm, 2.0, n_azimuths=16, max_distance=80.0)
    assert np.all(with_trees <= bare + 1e-6) and with_trees.mean() < bare.mean()


@pytest.mark.parametrize("h_over_w", [0.5, 1.0, 2.0])
def test_svf_of_an_infinite_street_canyon(h_over_w):
    # street of W = 21 cells (42 m) between long blocks, H = h_over_w * W; the floor's centre line
    # sees the sky with cos(atan(2H/W)) (Oke 1987). Tolerance 0.03 for the 36 directions, the
    # finite canyon length (400 cells) and the horizon taken at cell centres.
    w_cells, cell = 21, 2.0
    height = h_over_w * w_cells * cell
    dsm = np.full((400, 3 * w_cells), height)
    dsm[:, w_cells : 2 * w_cells] = 0.0
    svf = shadow.sky_view_factor(dsm, cell, max_distance=2000.0)
    centre = svf[150:250, w_cells + w_cells // 2]
    expected = math.cos(math.atan(2.0 * h_over_w))
    assert np.abs(centre - expected).max() < 0.03


# --- radiation ---------------------------------------------------------------------------------


def test_split_global_closes_and_follows_erbs_limits():
    t = 1752580800.0  # 2025-07-15 12:00 UTC
    ghi = np.array([0.0, 50.0, 400.0, 800.0, 900.0])
    dni, dhi = radiation.split_global(ghi, np.full(5, 55.0), t)
    np.testing.assert_allclose(dni * math.sin(math.radians(55.0)) + dhi, ghi, atol=1e-9)
    assert np.all(dni >= 0) and np.all(dhi >= 0)
    kt = radiation.clearness_index(ghi, 55.0, t)
    assert dhi[1] / ghi[1] == pytest.approx(1 - 0.09 * kt[1], rel=1e-12)  # k_t <= 0.22
    dni_low, dhi_low = radiation.split_global(300.0, 1.0, t)  # sun near the horizon
    assert dni_low == 0.0 and dhi_low == 300.0


def test_sky_longwave_prata_and_overcast():
    t, rh = 20.0, 60.0
    e = 0.6 * 6.112 * math.exp(17.62 * 20 / (243.12 + 20))  # hPa
    w = 46.5 * e / 293.15
    eps = 1 - (1 + w) * math.exp(-math.sqrt(1.2 + 3 * w))  # Prata 1996, eq. 21
    black = radiation.SIGMA * 293.15**4
    assert radiation.sky_longwave(t, rh) == pytest.approx(eps * black, rel=1e-9)
    assert 300 < radiation.sky_longwave(t, rh) < 360  # typical clear-sky values at 20 degC
    assert radiation.sky_longwave(t, rh, clearness=0.0) == pytest.approx(black, rel=1e-9)
    assert radiation.sky_longwave(t, rh, 1.0) == pytest.approx(radiation.sky_longwave(t, rh))


def _cells(shape=(40, 50), seed=5):
    rng = np.random.default_rng(seed)
    return dict(
        sunlit=rng.choice([0.0, 0.03, 1.0], shape),
        svf=rng.uniform(0.2, 1.0, shape),
        albedo=rng.uniform(0.05, 0.4, shape),
        emissivity=rng.uniform(0.9, 0.98, shape),
        t_surface_c=rng.uniform(20, 50, shape),
    )


def test_surface_net_radiation_kernel_reference_and_closure():
    c = _cells()
    args = (700.0, 120.0, 360.0, 50.0, c["sunlit"], c["svf"], c["albedo"], c["emissivity"],
            c["t_surface_c"], 27.0)  # fmt: skip
    ours = radiation.surface_net_radiation(*args)
    ref = radiation.surface_net_radiation_reference(*args)
    for k in ("k_down", "k_up", "l_down", "l_up", "q_star"):
        np.testing.assert_allclose(ours[k], ref[k], rtol=1e-12, atol=1e-9)
    closure = ours["k_down"] - ours["k_up"] + ours["l_down"] - ours["l_up"] - ours["q_star"]
    assert np.abs(closure).max() < 1e-9
    # night, open black ground at air temperature: Q* = L_sky - sigma Ta^4
    night = radiation.surface_net_radiation(0.0, 0.0, 300.0, -10.0, 0.0, np.ones((3, 3)), 0.2,
                                            1.0, 15.0, 15.0)  # fmt: skip
    np.testing.assert_allclose(night["q_star"], 300.0 - radiation.SIGMA * 288.15**4, rtol=1e-12)


def test_tmrt_kernel_equals_reference_and_is_physical():
    c = _cells()
    building = np.zeros(c["svf"].shape, bool)
    building[:5, :5] = True
    args = (750.0, 130.0, 370.0, 55.0, c["sunlit"], c["svf"], 28.0, c["t_surface_c"], c["albedo"])
    ours = radiation.mean_radiant_temperature(*args, building=building)
    ref = radiation.mean_radiant_temperature_reference(*args, building=building)
    np.testing.assert_allclose(ours, ref, rtol=1e-12, equal_nan=True)
    assert np.all(np.isnan(ours[building])) and np.all(np.isfinite(ours[~building]))
    sunny = c["sunlit"] == 1.0
    assert ours[sunny & ~building].mean() > ours[(c["sunlit"] == 0) & ~building].mean() + 10


@pytest.mark.parametrize("svf", [0.0, 0.4, 1.0])
def test_tmrt_in_an_isothermal_black_enclosure_is_its_temperature(svf):
    # no sun, sky, walls and ground all black bodies at 22 degC: Tmrt = 22 degC for any svf
    t = 22.0
    l_sky = radiation.SIGMA * (t + radiation.KELVIN) ** 4
    tmrt = radiation.mean_radiant_temperature(0.0, 0.0, l_sky, -5.0, 0.0, np.full((4, 4), svf),
        t, t, 0.0, emissivity_ground=1.0, emissivity_wall=1.0, t_wall_c=t,
        absorption_lw=1.0)  # fmt: skip
    np.testing.assert_allclose(tmrt, t, atol=1e-9)


# --- comfort -----------------------------------------------------------------------------------


def test_utci_vectorised_matches_pythermalcomfort_and_handles_its_range():
    from pythermalcomfort.models import utci as pt_utci

    ta = np.array([[25.0, 32.0], [10.0, 30.0]])
    tr = np.array([[25.0, 60.0], [5.0, 40.0]])
    out = comfort.utci(ta, tr, 2.0, 50.0)
    expected = pt_utci(tdb=ta.ravel(), tr=tr.ravel(), v=2.0, rh=50.0, round_output=False).utci
    # the kernel evaluates pythermalcomfort's polynomial with coefficients fitted to it: 1e-9 K
    np.testing.assert_allclose(out.ravel(), expected, rtol=0, atol=1e-9)
    assert comfort.utci(25, 25, 1.0, 50) == pytest.approx(24.6, abs=0.05)  # its documented value
    # calm wind counts as 0.5 m/s, the polynomial's lower limit
    assert comfort.utci(30, 50, 0.1, 50) == pytest.approx(comfort.utci(30, 50, 0.5, 50))
    # outside the validity range: NaN, or clipped into it on request
    assert np.isnan(comfort.utci(30.0, 110.0, 1.0, 50.0))
    assert np.isnan(comfort.utci(np.nan, 30.0, 1.0, 50.0))
    clipped = comfort.utci(30.0, 110.0, 1.0, 50.0, clip=True)
    assert clipped == pytest.approx(comfort.utci(30.0, 100.0, 1.0, 50.0))
    assert np.isfinite(comfort.utci(55.0, 55.0, 1.0, 50.0, clip=True))


@pytest.mark.parametrize("clip", [False, True])
def test_utci_kernel_matches_pythermalcomfort_over_and_beyond_its_range(clip: bool):
    """The numba kernel against pythermalcomfort's own function on 200 000 random cells, a third of
    them outside the valid range, some NaN: the same values to 1e-9 K, NaN in the same cells (with
    ``clip``, except cells clipped onto a range limit, where pythermalcomfort's own Tmrt - Ta can
    round to just outside it)."""
    rng = np.random.default_rng(7)
    n = 200_000
    ta, v, rh = rng.uniform(-60, 60, n), rng.uniform(0, 20, n), rng.uniform(-5, 105, n)
    tr = ta + rng.uniform(-40, 80, n)
    for a, k in ((ta, 0), (tr, 1), (v, 2), (rh, 3)):
        a[k::997] = np.nan
    ours = comfort.utci(ta, tr, v, rh, clip=clip)
    ref = comfort.utci_reference(ta, tr, v, rh, clip=clip)
    both = np.isfinite(ours) & np.isfinite(ref)
    assert both.mean() > (0.95 if clip else 0.6)
    np.testing.assert_allclose(ours[both], ref[both], rtol=0, atol=1e-9)
    differ = np.isnan(ours) != np.isnan(ref)
    if clip:
        on_limit = np.isclose(tr - ta, TMRT_LIMITS[0]) | np.isclose(tr - ta, TMRT_LIMITS[1])
        on_limit |= (tr - ta < TMRT_LIMITS[0]) | (tr - ta > TMRT_LIMITS[1])
        assert not (differ & ~on_limit).any()
        assert not (np.isnan(ours) & np.isfinite(ta) & np.isfinite(tr) & np.isfinite(v)
                    & np.isfinite(rh)).any()  # fmt: skip
    else:
        assert not differ.any()
    # an all-NaN or empty input is no error
    assert np.isnan(comfort.utci(np.nan, np.nan, 1.0, 50.0))
    assert comfort.utci(np.empty((0, 3)), np.empty((0, 3)), 1.0, 50.0).shape == (0, 3)


TMRT_LIMITS = comfort.TMRT_MINUS_TAIR_RANGE
