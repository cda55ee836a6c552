"""Building products: the footprint table (with ground height), height/id rasters and extruded meshes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import shapely
from rasterio.features import rasterize

from twin.city.build import StepContext
from twin.city.dsm import SurfaceReader, write_surface
from twin.city.raster import grid_transform, values_at, write_geotiff
from twin.city.vector import read_vector, write_gpkg
from twin.errors import DataError

MAX_HEIGHT_M = 400.0  # taller than any building in the region; larger values are unit errors

# building_surfaces.npz: the real surfaces of buildings that have them (LoD2 sources), as triangles.
# xyz (n, 3) float64 EPSG:25832 m / m DHHN2016; tris (m, 3) int64 into xyz; building (m,) int64 row in
# buildings.gpkg; kind (m,) uint8, one of SURFACE_KINDS. Buildings without surfaces (vector
# footprints) have no triangles there and are extruded from their footprint and height.
SURFACES = "building_surfaces.npz"
SURFACE_KINDS = {"wall": 0, "roof": 1, "ground": 2, "other": 3}


def build_buildings(ctx: StepContext) -> None:
    """buildings.gpkg: footprints in EPSG:25832 with id, height, use, base (ground height, m DHHN2016),
    area; from CityGML also the LoD2 columns and the surfaces (building_surfaces.npz)."""
    layer = ctx.pack.layers["buildings"]
    if layer.format == "citygml":
        _build_lod2(ctx)
        return
    idf, hf, uf = (layer.options[k] for k in ("id_field", "height_field", "use_field"))
    v = read_vector(layer.path, ctx.pack.crs, fields=[idf, hf, uf], what="buildings")
    geoms = shapely.make_valid(
        v["geometry"]
    )  # official footprints sometimes self-touch; keep their area
    ids = np.array([str(i) for i in v[idf]], dtype=object)
    try:
        heights = np.asarray(v[hf], dtype=float)
    except (TypeError, ValueError):
        raise DataError(f"{layer.path}: field '{hf}' must hold numbers (metres)") from None
    bad = ~np.isfinite(heights) | (heights <= 0) | (heights > MAX_HEIGHT_M)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"{layer.path}: building '{ids[i]}' field '{hf}' = {heights[i]}; "
            f"expected a height in metres between 0 and {MAX_HEIGHT_M:.0f}"
        )
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise DataError(f"{layer.path}: field '{idf}' value '{uniq[counts > 1][0]}' is not unique")
    polygonal = np.array([g.geom_type in ("Polygon", "MultiPolygon") for g in geoms])
    if not polygonal.all():
        i = int(np.flatnonzero(~polygonal)[0])
        raise DataError(
            f"{layer.path}: building '{ids[i]}' is a {geoms[i].geom_type}; expected a polygon"
        )
    xmin, ymin, xmax, ymax = ctx.pack.extent
    inside = shapely.intersects(geoms, shapely.box(xmin, ymin, xmax, ymax))
    geoms, ids, heights = geoms[inside], ids[inside], heights[inside]
    uses = np.array([str(u) for u in np.asarray(v[uf])[inside]], dtype=object)
    base = _ground_height(ctx.product("terrain.tif"), geoms)
    write_gpkg(
        ctx.out("buildings.gpkg"),
        "buildings",
        ctx.pack.crs,
        geoms,
        {"id": ids, "height": heights, "use": uses, "base": base, "area": shapely.area(geoms)},
    )
    write_surfaces(
        ctx.out(SURFACES),
        np.zeros((0, 3)),
        np.zeros((0, 3), dtype=np.int64),
        np.zeros(0, dtype=np.int64),
        np.zeros(0, dtype=np.uint8),
    )


def _build_lod2(ctx: StepContext) -> None:
    """The buildings step for CityGML tiles: every building whose footprint meets the extent, its
    base and height from its own surfaces (see twin.city.citygml). Problems are reported through
    the progress; only a source without any readable building in the extent fails the step."""
    from twin.city.citygml import read_citygml  # lxml is needed only for CityGML sources

    layer = ctx.pack.layers["buildings"]
    b = read_citygml(layer.files(), ctx.pack.crs, extent=ctx.pack.extent, progress=ctx.progress)
    for line in b.problems:
        ctx.progress(line)
    if len(b) == 0:
        why = f"; {len(b.problems)} problems, the first: {b.problems[0]}" if b.problems else ""
        raise DataError(
            f"{layer.path}: no building read from {len(b.files)} CityGML file(s) lies in the "
            f"pack extent {list(ctx.pack.extent)}{why}"
        )
    table = b.table()
    geoms = table.pop("geometry")
    write_gpkg(ctx.out("buildings.gpkg"), "buildings", ctx.pack.crs, geoms, table)
    write_surfaces(ctx.out(SURFACES), b.xyz, b.tris, b.building, b.kind)


def write_surfaces(
    path: Path, xyz: np.ndarray, tris: np.ndarray, building: np.ndarray, kind: np.ndarray
) -> None:
    """Write the surfaces product (see SURFACES)."""
    np.savez_compressed(
        path,
        xyz=np.asarray(xyz, dtype=np.float64).reshape(-1, 3),
        tris=np.asarray(tris, dtype=np.int64).reshape(-1, 3),
        building=np.asarray(building, dtype=np.int64),
        kind=np.asarray(kind, dtype=np.uint8),
    )


def read_surfaces(path: Path) -> dict[str, np.ndarray]:
    """The surfaces product as {"xyz", "tris", "building", "kind"} arrays (see SURFACES)."""
    with np.load(path) as z:
        return {k: z[k] for k in ("xyz", "tris", "building", "kind")}


def _ground_height(terrain: Path, geoms: np.ndarray) -> np.ndarray:
    """Lowest terrain height under each footprint's vertices (a building stands on its lowest corner)."""
    coords, index = shapely.get_coordinates(geoms, return_index=True)
    h = values_at(terrain, coords[:, 0], coords[:, 1], clip=True)
    h[np.isnan(h)] = np.inf
    base = np.full(len(geoms), np.inf)
    np.minimum.at(base, index, h)
    if np.isinf(base).any():
        base[np.isinf(base)] = np.nanmedian(np.where(np.isinf(base), np.nan, base))
    return base


def read_buildings(path: Path) -> dict[str, Any]:
    """The buildings product as {"geometry", "id", "height", "use", "base", "area"} arrays."""
    meta, _, wkb, values = pyogrio.raw.read(path)
    out: dict[str, Any] = {"geometry": shapely.from_wkb(wkb)}
    out.update(zip(meta["fields"], values, strict=True))
    return out


def build_building_rasters(ctx: StepContext, surface_reader: SurfaceReader | None = None) -> None:
    """building_height.tif (m above ground, 0 = none), building_id.tif (row in buildings.gpkg + 1)
    and surface.tif (see twin.city.dsm: heights from the surface layer where the pack has one)."""
    b = read_buildings(ctx.product("buildings.gpkg"))
    transform, shape = grid_transform(ctx.pack), ctx.pack.shape
    order = np.argsort(b["height"])  # taller buildings win where footprints share a cell
    height = rasterize(
        ((b["geometry"][i], float(b["height"][i])) for i in order),
        out_shape=shape,
        transform=transform,
        fill=0.0,
        dtype="float32",
    )
    ids = rasterize(
        ((b["geometry"][i], int(i) + 1) for i in order),
        out_shape=shape,
        transform=transform,
        fill=0,
        dtype="int32",
    )
    # the surface layer's heights where a pack has one (read by `surface_reader`, see twin.city.dsm)
    height = write_surface(ctx, height, ids, surface_reader)
    write_geotiff(ctx.out("building_height.tif"), height, ctx.pack, nodata=None)
    write_geotiff(ctx.out("building_id.tif"), ids, ctx.pack, nodata=0)
