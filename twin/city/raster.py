"""The pack's raster grid and GeoTIFF I/O: every raster product shares one grid in EPSG:25832."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin
from rasterio.warp import Resampling, reproject

from twin.city.pack import DataPack
from twin.errors import DataError


def grid_transform(pack: DataPack) -> rasterio.Affine:
    """Affine transform of the product grid (north-up, origin at the extent's upper-left corner)."""
    xmin, _, _, ymax = pack.extent
    return from_origin(xmin, ymax, pack.resolution, pack.resolution)


def write_geotiff(
    path: Path, array: np.ndarray, pack: DataPack, *, nodata: float | int | None = None
) -> None:
    """Write a single-band, tiled, deflate-compressed GeoTIFF on the pack grid (QGIS opens it as is)."""
    rows, cols = pack.shape
    if array.shape != (rows, cols):
        raise ValueError(f"array shape {array.shape} is not the grid shape {(rows, cols)}")
    write_band(path, array, grid_transform(pack), pack.crs, nodata=nodata)


def write_band(
    path: Path,
    array: np.ndarray,
    transform: rasterio.Affine,
    crs: str,
    *,
    nodata: float | int | None = None,
) -> None:
    """Write a single-band, tiled, deflate-compressed GeoTIFF on any north-up grid (a model's)."""
    rows, cols = array.shape
    profile = {
        "driver": "GTiff",
        "width": cols,
        "height": rows,
        "count": 1,
        "dtype": array.dtype.name,
        "crs": crs,
        "transform": transform,
        "nodata": nodata,
        "compress": "deflate",
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
    }
    if array.dtype.kind == "f":
        profile["predictor"] = 3
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)


def read_to_grid(
    path: Path, pack: DataPack, *, resampling: Resampling, dtype: str, what: str
) -> tuple[np.ndarray, float | None]:
    """Read any GDAL raster and resample it onto the pack grid; return the array and its nodata value.

    Cells the source does not cover get the nodata value. A raster without a CRS is refused.
    """
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise DataError(f"{path}: cannot open {what} raster: {exc}") from None
    with src:
        if src.crs is None:
            raise DataError(f"{path}: {what} raster has no CRS; expected a projected CRS")
        nodata = src.nodata
        if nodata is None:
            nodata = -9999.0 if np.dtype(dtype).kind == "f" else 0
        out = np.full(pack.shape, nodata, dtype=dtype)
        reproject(
            source=rasterio.band(src, 1),
            destination=out,
            dst_transform=grid_transform(pack),
            dst_crs=pack.crs,
            dst_nodata=nodata,
            resampling=resampling,
        )
    return out, nodata


def resample_to(
    path: Path,
    transform: rasterio.Affine,
    shape: tuple[int, int],
    crs: str,
    resampling: Resampling,
    what: str,
) -> np.ndarray:
    """Any GDAL raster resampled onto a north-up grid (``transform``, ``shape``) as float64; cells
    it does not cover, and its nodata cells, are NaN. A model reads the pack's products this way."""
    try:
        src = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise DataError(f"{path}: cannot open the {what} raster: {exc}") from None
    with src:
        if src.crs is None:
            raise DataError(f"{path}: {what} raster has no CRS; expected a projected CRS")
        out = np.full(shape, np.nan, dtype="float64")
        reproject(source=rasterio.band(src, 1), destination=out, dst_transform=transform,
                  dst_crs=crs, src_nodata=src.nodata, dst_nodata=np.nan,
                  resampling=resampling)  # fmt: skip
    return out


def values_at(path: Path, x: np.ndarray, y: np.ndarray, *, clip: bool = False) -> np.ndarray:
    """Band 1 of a GeoTIFF at points in its CRS (the cell containing each point), as floats: NaN for
    nodata, and for points outside the raster unless `clip` takes the nearest edge cell."""
    try:
        with rasterio.open(path) as src:
            z = src.read(1).astype(float)
            nodata = src.nodata
            rows, cols = rasterio.transform.rowcol(src.transform, np.asarray(x), np.asarray(y))
    except rasterio.errors.RasterioIOError as exc:
        raise DataError(f"{path}: cannot read the raster: {exc}") from exc
    rows, cols = np.atleast_1d(np.asarray(rows)), np.atleast_1d(np.asarray(cols))
    if nodata is not None:
        z[z == nodata] = np.nan
    if clip:
        return z[np.clip(rows, 0, z.shape[0] - 1), np.clip(cols, 0, z.shape[1] - 1)]
    inside = (rows >= 0) & (rows < z.shape[0]) & (cols >= 0) & (cols < z.shape[1])
    out = np.full(rows.shape, np.nan)
    out[inside] = z[rows[inside], cols[inside]]
    return out
