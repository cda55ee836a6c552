"""Thermal comfort: UTCI (Bröde et al. 2012) by pythermalcomfort's polynomial, over arrays."""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import ArrayLike, NDArray
from pythermalcomfort.models import utci as _utci

# Validity range of the UTCI polynomial (the official UTCI program's input checks)
T_AIR_RANGE = (-50.0, 50.0)
TMRT_MINUS_TAIR_RANGE = (-30.0, 70.0)
WIND_RANGE = (0.5, 17.0)
MAX_VAPOUR_KPA = 5.0


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
    cells outside them (or NaN) give NaN.
    """
    ta, tr, v, rh = np.broadcast_arrays(*(np.asarray(x, np.float64) for x in
                                          (t_air_c, tmrt_c, wind_speed, rh_percent)))  # fmt: skip
    v = np.clip(v, *WIND_RANGE)
    rh = np.clip(rh, 0.0, 100.0)
    if clip:
        ta = np.clip(ta, *T_AIR_RANGE)
        tr = ta + np.clip(tr - ta, *TMRT_MINUS_TAIR_RANGE)
        e_sat_kpa = 0.6112 * np.exp(17.62 * ta / (243.12 + ta))
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
