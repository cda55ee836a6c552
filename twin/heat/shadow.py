"""Shadows of buildings and tree crowns on a DSM, and the sky view factor, as numba kernels.

Both march along straight lines over the raster the way SOLWEIG's shadow casting shifts the DSM:
one cell per step along the dominant axis of the direction, the other axis rounded to the nearest
cell. ``shadow_mask`` follows the sun beam from every cell toward the sun until it climbs above the
highest surface; ``sky_view_factor`` finds the horizon angle in ``n_azimuths`` directions.
Tree crowns (``canopy`` m above ground) fill heights [trunk_ratio * h, h] above the ground of their
cell and pass ``transmissivity`` of the beam (and of the sky behind them). The ``*_reference``
functions do the same with whole-array NumPy shifts; tests compare the two.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

from twin.errors import DataError


def _inputs(
    dsm: NDArray, canopy: NDArray | None, cell: float
) -> tuple[NDArray[np.float64], NDArray[np.float64], bool]:
    dsm = np.ascontiguousarray(dsm, dtype=np.float64)
    if dsm.ndim != 2:
        raise DataError(f"dsm: expected a 2D array, got shape {dsm.shape}")
    if not np.all(np.isfinite(dsm)):
        raise DataError("dsm: expected finite heights, found NaN or inf")
    if not cell > 0:
        raise DataError(f"cell: expected a positive cell size in m, got {cell}")
    if canopy is None:
        return dsm, np.zeros_like(dsm), False
    canopy = np.ascontiguousarray(np.nan_to_num(canopy, nan=0.0), dtype=np.float64)
    if canopy.shape != dsm.shape:
        raise DataError(f"canopy: expected shape {dsm.shape} like the dsm, got {canopy.shape}")
    canopy = np.maximum(canopy, 0.0)
    return dsm, canopy, bool(np.any(canopy > 0))


def _steps(azimuth_deg: float, cell: float) -> tuple[float, float, float]:
    """Row and column increments of one step toward ``azimuth_deg`` and its horizontal length."""
    a = math.radians(azimuth_deg)
    east, north = math.sin(a), math.cos(a)
    m = max(abs(east), abs(north))
    return -north / m, east / m, cell / m


@njit(parallel=True, cache=True)
def _shadow_kernel(dsm, canopy, has_canopy, trunk_ratio, trans, di, dj, dz, zmax, out):
    ny, nx = dsm.shape
    for i in prange(ny):
        for j in range(nx):
            z0 = dsm[i, j]
            share = 1.0
            if has_canopy and canopy[i, j] > 0.0:
                share = trans  # the ground under a crown
            k = 1
            while True:
                zr = z0 + k * dz
                if zr >= zmax:
                    break
                ii = i + int(math.floor(k * di + 0.5))
                jj = j + int(math.floor(k * dj + 0.5))
                if ii < 0 or ii >= ny or jj < 0 or jj >= nx:
                    break
                zs = dsm[ii, jj]
                if zs > zr:
                    share = 0.0
                    break
                if has_canopy and share == 1.0:
                    h = canopy[ii, jj]
                    if h > 0.0 and zs + trunk_ratio * h <= zr and zr < zs + h:
                        share = trans
                k += 1
            out[i, j] = share


def shadow_mask(
    dsm: NDArray,
    cell: float,
    azimuth_deg: float,
    altitude_deg: float,
    *,
    canopy: NDArray | None = None,
    trunk_ratio: float = 0.25,
    transmissivity: float = 0.03,
) -> NDArray[np.float32]:
    """Share of the direct beam reaching each cell's top surface (roofs on buildings), in [0, 1].

    0 behind a building, ``transmissivity`` behind (or under) a crown, 1 in the sun; all 0 when
    the sun is below the horizon.
    """
    dsm, can, has = _inputs(dsm, canopy, cell)
    if altitude_deg <= 0.0:
        return np.zeros(dsm.shape, np.float32)
    di, dj, ds = _steps(azimuth_deg, cell)
    dz = ds * math.tan(math.radians(min(altitude_deg, 89.99)))
    out = np.empty(dsm.shape, np.float64)
    zmax = float((dsm + can).max())
    _shadow_kernel(dsm, can, has, float(trunk_ratio), float(transmissivity), di, dj, dz, zmax, out)
    return out.astype(np.float32)


def _shifted(a: NDArray, oi: int, oj: int, fill: float) -> NDArray:
    """``out[i, j] = a[i + oi, j + oj]``, ``fill`` outside the raster."""
    ny, nx = a.shape
    out = np.full_like(a, fill)
    if abs(oi) >= ny or abs(oj) >= nx:
        return out
    src = a[max(oi, 0) : ny + min(oi, 0), max(oj, 0) : nx + min(oj, 0)]
    out[max(-oi, 0) : ny + min(-oi, 0), max(-oj, 0) : nx + min(-oj, 0)] = src
    return out


def shadow_mask_reference(
    dsm: NDArray,
    cell: float,
    azimuth_deg: float,
    altitude_deg: float,
    *,
    canopy: NDArray | None = None,
    trunk_ratio: float = 0.25,
    transmissivity: float = 0.03,
) -> NDArray[np.float32]:
    """``shadow_mask`` by shifting the whole DSM one step at a time toward the sun (NumPy)."""
    dsm, can, has = _inputs(dsm, canopy, cell)
    if altitude_deg <= 0.0:
        return np.zeros(dsm.shape, np.float32)
    di, dj, ds = _steps(azimuth_deg, cell)
    dz = ds * math.tan(math.radians(min(altitude_deg, 89.99)))
    zmax = float((dsm + can).max())
    building = np.zeros(dsm.shape, bool)
    crown = can > 0 if has else np.zeros(dsm.shape, bool)
    k = 1
    while True:
        zr = dsm + k * dz
        live = zr < zmax
        if not live.any():
            break
        oi, oj = int(math.floor(k * di + 0.5)), int(math.floor(k * dj + 0.5))
        zs = _shifted(dsm, oi, oj, -np.inf)
        building |= live & (zs > zr)
        if has:
            h = _shifted(can, oi, oj, 0.0)
            crown |= live & (h > 0) & (zs + trunk_ratio * h <= zr) & (zr < zs + h)
        k += 1
    out = np.where(building, 0.0, np.where(crown, transmissivity, 1.0))
    return out.astype(np.float32)


@njit(parallel=True, cache=True)
def _svf_kernel(
    dsm, canopy, has_canopy, trans, dis, djs, dss, max_distance, zmax, veg_out, bld_out
):
    ny, nx = dsm.shape
    na = dis.shape[0]
    for i in prange(ny):
        for j in range(nx):
            z0 = dsm[i, j]
            total = 0.0
            total_b = 0.0
            for a in range(na):
                di = dis[a]
                dj = djs[a]
                ds = dss[a]
                tb = 0.0  # tan of the building horizon
                tv = 0.0  # tan of the crown-top horizon
                k = 1
                while True:
                    d = k * ds
                    if d > max_distance:
                        break
                    if (zmax - z0) / d <= max(tb, tv):
                        break
                    ii = i + int(math.floor(k * di + 0.5))
                    jj = j + int(math.floor(k * dj + 0.5))
                    if ii < 0 or ii >= ny or jj < 0 or jj >= nx:
                        break
                    t = (dsm[ii, jj] - z0) / d
                    if t > tb:
                        tb = t
                    if has_canopy:
                        h = canopy[ii, jj]
                        if h > 0.0:
                            t = (dsm[ii, jj] + h - z0) / d
                            if t > tv:
                                tv = t
                    k += 1
                cb = 1.0 / (1.0 + tb * tb)  # cos^2 of the horizon angle
                cv = 1.0 / (1.0 + tv * tv)
                total_b += cb
                if cv < cb:
                    total += cb - (1.0 - trans) * (cb - cv)
                else:
                    total += cb
            bld_out[i, j] = total_b / na
            v = total / na
            if has_canopy and canopy[i, j] > 0.0:
                v *= trans  # the ground under a crown sees the sky through it
            veg_out[i, j] = v


def _directions(n_azimuths: int, cell: float) -> tuple[NDArray, NDArray, NDArray]:
    if n_azimuths < 4:
        raise DataError(f"n_azimuths: expected at least 4 directions, got {n_azimuths}")
    steps = [_steps(360.0 * (a + 0.5) / n_azimuths, cell) for a in range(n_azimuths)]
    return tuple(np.array(s, np.float64) for s in zip(*steps, strict=True))


def _svf_both(dsm, cell, canopy, n_azimuths, max_distance, transmissivity):
    dsm, can, has = _inputs(dsm, canopy, cell)
    dis, djs, dss = _directions(n_azimuths, cell)
    veg = np.empty(dsm.shape, np.float64)
    bld = np.empty(dsm.shape, np.float64)
    zmax = float((dsm + can).max())
    _svf_kernel(dsm, can, has, float(transmissivity), dis, djs, dss, float(max_distance), zmax,
                veg, bld)  # fmt: skip
    return veg.astype(np.float32), bld.astype(np.float32)


def sky_view_factor(
    dsm: NDArray,
    cell: float,
    *,
    canopy: NDArray | None = None,
    n_azimuths: int = 36,
    max_distance: float = 300.0,
    transmissivity: float = 0.03,
) -> NDArray[np.float32]:
    """Sky view factor of each cell's top surface, in [0, 1], buildings and crowns together.

    SVF = mean over directions of cos^2(horizon angle) (a horizontal surface's view of the sky
    hemisphere); the band hidden only by crowns counts with ``transmissivity``.
    """
    return _svf_both(dsm, cell, canopy, n_azimuths, max_distance, transmissivity)[0]


def svf_buildings(
    dsm: NDArray, cell: float, *, n_azimuths: int = 36, max_distance: float = 300.0
) -> NDArray[np.float32]:
    """Sky view factor with buildings (the DSM) only, no crowns."""
    return _svf_both(dsm, cell, None, n_azimuths, max_distance, 1.0)[1]


def sky_view_factor_reference(
    dsm: NDArray,
    cell: float,
    *,
    canopy: NDArray | None = None,
    n_azimuths: int = 36,
    max_distance: float = 300.0,
    transmissivity: float = 0.03,
) -> NDArray[np.float32]:
    """``sky_view_factor`` by shifting the whole DSM step by step in each direction (NumPy)."""
    dsm, can, has = _inputs(dsm, canopy, cell)
    dis, djs, dss = _directions(n_azimuths, cell)
    zmax = float((dsm + can).max())
    total = np.zeros(dsm.shape)
    for di, dj, ds in zip(dis, djs, dss, strict=True):
        tb = np.zeros(dsm.shape)
        tv = np.zeros(dsm.shape)
        live = np.ones(dsm.shape, bool)
        k = 1
        while k * ds <= max_distance:
            d = k * ds
            live &= (zmax - dsm) / d > np.maximum(tb, tv)
            if not live.any():
                break
            oi, oj = int(math.floor(k * di + 0.5)), int(math.floor(k * dj + 0.5))
            zs = _shifted(dsm, oi, oj, np.nan)
            live &= np.isfinite(zs)
            zs = np.where(live, zs, dsm)
            tb = np.where(live, np.maximum(tb, (zs - dsm) / d), tb)
            if has:
                h = _shifted(can, oi, oj, 0.0)
                tv = np.where(live & (h > 0), np.maximum(tv, (zs + h - dsm) / d), tv)
            k += 1
        cb = 1.0 / (1.0 + tb * tb)
        cv = 1.0 / (1.0 + tv * tv)
        total += np.where(cv < cb, cb - (1.0 - transmissivity) * (cb - cv), cb)
    svf = total / n_azimuths
    if has:
        svf = np.where(can > 0, svf * transmissivity, svf)
    return svf.astype(np.float32)
