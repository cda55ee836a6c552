"""Merge of climate-station air temperatures into the modelled air field (optimal interpolation).

The model field ``T`` is the background. A reading ``y_k`` at station ``k`` gives the innovation
``d_k = y_k - H_k T`` (``H`` bilinear interpolation between cell centres). Background errors
correlate as ``B(r) = sigma_b^2 rho(r / L)``, ``rho`` Gaussian ``exp(-q^2 / 2)`` or exponential
``exp(-q)``; a reading's error variance is ``sigma_o^2 / w_k`` with ``w_k`` in (0, 1] its quality
weight (0 or a NaN reading: not used). The analysis (best linear unbiased estimate) is

    T_a(x) = T(x) + sum_k B(|x - x_k|) a_k,   S a = d,   S = B_oo + R.

Before the solve, readings with ``|d_k| > reject_sigma sqrt(B_kk + R_kk)`` are refused as gross
errors. The residual after the analysis at a station is ``d - B_oo a = R a``; the leave-one-out
residual (reading minus the analysis of all other readings) is ``a_k / (S^-1)_kk`` in closed form
(Rasmussen & Williams 2006, eq. 5.12), so cross-validation costs no extra solve. All residuals
are evaluated at the stations' exact places (observation space).

The increment is evaluated on every cell by a numba kernel: for the Gaussian kernel through its
separable factors ``exp(-dx^2/2L^2) exp(-dy^2/2L^2)`` (one multiply-add per cell and station).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from numba import njit, prange
from numpy.typing import ArrayLike, NDArray

from twin.errors import ConfigError, DataError

KERNELS = ("gaussian", "exponential")


@dataclass(frozen=True)
class StationConfig:
    """Covariances of the merge: background and reading errors (K), correlation length (m)."""

    sigma_background_k: float = 1.0
    length_m: float = 1500.0
    sigma_observation_k: float = 0.3
    kernel: str = "gaussian"
    reject_sigma: float = 5.0

    def __post_init__(self) -> None:
        if self.kernel not in KERNELS:
            raise ConfigError(
                f"station merge kernel: expected one of {', '.join(KERNELS)}, got {self.kernel!r}"
            )
        for name in ("sigma_background_k", "length_m", "sigma_observation_k", "reject_sigma"):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or value <= 0:
                raise ConfigError(f"station merge {name}: expected a number > 0, got {value!r}")

    def correlation(self, r: ArrayLike) -> NDArray[np.float64]:
        """rho(r): correlation of background errors at distance r (m)."""
        q = np.asarray(r, dtype=np.float64) / self.length_m
        return np.exp(-q) if self.kernel == "exponential" else np.exp(-0.5 * q * q)


@dataclass(frozen=True)
class StationAnalysis:
    """A merge: the analysed field and how well fields fit the readings (K, reading - field).

    ``innovations`` reading minus model (NaN where a station is outside the grid or has no
    value), ``residuals_after`` reading minus analysis, ``loo_residuals`` reading minus the
    analysis without that reading (NaN for unused stations); RMSEs over used stations.
    """

    field: NDArray[np.float64]
    innovations: NDArray[np.float64]
    residuals_after: NDArray[np.float64]
    loo_residuals: NDArray[np.float64]
    rmse_before: float
    rmse_after: float
    rmse_loo: float
    used: NDArray[np.bool_]
    rejected: NDArray[np.bool_] = field(repr=False, default_factory=lambda: np.zeros(0, bool))
    coefficients: NDArray[np.float64] = field(repr=False, default_factory=lambda: np.zeros(0))
    station_xy: NDArray[np.float64] = field(repr=False, default_factory=lambda: np.zeros((0, 2)))
    config: StationConfig = field(repr=False, default_factory=StationConfig)

    @property
    def n_used(self) -> int:
        """How many readings went into the analysis."""
        return int(np.count_nonzero(self.used))

    def increment_at(self, x: ArrayLike, y: ArrayLike) -> NDArray[np.float64]:
        """The analysis increment (K) at points, evaluated exactly (not from the grid)."""
        px = np.atleast_1d(np.asarray(x, dtype=np.float64))
        py = np.atleast_1d(np.asarray(y, dtype=np.float64))
        if not len(self.coefficients):
            return np.zeros(px.shape)
        r = np.hypot(
            px[:, None] - self.station_xy[None, :, 0], py[:, None] - self.station_xy[None, :, 1]
        )
        cov = self.config.sigma_background_k**2 * self.config.correlation(r)
        return cov @ self.coefficients


def _grid_geometry(transform, shape: tuple[int, int]) -> tuple[float, float, float]:
    """(x0, y0, cell) of a north-up affine transform with square cells."""
    a, b, c, d, e, f = (float(transform[k]) for k in range(6))
    if b != 0.0 or d != 0.0 or a <= 0.0 or abs(a + e) > 1e-9 * a:
        raise DataError(
            "station merge transform: expected a north-up grid with square cells, "
            f"got {tuple(transform)[:6]}"
        )
    return c, f, a


def sample_bilinear(
    grid: NDArray[np.float64], transform, x: ArrayLike, y: ArrayLike
) -> NDArray[np.float64]:
    """Bilinear value of a cell-centred field at points; NaN outside the grid's extent.

    Between the outer cell centres and the edge the edge cells' values hold.
    """
    ny, nx = grid.shape
    x0, y0, cell = _grid_geometry(transform, grid.shape)
    px = np.asarray(x, dtype=np.float64)
    py = np.asarray(y, dtype=np.float64)
    fc = (px - x0) / cell - 0.5
    fr = (y0 - py) / cell - 0.5
    inside = (fc >= -0.5) & (fc <= nx - 0.5) & (fr >= -0.5) & (fr <= ny - 0.5)
    fc = np.clip(np.nan_to_num(fc), 0.0, nx - 1.0)
    fr = np.clip(np.nan_to_num(fr), 0.0, ny - 1.0)
    j0 = np.minimum(fc.astype(np.int64), max(nx - 2, 0))
    i0 = np.minimum(fr.astype(np.int64), max(ny - 2, 0))
    j1 = np.minimum(j0 + 1, nx - 1)
    i1 = np.minimum(i0 + 1, ny - 1)
    tx, ty = fc - j0, fr - i0
    val = (grid[i0, j0] * (1 - tx) * (1 - ty) + grid[i0, j1] * tx * (1 - ty)
           + grid[i1, j0] * (1 - tx) * ty + grid[i1, j1] * tx * ty)  # fmt: skip
    return np.where(inside, val, np.nan)


# ---------------------------------------------------------------- the increment on the grid
@njit(cache=True, parallel=True)
def _increment_gaussian(gy, gx, coef, out):
    """out[i, j] += sum_k coef_k gy[k, i] gx[k, j] (separable Gaussian covariance)."""
    ny = gy.shape[1]
    nk, nx = gx.shape
    for i in prange(ny):
        for k in range(nk):
            w = coef[k] * gy[k, i]
            if w != 0.0:
                for j in range(nx):
                    out[i, j] += w * gx[k, j]


@njit(cache=True, parallel=True)
def _increment_exponential(xc, yc, sx, sy, coef, length, out):
    """out[i, j] += sum_k coef_k exp(-|x_ij - x_k| / L)."""
    ny = yc.shape[0]
    nx = xc.shape[0]
    nk = coef.shape[0]
    inv = 1.0 / length
    for i in prange(ny):
        for k in range(nk):
            dy2 = (yc[i] - sy[k]) ** 2
            ck = coef[k]
            for j in range(nx):
                dx = xc[j] - sx[k]
                out[i, j] += ck * math.exp(-math.sqrt(dx * dx + dy2) * inv)


def _cell_centres(shape: tuple[int, int], transform) -> tuple[NDArray, NDArray]:
    x0, y0, cell = _grid_geometry(transform, shape)
    return x0 + (np.arange(shape[1]) + 0.5) * cell, y0 - (np.arange(shape[0]) + 0.5) * cell


def add_increment(
    grid: NDArray[np.float64],
    transform,
    sx: NDArray,
    sy: NDArray,
    coef: NDArray,
    config: StationConfig,
) -> NDArray[np.float64]:
    """grid + sum_k sigma_b^2 rho(|x - x_k|) coef_k on every cell (numba)."""
    out = np.array(grid, dtype=np.float64, copy=True)
    if not len(coef):
        return out
    xc, yc = _cell_centres(grid.shape, transform)
    c = np.ascontiguousarray(coef, dtype=np.float64) * config.sigma_background_k**2
    if config.kernel == "gaussian":
        s = 1.0 / (2.0 * config.length_m**2)
        gx = np.exp(-((xc[None, :] - sx[:, None]) ** 2) * s)
        gy = np.exp(-((yc[None, :] - sy[:, None]) ** 2) * s)
        _increment_gaussian(gy, gx, c, out)
    else:
        _increment_exponential(xc, yc, np.ascontiguousarray(sx, dtype=np.float64),
                               np.ascontiguousarray(sy, dtype=np.float64), c,
                               float(config.length_m), out)  # fmt: skip
    return out


def add_increment_reference(
    grid: NDArray[np.float64],
    transform,
    sx: NDArray,
    sy: NDArray,
    coef: NDArray,
    config: StationConfig,
) -> NDArray[np.float64]:
    """NumPy reference of :func:`add_increment` (full distance arrays, one station at a time)."""
    out = np.array(grid, dtype=np.float64, copy=True)
    xc, yc = _cell_centres(grid.shape, transform)
    for k in range(len(coef)):
        r = np.hypot(xc[None, :] - sx[k], yc[:, None] - sy[k])
        out += config.sigma_background_k**2 * config.correlation(r) * coef[k]
    return out


# ---------------------------------------------------------------- the merge
def _rmse(r: NDArray[np.float64]) -> float:
    return float(np.sqrt(np.mean(r * r))) if len(r) else float("nan")


def merge_stations(
    t_air: ArrayLike,
    transform,
    x: ArrayLike,
    y: ArrayLike,
    values: ArrayLike,
    weights: ArrayLike,
    config: StationConfig,
) -> StationAnalysis:
    """Merge station readings (degC at EPSG:25832 x, y) into the air field by optimal interpolation.

    ``weights`` in [0, 1] scale the reading error variance to sigma_o^2 / w (0 = not used).
    """
    grid = np.asarray(t_air, dtype=np.float64)
    if grid.ndim != 2:
        raise DataError(
            f"station merge t_air: expected a 2D (ny, nx) array, got {grid.ndim} dimensions"
        )
    px = np.atleast_1d(np.asarray(x, dtype=np.float64))
    py = np.atleast_1d(np.asarray(y, dtype=np.float64))
    obs = np.atleast_1d(np.asarray(values, dtype=np.float64))
    w = np.atleast_1d(np.asarray(weights, dtype=np.float64))
    n = len(px)
    for name, arr in (("y", py), ("values", obs), ("weights", w)):
        if arr.shape != (n,):
            raise DataError(
                f"station merge {name}: expected {n} entries like x, got shape {arr.shape}"
            )
    if np.any(w[np.isfinite(w)] < 0.0) or np.any(w[np.isfinite(w)] > 1.0):
        raise DataError("station merge weights: expected values from 0 to 1 (0 = not used)")

    innovations = obs - sample_bilinear(grid, transform, px, py)
    nan = np.full(n, np.nan)
    usable = np.isfinite(innovations) & np.isfinite(w) & (w > 0.0)
    sb2 = config.sigma_background_k**2
    r_var = np.where(usable, config.sigma_observation_k**2 / np.where(usable, w, 1.0), np.inf)
    spread = np.sqrt(sb2 + r_var)
    rejected = usable & (np.abs(innovations) > config.reject_sigma * spread)
    used = usable & ~rejected
    idx = np.flatnonzero(used)
    if not len(idx):
        return StationAnalysis(grid.copy(), innovations, nan.copy(), nan.copy(), float("nan"),
                               float("nan"), float("nan"), used, rejected,
                               config=config)  # fmt: skip

    sx, sy, d = px[idx], py[idx], innovations[idx]
    dist = np.hypot(sx[:, None] - sx[None, :], sy[:, None] - sy[None, :])
    s = sb2 * config.correlation(dist) + np.diag(r_var[idx])
    s_inv = np.linalg.inv(s)
    s_inv = 0.5 * (s_inv + s_inv.T)
    a = s_inv @ d
    after = nan.copy()
    loo = nan.copy()
    after[idx] = r_var[idx] * a
    loo[idx] = a / np.diag(s_inv)
    analysed = add_increment(grid, transform, sx, sy, a, config)
    return StationAnalysis(
        field=analysed,
        innovations=innovations,
        residuals_after=after,
        loo_residuals=loo,
        rmse_before=_rmse(d),
        rmse_after=_rmse(after[idx]),
        rmse_loo=_rmse(loo[idx]),
        used=used,
        rejected=rejected,
        coefficients=a,
        station_xy=np.column_stack([sx, sy]),
        config=config,
    )
