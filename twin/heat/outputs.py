"""Heat run outputs: GeoTIFFs, PNG maps a planner reads without GIS, hot spots named by their street,
running per-cell statistics (maxima, tropical nights, hours above a threshold), the energy balance.

Definitions used throughout:

- A night is 18:00-06:00 local time (Europe/Berlin, so summer time is followed). A model step of
  length dt ending at t belongs to the night that holds its midpoint t - dt/2.
- A tropical night (DWD: "Tropennacht") is a night whose minimum air temperature is >= 20 degC. Only
  nights the run covers for at least `night_coverage` of their 12 hours are counted, so a run that
  starts or ends mid-night does not count a part of a night as a whole one.
- "Hours above X" is the time (h) during which a field was strictly above X.

Arrays are north-up (ny, nx) in EPSG:25832 with rasterio's affine transform (heat contract).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import rasterio

from twin.city.raster import write_band
from twin.errors import DataError
from twin.geo import utm_to_wgs84

CRS = "EPSG:25832"
LOCAL_TZ = ZoneInfo("Europe/Berlin")
TROPICAL_NIGHT_C = 20.0
NIGHT_START_HOUR = 18
NIGHT_END_HOUR = 6
NIGHT_HOURS = 24 - NIGHT_START_HOUR + NIGHT_END_HOUR
ENERGY_COLUMNS = ("time", "net_radiation", "sensible", "latent", "storage", "ground",
                  "anthropogenic", "residual")  # fmt: skip
HOTSPOT_COLUMNS = ("rank", "x", "y", "lon", "lat", "value", "street", "street_distance_m")
MAIN_HIGHWAYS = frozenset({"motorway", "trunk", "primary", "secondary", "tertiary", "motorway_link",
                           "trunk_link", "primary_link", "secondary_link", "tertiary_link"})  # fmt: skip
HEAT_CMAP = "RdYlBu_r"
DIFF_CMAP = "RdBu_r"


# -- GeoTIFF ---------------------------------------------------------------------------------------------


def write_raster(
    path: Path | str,
    array: np.ndarray,
    transform: rasterio.Affine,
    crs: str = CRS,
    nodata: float = math.nan,
) -> Path:
    """One band GeoTIFF through the city's raster writer (floats as float32, NaN as nodata)."""
    path = Path(path)
    array = np.asarray(array)
    if array.ndim != 2:
        raise ValueError(f"{path.name}: a raster is 2D (ny, nx), got shape {array.shape}")
    a, b, x0, d, e, y0 = tuple(transform)[:6]
    if b != 0 or d != 0 or e >= 0 or not math.isclose(a, -e, rel_tol=1e-12):
        raise ValueError(f"{path.name}: the transform {tuple(transform)[:6]} is not north-up with "
                         "square cells")  # fmt: skip
    if array.dtype.kind == "f":
        array = array.astype("float32")
    elif array.dtype.kind == "b":
        array = array.astype("uint8")
    write_band(path, array, transform, crs, nodata=nodata)
    return path


# -- streets ---------------------------------------------------------------------------------------------


@lru_cache(maxsize=4)
def _read_streets_cached(path: str, mtime_ns: int) -> dict[str, np.ndarray]:
    import pyogrio
    import shapely

    try:
        meta, _, wkb, values = pyogrio.raw.read(path)
    except Exception as exc:  # pyogrio raises several types for unreadable files
        raise DataError(f"{path}: cannot read the streets layer: {exc}") from None
    fields = list(meta["fields"])
    n = len(wkb)

    def column(name: str) -> np.ndarray:
        if name not in fields:
            return np.full(n, "", dtype=object)
        return np.array(["" if v is None else str(v) for v in values[fields.index(name)]],
                        dtype=object)  # fmt: skip

    src = meta.get("crs")
    geoms = shapely.from_wkb(wkb)
    if src is not None and src.upper() != CRS:
        from pyproj import Transformer

        t = Transformer.from_crs(src, CRS, always_xy=True)
        geoms = shapely.transform(
            geoms, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1]))
        )
    return {"geometry": geoms, "name": column("name"), "highway": column("highway")}


def read_streets(path: Path | str) -> dict[str, np.ndarray]:
    """Street centre lines of a streets GeoPackage in EPSG:25832: geometry, name, highway
    (missing fields read as ''); read once per file version."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: the streets layer is not there")
    return _read_streets_cached(str(path), path.stat().st_mtime_ns)


def _streets(streets: Path | str | Mapping[str, np.ndarray] | None) -> Mapping | None:
    if streets is None or isinstance(streets, Mapping):
        return streets
    return read_streets(streets)


# -- hot spots -------------------------------------------------------------------------------------------


def cell_centres(transform: rasterio.Affine, rows: np.ndarray, cols: np.ndarray):
    """EPSG:25832 x, y of cell centres (row 0 northern)."""
    rows, cols = np.asarray(rows, dtype=float), np.asarray(cols, dtype=float)
    x = transform.c + (cols + 0.5) * transform.a + (rows + 0.5) * transform.b
    y = transform.f + (cols + 0.5) * transform.d + (rows + 0.5) * transform.e
    return x, y


def hotspots(
    array: np.ndarray,
    transform: rasterio.Affine,
    *,
    n: int = 10,
    min_separation_m: float = 300.0,
    streets: Path | str | Mapping[str, np.ndarray] | None = None,
    mask: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """The `n` hottest cells, each at least `min_separation_m` from every hotter one chosen (greedy,
    hottest first), named by the nearest named street of `streets` (path or :func:`read_streets`).

    `mask`: True where a cell may be a hot spot (e.g. not a building); NaN cells never are.
    Rows: rank (1 = hottest), x, y (EPSG:25832 cell centre), lon, lat, value, street,
    street_distance_m (street '' and distance NaN without streets).
    """
    work = np.array(array, dtype=np.float64)
    if work.ndim != 2:
        raise ValueError(f"hot spots need a 2D array, got shape {work.shape}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != work.shape:
            raise ValueError(f"hot-spot mask shape {mask.shape} is not the array's {work.shape}")
        work[~mask] = np.nan
    work[~np.isfinite(work)] = -np.inf
    ny, nx = work.shape
    dx, dy = abs(transform.a), abs(transform.e)
    ri = int(math.ceil(min_separation_m / dy)) if min_separation_m > 0 else 0
    ci = int(math.ceil(min_separation_m / dx)) if min_separation_m > 0 else 0
    picked: list[tuple[int, int, float]] = []
    while len(picked) < n:
        k = int(np.argmax(work))
        r, c = divmod(k, nx)
        value = work[r, c]
        if value == -np.inf:
            break
        picked.append((r, c, float(value)))
        r0, r1, c0, c1 = max(r - ri, 0), min(r + ri + 1, ny), max(c - ci, 0), min(c + ci + 1, nx)
        rr = (np.arange(r0, r1) - r)[:, None] * dy
        cc = (np.arange(c0, c1) - c)[None, :] * dx
        near = rr**2 + cc**2 < min_separation_m**2
        near[r - r0, c - c0] = True
        work[r0:r1, c0:c1][near] = -np.inf
    if not picked:
        return []
    rows = np.array([p[0] for p in picked])
    cols = np.array([p[1] for p in picked])
    x, y = cell_centres(transform, rows, cols)
    lon, lat = utm_to_wgs84(x, y)
    names, dist = nearest_street(x, y, streets)
    return [
        {
            "rank": i + 1,
            "x": float(x[i]),
            "y": float(y[i]),
            "lon": float(lon[i]),
            "lat": float(lat[i]),
            "value": picked[i][2],
            "street": names[i],
            "street_distance_m": float(dist[i]),
        }  # fmt: skip
        for i in range(len(picked))
    ]


def nearest_street(
    x: np.ndarray, y: np.ndarray, streets: Path | str | Mapping[str, np.ndarray] | None
) -> tuple[list[str], np.ndarray]:
    """Name of the nearest named street (not a railway) and the distance to it (m) for each point."""
    import shapely

    x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
    data = _streets(streets)
    if data is None:
        return [""] * len(x), np.full(len(x), np.nan)
    names = np.asarray(data["name"], dtype=object)
    highway = np.asarray(data.get("highway", np.full(len(names), "road")), dtype=object)
    keep = np.array([bool(nm) and bool(hw) for nm, hw in zip(names, highway, strict=True)], bool)
    if not keep.any():
        return [""] * len(x), np.full(len(x), np.nan)
    geoms = np.asarray(data["geometry"])[keep]
    names = names[keep]
    tree = shapely.STRtree(geoms)
    (src, hit), d = tree.query_nearest(shapely.points(x, y), return_distance=True)
    out_names = [""] * len(x)
    out_dist = np.full(len(x), np.nan)
    for s, h, dd in zip(src, hit, d, strict=True):  # ties: the first street found
        if not out_names[s]:
            out_names[s] = str(names[h])
            out_dist[s] = float(dd)
    return out_names, out_dist


def write_hotspots_csv(path: Path | str, rows: Sequence[Mapping[str, Any]]) -> Path:
    """Hot spots as CSV: rank, x, y (EPSG:25832 m), lon, lat (WGS84), value, street, distance (m)."""
    path = Path(path)
    fmt = {"x": "{:.1f}", "y": "{:.1f}", "lon": "{:.6f}", "lat": "{:.6f}", "value": "{:.2f}",
           "street_distance_m": "{:.0f}"}  # fmt: skip
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(HOTSPOT_COLUMNS)
        for row in rows:
            out = []
            for col in HOTSPOT_COLUMNS:
                v = row.get(col, "")
                if col in fmt and isinstance(v, float | int) and math.isfinite(v):
                    v = fmt[col].format(v)
                elif isinstance(v, float) and not math.isfinite(v):
                    v = ""
                out.append(v)
            w.writerow(out)
    return path


# -- maps ------------------------------------------------------------------------------------------------


def _figure(size: tuple[float, float], dpi: int = 120, layout: str | None = None):
    """A matplotlib Figure drawn by the Agg canvas, without pyplot's global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def map_limits(
    array: np.ndarray, vmin: float | None = None, vmax: float | None = None, *,
    diverging: bool = False,
) -> tuple[float, float]:  # fmt: skip
    """Colour limits of a map: the finite range, or for a difference map symmetric about 0
    (+-the largest absolute value, or of the given limits)."""
    finite = np.asarray(array, float)[np.isfinite(array)]
    if diverging:
        given = [abs(v) for v in (vmin, vmax) if v is not None]
        span = max(given) if given else (float(np.max(np.abs(finite))) if finite.size else 0.0)
        span = span if span > 0 else 1.0
        return -span, span
    lo = vmin if vmin is not None else (float(finite.min()) if finite.size else 0.0)
    hi = vmax if vmax is not None else (float(finite.max()) if finite.size else 1.0)
    if hi <= lo:
        lo, hi = lo - 0.5, lo + 0.5
    return float(lo), float(hi)


def _nice_length_km(width_km: float) -> float:
    """A round scale-bar length near a fifth of the map width."""
    target = width_km / 5
    for v in (10, 5, 2, 1, 0.5, 0.25, 0.2, 0.1, 0.05, 0.02, 0.01):
        if v <= target:
            return v
    return 0.01


def _draw_streets(ax, data: Mapping[str, np.ndarray]) -> None:
    import shapely
    from matplotlib.collections import LineCollection

    geoms = np.asarray(data["geometry"])
    highway = np.asarray(data.get("highway", np.full(len(geoms), "")), dtype=object)
    main, minor = [], []
    for g, hw in zip(geoms, highway, strict=True):
        if g is None or not hw:
            continue
        parts = shapely.get_parts(g) if g.geom_type.startswith("Multi") else [g]
        for part in parts:
            xy = shapely.get_coordinates(part) / 1000.0
            (main if hw in MAIN_HIGHWAYS else minor).append(xy)
    if minor:
        ax.add_collection(LineCollection(minor, colors="#6e6e6e", linewidths=0.3, alpha=0.55,
                                         zorder=3))  # fmt: skip
    if main:
        ax.add_collection(LineCollection(main, colors="#3c3c3c", linewidths=0.9, alpha=0.8,
                                         zorder=3, label="main streets"))  # fmt: skip


def plot_heat_map(
    path: Path | str,
    array: np.ndarray,
    transform: rasterio.Affine,
    *,
    title: str,
    units: str,
    cmap: str | None = None,
    vmin: float | None = None,
    vmax: float | None = None,
    diverging: bool = False,
    streets: Path | str | Mapping[str, np.ndarray] | None = None,
    hotspots: Sequence[Mapping[str, Any]] | None = None,
    buildings_mask: np.ndarray | None = None,
) -> Path:
    """A map of one field in EPSG:25832 km with colour bar (units), scale bar, north arrow and title;
    optional streets (thin grey, main ones darker), buildings (grey) and hot spots (numbered).

    `diverging` (a difference variant - baseline): `cmap` defaults to RdBu_r and the limits are
    symmetric about 0, so 0 is the neutral colour. Limits are written into the PNG's Description.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    path = Path(path)
    array = np.asarray(array, dtype=float)
    if array.ndim != 2:
        raise ValueError(f"{path.name}: a map is of a 2D array, got shape {array.shape}")
    ny, nx = array.shape
    x0, y0 = transform.c / 1000, transform.f / 1000
    x1, y1 = x0 + nx * transform.a / 1000, y0 + ny * transform.e / 1000
    width, height = x1 - x0, y0 - y1
    lo, hi = map_limits(array, vmin, vmax, diverging=diverging)
    cmap = cmap or (DIFF_CMAP if diverging else HEAT_CMAP)

    fig = _figure((10, min(max(8.0 * height / width, 2.5), 14.0) + 1.1), layout="constrained")
    ax = fig.subplots()
    im = ax.imshow(array, extent=(x0, x1, y1, y0), origin="upper", cmap=cmap, vmin=lo, vmax=hi,
                   zorder=1)  # fmt: skip
    handles = []
    if buildings_mask is not None:
        bm = np.asarray(buildings_mask, dtype=bool)
        if bm.shape != array.shape:
            raise ValueError(f"{path.name}: buildings mask shape {bm.shape} is not {array.shape}")
        overlay = np.where(bm, 1.0, np.nan)
        ax.imshow(overlay, extent=(x0, x1, y1, y0), origin="upper", zorder=2,
                  cmap=ListedColormap(["#8c8c8c"]), vmin=0, vmax=1, interpolation="nearest")  # fmt: skip
        handles.append(Patch(color="#8c8c8c", label="buildings"))
    data = _streets(streets)
    if data is not None:
        _draw_streets(ax, data)
    if hotspots:
        hx = np.array([h["x"] for h in hotspots]) / 1000
        hy = np.array([h["y"] for h in hotspots]) / 1000
        handles.append(ax.scatter(hx, hy, s=70, facecolors="none", edgecolors="black",
                                  linewidths=1.6, zorder=5, label="hot spots (rank)"))  # fmt: skip
        for h, px, py in zip(hotspots, hx, hy, strict=True):
            ax.annotate(str(h.get("label", h.get("rank", ""))), (px, py), xytext=(5, 5),
                        textcoords="offset points", fontsize=9, fontweight="bold", zorder=6,
                        bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                              "alpha": 0.8})  # fmt: skip
    ax.set_xlim(x0, x1)
    ax.set_ylim(y1, y0)
    ax.set_aspect("equal")
    ax.set_xlabel("x EPSG:25832 (km)")
    ax.set_ylabel("y EPSG:25832 (km)")
    ax.set_title(title)
    ax.ticklabel_format(useOffset=False, style="plain")
    finite = array[np.isfinite(array)]
    extend = "neither"
    if finite.size:
        below, above = finite.min() < lo, finite.max() > hi
        extend = "both" if below and above else "min" if below else "max" if above else "neither"
    fig.colorbar(im, ax=ax, label=units, extend=extend, fraction=0.04, pad=0.02, aspect=25)
    length = _nice_length_km(width)
    label = f"{length:g} km" if length >= 1 else f"{length * 1000:g} m"
    ax.add_artist(AnchoredSizeBar(ax.transData, length, label, "lower right", pad=0.4,
                                  sep=4, frameon=True, size_vertical=height / 150,
                                  color="black"))  # fmt: skip
    ax.annotate("", xy=(0.955, 0.95), xytext=(0.955, 0.84), xycoords="axes fraction",
                arrowprops={"facecolor": "black", "edgecolor": "white", "width": 4,
                            "headwidth": 11, "headlength": 9}, zorder=7)  # fmt: skip
    ax.text(0.955, 0.81, "N", transform=ax.transAxes, ha="center", va="top", fontsize=11,
            fontweight="bold", zorder=7,
            bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})  # fmt: skip
    if handles:
        ax.legend(handles=handles, loc="lower left", fontsize=8, framealpha=0.85)
    desc = f"units={units}; vmin={lo:.6g}; vmax={hi:.6g}; diverging={diverging}; cmap={cmap}"
    fig.savefig(path, metadata={"Title": title, "Description": desc})
    return path


# -- running statistics ----------------------------------------------------------------------------------


def night_of(t_unix: float, dt_s: float = 0.0) -> date | None:
    """The night (the date of its evening) a step of length dt ending at t belongs to, or None in
    daytime; nights are 18:00-06:00 Europe/Berlin, judged at the step's midpoint."""
    local = datetime.fromtimestamp(float(t_unix) - dt_s / 2.0, tz=LOCAL_TZ)
    if local.hour >= NIGHT_START_HOUR:
        return local.date()
    if local.hour < NIGHT_END_HOUR:
        return local.date() - timedelta(days=1)
    return None


def count_tropical_nights(
    daily_minima: np.ndarray, threshold: float = TROPICAL_NIGHT_C
) -> np.ndarray:
    """Per cell, the number of nights whose minimum air temperature is >= `threshold` (degC);
    `daily_minima` is (n_nights, ny, nx); NaN nights do not count."""
    m = np.asarray(daily_minima, dtype=float)
    if m.ndim != 3:
        raise ValueError(f"night minima are (n_nights, ny, nx), got shape {m.shape}")
    with np.errstate(invalid="ignore"):
        return np.sum(m >= threshold, axis=0).astype(np.int32)


def _threshold_key(name: str, thr: float) -> str:
    return f"hours_{name}_above_{f'{thr:g}'.replace('.', 'p').replace('-', 'm')}"


class RunningStats:
    """Per-cell statistics a model feeds each step, without keeping the history.

        stats = RunningStats((ny, nx), thresholds={"utci": 32.0})
        stats.update(t_unix, dt_s, {"t_air": ta, "t_surface": ts, "tmrt": tmrt, "utci": utci})
        stats.result()  # t_air_max, t_air_min, ..., tropical_nights, hours_utci_above_32

    Each field gets `<name>_max` and `<name>_min` (NaN-ignoring; NaN where never finite);
    `thresholds` maps a field to one or more values and gives `hours_<name>_above_<value>` (h, field
    strictly above); `night_field` (air temperature) gives `tropical_nights` (module docstring).
    """

    def __init__(self, shape: tuple[int, int], thresholds: Mapping[str, float | Sequence[float]]
                 | None = None, *, night_field: str = "t_air",
                 tropical_threshold: float = TROPICAL_NIGHT_C,
                 night_coverage: float = 0.9) -> None:  # fmt: skip
        self.shape = tuple(shape)
        self.thresholds = {k: tuple(np.atleast_1d(np.asarray(v, float)).tolist())
                           for k, v in (thresholds or {}).items()}  # fmt: skip
        self.night_field = night_field
        self.tropical_threshold = float(tropical_threshold)
        self.night_coverage = float(night_coverage)
        self._max: dict[str, np.ndarray] = {}
        self._min: dict[str, np.ndarray] = {}
        self._hours: dict[tuple[str, str], np.ndarray] = {}
        self._tropical = np.zeros(self.shape, dtype=np.int32)
        self._night: date | None = None
        self._night_min: np.ndarray | None = None
        self._night_seconds = 0.0
        self.nights_counted: list[date] = []
        self.nights_skipped: list[date] = []
        self.steps = 0
        self.seconds = 0.0

    def update(self, t_unix: float, dt_s: float, fields: Mapping[str, np.ndarray]) -> None:
        """Add the state at the end (t, UTC unix s) of a step of `dt_s` seconds."""
        night = night_of(t_unix, dt_s)
        if night != self._night:
            self._close_night()
            self._night = night
        for name, value in fields.items():
            a = np.asarray(value)
            if a.shape != self.shape:
                raise ValueError(f"field {name!r} has shape {a.shape}, expected {self.shape}")
            if name not in self._max:
                self._max[name] = np.full(self.shape, np.nan)
                self._min[name] = np.full(self.shape, np.nan)
            np.fmax(self._max[name], a, out=self._max[name])
            np.fmin(self._min[name], a, out=self._min[name])
            for thr in self.thresholds.get(name, ()):
                key = (name, _threshold_key(name, thr))
                hours = self._hours.setdefault(key, np.zeros(self.shape))
                with np.errstate(invalid="ignore"):
                    hours += (a > thr) * (dt_s / 3600.0)
            if name == self.night_field and night is not None:
                if self._night_min is None:
                    self._night_min = np.full(self.shape, np.nan)
                np.fmin(self._night_min, a, out=self._night_min)
        if night is not None:
            self._night_seconds += dt_s
        self.steps += 1
        self.seconds += dt_s

    def _covered(self) -> bool:
        return self._night_seconds >= self.night_coverage * NIGHT_HOURS * 3600.0

    def _close_night(self) -> None:
        if self._night is None:
            return
        if self._covered() and self._night_min is not None:
            with np.errstate(invalid="ignore"):
                self._tropical += self._night_min >= self.tropical_threshold
            self.nights_counted.append(self._night)
        else:
            self.nights_skipped.append(self._night)
        self._night, self._night_min, self._night_seconds = None, None, 0.0

    def result(self) -> dict[str, np.ndarray]:
        """The statistics so far (a night still open counts if it is covered enough already)."""
        out: dict[str, np.ndarray] = {}
        for name in self._max:
            out[f"{name}_max"] = self._max[name].copy()
            out[f"{name}_min"] = self._min[name].copy()
        for (name, key), hours in self._hours.items():
            h = hours.copy()
            h[np.isnan(self._max[name])] = np.nan
            out[key] = h
        tropical = self._tropical.copy()
        if self._night is not None and self._night_min is not None and self._covered():
            with np.errstate(invalid="ignore"):
                tropical += self._night_min >= self.tropical_threshold
        out["tropical_nights"] = tropical
        return out

    def nights(self) -> list[date]:
        """The nights counted for tropical nights so far (a covered open night included)."""
        out = list(self.nights_counted)
        if self._night is not None and self._covered():
            out.append(self._night)
        return out


# -- energy balance --------------------------------------------------------------------------------------


def _iso(t: Any) -> str:
    if isinstance(t, str):
        return t
    if isinstance(t, datetime):
        dt = t if t.tzinfo else t.replace(tzinfo=UTC)
    else:
        dt = datetime.fromtimestamp(float(t), tz=UTC)
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _as_datetime(t: Any) -> datetime:
    if isinstance(t, datetime):
        return t if t.tzinfo else t.replace(tzinfo=UTC)
    if isinstance(t, str):
        return datetime.fromisoformat(t.replace("Z", "+00:00"))
    return datetime.fromtimestamp(float(t), tz=UTC)


def energy_balance_row(
    t_unix: float, *, net_radiation: np.ndarray, sensible: np.ndarray, latent: np.ndarray,
    storage: np.ndarray, ground: np.ndarray, anthropogenic: np.ndarray | float,
    mask: np.ndarray | None = None,
) -> dict[str, float]:  # fmt: skip
    """Domain means (W m-2) of the fluxes at one time, over `mask` cells (True) or all finite
    cells; residual = Q* + QF - QH - QE - storage - ground (0 up to round-off when closed)."""
    q = {"net_radiation": net_radiation, "sensible": sensible, "latent": latent,
         "storage": storage, "ground": ground, "anthropogenic": anthropogenic}  # fmt: skip
    shape = np.shape(net_radiation)
    sel = np.ones(shape, bool) if mask is None else np.asarray(mask, bool)
    for v in q.values():
        sel &= np.isfinite(np.broadcast_to(np.asarray(v, float), shape))
    row: dict[str, Any] = {"time": float(t_unix)}
    for k, v in q.items():
        a = np.broadcast_to(np.asarray(v, float), shape)
        row[k] = float(a[sel].mean()) if sel.any() else math.nan
    row["residual"] = _residual(row)
    return row


def _residual(row: Mapping[str, Any]) -> float:
    return (row["net_radiation"] + row["anthropogenic"] - row["sensible"] - row["latent"]
            - row["storage"] - row["ground"])  # fmt: skip


def _flux(v: float) -> str:
    text = f"{v:.3f}"
    return "0.000" if text == "-0.000" else text


def energy_balance_csv(path: Path | str, rows: Iterable[Mapping[str, Any]]) -> Path:
    """Domain-mean energy balance (W m-2) per time: time (ISO 8601 UTC), net_radiation, sensible,
    latent, storage, ground, anthropogenic, residual (computed where a row lacks it)."""
    path = Path(path)
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(ENERGY_COLUMNS)
        for row in rows:
            missing = [c for c in ENERGY_COLUMNS[1:-1] if c not in row]
            if missing or "time" not in row:
                raise DataError(
                    f"{path.name}: energy-balance row lacks {', '.join(missing) or 'time'}"
                )
            residual = row["residual"] if "residual" in row else _residual(row)
            fluxes = [float(row[c]) for c in ENERGY_COLUMNS[1:-1]] + [float(residual)]
            w.writerow([_iso(row["time"])] + [_flux(v) for v in fluxes])
    return path


def read_energy_balance_csv(path: Path | str) -> list[dict[str, Any]]:
    """The rows of :func:`energy_balance_csv` (time as an ISO string, fluxes as floats)."""
    path = Path(path)
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    if rows and set(ENERGY_COLUMNS) - set(rows[0]):
        raise DataError(f"{path}: expected columns {', '.join(ENERGY_COLUMNS)}")
    return [{k: (v if k == "time" else float(v)) for k, v in r.items()} for r in rows]


def plot_energy_balance(path: Path | str, rows: Sequence[Mapping[str, Any]], *,
                        title: str = "Energy balance, domain mean") -> Path:  # fmt: skip
    """Time series of the domain-mean fluxes (W m-2) against local time, with a legend."""
    import matplotlib.dates as mdates

    path = Path(path)
    times = [_as_datetime(r["time"]).astimezone(LOCAL_TZ) for r in rows]
    styles = {
        "net_radiation": ("net radiation Q*", "#d62728", "-"),
        "anthropogenic": ("anthropogenic QF", "#7f7f7f", "-"),
        "sensible": ("sensible QH", "#ff7f0e", "-"),
        "latent": ("latent QE", "#1f77b4", "-"),
        "storage": ("storage ΔQS", "#8c564b", "-"),
        "ground": ("ground QG", "#9467bd", "--"),
        "residual": ("residual (closure)", "black", ":"),
    }
    fig = _figure((9, 4.2), dpi=110)
    ax = fig.subplots()
    for key, (label, colour, ls) in styles.items():
        vals = [float(r[key]) if key in r else _residual(r) if key == "residual" else math.nan
                for r in rows]  # fmt: skip
        ax.plot(times, vals, ls, color=colour, lw=1.5 if key != "residual" else 1.0, label=label)
    ax.axhline(0.0, color="#999999", lw=0.6)
    ax.set_ylabel("flux (W m$^{-2}$)")
    ax.set_xlabel("local time (Europe/Berlin)")
    ax.set_title(title)
    locator = mdates.AutoDateLocator(minticks=4, maxticks=10, tz=LOCAL_TZ)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=LOCAL_TZ))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path)
    return path
