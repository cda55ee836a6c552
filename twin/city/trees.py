"""Tree products: the pack's tree register (a Baumkataster-like CSV) as points, and canopy rasters.

trees.gpkg holds one point per tree with species, height, crown diameter and ground height; the rasters
on the pack grid give the highest crown over each cell (canopy_height.tif, m; 0 where none) and the
share of the cell under crowns (canopy_cover.tif, 0..1, from crown discs sampled on a finer grid).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import shapely

from twin.city.build import StepContext
from twin.city.pack import DataPack
from twin.city.raster import values_at, write_geotiff
from twin.errors import DataError

HEIGHT_RANGE_M = (
    1.0,
    50.0,
)  # taller than any tree in the region; smaller is a shrub or a unit error
CROWN_RANGE_M = (0.5, 40.0)
SUPERSAMPLE = 10  # crown discs are sampled at 10 x 10 points per cell for the cover fraction
_BAND_ROWS = 128  # cells per band of the fine sampling grid (bounds its memory on large extents)

# field option of [layers.trees] -> column of the table read_trees returns
_FIELDS = {
    "id_field": "id",
    "species_field": "species",
    "height_field": "height",
    "crown_field": "crown_diameter",
    "x_field": "x",
    "y_field": "y",
}
_NUMERIC = ("height", "crown_diameter", "x", "y")


def read_trees(path: Path, options: dict[str, Any]) -> dict[str, np.ndarray]:
    """Read and validate a tree register; field names come from the layer options (pack.toml).

    Returns columns id, species (str) and height, crown_diameter, x, y (float, EPSG:25832 m). A missing
    field, a bad number, a height or crown out of range or a repeated id is a DataError naming the file,
    the line, the tree and the field. (Own reader: twin.city.catalogue's tables have fixed column names
    and a DevEUI, which a tree register has not.)
    """
    names = {col: str(options.get(opt, col)) for opt, col in _FIELDS.items()}
    try:
        with Path(path).open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [names[c] for c in names if names[c] not in header]
            if missing:
                raise DataError(
                    f"{path}: tree register lacks field(s) {', '.join(missing)}; "
                    f"fields present: {', '.join(header) or 'none'}"
                )
            rows = list(reader)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the tree register: {exc}") from None
    out: dict[str, list[Any]] = {c: [] for c in names}
    first_line: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        tid = (row.get(names["id"]) or "").strip()
        where = f"{path}: line {line}, tree '{tid}'"
        if not tid:
            raise DataError(f"{path}: line {line}, field '{names['id']}': the tree has no id")
        if tid in first_line:
            raise DataError(
                f"{where}, field '{names['id']}': id appears twice (first on line {first_line[tid]})"
            )
        first_line[tid] = line
        out["id"].append(tid)
        out["species"].append((row.get(names["species"]) or "").strip())
        for col in _NUMERIC:
            raw = (row.get(names[col]) or "").strip()
            try:
                val = float(raw)
            except ValueError:
                val = float("nan")
            if not np.isfinite(val):
                raise DataError(f"{where}, field '{names[col]}': expected a number, got {raw!r}")
            out[col].append(val)
        for col, (lo, hi) in (("height", HEIGHT_RANGE_M), ("crown_diameter", CROWN_RANGE_M)):
            val = out[col][-1]
            if not lo <= val <= hi:
                raise DataError(
                    f"{where}, field '{names[col]}' = {val:g}; expected {lo:g} to {hi:g} m"
                )
    return {c: np.array(v, dtype=float if c in _NUMERIC else object) for c, v in out.items()}


def inside_extent(trees: dict[str, np.ndarray], extent: tuple[float, ...]) -> np.ndarray:
    """Mask of the trees whose trunk stands inside the extent (xmin <= x < xmax, ymin < y <= ymax)."""
    xmin, ymin, xmax, ymax = extent
    x, y = trees["x"], trees["y"]
    return (x >= xmin) & (x < xmax) & (y > ymin) & (y <= ymax)


def canopy_rasters(
    pack: DataPack, x: np.ndarray, y: np.ndarray, height: np.ndarray, crown: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(canopy height, canopy cover) on the pack grid from crown discs of diameter `crown` at (x, y).

    A cell's cover is the share of its SUPERSAMPLE x SUPERSAMPLE sample points under any crown
    (overlapping crowns count once); its height is the tallest tree whose crown covers a sample point.
    """
    rows, cols = pack.shape
    res = pack.resolution
    xmin, _, _, ymax = pack.extent
    s = SUPERSAMPLE
    top = np.zeros((rows, cols), dtype="float32")
    cover = np.zeros((rows, cols), dtype="float32")
    r = np.asarray(crown, dtype=float) / 2.0
    # fine sample points: columns j at xmin + (j + 0.5) * res / s, rows i at ymax - (i + 0.5) * res / s
    fc0 = np.floor((x - r - xmin) / res * s).astype(int)
    fc1 = np.ceil((x + r - xmin) / res * s).astype(int)
    fr0 = np.floor((ymax - (y + r)) / res * s).astype(int)
    fr1 = np.ceil((ymax - (y - r)) / res * s).astype(int)
    order = np.argsort(fr0, kind="stable")
    for b0 in range(0, rows, _BAND_ROWS):
        b1 = min(b0 + _BAND_ROWS, rows)
        lo, hi = b0 * s, b1 * s
        fine = np.zeros(((b1 - b0) * s, cols * s), dtype=bool)
        hit = order[(fr1[order] > lo) & (fr0[order] < hi)]
        for k in hit:
            i0, i1 = max(fr0[k], lo), min(fr1[k], hi)
            j0, j1 = max(fc0[k], 0), min(fc1[k], cols * s)
            if i0 >= i1 or j0 >= j1:
                continue
            yy = ymax - (np.arange(i0, i1) + 0.5) * res / s
            xx = xmin + (np.arange(j0, j1) + 0.5) * res / s
            disc = (xx[None, :] - x[k]) ** 2 + (yy[:, None] - y[k]) ** 2 <= r[k] ** 2
            if not disc.any():
                continue
            fine[i0 - lo : i1 - lo, j0:j1] |= disc
            # cells touched: reduce the disc window to cells (any sample point covered)
            ci, cj = np.nonzero(disc)
            cr = (ci + i0) // s
            cc = (cj + j0) // s
            np.maximum.at(top, (cr, cc), np.float32(height[k]))
        cover[b0:b1] = fine.reshape(b1 - b0, s, cols, s).mean(axis=(1, 3))
    return top, cover


def build_trees(ctx: StepContext) -> None:
    """trees.gpkg and the canopy rasters; a pack without a trees layer gets empty products."""
    pack = ctx.pack
    if "trees" in pack.layers:
        layer = pack.layers["trees"]
        trees = read_trees(layer.path, layer.options)
        keep = inside_extent(trees, pack.extent)
        dropped = int((~keep).sum())
        trees = {k: v[keep] for k, v in trees.items()}
        ctx.progress(f"trees: {keep.sum()} read, {dropped} outside the extent dropped")
    else:
        trees = {c: np.zeros(0, dtype=float if c in _NUMERIC else object) for c in _FIELDS.values()}
    x, y = trees["x"], trees["y"]
    base = values_at(ctx.product("terrain.tif"), x, y, clip=True) if len(x) else np.zeros(0, float)
    fields = {
        "id": trees["id"].astype(str),
        "species": trees["species"].astype(str),
        "height": trees["height"],
        "crown_diameter": trees["crown_diameter"],
        "base": base,
    }
    # written here, not with twin.city.vector.write_gpkg: that infers the geometry type from the
    # geometries, and a pack without trees has none (the layer must still be a point layer)
    pyogrio.raw.write(
        str(ctx.out("trees.gpkg")),
        shapely.to_wkb(shapely.points(np.column_stack([x, y])).reshape(-1)),
        list(fields.values()),
        list(fields),
        layer="trees",
        driver="GPKG",
        crs=pack.crs,
        geometry_type="Point",
    )
    top, cover = canopy_rasters(pack, x, y, trees["height"], trees["crown_diameter"])
    write_geotiff(ctx.out("canopy_height.tif"), top, pack)
    write_geotiff(ctx.out("canopy_cover.tif"), cover, pack)
