"""Merge of station readings into the air field (twin.heat.stations): OI, weights, LOO, checks."""

from __future__ import annotations

import numpy as np
import pytest
from rasterio.transform import Affine

from twin.errors import ConfigError, DataError
from twin.heat.stations import (
    StationConfig,
    add_increment,
    add_increment_reference,
    merge_stations,
    sample_bilinear,
)

CELL = 50.0
X0, Y0 = 328000.0, 5694000.0
SHAPE = (80, 120)  # 4 km x 6 km
TRANSFORM = Affine(CELL, 0.0, X0, 0.0, -CELL, Y0)


def _xy(i: float, j: float) -> tuple[float, float]:
    """EPSG:25832 coordinates of the centre of cell (row i, column j)."""
    return X0 + (j + 0.5) * CELL, Y0 - (i + 0.5) * CELL


def _stations(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return X0 + rng.uniform(200, 5800, n), Y0 - rng.uniform(200, 3800, n)


def test_bilinear_sampling_north_up() -> None:
    """Row 0 is the northern row: a field growing southward samples larger values further south."""
    field = np.arange(SHAPE[0], dtype=float)[:, None].repeat(SHAPE[1], axis=1)
    x, y = _xy(10.25, 7.0)
    assert sample_bilinear(field, TRANSFORM, x, y) == pytest.approx(10.25, abs=1e-12)
    assert np.isnan(sample_bilinear(field, TRANSFORM, X0 - 10.0, Y0 - 100.0))


@pytest.mark.parametrize("kernel", ["gaussian", "exponential"])
def test_one_station_pulls_near_not_far(kernel: str) -> None:
    """A station 2 K warmer: the field moves by 2 sb2/(sb2+so2) K at it, < 1 % of that 5 L away."""
    conf = StationConfig(sigma_background_k=1.0, length_m=300.0, sigma_observation_k=0.3,
                         kernel=kernel)  # fmt: skip
    t = np.full(SHAPE, 25.0)
    x, y = _xy(40, 30)
    res = merge_stations(t, TRANSFORM, [x], [y], [27.0], [1.0], conf)
    gain = 1.0 / (1.0 + 0.09)
    assert res.field[40, 30] - 25.0 == pytest.approx(2.0 * gain, rel=1e-9)
    far = 5 * 300.0 / CELL  # 30 cells east
    limit = 0.01 if kernel == "exponential" else 1e-5
    assert 0.0 < res.field[40, 30 + int(far)] - 25.0 < limit * 2.0 * gain
    assert res.innovations[0] == pytest.approx(2.0)
    assert res.residuals_after[0] == pytest.approx(2.0 * (1 - gain), rel=1e-9)
    assert res.used.tolist() == [True]


def test_low_weight_moves_less() -> None:
    """Weight 0.1 (error variance x10) pulls the field less than weight 1 at the same place."""
    conf = StationConfig(length_m=500.0, sigma_observation_k=0.5)
    t = np.full(SHAPE, 20.0)
    x, y = _xy(20, 60)
    full = merge_stations(t, TRANSFORM, [x], [y], [22.0], [1.0], conf).field[20, 60] - 20.0
    low = merge_stations(t, TRANSFORM, [x], [y], [22.0], [0.1], conf).field[20, 60] - 20.0
    assert low == pytest.approx(2.0 / (1.0 + 0.25 / 0.1), rel=1e-9)
    assert full == pytest.approx(2.0 / (1.0 + 0.25), rel=1e-9)
    assert low < 0.6 * full


@pytest.mark.parametrize("kernel", ["gaussian", "exponential"])
def test_loo_equals_explicit_reanalysis(kernel: str) -> None:
    """The closed-form leave-one-out residual equals a re-analysis without the station (1e-9 K)."""
    rng = np.random.default_rng(11)
    conf = StationConfig(length_m=1200.0, sigma_observation_k=0.4, kernel=kernel)
    x, y = _stations(12, seed=2)
    yy, xx = np.mgrid[0 : SHAPE[0], 0 : SHAPE[1]]
    t = 24.0 + np.sin(xx / 17.0) + 0.5 * np.cos(yy / 9.0)
    values = sample_bilinear(t, TRANSFORM, x, y) + rng.normal(0, 0.8, len(x))
    weights = rng.uniform(0.3, 1.0, len(x))
    full = merge_stations(t, TRANSFORM, x, y, values, weights, conf)
    assert full.used.all()
    for k in range(len(x)):
        w = weights.copy()
        w[k] = 0.0
        other = merge_stations(t, TRANSFORM, x, y, values, w, conf)
        explicit = full.innovations[k] - other.increment_at(x[k], y[k])[0]
        assert abs(full.loo_residuals[k] - explicit) < 1e-9
    assert full.rmse_after < full.rmse_before < full.rmse_loo * 1.5
    # residual after = reading minus the analysed state at the station (exact point evaluation)
    after = full.innovations - full.increment_at(x, y)
    assert np.abs(after - full.residuals_after).max() < 1e-9


def test_gross_error_rejected() -> None:
    """A reading 40 K off (beyond 5 sqrt(B + R)) is refused; the field ignores it."""
    conf = StationConfig(sigma_background_k=1.0, sigma_observation_k=0.3, reject_sigma=5.0)
    t = np.full(SHAPE, 25.0)
    x, y = _stations(3, seed=4)
    values = np.array([25.5, 65.0, 24.8])
    res = merge_stations(t, TRANSFORM, x, y, values, np.ones(3), conf)
    assert res.used.tolist() == [True, False, True]
    assert res.rejected.tolist() == [False, True, False]
    assert np.isnan(res.loo_residuals[1]) and res.innovations[1] == pytest.approx(40.0)
    keep = merge_stations(t, TRANSFORM, x[[0, 2]], y[[0, 2]], values[[0, 2]], np.ones(2), conf)
    assert np.array_equal(res.field, keep.field)


def test_no_readings_leave_field_unchanged() -> None:
    """No stations, all weights 0, or only NaN readings: the field comes back unchanged."""
    conf = StationConfig()
    rng = np.random.default_rng(1)
    t = 20.0 + rng.random(SHAPE)
    x, y = _stations(4)
    for args in (([], [], [], []), (x, y, np.full(4, 21.0), np.zeros(4)),
                 (x, y, np.full(4, np.nan), np.ones(4))):  # fmt: skip
        res = merge_stations(t, TRANSFORM, *args, conf)
        assert np.array_equal(res.field, t) and res.field is not t
        assert not res.used.any() and np.isnan(res.rmse_before)


def test_station_outside_grid_not_used() -> None:
    conf = StationConfig()
    t = np.full(SHAPE, 20.0)
    res = merge_stations(t, TRANSFORM, [X0 - 500.0], [Y0 - 500.0], [30.0], [1.0], conf)
    assert not res.used[0] and np.isnan(res.innovations[0])
    assert np.array_equal(res.field, t)


@pytest.mark.parametrize("kernel", ["gaussian", "exponential"])
def test_increment_kernel_matches_reference(kernel: str) -> None:
    """numba increment (separable Gaussian / exponential) equals the NumPy reference (1e-12 K)."""
    conf = StationConfig(length_m=900.0, kernel=kernel)
    rng = np.random.default_rng(8)
    x, y = _stations(32, seed=9)
    coef = rng.normal(size=32)
    t = 20.0 + rng.random(SHAPE)
    a = add_increment(t, TRANSFORM, x, y, coef, conf)
    b = add_increment_reference(t, TRANSFORM, x, y, coef, conf)
    assert np.abs(a - b).max() < 1e-12


def test_config_and_input_errors() -> None:
    with pytest.raises(ConfigError, match="length_m"):
        StationConfig(length_m=0.0)
    with pytest.raises(ConfigError, match="kernel"):
        StationConfig(kernel="spherical")
    t = np.zeros(SHAPE)
    with pytest.raises(DataError, match="weights"):
        merge_stations(t, TRANSFORM, [X0 + 100], [Y0 - 100], [1.0], [2.0], StationConfig())
    with pytest.raises(DataError, match="values"):
        merge_stations(t, TRANSFORM, [X0 + 100], [Y0 - 100], [1.0, 2.0], [1.0], StationConfig())
