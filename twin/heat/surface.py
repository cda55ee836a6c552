"""Surface covers of each cell (SUEWS' surface types, the two tree types merged) and their parameters.

``cover_fractions`` splits every cell of the pack's rasters into the six covers of ``COVERS``;
``PARAMETERS`` holds, per cover, the radiative and storage-heat (OHM) coefficients and the
vegetation conductance parameters the energy balance uses; ``CONDUCTANCE`` the shared
environmental responses of the surface conductance (SUEWS' Ward et al. 2016 form).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from twin.errors import ConfigError, DataError

COVERS: tuple[str, ...] = ("paved", "roof", "grass", "trees", "water", "bare")
PAVED, ROOF, GRASS, TREES, WATER, BARE = range(6)

# Per cover. Sources:
# * albedo, emissivity: SUEWS' sample-site (London KCL) values shipped with supy 2026.6
#   (``alb``, ``emis``; for grass and trees the summer maxima ``albmax_grass``, ``albmax_dectr``),
#   within the ranges of Oke et al. (2017) Urban Climates, Table 5.2 / Appendix A2.
# * a1 (-), a2 (h), a3 (W m-2): Objective Hysteresis Model, Grimmond, Cleugh & Oke (1991) Atmos.
#   Environ. 25B, Eq. 4, QS = a1 Q* + a2 dQ*/dt + a3; the summer coefficients SUEWS ships as
#   defaults (supy sample ``ohm_coef``; the compilation of Grimmond & Oke 1999, J. Appl. Meteorol.
#   38, Table 4): paved and roof the means of the paved/roof studies, grass/trees the vegetation
#   values (Doll et al. 1985), bare soil (Novak 1981; Asaeda & Ca 1993), water (Souch et al. 1998).
# * lai, lai_max (m2 m-2), g_max (mm s-1, the maximum conductance of a fully leaved cover): SUEWS
#   ``LAIMax`` and ``MaxConductance`` (Jarvi et al. 2011; Ward et al. 2016) - grass 5.9 / 33.1,
#   deciduous trees 5.5 / 11.7; summer LAI of a mown urban lawn ~3 and of street/park trees ~4
#   (e.g. Breuer et al. 2003, Ecol. Model. 169). ``lai`` = 0 means the cover does not transpire.
PARAMETERS: dict[str, dict[str, float]] = {
    "paved": {"albedo": 0.10, "emissivity": 0.95, "a1": 0.722, "a2": 0.300, "a3": -36.14,
              "lai": 0.0, "lai_max": 1.0, "g_max": 0.0},
    "roof": {"albedo": 0.12, "emissivity": 0.91, "a1": 0.510, "a2": 0.337, "a3": -28.85,
             "lai": 0.0, "lai_max": 1.0, "g_max": 0.0},
    "grass": {"albedo": 0.21, "emissivity": 0.93, "a1": 0.230, "a2": 0.325, "a3": -16.91,
              "lai": 3.0, "lai_max": 5.9, "g_max": 33.1},
    "trees": {"albedo": 0.18, "emissivity": 0.98, "a1": 0.230, "a2": 0.325, "a3": -16.91,
              "lai": 4.0, "lai_max": 5.5, "g_max": 11.7},
    "water": {"albedo": 0.10, "emissivity": 0.95, "a1": 0.534, "a2": 0.210, "a3": -33.31,
              "lai": 0.0, "lai_max": 1.0, "g_max": 0.0},
    "bare": {"albedo": 0.18, "emissivity": 0.94, "a1": 0.379, "a2": 0.335, "a3": -30.05,
             "lai": 0.0, "lai_max": 1.0, "g_max": 0.0},
}  # fmt: skip

# The surface-conductance model of SUEWS (gsModel 2; Ward et al. 2016, Urban Clim. 18, after Jarvis
# 1976 and Ogink-Hendriks 1995): g_s = scale * g(K) g(dq) g(T) g(water) * sum_veg LAI/LAImax g_max,
# with g(K) = K/(K + k) / (Kmax/(Kmax + k)); g(dq) = q_base + (1 - q_base) q_shape^dq (dq in g/kg);
# g(T) = (T - TL)(TH - T)^c / ((Tg - TL)(TH - Tg)^c), c = (TH - Tg)/(Tg - TL). Values: SUEWS defaults
# (supy sample site, fitted by Ward et al. 2016 to London and Swindon). ``g_min`` (mm s-1) is the
# night-time / minimum conductance (Shuttleworth 1988; SUEWS gsc_min); ``g_soil`` (mm s-1) the
# conductance of moist bare soil (a soil surface resistance of ~500 s m-1, within the 100-3000 s m-1
# reported for drying soil surfaces, e.g. van de Griend & Owe 1994, Water Resour. Res. 30).
CONDUCTANCE: dict[str, float] = {
    "scale": 3.5,  # G_max
    "k": 200.0,  # G_k, W m-2
    "k_max": 1200.0,  # Kmax, W m-2
    "q_base": 0.13,
    "q_shape": 0.7,
    "t_opt": 30.0,  # G_t, degC
    "t_high": 55.0,  # TH, degC
    "t_low": -10.0,  # TL, degC
    "g_min": 0.1,
    "g_soil": 2.0,
}

# The unsealed part of each land-cover class (by name), as shares of grass / trees / bare / water.
# Roads, plazas, yards, gardens, parks: verges and lawns (grass). Railway: ballast and gravel beds
# (bare). Industrial yards: half gravel / bare, half ruderal grass. Farmland: summer crops behave as
# grass (Allen et al. 1998, FAO-56: full-cover crops near the grass reference), with a third bare
# (tramlines, harvested or not yet closed fields). Floodplain meadow: grass. Forest: trees.
# A class not listed here leaves its unsealed share as grass.
CLASS_UNSEALED: dict[str, dict[str, float]] = {
    "building": {"grass": 1.0},
    "road": {"grass": 1.0},
    "railway": {"bare": 1.0},
    "plaza": {"grass": 1.0},
    "urban_yard": {"grass": 1.0},
    "residential_garden": {"grass": 1.0},
    "industrial_yard": {"grass": 0.5, "bare": 0.5},
    "suburban_residential": {"grass": 1.0},
    "park": {"grass": 1.0},
    "forest": {"trees": 1.0},
    "farmland": {"grass": 0.7, "bare": 0.3},
    "floodplain_meadow": {"grass": 1.0},
    "water": {"water": 1.0},
}


def cover_fractions(
    landcover: np.ndarray,
    classes: Sequence[Mapping[str, Any]],
    building_height: np.ndarray,
    canopy_cover: np.ndarray,
    *,
    sealed: np.ndarray | None = None,
) -> np.ndarray:
    """The (6, ny, nx) float64 shares of ``COVERS`` in every cell, summing to 1.

    A cell with a building (``building_height`` > 0, or class 'building') is all roof. Elsewhere
    the class's ``sealed`` share (or the ``sealed`` raster where given) is paved, class 'water' is
    all water, and the rest is split by ``CLASS_UNSEALED``. Tree crowns (``canopy_cover``, the
    share of the cell under crowns) then replace paved, grass and bare ground in proportion (a
    crown over a pavement shades and transpires as trees; crowns over roofs and water are left out).
    """
    lc = np.asarray(landcover)
    bh = np.asarray(building_height, dtype=np.float64)
    cc = np.asarray(canopy_cover, dtype=np.float64)
    if lc.ndim != 2 or bh.shape != lc.shape or cc.shape != lc.shape:
        raise DataError(f"cover_fractions: landcover {lc.shape}, building_height {bh.shape} and "
                        f"canopy_cover {cc.shape}: expected the same (ny, nx) grid")  # fmt: skip
    if sealed is not None and np.shape(sealed) != lc.shape:
        raise DataError(f"cover_fractions: sealed {np.shape(sealed)}: expected {lc.shape}")
    codes = np.unique(lc)
    by_code: dict[int, Mapping[str, Any]] = {}
    for c in classes:
        try:
            by_code[int(c["code"])] = c
        except (KeyError, TypeError, ValueError):
            raise ConfigError(f"landcover classes: {c!r}: expected code, name, sealed") from None
    missing = [int(c) for c in codes if int(c) not in by_code]
    if missing:
        raise DataError(f"landcover: class codes {missing} are not in the pack's "
                        f"[layers.landcover] classes {sorted(by_code)}")  # fmt: skip
    shape = lc.shape
    f = np.zeros((len(COVERS), *shape), dtype=np.float64)
    for code in codes:
        cls = by_code[int(code)]
        name = str(cls.get("name", ""))
        share = float(cls.get("sealed", 0.0))
        if not 0.0 <= share <= 1.0:
            raise ConfigError(f"landcover class {name!r} (code {int(code)}): sealed {share}: "
                              "expected a share in [0, 1]")  # fmt: skip
        m = lc == code
        if name == "building":
            f[ROOF][m] = 1.0
            continue
        rest = CLASS_UNSEALED.get(name, {"grass": 1.0})
        if name == "water":
            f[WATER][m] = 1.0
            continue
        s = (
            np.full(int(m.sum()), share)
            if sealed is None
            else np.clip(
                np.nan_to_num(np.asarray(sealed, dtype=np.float64)[m], nan=share), 0.0, 1.0
            )
        )
        f[PAVED][m] = s
        for cover, w in rest.items():
            f[COVERS.index(cover)][m] += w * (1.0 - s)
    roof = (bh > 0.0) | (f[ROOF] > 0.0)
    f[:, roof] = 0.0
    f[ROOF][roof] = 1.0
    # crowns over paved, grass and bare ground
    ground = f[PAVED] + f[GRASS] + f[BARE]
    crowns = np.clip(np.nan_to_num(cc, nan=0.0), 0.0, 1.0)
    add = np.clip(crowns - f[TREES], 0.0, None)
    add = np.minimum(add, ground)
    with np.errstate(invalid="ignore", divide="ignore"):
        take = np.where(ground > 0.0, add / ground, 0.0)
    for k in (PAVED, GRASS, BARE):
        f[k] -= f[k] * take
    f[TREES] += add
    f /= f.sum(axis=0, keepdims=True)
    return f


def _column(parameters: Mapping[str, Mapping[str, float]], key: str) -> np.ndarray:
    try:
        return np.array([float(parameters[c][key]) for c in COVERS])
    except KeyError as exc:
        raise ConfigError(f"surface parameters: missing {exc.args[0]!r} (expected every cover of "
                          f"{COVERS} with {key!r})") from None  # fmt: skip


def parameter_table(
    parameters: Mapping[str, Mapping[str, float]] = PARAMETERS,
) -> dict[str, np.ndarray]:
    """The per-cover parameters as arrays in ``COVERS`` order (albedo, emissivity, a1 ... g_max)."""
    keys = ("albedo", "emissivity", "a1", "a2", "a3", "lai", "lai_max", "g_max")
    return {k: _column(parameters, k) for k in keys}


def cell_properties(
    fractions: np.ndarray, parameters: Mapping[str, Mapping[str, float]] = PARAMETERS
) -> tuple[np.ndarray, np.ndarray]:
    """Albedo and emissivity of each cell: the cover-weighted means of ``PARAMETERS``."""
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape[0] != len(COVERS):
        raise DataError(f"fractions: shape {f.shape}: expected ({len(COVERS)}, ny, nx)")
    t = parameter_table(parameters)
    albedo = np.tensordot(t["albedo"], f, axes=1)
    emissivity = np.tensordot(t["emissivity"], f, axes=1)
    return albedo, emissivity


def roughness(
    fractions: np.ndarray, building_height: np.ndarray, canopy_height: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Roughness length z0 and displacement height zd (m) of each cell by the rule of thumb.

    Grimmond & Oke (1999), J. Appl. Meteorol. 38: z0 = 0.1 zh, zd = 0.7 zh with zh the mean height
    of the roughness elements (buildings, trees) over the cell; at least z0 = 0.01 m (short grass,
    paving; Wieringa 1993) where a cell has none.
    """
    f = np.asarray(fractions, dtype=np.float64)
    zh = f[ROOF] * np.asarray(building_height, dtype=np.float64) + f[TREES] * np.asarray(
        canopy_height, dtype=np.float64
    )
    zh = np.nan_to_num(zh, nan=0.0)
    return np.maximum(0.1 * zh, 0.01), 0.7 * zh
