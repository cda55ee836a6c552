"""Vector layers (any OGR format: GeoJSON, GeoPackage, Shapefile, ...) read into shapely geometries in the
pack's CRS, and written as GeoPackage for QGIS."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import shapely
from pyproj import CRS, Transformer

from twin.errors import DataError


def read_vector(path: Path, crs: str, *, fields: list[str], what: str) -> dict[str, Any]:
    """Read geometries and the named fields, transformed to `crs`.

    Returns {"geometry": array of shapely geometries, field: array, ...}. A missing field or an unknown CRS
    gives a DataError naming the file and the field.
    """
    try:
        meta, _, wkb, values = pyogrio.raw.read(path)
    except Exception as exc:  # pyogrio raises several types for unreadable files
        raise DataError(f"{path}: cannot read {what} as a vector layer: {exc}") from None
    names = list(meta["fields"])
    for f in fields:
        if f not in names:
            raise DataError(
                f"{path}: {what} has no field '{f}'; fields present: {', '.join(names) or 'none'}"
            )
    geoms = shapely.from_wkb(wkb)
    src_crs = meta.get("crs")
    if src_crs is None:
        raise DataError(f"{path}: {what} has no CRS")
    if CRS.from_user_input(src_crs) != CRS.from_user_input(crs):
        t = Transformer.from_crs(src_crs, crs, always_xy=True)
        geoms = shapely.transform(
            geoms, lambda xy: np.column_stack(t.transform(xy[:, 0], xy[:, 1]))
        )
    out: dict[str, Any] = {"geometry": geoms}
    for f in fields:
        out[f] = values[names.index(f)]
    return out


def write_gpkg(
    path: Path, layer: str, crs: str, geometry: np.ndarray, fields: dict[str, Any]
) -> None:
    """Write geometries and attribute columns as a GeoPackage layer."""
    names = list(fields)
    pyogrio.raw.write(
        str(path),
        shapely.to_wkb(geometry),
        [np.asarray(fields[n]) for n in names],
        names,
        layer=layer,
        driver="GPKG",
        crs=crs,
        geometry_type=_geometry_type(geometry),
    )


def _geometry_type(geometry: np.ndarray) -> str:
    """The one OGR geometry type for a column (Polygon promoted to MultiPolygon when mixed)."""
    kinds = set(shapely.get_type_id(geometry).tolist())
    names = {0: "Point", 1: "LineString", 3: "Polygon", 5: "MultiLineString", 6: "MultiPolygon"}
    if kinds <= {3}:
        return "Polygon"
    if kinds <= {3, 6}:
        return "MultiPolygon"
    if kinds <= {1, 5}:
        return "MultiLineString" if 5 in kinds else "LineString"
    if len(kinds) == 1 and kinds <= names.keys():
        return names[kinds.pop()]
    return "Unknown"
