"""Terrain and land-cover products: source rasters (or a land-use vector) resampled onto the pack grid."""

from __future__ import annotations

import numpy as np
from rasterio.features import rasterize
from rasterio.warp import Resampling

from twin.city.build import StepContext
from twin.city.raster import grid_transform, read_to_grid, write_geotiff
from twin.city.vector import read_vector
from twin.errors import DataError

TERRAIN_NODATA = -9999.0


def build_terrain(ctx: StepContext) -> None:
    """terrain.tif: heights (m DHHN2016) on the pack grid, bilinear from any GDAL raster."""
    src = ctx.source("terrain")
    z, nodata = read_to_grid(
        src, ctx.pack, resampling=Resampling.bilinear, dtype="float32", what="terrain"
    )
    valid = z != nodata
    if not valid.any():
        raise DataError(f"{src}: terrain raster does not cover the pack extent {ctx.pack.extent}")
    z[~valid] = TERRAIN_NODATA
    lo, hi = float(z[valid].min()), float(z[valid].max())
    if lo < -100 or hi > 3000:
        raise DataError(
            f"{src}: terrain heights {lo:.1f}..{hi:.1f} m; expected metres above sea level"
        )
    write_geotiff(ctx.out("terrain.tif"), z, ctx.pack, nodata=TERRAIN_NODATA)


def build_landcover(ctx: StepContext) -> None:
    """landcover.tif (class codes) and sealed.tif (sealed fraction 0..1) on the pack grid."""
    layer = ctx.pack.layers["landcover"]
    classes = layer.options["classes"]
    codes = np.zeros(256, dtype=bool)
    sealed_of = np.full(256, np.nan, dtype="float32")
    for c in classes:
        codes[c["code"]] = True
        sealed_of[c["code"]] = c["sealed"]
    if layer.format == "raster":
        lc, _ = read_to_grid(
            layer.path, ctx.pack, resampling=Resampling.nearest, dtype="uint8", what="land cover"
        )
    else:
        lc = _rasterize_landuse(ctx)
    present = np.unique(lc)
    unknown = [int(v) for v in present if v != 0 and not codes[v]]
    if unknown:
        raise DataError(
            f"{layer.path}: land cover uses class code(s) {unknown} that pack.toml's "
            f"'layers.landcover.classes' does not define"
        )
    write_geotiff(ctx.out("landcover.tif"), lc, ctx.pack, nodata=0)
    sealed = sealed_of[lc]
    write_geotiff(ctx.out("sealed.tif"), sealed, ctx.pack, nodata=float("nan"))


def _rasterize_landuse(ctx: StepContext) -> np.ndarray:
    """Burn a land-use vector (e.g. ALKIS) into class codes through the configured class_map."""
    layer = ctx.pack.layers["landcover"]
    field, class_map = layer.options["class_field"], layer.options["class_map"]
    v = read_vector(layer.path, ctx.pack.crs, fields=[field], what="land use")
    shapes = []
    for geom, value in zip(v["geometry"], v[field], strict=True):
        code = class_map.get(str(value))
        if code is None:
            raise DataError(
                f"{layer.path}: field '{field}' value {value!r} is not in pack.toml's "
                f"'layers.landcover.class_map'"
            )
        shapes.append((geom, int(code)))
    return rasterize(
        shapes, out_shape=ctx.pack.shape, transform=grid_transform(ctx.pack), fill=0, dtype="uint8"
    )
