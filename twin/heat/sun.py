"""Solar position after NOAA's solar calculator (Meeus' low-precision formulae), vectorised.

Geometric altitude (no refraction) and azimuth clockwise from north, both in degrees, for UTC
unix times; accurate to about 0.01 deg against NREL's SPA for 1950-2050.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike, NDArray

_UNIX_EPOCH_JD = 2440587.5  # Julian day of 1970-01-01 00:00 UTC


def solar_position(
    t_unix: ArrayLike, lat_deg: float, lon_deg: float
) -> tuple[NDArray[np.float64] | float, NDArray[np.float64] | float]:
    """Sun altitude and azimuth (deg) at UTC unix times ``t_unix`` for a place (lat, lon in deg)."""
    t = np.asarray(t_unix, dtype=np.float64)
    jd = t / 86400.0 + _UNIX_EPOCH_JD
    jc = (jd - 2451545.0) / 36525.0  # Julian centuries since J2000.0
    mean_long = np.mod(280.46646 + jc * (36000.76983 + jc * 0.0003032), 360.0)
    mean_anom = 357.52911 + jc * (35999.05029 - 0.0001537 * jc)
    ecc = 0.016708634 - jc * (0.000042037 + 0.0000001267 * jc)
    m = np.radians(mean_anom)
    centre = (
        np.sin(m) * (1.914602 - jc * (0.004817 + 0.000014 * jc))
        + np.sin(2 * m) * (0.019993 - 0.000101 * jc)
        + np.sin(3 * m) * 0.000289
    )
    true_long = mean_long + centre
    omega = np.radians(125.04 - 1934.136 * jc)
    app_long = np.radians(true_long - 0.00569 - 0.00478 * np.sin(omega))
    mean_obliq = (
        23.0 + (26.0 + (21.448 - jc * (46.815 + jc * (0.00059 - jc * 0.001813))) / 60.0) / 60.0
    )
    obliq = np.radians(mean_obliq + 0.00256 * np.cos(omega))
    decl = np.arcsin(np.sin(obliq) * np.sin(app_long))
    y = np.tan(obliq / 2.0) ** 2
    l0 = np.radians(mean_long)
    eq_time = 4.0 * np.degrees(
        y * np.sin(2 * l0)
        - 2 * ecc * np.sin(m)
        + 4 * ecc * y * np.sin(m) * np.cos(2 * l0)
        - 0.5 * y * y * np.sin(4 * l0)
        - 1.25 * ecc * ecc * np.sin(2 * m)
    )  # minutes
    minutes_utc = np.mod(t, 86400.0) / 60.0
    true_solar = np.mod(minutes_utc + eq_time + 4.0 * lon_deg, 1440.0)
    hour_angle = np.radians(true_solar / 4.0 - 180.0)
    lat = np.radians(lat_deg)
    cos_zen = np.sin(lat) * np.sin(decl) + np.cos(lat) * np.cos(decl) * np.cos(hour_angle)
    zen = np.arccos(np.clip(cos_zen, -1.0, 1.0))
    altitude = 90.0 - np.degrees(zen)
    # azimuth from the east and north components of the sun direction (robust at the poles of
    # the formula where NOAA's arccos form loses precision)
    east = -np.cos(decl) * np.sin(hour_angle)
    north = np.cos(lat) * np.sin(decl) - np.sin(lat) * np.cos(decl) * np.cos(hour_angle)
    azimuth = np.mod(np.degrees(np.arctan2(east, north)), 360.0)
    if altitude.ndim == 0:
        return float(altitude), float(azimuth)
    return altitude, azimuth
