"""Radiation at street level: beam/diffuse split, sky longwave, surface net radiation and the mean
radiant temperature of a standing person (SOLWEIG's six-direction approach, Lindberg et al. 2008).

Weather values are scalars for the step; cell values are (ny, nx) arrays (or scalars, broadcast).
Fluxes in W m-2, temperatures in degC, angles in degrees. Each numba kernel has a NumPy reference.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numpy.typing import ArrayLike, NDArray

from twin.errors import DataError

SIGMA = 5.670374419e-8  # Stefan-Boltzmann constant, W m-2 K-4
SOLAR_CONSTANT = 1361.0  # W m-2 (Kopp & Lean 2011)
KELVIN = 273.15
# Projected-area factors of a standing person (Fanger 1970, as used by SOLWEIG): four sides,
# up/down, and the beam on a vertical cylinder (Holmer et al. 2015).
F_SIDE, F_UPDOWN, F_CYLINDER = 0.22, 0.06, 0.28
ABSORPTION_SW, ABSORPTION_LW = 0.70, 0.97  # of the human body (Hoppe 1992; SOLWEIG defaults)


def extraterrestrial(t_unix: ArrayLike) -> NDArray[np.float64]:
    """Solar irradiance at the top of the atmosphere on a plane normal to the beam (W m-2)."""
    doy = (np.asarray(t_unix, np.float64) / 86400.0) % 365.2422
    return SOLAR_CONSTANT * (1.0 + 0.033 * np.cos(2.0 * np.pi * doy / 365.2422))


def clearness_index(ghi: ArrayLike, altitude_deg: ArrayLike, t_unix: ArrayLike) -> NDArray:
    """k_t = global / extraterrestrial horizontal irradiance, in [0, 1]; 0 with the sun down."""
    sin_alt = np.sin(np.radians(np.asarray(altitude_deg, np.float64)))
    i0h = extraterrestrial(t_unix) * np.maximum(sin_alt, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        kt = np.where(i0h > 1.0, np.asarray(ghi, np.float64) / i0h, 0.0)
    return np.clip(kt, 0.0, 1.0)


def split_global(
    ghi: ArrayLike, altitude_deg: ArrayLike, t_unix: ArrayLike
) -> tuple[NDArray | float, NDArray | float]:
    """Direct normal and diffuse horizontal irradiance from global horizontal (Erbs et al. 1982).

    Diffuse fraction from the clearness index k_t (Erbs, Klein & Duffie 1982, Solar Energy 28,
    293-302); below 2 deg altitude all of it is diffuse; the beam is capped at 1100 W m-2.
    """
    g = np.maximum(np.asarray(ghi, np.float64), 0.0)
    alt = np.asarray(altitude_deg, np.float64)
    kt = clearness_index(g, alt, t_unix)
    kd = np.where(
        kt <= 0.22,
        1.0 - 0.09 * kt,
        np.where(
            kt <= 0.80,
            0.9511 - 0.1604 * kt + 4.388 * kt**2 - 16.638 * kt**3 + 12.336 * kt**4,
            0.165,
        ),
    )
    sin_alt = np.sin(np.radians(np.maximum(alt, 2.0)))
    dni = np.where(alt > 2.0, np.minimum(g * (1.0 - kd) / sin_alt, 1100.0), 0.0)
    dhi = g - dni * np.where(alt > 2.0, sin_alt, 0.0)
    if dni.ndim == 0:
        return float(dni), float(dhi)
    return dni, dhi


def vapour_pressure_hpa(t_air_c: ArrayLike, rh_percent: ArrayLike) -> NDArray:
    """Water vapour pressure (hPa) from air temperature and humidity (Magnus, WMO 2008)."""
    t = np.asarray(t_air_c, np.float64)
    return np.asarray(rh_percent, np.float64) / 100.0 * 6.112 * np.exp(17.62 * t / (243.12 + t))


def sky_longwave(
    t_air_c: ArrayLike, rh_percent: ArrayLike, clearness: ArrayLike | None = None
) -> NDArray | float:
    """Downward longwave radiation of the sky (W m-2).

    Clear-sky emissivity of Prata (1996, QJRMS 122, 1127-1151) from the precipitable water
    w = 46.5 e / T; clouds after Crawford & Duchon (1999): eps = c + (1 - c) eps_clear with the
    cloud fraction c = 1 - clearness (clearness: measured over clear-sky solar radiation, 0..1;
    None = clear sky).
    """
    t = np.asarray(t_air_c, np.float64) + KELVIN
    w = 46.5 * vapour_pressure_hpa(t_air_c, rh_percent) / t
    eps = 1.0 - (1.0 + w) * np.exp(-np.sqrt(1.2 + 3.0 * w))
    if clearness is not None:
        c = 1.0 - np.clip(np.asarray(clearness, np.float64), 0.0, 1.0)
        eps = c + (1.0 - c) * eps
    out = eps * SIGMA * t**4
    return float(out) if np.ndim(out) == 0 else out


def _grid(name: str, value: ArrayLike, shape: tuple[int, ...]) -> NDArray[np.float64]:
    a = np.asarray(value, np.float64)
    try:
        return np.ascontiguousarray(np.broadcast_to(a, shape))
    except ValueError:
        raise DataError(f"{name}: expected a scalar or shape {shape}, got {a.shape}") from None


@njit(parallel=True, cache=True)
def _net_kernel(dni, dhi, lsky, sin_alt, ta_k4, sunlit, svf, albedo, emis, ts, out):
    ny, nx = sunlit.shape
    for i in prange(ny):
        for j in range(nx):
            kd = dni * sunlit[i, j] * sin_alt + dhi * svf[i, j]
            ku = albedo[i, j] * kd
            ld = svf[i, j] * lsky + (1.0 - svf[i, j]) * SIGMA * ta_k4
            t = ts[i, j] + KELVIN
            e = emis[i, j]
            lu = e * SIGMA * t * t * t * t + (1.0 - e) * ld
            out[0, i, j] = kd
            out[1, i, j] = ku
            out[2, i, j] = ld
            out[3, i, j] = lu
            out[4, i, j] = kd - ku + ld - lu


_NET_KEYS = ("k_down", "k_up", "l_down", "l_up", "q_star")


def _net_inputs(direct_normal, diffuse, l_sky, altitude_deg, sunlit, svf, albedo, emissivity,
                t_surface_c, t_air_c):  # fmt: skip
    shape = np.shape(svf)
    if len(shape) != 2:
        raise DataError(f"svf: expected a 2D (ny, nx) array, got shape {shape}")
    sin_alt = max(math.sin(math.radians(float(altitude_deg))), 0.0)
    dni = float(direct_normal) if sin_alt > 0 else 0.0
    grids = [_grid(n, v, shape) for n, v in (("sunlit", sunlit), ("svf", svf), ("albedo", albedo),
             ("emissivity", emissivity), ("t_surface_c", t_surface_c))]  # fmt: skip
    return dni, float(diffuse), float(l_sky), sin_alt, (float(t_air_c) + KELVIN) ** 4, grids


def surface_net_radiation(
    direct_normal: float,
    diffuse: float,
    l_sky: float,
    altitude_deg: float,
    sunlit: ArrayLike,
    svf: ArrayLike,
    albedo: ArrayLike,
    emissivity: ArrayLike,
    t_surface_c: ArrayLike,
    t_air_c: float,
) -> dict[str, NDArray[np.float64]]:
    """Net all-wave radiation Q* of each cell's top surface and its four components (W m-2).

    K_down = I sunlit sin(alt) + D svf; K_up = albedo K_down; L_down = svf L_sky + (1 - svf)
    sigma Ta^4 (walls and crowns radiating at air temperature); L_up = eps sigma Ts^4 +
    (1 - eps) L_down; Q* = K_down - K_up + L_down - L_up.
    """
    dni, dhi, lsky, sin_alt, ta4, grids = _net_inputs(direct_normal, diffuse, l_sky, altitude_deg,
        sunlit, svf, albedo, emissivity, t_surface_c, t_air_c)  # fmt: skip
    out = np.empty((5, *grids[0].shape))
    _net_kernel(dni, dhi, lsky, sin_alt, ta4, *grids, out)
    return dict(zip(_NET_KEYS, out, strict=True))


def surface_net_radiation_reference(
    direct_normal: float,
    diffuse: float,
    l_sky: float,
    altitude_deg: float,
    sunlit: ArrayLike,
    svf: ArrayLike,
    albedo: ArrayLike,
    emissivity: ArrayLike,
    t_surface_c: ArrayLike,
    t_air_c: float,
) -> dict[str, NDArray[np.float64]]:
    """``surface_net_radiation`` in NumPy."""
    dni, dhi, lsky, sin_alt, ta4, grids = _net_inputs(direct_normal, diffuse, l_sky, altitude_deg,
        sunlit, svf, albedo, emissivity, t_surface_c, t_air_c)  # fmt: skip
    sun, svf_, alb, emis, ts = grids
    kd = dni * sun * sin_alt + dhi * svf_
    ku = alb * kd
    ld = svf_ * lsky + (1.0 - svf_) * SIGMA * ta4
    lu = emis * SIGMA * (ts + KELVIN) ** 4 + (1.0 - emis) * ld
    return dict(zip(_NET_KEYS, (kd, ku, ld, lu, kd - ku + ld - lu), strict=True))


@njit(parallel=True, cache=True)
def _tmrt_kernel(dni, dhi, lsky, sin_alt, cos_alt, ta, alb_w, eps_w, tw, fsh, ak, al, sunlit, svf,
                 tg, alb_g, eps_g, building, out):  # fmt: skip
    ny, nx = sunlit.shape
    ghi = dni * sin_alt + dhi
    lwall = eps_w * SIGMA * (tw + KELVIN) ** 4 + (1.0 - eps_w) * lsky
    kwall = alb_w * (ghi * (1.0 - fsh) + dhi * fsh)  # light the walls reflect
    for i in prange(ny):
        for j in range(nx):
            if building[i, j]:
                out[i, j] = np.nan
                continue
            s = svf[i, j]
            beam = dni * sunlit[i, j]
            kd = beam * sin_alt + dhi * s + (1.0 - s) * kwall
            ku = alb_g[i, j] * kd
            ks = 0.5 * (dhi * s + (1.0 - s) * kwall) + 0.5 * ku
            ld = s * lsky + (1.0 - s) * lwall
            t = tg[i, j] + KELVIN
            lu = eps_g[i, j] * SIGMA * t * t * t * t + (1.0 - eps_g[i, j]) * ld
            ls = 0.5 * ld + 0.5 * lu
            absorbed = ak * (F_CYLINDER * beam * cos_alt + F_UPDOWN * (kd + ku) + 4 * F_SIDE * ks)
            absorbed += al * (F_UPDOWN * (ld + lu) + 4 * F_SIDE * ls)
            out[i, j] = (absorbed / (al * SIGMA)) ** 0.25 - KELVIN


def _tmrt_inputs(direct_normal, diffuse, l_sky, altitude_deg, sunlit, svf, t_air_c, t_ground_c,
                 albedo_ground, emissivity_ground, albedo_wall, emissivity_wall, t_wall_c,
                 wall_shaded_share, building, absorption_sw, absorption_lw):  # fmt: skip
    shape = np.shape(svf)
    if len(shape) != 2:
        raise DataError(f"svf: expected a 2D (ny, nx) array, got shape {shape}")
    alt = math.radians(float(altitude_deg))
    sin_alt = max(math.sin(alt), 0.0)
    dni = float(direct_normal) if sin_alt > 0 else 0.0
    ta = float(t_air_c)
    tw = ta if t_wall_c is None else float(t_wall_c)
    scal = (dni, float(diffuse), float(l_sky), sin_alt, math.cos(alt) if sin_alt > 0 else 0.0, ta,
            float(albedo_wall), float(emissivity_wall), tw, float(wall_shaded_share),
            float(absorption_sw), float(absorption_lw))  # fmt: skip
    grids = [_grid(n, v, shape) for n, v in (("sunlit", sunlit), ("svf", svf),
             ("t_ground_c", t_ground_c), ("albedo_ground", albedo_ground),
             ("emissivity_ground", emissivity_ground))]  # fmt: skip
    b = np.zeros(shape, bool) if building is None else np.asarray(building, bool)
    if b.shape != shape:
        raise DataError(f"building: expected shape {shape}, got {b.shape}")
    return scal, grids, np.ascontiguousarray(b)


def mean_radiant_temperature(
    direct_normal: float,
    diffuse: float,
    l_sky: float,
    altitude_deg: float,
    sunlit: ArrayLike,
    svf: ArrayLike,
    t_air_c: float,
    t_ground_c: ArrayLike,
    albedo_ground: ArrayLike = 0.15,
    *,
    emissivity_ground: ArrayLike = 0.95,
    albedo_wall: float = 0.20,
    emissivity_wall: float = 0.90,
    t_wall_c: float | None = None,
    wall_shaded_share: float = 0.5,
    building: ArrayLike | None = None,
    absorption_sw: float = ABSORPTION_SW,
    absorption_lw: float = ABSORPTION_LW,
) -> NDArray[np.float64]:
    """Mean radiant temperature (degC) of a standing person at street level in every cell.

    Six-direction fluxes (Lindberg et al. 2008): up/down and four sides, each from the sky (svf),
    from walls (1 - svf: reflected light, wall emission at ``t_wall_c``, default air temperature)
    and from the ground (``t_ground_c``); the beam on a vertical cylinder. NaN on ``building``.
    """
    scal, grids, b = _tmrt_inputs(direct_normal, diffuse, l_sky, altitude_deg, sunlit, svf,
        t_air_c, t_ground_c, albedo_ground, emissivity_ground, albedo_wall, emissivity_wall,
        t_wall_c, wall_shaded_share, building, absorption_sw, absorption_lw)  # fmt: skip
    out = np.empty(b.shape)
    _tmrt_kernel(*scal, *grids, b, out)
    return out


def mean_radiant_temperature_reference(
    direct_normal: float,
    diffuse: float,
    l_sky: float,
    altitude_deg: float,
    sunlit: ArrayLike,
    svf: ArrayLike,
    t_air_c: float,
    t_ground_c: ArrayLike,
    albedo_ground: ArrayLike = 0.15,
    *,
    emissivity_ground: ArrayLike = 0.95,
    albedo_wall: float = 0.20,
    emissivity_wall: float = 0.90,
    t_wall_c: float | None = None,
    wall_shaded_share: float = 0.5,
    building: ArrayLike | None = None,
    absorption_sw: float = ABSORPTION_SW,
    absorption_lw: float = ABSORPTION_LW,
) -> NDArray[np.float64]:
    """``mean_radiant_temperature`` in NumPy."""
    scal, grids, b = _tmrt_inputs(direct_normal, diffuse, l_sky, altitude_deg, sunlit, svf,
        t_air_c, t_ground_c, albedo_ground, emissivity_ground, albedo_wall, emissivity_wall,
        t_wall_c, wall_shaded_share, building, absorption_sw, absorption_lw)  # fmt: skip
    dni, dhi, lsky, sin_alt, cos_alt, _ta, alb_w, eps_w, tw, fsh, ak, al = scal
    sun, s, tg, alb_g, eps_g = grids
    lwall = eps_w * SIGMA * (tw + KELVIN) ** 4 + (1.0 - eps_w) * lsky
    kwall = alb_w * ((dni * sin_alt + dhi) * (1.0 - fsh) + dhi * fsh)
    beam = dni * sun
    kd = beam * sin_alt + dhi * s + (1.0 - s) * kwall
    ku = alb_g * kd
    ks = 0.5 * (dhi * s + (1.0 - s) * kwall) + 0.5 * ku
    ld = s * lsky + (1.0 - s) * lwall
    lu = eps_g * SIGMA * (tg + KELVIN) ** 4 + (1.0 - eps_g) * ld
    ls = 0.5 * ld + 0.5 * lu
    absorbed = ak * (F_CYLINDER * beam * cos_alt + F_UPDOWN * (kd + ku) + 4 * F_SIDE * ks)
    absorbed = absorbed + al * (F_UPDOWN * (ld + lu) + 4 * F_SIDE * ls)
    tmrt = (absorbed / (al * SIGMA)) ** 0.25 - KELVIN
    return np.where(b, np.nan, tmrt)
