"""The city's own build steps: products made from the pack's layers alone.

They know nothing of the domains that use them; `twin.app.steps` adds the steps of the other packages
(the textured tileset, the SUMO net) to make the one list `twin data build` runs.
"""

from __future__ import annotations

from functools import partial

import numpy as np
import shapely

from twin.city.boulevards import PRODUCT as BOULEVARDS
from twin.city.boulevards import STEP_VERSION as BOULEVARDS_VERSION
from twin.city.boulevards import build_boulevards
from twin.city.build import Step, StepContext
from twin.city.buildings import (
    SURFACES,
    build_building_rasters,
    build_buildings,
)
from twin.city.catalogue import read_stations, read_wells
from twin.city.dsm import SURFACE, SurfaceReader
from twin.city.streets import build_streets
from twin.city.surface import build_landcover, build_terrain
from twin.city.trees import build_trees
from twin.city.vector import write_gpkg


def build_sensor_catalogue(ctx: StepContext) -> None:
    """sensors.gpkg: wells and climate stations as point layers (validated catalogue)."""
    out = ctx.out("sensors.gpkg")
    for layer, table in (
        ("wells", read_wells(ctx.source("wells"))),
        ("climate_stations", read_stations(ctx.source("climate_stations"))),
    ):
        points = shapely.points(np.column_stack([table["x"], table["y"]]))
        fields = {k: v for k, v in table.items() if k not in ("x", "y")}
        write_gpkg(out, layer, ctx.pack.crs, points, fields)


def city_steps(surface_reader: SurfaceReader | None = None) -> list[Step]:
    """The build steps of the city's own products (terrain, land cover, streets, boulevards,
    buildings and the surface model, trees, sensors). `surface_reader` rasterizes a pack's surface
    layer (twin.tiles.rasterize.surface_on_grid; a pack with that layer needs it)."""
    return [
        Step(
            "terrain",
            build_terrain,
            outputs=("terrain.tif",),
            sources=("terrain",),
            doc="terrain heights on the pack grid",
        ),
        Step(
            "landcover",
            build_landcover,
            outputs=("landcover.tif", "sealed.tif"),
            sources=("landcover",),
            doc="land-cover classes and sealed fraction on the pack grid",
        ),
        Step(
            "streets",
            build_streets,
            outputs=("streets.gpkg",),
            sources=("streets",),
            doc="street and rail centre lines",
        ),
        Step(
            "boulevards",
            build_boulevards,
            outputs=(BOULEVARDS,),
            sources=("boulevards",),
            after=("streets",),
            version=BOULEVARDS_VERSION,
            doc="boulevard cross-sections as band polygons along the street centre lines",
        ),
        Step(
            "buildings",
            build_buildings,
            outputs=("buildings.gpkg", SURFACES),
            sources=("buildings",),
            after=("terrain",),
            doc="building footprints with height and ground height",
        ),
        Step(
            "building_rasters",
            partial(build_building_rasters, surface_reader=surface_reader),
            outputs=("building_height.tif", "building_id.tif", SURFACE),
            sources=("surface",),  # optional: a 3D Tiles mesh whose heights replace the footprints'
            after=("buildings", "terrain"),
            version=2,
            doc="building height and id rasters, the surface model (from the surface layer if any)",
        ),
        Step(
            "trees",
            build_trees,
            outputs=("trees.gpkg", "canopy_height.tif", "canopy_cover.tif"),
            sources=("trees",),
            after=("terrain",),
            doc="tree points with ground height, canopy height and cover rasters",
        ),
        Step(
            "sensors",
            build_sensor_catalogue,
            outputs=("sensors.gpkg",),
            sources=("wells", "climate_stations"),
            doc="sensor catalogue as point layers",
        ),
    ]
