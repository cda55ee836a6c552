"""Thermal comfort: UTCI (Bröde et al. 2012), pythermalcomfort's polynomial evaluated over arrays.

``utci_reference`` calls pythermalcomfort cell by cell (its vectorised polynomial, its range checks).
``utci`` evaluates the same polynomial in a threaded numba kernel: a city grid takes ~20 ms instead of
~0.3 s, the largest single phase of a heat step before. The kernel does not retype the 210 published
coefficients: it recovers them once per process from pythermalcomfort itself, by an exact
least-squares fit of its polynomial (degree 6 in Ta, Tmrt - Ta, wind and vapour pressure, so 210
monomials fit it to round-off; the fit checks that), and the tests hold the two to 1e-9 K.
"""

from __future__ import annotations

import itertools
import math
import warnings
from functools import lru_cache

import numpy as np
from numba import njit, prange
from numpy.typing import ArrayLike, NDArray
from pythermalcomfort.models import utci as _utci
from threadpoolctl import threadpool_limits

from twin.core import ModelError

# Validity range of the UTCI polynomial (the official UTCI program's input checks)
T_AIR_RANGE = (-50.0, 50.0)
TMRT_MINUS_TAIR_RANGE = (-30.0, 70.0)
WIND_RANGE = (0.5, 17.0)
MAX_VAPOUR_KPA = 5.0
# Saturation vapour pressure over water as the UTCI program computes it (Hardy 1998, ITS-90):
# es = exp(2.7150305 ln T + sum_i G[i] T^(i-2)) Pa, T in K
_ES_LOG = 2.7150305
_ES_G = (-2836.5744, -6028.076559, 19.54263612, -0.02737830188, 1.6261698e-5, 7.0229056e-10,
         -1.8680009e-13)  # fmt: skip
_ES_G_ARRAY = np.array(_ES_G)  # for the kernel
# The polynomial's variables scaled to about -1..1 over the valid range (a well-conditioned fit):
# x = (value - centre) / half-width for Ta, Tmrt - Ta, wind, vapour pressure (kPa)
_CENTRE = np.array([0.0, 20.0, 8.75, 2.5])
_HALF = np.array([50.0, 50.0, 8.25, 2.5])
DEGREE = 6
_EXPONENTS = np.array(
    [e for e in itertools.product(range(DEGREE + 1), repeat=4) if sum(e) <= DEGREE], np.int64
)
_BLOCK = 512  # cells the kernel evaluates together (term by term, so the cell loop vectorises)


def _vapour_kpa(ta: np.ndarray, rh: np.ndarray) -> np.ndarray:
    """Vapour pressure (kPa) from air temperature (degC) and relative humidity (%)."""
    tk = ta + 273.15
    log_es = _ES_LOG * np.log(tk) + sum(g * tk ** (i - 2) for i, g in enumerate(_ES_G))
    return np.exp(log_es) * 1e-3 * rh / 100.0


@lru_cache(maxsize=1)
def _coefficients() -> np.ndarray:
    """Coefficients of UTCI - Ta on the scaled monomials ``_EXPONENTS``, fitted to pythermalcomfort
    on a fixed sample of the valid range (and a margin around it)."""
    rng = np.random.default_rng(2012)
    n = 6 * len(_EXPONENTS)
    x = rng.uniform(-1.1, 1.1, (n, 4))
    ta, d, v, pa = (_CENTRE + _HALF * x).T
    # relative humidity that gives this vapour pressure at this air temperature
    rh = 100.0 * pa / _vapour_kpa(ta, np.full(n, 100.0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = np.asarray(_utci(tdb=ta, tr=ta + d, v=v, rh=rh, limit_inputs=False,
                               round_output=False).utci, np.float64)  # fmt: skip
    basis = np.prod(x[:, None, :] ** _EXPONENTS[None, :, :], axis=2)
    # one BLAS thread: 15 ms; OpenBLAS's spinning thread team took 3 s beside other processes
    with threadpool_limits(limits=1, user_api="blas"):
        coef, *_ = np.linalg.lstsq(basis, got - ta, rcond=None)
    misfit = float(np.max(np.abs(basis @ coef - (got - ta))))
    if not misfit < 1e-8:
        raise ModelError(f"UTCI: pythermalcomfort's UTCI is not the degree-{DEGREE} polynomial this "
                         f"kernel evaluates (fit residual {misfit:.2e} K)")  # fmt: skip
    return coef


# fast-math without the no-NaN assumption: NaN inputs must stay detectable
@njit(
    cache=True,
    parallel=True,
    fastmath={"arcp", "contract", "reassoc", "nsz"},
    error_model="numpy",
    boundscheck=False,
)
def _utci_kernel(ta, tr, v, rh, clip, coef, expo, centre, half, es_g, out):
    """UTCI of every cell (flat arrays); NaN where an input is NaN or (without ``clip``) out of
    range. Blocks of cells: per cell the powers of the scaled variables, then term by term."""
    n = out.size
    n_blocks = (n + _BLOCK - 1) // _BLOCK
    n_terms = coef.size
    for blk in prange(n_blocks):
        lo = blk * _BLOCK
        m = min(_BLOCK, n - lo)
        pw = np.empty((4, DEGREE + 1, _BLOCK))
        pw[:, :, m:] = 0.0  # the last block's tail
        ok = np.empty(_BLOCK, np.bool_)
        for b in range(m):
            i = lo + b
            t, d = ta[i], tr[i] - ta[i]
            w = min(max(v[i], WIND_RANGE[0]), WIND_RANGE[1])
            h = min(max(rh[i], 0.0), 100.0)
            if clip:
                t = min(max(t, T_AIR_RANGE[0]), T_AIR_RANGE[1])
                d = min(max(tr[i] - t, TMRT_MINUS_TAIR_RANGE[0]), TMRT_MINUS_TAIR_RANGE[1])
            tk = t + 273.15
            log_es = _ES_LOG * math.log(tk)
            tp = 1.0 / (tk * tk)
            for g in es_g:
                log_es += g * tp
                tp *= tk
            e_sat = math.exp(log_es) * 1e-3
            if clip:  # 2 % margin below the limit: the range check uses this same e_sat
                h = min(h, 98.0 * MAX_VAPOUR_KPA / e_sat)
            pa = e_sat * h / 100.0
            finite = ta[i] == ta[i] and tr[i] == tr[i] and v[i] == v[i] and rh[i] == rh[i]
            valid = (finite and T_AIR_RANGE[0] <= t <= T_AIR_RANGE[1]
                     and TMRT_MINUS_TAIR_RANGE[0] <= d <= TMRT_MINUS_TAIR_RANGE[1]
                     and pa <= MAX_VAPOUR_KPA)  # fmt: skip
            ok[b] = valid
            xs = (t, d, w, pa)
            for k in range(4):
                x = (xs[k] - centre[k]) / half[k] if valid else 0.0
                p = 1.0
                for e in range(DEGREE + 1):
                    pw[k, e, b] = p
                    p *= x
            out[i] = t
        acc = np.zeros(_BLOCK)
        for j in range(n_terms):
            c = coef[j]
            r0, r1 = pw[0, expo[j, 0]], pw[1, expo[j, 1]]
            r2, r3 = pw[2, expo[j, 2]], pw[3, expo[j, 3]]
            for b in range(_BLOCK):  # whole rows (the tail's are zeros): a loop LLVM vectorises
                acc[b] += c * r0[b] * r1[b] * r2[b] * r3[b]
        for b in range(m):
            out[lo + b] = out[lo + b] + acc[b] if ok[b] else np.nan


def _broadcast(*inputs: ArrayLike) -> list[np.ndarray]:
    """The inputs of :func:`utci` and :func:`utci_reference` as float64 arrays of one shape."""
    return np.broadcast_arrays(*(np.asarray(x, np.float64) for x in inputs))


def utci(
    t_air_c: ArrayLike,
    tmrt_c: ArrayLike,
    wind_speed: ArrayLike,
    rh_percent: ArrayLike,
    *,
    clip: bool = False,
) -> NDArray[np.float64] | float:
    """UTCI (degC) for air temperature, Tmrt, wind speed 10 m above ground (m/s) and humidity.

    Inputs broadcast together. Wind is always clipped to 0.5..17 m/s (calm street cells are
    common and the polynomial is fitted from 0.5 m/s); with ``clip`` the air temperature and
    Tmrt - Ta are clipped into their ranges and humidity to at most 5 kPa vapour pressure, else
    cells outside them (or NaN) give NaN. numba, threaded; the same as :func:`utci_reference`.
    """
    ta, tr, v, rh = _broadcast(t_air_c, tmrt_c, wind_speed, rh_percent)
    flat = [np.ascontiguousarray(a).reshape(-1) for a in (ta, tr, v, rh)]
    out = np.empty(ta.size)
    _utci_kernel(*flat, clip, _coefficients(), _EXPONENTS, _CENTRE, _HALF, _ES_G_ARRAY, out)
    out = out.reshape(ta.shape)
    return float(out) if out.ndim == 0 else out


def utci_reference(
    t_air_c: ArrayLike,
    tmrt_c: ArrayLike,
    wind_speed: ArrayLike,
    rh_percent: ArrayLike,
    *,
    clip: bool = False,
) -> NDArray[np.float64] | float:
    """:func:`utci` through pythermalcomfort's own function, for the tests and the benchmark."""
    ta, tr, v, rh = _broadcast(t_air_c, tmrt_c, wind_speed, rh_percent)
    v = np.clip(v, *WIND_RANGE)
    rh = np.clip(rh, 0.0, 100.0)
    if clip:
        ta = np.clip(ta, *T_AIR_RANGE)
        tr = ta + np.clip(tr - ta, *TMRT_MINUS_TAIR_RANGE)
        e_sat_kpa = _vapour_kpa(ta, np.full(ta.shape, 100.0))
        rh = np.minimum(rh, 98.0 * MAX_VAPOUR_KPA / e_sat_kpa)  # 2 % margin: its own e_sat
    out = np.full(ta.shape, np.nan)
    ok = np.isfinite(ta) & np.isfinite(tr) & np.isfinite(v) & np.isfinite(rh)
    if ok.any():
        with warnings.catch_warnings():  # out-of-range cells are NaN by design, said above
            warnings.simplefilter("ignore", UserWarning)
            res = _utci(tdb=ta[ok], tr=tr[ok], v=v[ok], rh=rh[ok], limit_inputs=True,
                        round_output=False)  # fmt: skip
        out[ok] = np.asarray(res.utci, np.float64)
    return float(out) if out.ndim == 0 else out
