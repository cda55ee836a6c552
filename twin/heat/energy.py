"""Surface energy balance of each cell: storage heat (OHM), latent heat (Penman-Monteith), sensible.

Per cell, with the cover shares f_c of ``surface.COVERS`` (W m-2, positive away from the surface):

* storage (paved + roof) and ground (grass, trees, water, bare): the Objective Hysteresis Model,
  f_c (a1_c Q* + a2_c dQ*/dt + a3_c) per cover (Grimmond et al. 1991; Grimmond & Oke 1999), as SUEWS;
* latent: the Penman-Monteith equation per cover (Monteith 1965; its urban form in SUEWS, Jarvi et
  al. 2011 Eq. 6) on the cell's available energy A = Q* + QF - storage - ground,
  QE_c = (s A + rho cp D / r_a) / (s + gamma (1 + r_s,c / r_a)): water with r_s = 0, grass and trees
  with the Jarvis-type conductance of SUEWS (Ward et al. 2016) per unit area of the cover, limited by
  the water availability W in [0, 1] (in the place of SUEWS' soil-moisture factor), bare soil with a
  soil conductance times W; dry paved and roofs do not evaporate (no rain store in this model);
* sensible: the residual QH = Q* + QF - storage - ground - QE, so the balance closes exactly (as in
  SUEWS, whose QH is the same residual).

The aerodynamic resistance is the neutral log-law one with a roughness length for heat after Kawai
et al. (2009) (SUEWS' RoughLenHeatMethod 2), kept in [10, 120] s m-1 as SUEWS does.
"""

from __future__ import annotations

import math
import types
from collections.abc import Mapping

import numpy as np
from numba import njit, prange, set_parallel_chunksize

from twin.errors import DataError
from twin.heat.radiation import SIGMA
from twin.heat.surface import CONDUCTANCE, COVERS, PARAMETERS, parameter_table

KARMAN = 0.4
CP_AIR = 1005.0  # J kg-1 K-1
R_DRY = 287.04  # J kg-1 K-1
NU_AIR = 1.46e-5  # kinematic viscosity of air, m2 s-1 (SUEWS' muu)
RA_MIN, RA_MAX = 10.0, 120.0  # s m-1, SUEWS' bounds on the aerodynamic resistance

# fast-math flags of the kernel: reciprocals, contraction to FMA, reassociation (differences from
# the reference of ~1e-13 W m-2); no assumption of finite values, so NaN and inf propagate
_FAST = {"arcp", "contract", "reassoc", "nsz"}
_CHUNK = 16384  # cells a thread takes at a time

# cover indices, in surface.COVERS order
_PAVED, _ROOF, _GRASS, _TREES, _WATER, _BARE = range(6)


# ---------------------------------------------------------------------------------------- helpers
@njit(cache=True, inline="always")
def _pow(x: float, y: float) -> float:
    """x**y for x >= 0 as exp(y ln x) (the libm pow is slower than an exp and a log together)."""
    return math.exp(y * math.log(x)) if x > 0.0 else 0.0


@njit(cache=True, parallel=True, fastmath=_FAST, error_model="numpy")
def _balance_kernel(q, dq, qf, frac, ta, rh, u, kd, w, p, st, a1, a2, a3, lai, lmax, gmx, cond,
                    lmv, cv, out_s, out_g, out_h, out_e):  # fmt: skip
    """All cells in one pass (flat arrays); a field of one value has stride ``st[k]`` 0. The
    resistance's parts fixed by the cell come from ``lmv``, ``cv`` (see resistance_terms)."""
    n = out_s.size
    s_q, s_dq, s_qf, s_ta, s_rh, s_u = st[0], st[1], st[2], st[3], st[4], st[5]
    s_kd, s_w, s_p = st[6], st[7], st[8]
    # the constants of the conductance responses, once
    scale, gk, kmax = cond[0], cond[1], cond[2]
    q_base, q_shape = cond[3], cond[4]
    t_opt, t_high, t_low = cond[5], cond[6], cond[7]
    g_min, g_soil = cond[8], cond[9]
    k_norm = kmax / (kmax + gk)
    ln_q_shape = math.log(q_shape) if q_shape > 0.0 else -math.inf
    tc = (t_high - t_opt) / (t_opt - t_low)
    r_t_den = 1.0 / ((t_opt - t_low) * (t_high - t_opt) ** tc)
    r_grass = lai[_GRASS] / lmax[_GRASS] * gmx[_GRASS]
    r_trees = lai[_TREES] / lmax[_TREES] * gmx[_TREES]
    kk = KARMAN * KARMAN
    for i in prange(n):
        ii = np.int64(i)
        qi = q[ii * s_q]
        dqi = dq[ii * s_dq]
        qfi = qf[ii * s_qf]
        f0, f1, f2 = frac[0, ii], frac[1, ii], frac[2, ii]
        f3, f4, f5 = frac[3, ii], frac[4, ii], frac[5, ii]
        # storage (OHM) in the order of the reference
        storage = f0 * (a1[0] * qi + a2[0] * dqi + a3[0]) + f1 * (a1[1] * qi + a2[1] * dqi + a3[1])
        ground = (f2 * (a1[2] * qi + a2[2] * dqi + a3[2]) + f3 * (a1[3] * qi + a2[3] * dqi + a3[3])
                  + f4 * (a1[4] * qi + a2[4] * dqi + a3[4])
                  + f5 * (a1[5] * qi + a2[5] * dqi + a3[5]))  # fmt: skip
        avail = qi + qfi - storage - ground
        t = ta[ii * s_ta]
        pi = p[ii * s_p]
        r243 = 1.0 / (t + 243.04)
        es = 6.1094 * math.exp(17.625 * t * r243)
        ea = es * min(max(rh[ii * s_rh], 0.0), 100.0) * 0.01
        vpd = es - ea
        s = es * (17.625 * 243.04) * r243 * r243
        lv = (2.501 - 0.002361 * t) * 1e6
        gamma = CP_AIR * pi / (0.622 * lv)
        rho = pi * 100.0 / (R_DRY * (t + 273.15))
        # aerodynamic resistance: ln(zzd / z0h) = ln(zzd / z0m) - 2 + (1.2 - 0.9 veg^0.29) Re*^0.25
        ui = max(u[ii * s_u], 0.1)
        lm = lmv[ii]
        ra = lm * (lm - 2.0 + cv[ii] * math.sqrt(math.sqrt(ui))) / (kk * ui)
        ra = min(max(ra, RA_MIN), RA_MAX)
        inv_ra = 1.0 / ra
        g1000 = gamma * 1000.0 * inv_ra  # gamma r_s / r_a = g1000 / g_s, g_s in mm s-1
        num = s * avail + rho * CP_AIR * vpd * inv_ra
        latent = 0.0
        if f4 > 0.0:
            latent += f4 * num / (s + gamma)
        wa = min(max(w[ii * s_w], 0.0), 1.0)
        if f2 > 0.0 or f3 > 0.0:  # the vegetation conductance (Ward et al. 2016, gsModel 2)
            kdi = kd[ii * s_kd]
            g_k = min(kdi / ((kdi + gk) * k_norm), 1.0) if kdi > 0.0 else 0.0
            env = 0.0  # no light or no water: the minimum conductance (the rest not needed)
            if g_k > 0.0 and wa > 0.0:
                dq_gkg = 622.0 * vpd / (pi - 0.378 * ea)  # specific humidity deficit, g kg-1
                pq = math.exp(dq_gkg * ln_q_shape) if q_shape > 0.0 else q_shape**dq_gkg
                g_dq = q_base + (1.0 - q_base) * pq
                tt = min(max(t, t_low + 0.1), t_high - 0.1)
                g_t = (tt - t_low) * _pow(t_high - tt, tc) * r_t_den
                env = scale * g_k * g_dq * g_t * wa
            if f2 > 0.0:
                gs = max(env * r_grass, g_min)  # mm s-1 per unit area of the cover
                latent += f2 * num / (s + gamma + g1000 / gs)
            if f3 > 0.0:
                gs = max(env * r_trees, g_min)
                latent += f3 * num / (s + gamma + g1000 / gs)
        if f5 > 0.0:
            gs = max(g_soil * wa, g_min)
            latent += f5 * num / (s + gamma + g1000 / gs)
        out_s[ii] = storage
        out_g[ii] = ground
        out_h[ii] = qi + qfi - storage - ground - latent
        out_e[ii] = latent


def _renamed(fn, name: str):
    """A copy of the function `fn` under another name. numba keys its on-disk cache by the
    function's module, name and bytecode, not by the compile options: a serial and a parallel
    compile of one function would share one cache entry, and the one compiled first (the serial
    one, for the small rural cell) would be loaded for both. Under its own name each has its own."""
    code = fn.__code__.replace(co_name=name, co_qualname=name)
    copy = types.FunctionType(code, fn.__globals__, name, fn.__defaults__, fn.__closure__)
    copy.__qualname__, copy.__doc__ = name, fn.__doc__
    return copy


# the same kernel on one thread, for inputs of fewer than _CHUNK cells (a single cell-day, the
# rural reference cell): a thread team costs more to start and join than such a call takes
_balance_serial = njit(cache=True, fastmath=_FAST, error_model="numpy")(
    _renamed(_balance_kernel.py_func, "_balance_serial")
)


def _flat(x, shape: tuple[int, int], name: str) -> tuple[np.ndarray, int]:
    """A field as a flat float64 array and its stride: 0 for one value (no copy to every cell)."""
    a = np.asarray(x, dtype=np.float64)
    if a.size == 1:
        return a.reshape(1), 0
    if a.shape != shape:  # per row or per column: to every cell
        a = _field(a, shape, name)
        a = np.ascontiguousarray(np.broadcast_to(a, shape))
    return np.ascontiguousarray(a).reshape(-1), 1


def _field(x, shape: tuple[int, int], name: str) -> np.ndarray:
    """A 2D C-contiguous float64 array of ``shape``, (ny, 1), (1, nx) or (1, 1) (no copy of a
    scalar to every cell: the kernel reads such a field with ``_at``)."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim <= 2:
        a2 = a.reshape((1,) * (2 - a.ndim) + a.shape)
        if all(n in (1, m) for n, m in zip(a2.shape, shape, strict=True)):
            return np.ascontiguousarray(a2)
    try:
        return np.ascontiguousarray(np.broadcast_to(a, shape))
    except ValueError:
        raise DataError(f"energy_balance: {name} has shape {a.shape}: expected a scalar or "
                        f"{shape}") from None  # fmt: skip


def _inputs(q_star, dq_star_dt, qf, fractions, t_air_c, rh_percent, wind_speed, water_availability,
            k_down, pressure_hpa, measurement_height, displacement_height, roughness_length,
            parameters, conductance):  # fmt: skip
    q = np.asarray(q_star, dtype=np.float64)
    if q.ndim != 2:
        raise DataError(f"energy_balance: q_star has shape {q.shape}: expected (ny, nx)")
    shape = q.shape
    f = np.ascontiguousarray(fractions, dtype=np.float64)
    if f.shape != (len(COVERS), *shape):
        raise DataError(f"energy_balance: fractions have shape {f.shape}: expected "
                        f"({len(COVERS)}, {shape[0]}, {shape[1]})")  # fmt: skip
    if k_down is None:  # no shortwave given: Q* of a cell in sunshine is ~0.65 K_down (Oke 1987)
        k_down = np.maximum(q, 0.0) / 0.65
    t = parameter_table(parameters)
    cond = np.array([float(conductance[k]) for k in
                     ("scale", "k", "k_max", "q_base", "q_shape", "t_opt", "t_high", "t_low",
                      "g_min", "g_soil")])  # fmt: skip
    fields = [
        _field(v, shape, n)
        for v, n in (
            (q, "q_star"), (dq_star_dt, "dq_star_dt"), (qf, "qf"), (t_air_c, "t_air_c"),
            (rh_percent, "rh_percent"), (wind_speed, "wind_speed"), (k_down, "k_down"),
            (water_availability, "water_availability"), (pressure_hpa, "pressure_hpa"),
            (measurement_height, "measurement_height"),
            (displacement_height, "displacement_height"), (roughness_length, "roughness_length"),
        )
    ]  # fmt: skip
    return shape, f, fields, t, cond


def energy_balance(
    q_star: np.ndarray,
    dq_star_dt: np.ndarray | float,
    qf: np.ndarray | float,
    fractions: np.ndarray,
    t_air_c: np.ndarray | float,
    rh_percent: np.ndarray | float,
    wind_speed: np.ndarray | float,
    water_availability: np.ndarray | float = 1.0,
    *,
    k_down: np.ndarray | float | None = None,
    pressure_hpa: np.ndarray | float = 1013.25,
    measurement_height: np.ndarray | float = 10.0,
    displacement_height: np.ndarray | float = 0.0,
    roughness_length: np.ndarray | float = 0.5,
    parameters: Mapping[str, Mapping[str, float]] = PARAMETERS,
    conductance: Mapping[str, float] = CONDUCTANCE,
    resistance: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Storage, ground, sensible and latent heat (W m-2, (ny, nx)) of each cell; numba, threaded.

    ``q_star`` net all-wave radiation, ``dq_star_dt`` its rate of change in W m-2 h-1 (see
    ``RadiationTrend``), ``qf`` anthropogenic heat, ``fractions`` (6, ny, nx); the weather and
    ``water_availability`` (0..1, see ``water_availability``) are scalars or (ny, nx). ``k_down``:
    incoming shortwave for the stomatal response (estimated from Q* when not given). Wind speed
    at ``measurement_height`` above ground; ``displacement_height`` and ``roughness_length`` of
    the cell (``surface.roughness``). Closure: q_star + qf = storage + ground + sensible + latent.
    ``resistance``: :func:`resistance_terms` of those heights and the cells' vegetation (grass +
    trees), fixed for a run (computed here when not given).
    """
    q = np.asarray(q_star, dtype=np.float64)
    if q.ndim != 2:
        raise DataError(f"energy_balance: q_star has shape {q.shape}: expected (ny, nx)")
    shape = q.shape
    f = np.ascontiguousarray(fractions, dtype=np.float64)
    if f.shape != (len(COVERS), *shape):
        raise DataError(f"energy_balance: fractions have shape {f.shape}: expected "
                        f"({len(COVERS)}, {shape[0]}, {shape[1]})")  # fmt: skip
    if k_down is None:  # no shortwave given: Q* of a cell in sunshine is ~0.65 K_down (Oke 1987)
        k_down = np.maximum(q, 0.0) / 0.65
    t = parameter_table(parameters)
    cond = np.array([float(conductance[k]) for k in
                     ("scale", "k", "k_max", "q_base", "q_shape", "t_opt", "t_high", "t_low",
                      "g_min", "g_soil")])  # fmt: skip
    fl, st = zip(*(_flat(v, shape, n) for v, n in (
        (q, "q_star"), (dq_star_dt, "dq_star_dt"), (qf, "qf"), (t_air_c, "t_air_c"),
        (rh_percent, "rh_percent"), (wind_speed, "wind_speed"), (k_down, "k_down"),
        (water_availability, "water_availability"), (pressure_hpa, "pressure_hpa"),
    )), strict=True)  # fmt: skip
    qa, dq, qfa, ta, rh, u, kd, w, p = fl
    if resistance is None:
        resistance = resistance_terms(
            _field(measurement_height, shape, "measurement_height"),
            _field(displacement_height, shape, "displacement_height"),
            _field(roughness_length, shape, "roughness_length"),
            f[_GRASS] + f[_TREES],
        )
    lmv, cv = _resistance_flat(resistance, shape)
    out = {k: np.empty(shape) for k in ("storage", "ground", "sensible", "latent")}
    # threads take blocks of cells as they become free (a busy core does not hold up the rest)
    kernel = _balance_kernel if q.size >= _CHUNK else _balance_serial
    old = set_parallel_chunksize(_CHUNK)
    try:
        kernel(qa, dq, qfa, f.reshape(len(COVERS), -1), ta, rh, u, kd, w, p,
                        np.array(st, dtype=np.int64), t["a1"], t["a2"], t["a3"], t["lai"],
                        t["lai_max"], t["g_max"], cond, lmv, cv, out["storage"].reshape(-1),
                        out["ground"].reshape(-1), out["sensible"].reshape(-1),
                        out["latent"].reshape(-1))  # fmt: skip
    finally:
        set_parallel_chunksize(old)
    return out


def _resistance_flat(terms: tuple[np.ndarray, np.ndarray], shape: tuple[int, int]):
    """The two fields of :func:`resistance_terms` as flat float64 arrays of the grid."""
    out = []
    for a, name in zip(terms, ("L", "C"), strict=True):
        a = np.asarray(a, dtype=np.float64)
        if a.shape != shape:
            raise DataError(f"energy_balance: resistance term {name} has shape {a.shape}: "
                            f"expected {shape}")  # fmt: skip
        out.append(np.ascontiguousarray(a).reshape(-1))
    return out


def energy_balance_reference(
    q_star: np.ndarray,
    dq_star_dt: np.ndarray | float,
    qf: np.ndarray | float,
    fractions: np.ndarray,
    t_air_c: np.ndarray | float,
    rh_percent: np.ndarray | float,
    wind_speed: np.ndarray | float,
    water_availability: np.ndarray | float = 1.0,
    *,
    k_down: np.ndarray | float | None = None,
    pressure_hpa: np.ndarray | float = 1013.25,
    measurement_height: np.ndarray | float = 10.0,
    displacement_height: np.ndarray | float = 0.0,
    roughness_length: np.ndarray | float = 0.5,
    parameters: Mapping[str, Mapping[str, float]] = PARAMETERS,
    conductance: Mapping[str, float] = CONDUCTANCE,
    resistance: tuple[np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """``energy_balance`` written with whole-array NumPy operations, for the tests (``resistance``
    is accepted and not used: the reference computes the resistance from the heights)."""
    shape, f, fl, t, cond = _inputs(q_star, dq_star_dt, qf, fractions, t_air_c, rh_percent,
                                    wind_speed, water_availability, k_down, pressure_hpa,
                                    measurement_height, displacement_height, roughness_length,
                                    parameters, conductance)  # fmt: skip
    q, dq, qfa, ta, rh, u, kd, w, p, z, zd, z0 = (np.broadcast_to(a, shape) for a in fl)
    qs_c = f * (t["a1"][:, None, None] * q + t["a2"][:, None, None] * dq + t["a3"][:, None, None])
    storage = qs_c[_PAVED] + qs_c[_ROOF]
    ground = qs_c[_GRASS] + qs_c[_TREES] + qs_c[_WATER] + qs_c[_BARE]
    avail = q + qfa - storage - ground
    es = 6.1094 * np.exp(17.625 * ta / (ta + 243.04))
    ea = es * np.clip(rh, 0.0, 100.0) / 100.0
    vpd = es - ea
    s = es * 17.625 * 243.04 / (ta + 243.04) ** 2
    lv = (2.501 - 0.002361 * ta) * 1e6
    gamma = CP_AIR * p / (0.622 * lv)
    rho = p * 100.0 / (R_DRY * (ta + 273.15))
    ra = aerodynamic_resistance(u, z, zd, z0, f[_GRASS] + f[_TREES])
    num = s * avail + rho * CP_AIR * vpd / ra
    scale, gk, kmax, q_base, q_shape, t_opt, t_high, t_low, g_min, g_soil = cond
    wa = np.clip(w, 0.0, 1.0)
    g_k = np.where(kd > 0.0, np.minimum((kd / (kd + gk)) / (kmax / (kmax + gk)), 1.0), 0.0)
    dq_gkg = 622.0 * vpd / (p - 0.378 * ea)
    g_dq = q_base + (1.0 - q_base) * q_shape**dq_gkg
    tt = np.clip(ta, t_low + 0.1, t_high - 0.1)
    tc = (t_high - t_opt) / (t_opt - t_low)
    g_t = (tt - t_low) * (t_high - tt) ** tc / ((t_opt - t_low) * (t_high - t_opt) ** tc)
    env = scale * g_k * g_dq * g_t * wa
    latent = f[_WATER] * num / (s + gamma)
    for c in (_GRASS, _TREES):
        gs = np.maximum(env * t["lai"][c] / t["lai_max"][c] * t["g_max"][c], g_min)
        latent = latent + np.where(f[c] > 0.0, f[c] * num / (s + gamma * (1 + 1000 / gs / ra)), 0)
    gs = np.maximum(g_soil * wa, g_min)
    latent = latent + np.where(
        f[_BARE] > 0.0, f[_BARE] * num / (s + gamma * (1 + 1000 / gs / ra)), 0
    )
    sensible = q + qfa - storage - ground - latent
    return {"storage": storage, "ground": ground, "sensible": sensible, "latent": latent}


def aerodynamic_resistance(
    wind_speed: np.ndarray | float,
    measurement_height: np.ndarray | float = 10.0,
    displacement_height: np.ndarray | float = 0.0,
    roughness_length: np.ndarray | float = 0.5,
    vegetation_fraction: np.ndarray | float = 0.0,
) -> np.ndarray:
    """Aerodynamic resistance for heat (s m-1) between the surface and the wind's height.

    Neutral log law r_a = ln((z - zd)/z0m) ln((z - zd)/z0h) / (k^2 u) (Monteith 1965; Thom 1975),
    with the roughness length for heat z0h = z0m exp(2 - (1.2 - 0.9 veg^0.29) Re*^0.25) (Kawai et
    al. 2009, J. Appl. Meteorol. Climatol. 48; SUEWS' default), Re* = u* z0m / nu; z - zd at least
    2 z0m, u at least 0.1 m s-1, r_a kept in [10, 120] s m-1 as SUEWS does.
    """
    z0m = np.asarray(roughness_length, dtype=np.float64)
    zzd = np.maximum(np.asarray(measurement_height) - np.asarray(displacement_height), 2.0 * z0m)
    u = np.maximum(np.asarray(wind_speed, dtype=np.float64), 0.1)
    lm = np.log(zzd / z0m)
    ustar = KARMAN * u / lm
    re = ustar * z0m / NU_AIR
    veg = np.asarray(vegetation_fraction, dtype=np.float64)
    z0v = z0m * np.exp(2.0 - (1.2 - 0.9 * veg**0.29) * re**0.25)
    ra = lm * np.log(zzd / z0v) / (KARMAN**2 * u)
    return np.clip(ra, RA_MIN, RA_MAX)


def surface_temperature(
    t_air_c: np.ndarray | float,
    sensible: np.ndarray,
    wind_speed: np.ndarray | float,
    *,
    measurement_height: np.ndarray | float = 10.0,
    displacement_height: np.ndarray | float = 0.0,
    roughness_length: np.ndarray | float = 0.5,
    vegetation_fraction: np.ndarray | float = 0.0,
    pressure_hpa: float = 1013.25,
) -> np.ndarray:
    """Surface temperature (degC) that drives ``sensible`` through the aerodynamic resistance.

    Inverts the bulk transfer law QH = rho cp (Ts - Ta) / r_a (e.g. Oke et al. 2017, Urban
    Climates, Eq. 4.6): Ts = Ta + QH r_a / (rho cp), r_a from ``aerodynamic_resistance``.
    """
    ta = np.asarray(t_air_c, dtype=np.float64)
    rho = pressure_hpa * 100.0 / (R_DRY * (ta + 273.15))
    ra = aerodynamic_resistance(wind_speed, measurement_height, displacement_height,
                                roughness_length, vegetation_fraction)  # fmt: skip
    return ta + np.asarray(sensible, dtype=np.float64) * ra / (rho * CP_AIR)


class RadiationTrend:
    """dQ*/dt (W m-2 h-1) for OHM from successive Q* fields, as SUEWS' running-mean scheme.

    SUEWS (OHM_dqndt_cal_X, v2018b on): an hourly running mean of Q* is updated every step,
    qbar' = (qbar (T - dt) + Q* dt) / T with T = min(elapsed + dt, 1 h), and the rate is the change
    of that mean over a two-hour window, dQ*/dt = (qbar' - (qbar - rate (2 - dt/1h))) / 2.
    """

    def __init__(self) -> None:
        self.mean: np.ndarray | None = None
        self.rate: np.ndarray | None = None
        self.elapsed = 0.0

    def update(self, q_star: np.ndarray, dt_s: float) -> np.ndarray:
        """Take the step's Q* (any shape) and return dQ*/dt (W m-2 h-1) for it."""
        q = np.asarray(q_star, dtype=np.float64)
        if self.mean is None:  # the first step: no change yet
            self.mean = q.copy()
            self.rate = np.zeros_like(q)
            self.elapsed = dt_s
            return self.rate.copy()
        period = self.elapsed + dt_s if self.elapsed < 3600.0 else 3600.0
        start = self.mean - self.rate * (2.0 - dt_s / 3600.0)
        self.mean = (self.mean * (period - dt_s) + q * dt_s) / period
        self.rate = (self.mean - start) / 2.0
        self.elapsed += dt_s
        return self.rate.copy()


def resistance_terms(
    measurement_height: np.ndarray | float,
    displacement_height: np.ndarray | float,
    roughness_length: np.ndarray | float,
    vegetation_fraction: np.ndarray | float,
) -> tuple[np.ndarray, np.ndarray]:
    """The parts of ``aerodynamic_resistance`` that do not change with the wind: L = ln((z -
    zd)/z0m) and C = (1.2 - 0.9 veg^0.29) (k z0m / (L nu))^0.25, so that with the wind u
    r_a = L (L - 2 + C u^0.25) / (k^2 u) (the same law, rewritten: ln(z/z0h) = L - 2 + C u^0.25)."""
    z0m = np.asarray(roughness_length, dtype=np.float64)
    zzd = np.maximum(np.asarray(measurement_height) - np.asarray(displacement_height), 2.0 * z0m)
    lm = np.log(zzd / z0m)
    veg = np.asarray(vegetation_fraction, dtype=np.float64)
    c = (1.2 - 0.9 * veg**0.29) * (KARMAN * z0m / (lm * NU_AIR)) ** 0.25
    return np.broadcast_to(lm, c.shape).copy(), c


@njit(cache=True, parallel=True, error_model="numpy")
def _implicit_ts_kernel(ta, qh, ts, emis, lm, c, u, p_pa, out):
    n = ta.size
    u = max(u, 0.1)
    u4 = u**0.25
    for i in prange(n):
        ra = lm[i] * (lm[i] - 2.0 + c[i] * u4) / (KARMAN * KARMAN * u)
        ra = min(max(ra, RA_MIN), RA_MAX)
        g = ra * R_DRY * (ta[i] + 273.15) / (p_pa * CP_AIR)
        tk = ts[i] + 273.15
        k = 4.0 * emis[i] * SIGMA * tk * tk * tk
        out[i] = (ta[i] + g * qh[i] + g * k * ts[i]) / (1.0 + g * k)


def surface_temperature_implicit(
    t_air_c: np.ndarray,
    sensible: np.ndarray,
    t_surface_last_c: np.ndarray,
    emissivity: np.ndarray,
    terms: tuple[np.ndarray, np.ndarray],
    wind_speed: float,
    pressure_hpa: float = 1013.25,
) -> np.ndarray:
    """The surface temperature (degC) that drives ``sensible`` through the aerodynamic resistance,
    with the surface's own emission implicit (linearised about the last temperature): Ts solves
    Ts = Ta + g (QH - k (Ts - Ts_last)), g = r_a / (rho cp), k = 4 eps sigma Ts_last^3.

    Where the temperature does not change this is ``surface_temperature``; taken explicitly, Ts and
    the net radiation feed each other from step to step (a roof with r_a ~ 100 s m-1 oscillates).
    ``terms`` from :func:`resistance_terms` (fixed for a run); numba, threaded."""
    ta = np.ascontiguousarray(t_air_c, dtype=np.float64)
    out = np.empty(ta.shape)
    flat = [np.ascontiguousarray(np.broadcast_to(a, ta.shape), dtype=np.float64).ravel()
            for a in (sensible, t_surface_last_c, emissivity, terms[0], terms[1])]  # fmt: skip
    _implicit_ts_kernel(ta.ravel(), *flat, float(wind_speed), pressure_hpa * 100.0, out.ravel())
    return out


def surface_temperature_implicit_reference(
    t_air_c: np.ndarray,
    sensible: np.ndarray,
    t_surface_last_c: np.ndarray,
    emissivity: np.ndarray,
    terms: tuple[np.ndarray, np.ndarray],
    wind_speed: float,
    pressure_hpa: float = 1013.25,
) -> np.ndarray:
    """NumPy reference of :func:`surface_temperature_implicit` (the resistance from ``terms``;
    the tests check those against :func:`aerodynamic_resistance`)."""
    lm, c = terms
    ta = np.asarray(t_air_c, dtype=np.float64)
    u = max(float(wind_speed), 0.1)
    ra = np.clip(lm * (lm - 2.0 + c * u**0.25) / (KARMAN**2 * u), RA_MIN, RA_MAX)
    rho = pressure_hpa * 100.0 / (R_DRY * (ta + 273.15))
    g = ra / (rho * CP_AIR)
    k = 4.0 * np.asarray(emissivity) * SIGMA * (np.asarray(t_surface_last_c) + 273.15) ** 3
    return (ta + g * np.asarray(sensible) + g * k * np.asarray(t_surface_last_c)) / (1.0 + g * k)


def water_availability(
    depth_to_water_m: np.ndarray | float,
    *,
    full_depth: float = 2.0,
    extinction_depth: float = 5.0,
    minimum: float = 0.0,
) -> np.ndarray:
    """Share (0..1) of the potential vegetation conductance the water supply allows.

    1 where the water table is within ``full_depth`` of the surface (roots of ~0.5 m plus a capillary
    fringe of ~1.5 m in sandy loams keep the root zone supplied), falling linearly to ``minimum`` at
    ``extinction_depth`` and below: the linear decline of ground-water evapotranspiration with depth
    of MODFLOW's EVT package (Harbaugh 2005, USGS TM 6-A16), with an extinction depth of a few metres
    as found for grass and deep-rooted forest (Shah et al. 2007, Ground Water 45). Set ``minimum``
    above 0 for the supply from rain-fed soil moisture where the water table is deep.
    """
    d = np.asarray(depth_to_water_m, dtype=np.float64)
    if not 0.0 <= full_depth < extinction_depth or not 0.0 <= minimum <= 1.0:
        raise DataError(f"water_availability: full_depth {full_depth}, extinction_depth "
                        f"{extinction_depth}, minimum {minimum}: expected 0 <= full < extinction "
                        "and minimum in [0, 1]")  # fmt: skip
    share = np.clip((extinction_depth - d) / (extinction_depth - full_depth), 0.0, 1.0)
    return minimum + (1.0 - minimum) * share


# Diurnal shape of the heat released by buildings in summer (no space heating): electricity use of
# homes and offices, hot water and metabolism; hourly factors on the daily mean (mean 1), local time.
# Approximate shape after the building-sector profiles of Sailor & Lu (2004), Atmos. Environ. 38,
# Fig. 3, and LUCY (Allen et al. 2011, Int. J. Climatol. 31): a night minimum ~0.6, a morning rise,
# a daytime plateau and an evening maximum.
BUILDING_PROFILE = np.array([
    0.65, 0.60, 0.57, 0.56, 0.57, 0.63, 0.80, 1.00, 1.12, 1.17, 1.18, 1.18,
    1.18, 1.17, 1.15, 1.15, 1.18, 1.25, 1.32, 1.33, 1.27, 1.13, 0.95, 0.79,
])  # fmt: skip
BUILDING_PROFILE = BUILDING_PROFILE / BUILDING_PROFILE.mean()


def building_heat(
    roof_fraction: np.ndarray | float,
    local_hour: float,
    *,
    mean_w_m2: float = 25.0,
    profile: np.ndarray = BUILDING_PROFILE,
) -> np.ndarray:
    """Anthropogenic heat of buildings (W m-2 of cell) at ``local_hour`` (0..24, fractional).

    ``roof_fraction``: the roof share of each cell, or the (6, ny, nx) cover fractions (their roof
    share is taken).
    ``mean_w_m2`` is the daily mean per unit roof (footprint) area: summer, no space heating, so
    electricity, hot water and metabolism of mid-rise European buildings; 25 W m-2 of footprint is
    ~10-15 W m-2 of a city-centre area half built over, the order reported for European cities in
    summer (the review of Sailor 2011, Int. J. Climatol. 31; LUCY, Allen et al. 2011). The hourly
    ``profile`` (mean 1) is interpolated linearly.
    """
    roof = np.asarray(roof_fraction, dtype=np.float64)
    if roof.ndim == 3 and roof.shape[0] == len(COVERS):
        roof = roof[_ROOF]
    prof = np.asarray(profile, dtype=np.float64)
    h = float(local_hour) % 24.0
    i0 = int(math.floor(h)) % len(prof)
    i1 = (i0 + 1) % len(prof)
    factor = prof[i0] + (prof[i1] - prof[i0]) * (h - math.floor(h))
    return roof * mean_w_m2 * factor
