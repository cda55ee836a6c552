"""Run outputs: north-up GeoTIFFs (EPSG:25832), budget and hydrograph CSVs, PNG plots, a report."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from twin.groundwater.grid import CRS, Grid

BUDGET_COLUMNS = ("time", "inflow", "outflow", "storage_change", "error")


def write_geotiff(path: Path, grid: Grid, array: np.ndarray) -> None:
    """One float32 band, north-up, NaN as nodata, deflate-compressed (QGIS opens it as is)."""
    import rasterio

    data = grid.north_up(np.asarray(array, dtype="float32"))
    profile = {
        "driver": "GTiff",
        "width": grid.nx,
        "height": grid.ny,
        "count": 1,
        "dtype": "float32",
        "crs": CRS,
        "transform": rasterio.Affine(*grid.transform()),
        "nodata": float("nan"),
        "compress": "deflate",
        "predictor": 3,
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def write_csv(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    """A plain CSV with a header row (UTF-8, '.' decimals)."""
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def _figure(size: tuple[float, float]):
    """A matplotlib Figure drawn by the Agg canvas, without pyplot's global state."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, dpi=110)
    FigureCanvasAgg(fig)
    return fig


def plot_map(
    path: Path, grid: Grid, array: np.ndarray, *, title: str, label: str, cmap: str,
    wells: tuple[np.ndarray, np.ndarray] | None = None,
    pumping: tuple[np.ndarray, np.ndarray] | None = None,
    contours: bool = False,
    symmetric: bool = False,
) -> None:  # fmt: skip
    """A map of a cell field in EPSG:25832 km, optional wells, head contours and colour bar."""
    xmin, ymin, xmax, ymax = grid.extent
    fig = _figure((9, 9 * (ymax - ymin) / (xmax - xmin) + 1.2))
    ax = fig.subplots()
    extent_km = (xmin / 1000, xmax / 1000, ymin / 1000, ymax / 1000)
    limits = {}
    if symmetric and np.isfinite(array).any():
        span = float(np.nanmax(np.abs(array))) or 1.0
        limits = {"vmin": -span, "vmax": span}
    im = ax.imshow(array, origin="lower", extent=extent_km, cmap=cmap, interpolation="nearest",
                   **limits)  # fmt: skip
    if contours and np.isfinite(array).any() and np.nanmax(array) > np.nanmin(array):
        lo, hi = np.nanmin(array), np.nanmax(array)
        step = 0.1 if hi - lo < 2 else 0.5 if hi - lo < 10 else 1.0
        levels = np.arange(np.floor(lo), np.ceil(hi) + step, step)
        cs = ax.contour(grid.xc / 1000, grid.yc / 1000, array, levels=levels, colors="k",
                        linewidths=0.5)  # fmt: skip
        ax.clabel(cs, fmt="%.1f", fontsize=7)
    if wells is not None and len(wells[0]):
        ax.plot(wells[0] / 1000, wells[1] / 1000, ".", color="k", ms=2, label="logger wells")
    if pumping is not None and len(pumping[0]):
        ax.plot(pumping[0] / 1000, pumping[1] / 1000, "v", color="red", ms=7, label="waterworks")
    if (wells is not None and len(wells[0])) or (pumping is not None and len(pumping[0])):
        ax.legend(loc="lower left", fontsize=8)
    ax.set_xlabel("x EPSG:25832 (km)")
    ax.set_ylabel("y EPSG:25832 (km)")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, label=label, shrink=0.8)
    fig.tight_layout()
    fig.savefig(path)


def plot_hydrograph(
    path: Path,
    times: Sequence,
    series: dict[str, np.ndarray],
    *,
    title: str,
    readings: tuple[Sequence, np.ndarray] | None = None,
    ground: float | None = None,
    readings_label: str = "readings",
) -> None:
    """Head over time at one well: model lines, readings as dots, ground level dashed."""
    import matplotlib.dates as mdates

    fig = _figure((8, 3.6))
    ax = fig.subplots()
    for label, values in series.items():
        ax.plot(times, values, label=label, lw=1.4)
    if readings is not None and len(readings[0]):
        ax.plot(readings[0], readings[1], ".", ms=4, color="k", label=readings_label)
    if ground is not None and np.isfinite(ground):
        ax.axhline(ground, ls="--", color="saddlebrown", lw=1, label="ground")
    ax.set_ylabel("head (m a.s.l.)")
    ax.set_title(f"{title} (times UTC)")
    # ticks that suit the span: days for months, hours for a run of a few hours
    locator = mdates.AutoDateLocator(minticks=4, maxticks=9)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    fig.tight_layout()
    fig.savefig(path)
