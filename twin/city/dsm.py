"""The surface model (surface.tif) and the building heights it gives, for packs with a surface layer.

A pack's `[layers.surface]` (format "3dtiles": a tileset.json, e.g. a photogrammetry or LoD2 mesh of
the city) is rasterized onto the pack grid (the highest surface per cell, m DHHN2016) by a
`SurfaceReader` the step list is given (`twin.tiles.rasterize.surface_on_grid`: the city's build
does not import the 3D Tiles package, see `twin.app.steps`). The building height is the surface
less the terrain in the cells of the buildings layer's footprints, 0 elsewhere: what else stands
above the ground (trees, bridges, vehicles in a photogrammetry mesh) is not a building, so shading
and the sky-view factor see trees through the canopy rasters as in every pack, not twice. Without a
surface layer, surface.tif is the terrain plus the footprints' heights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import rasterio

from twin.city.build import BuildError, StepContext
from twin.city.raster import write_geotiff
from twin.errors import DataError

SURFACE = "surface.tif"
NODATA = -9999.0
# (tileset, extent W S E N, cell size, crs, max_error=, progress=) -> heights (rows, cols), NaN none
SurfaceReader = Callable[..., np.ndarray]


def _terrain(ctx: StepContext) -> np.ndarray:
    """terrain.tif of the build as float64, NaN where it has no data."""
    with rasterio.open(ctx.product("terrain.tif")) as src:
        z = src.read(1).astype(np.float64)
        if src.nodata is not None:
            z[z == src.nodata] = np.nan
    return z


def surface_from_layer(ctx: StepContext, reader: SurfaceReader | None) -> np.ndarray:
    """The surface layer rasterized on the pack grid (NaN where no tile covers a cell)."""
    layer, pack = ctx.pack.layers["surface"], ctx.pack
    if reader is None:
        raise BuildError(
            f"layer 'surface' ({layer.path}): these build steps have no 3D Tiles reader; "
            "build the products with `twin data build`"
        )
    ctx.progress(f"surface: rasterizing {layer.path}")
    extent: Sequence[float] = pack.extent
    top = reader(Path(layer.path), extent, pack.resolution, pack.crs,
                 max_error=layer.options.get("max_error"), progress=ctx.progress)  # fmt: skip
    if top.shape != pack.shape:
        raise DataError(
            f"{layer.path}: rasterized to {top.shape} cells, the pack grid is {pack.shape}"
        )
    if not np.isfinite(top).any():
        raise DataError(
            f"{layer.path}: the tileset covers no cell of the pack extent {pack.extent}"
        )
    return top


def write_surface(
    ctx: StepContext, footprint_height: np.ndarray, ids: np.ndarray, reader: SurfaceReader | None
) -> np.ndarray:
    """Write surface.tif and return the building heights (m above ground, 0 none): from the surface
    layer in the footprints' cells where the pack has one, else the footprints' own heights."""
    terrain = _terrain(ctx)
    if "surface" in ctx.pack.layers:
        dsm = surface_from_layer(ctx, reader)
        excess = np.nan_to_num(dsm - terrain, nan=0.0)
        height = np.where(ids > 0, np.maximum(excess, 0.0), 0.0).astype("float32")
    else:
        dsm = terrain + footprint_height
        height = footprint_height
    out = np.where(np.isfinite(dsm), dsm, NODATA).astype("float32")
    write_geotiff(ctx.out(SURFACE), out, ctx.pack, nodata=NODATA)
    return height
