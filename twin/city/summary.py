"""A short summary of a city's built data products: area, buildings, streets, sensors, land cover."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import rasterio
import shapely

from twin.city.buildings import read_buildings
from twin.city.pack import DataPack

DRIVABLE = {
    "motorway", "motorway_link", "trunk", "trunk_link", "primary", "primary_link", "secondary",
    "secondary_link", "tertiary", "tertiary_link", "residential", "unclassified", "service",
    "living_street",
}  # fmt: skip


def summarize(pack: DataPack, build_dir: Path) -> dict[str, Any]:
    """Figures a person checks first after a build, read from the products themselves."""
    b = read_buildings(build_dir / "buildings.gpkg")
    _, _, wkb, values = pyogrio.raw.read(build_dir / "streets.gpkg", columns=["highway"])
    lines = shapely.from_wkb(wkb)
    highway = values[0].astype(str)
    lengths = shapely.length(lines)
    drivable = np.isin(highway, list(DRIVABLE))
    wells = pyogrio.read_info(build_dir / "sensors.gpkg", layer="wells")["features"]
    stations = pyogrio.read_info(build_dir / "sensors.gpkg", layer="climate_stations")["features"]
    with rasterio.open(build_dir / "sealed.tif") as src:
        sealed = src.read(1)
    with rasterio.open(build_dir / "terrain.tif") as src:
        z = src.read(1, masked=True)
    uses, counts = np.unique(b["use"].astype(str), return_counts=True)
    return {
        "pack": pack.name,
        "extent": list(pack.extent),
        "area_km2": round(pack.area_km2, 3),
        "grid": {"rows": pack.shape[0], "cols": pack.shape[1], "cell_m": pack.resolution},
        "terrain_m": [round(float(z.min()), 2), round(float(z.max()), 2)],
        "sealed_share": round(float(np.nanmean(sealed)), 3),
        "buildings": int(len(b["id"])),
        "building_footprint_km2": round(float(np.sum(b["area"])) / 1e6, 3),
        "buildings_by_use": {str(u): int(c) for u, c in zip(uses, counts, strict=True)},
        "streets": int(np.count_nonzero(highway != "")),
        "street_km": round(float(lengths[highway != ""].sum()) / 1000, 1),
        "drivable_km": round(float(lengths[drivable].sum()) / 1000, 1),
        "wells": int(wells),
        "climate_stations": int(stations),
    }


def format_summary(s: dict[str, Any]) -> str:
    """The summary as a few readable lines."""
    uses = ", ".join(
        f"{n} {u}" for u, n in sorted(s["buildings_by_use"].items(), key=lambda kv: -kv[1])
    )
    return "\n".join(
        [
            f"City            {s['pack']}: {s['area_km2']:.1f} km² "
            f"({s['grid']['cols']} x {s['grid']['rows']} cells of {s['grid']['cell_m']:g} m)",
            f"Terrain         {s['terrain_m'][0]:.1f} .. {s['terrain_m'][1]:.1f} m a.s.l.; "
            f"sealed share {100 * s['sealed_share']:.0f} %",
            f"Buildings       {s['buildings']} ({s['building_footprint_km2']:.2f} km² footprint): {uses}",
            f"Streets         {s['streets']} ways, {s['street_km']:.1f} km "
            f"({s['drivable_km']:.1f} km drivable)",
            f"Sensors         {s['wells']} ground-water wells, {s['climate_stations']} climate stations",
        ]
    )
