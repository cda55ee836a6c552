"""Street product: the OSM ways with a highway/railway tag as lines in EPSG:25832, for QGIS, scenes and maps."""

from __future__ import annotations

import numpy as np
import shapely

from twin.city.build import StepContext
from twin.city.osm import OsmData, read_osm
from twin.city.vector import write_gpkg
from twin.geo import wgs84_to_utm

FIELDS = ("highway", "railway", "name", "lanes", "maxspeed", "oneway")


def street_lines(osm: OsmData) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """LineStrings (EPSG:25832) and attribute columns of every highway or railway way that is not an area."""
    geoms, cols = [], {"osm_id": [], **{f: [] for f in FIELDS}}
    for wid, (refs, tags) in osm.ways.items():
        if (
            not ("highway" in tags or "railway" in tags)
            or tags.get("area") == "yes"
            or len(refs) < 2
        ):
            continue
        lonlat = osm.way_lonlat(wid)
        x, y = wgs84_to_utm(lonlat[:, 0], lonlat[:, 1])
        geoms.append(shapely.linestrings(np.column_stack([x, y])))
        cols["osm_id"].append(wid)
        for f in FIELDS:
            cols[f].append(tags.get(f, ""))
    return np.array(geoms, dtype=object), {k: np.array(v) for k, v in cols.items()}


def build_streets(ctx: StepContext) -> None:
    """streets.gpkg: street and rail centre lines with their main OSM tags."""
    geoms, cols = street_lines(read_osm(ctx.source("streets")))
    write_gpkg(ctx.out("streets.gpkg"), "streets", ctx.pack.crs, geoms, cols)
