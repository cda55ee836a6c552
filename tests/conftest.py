"""Shared fixtures: a tiny, complete data pack written into a temporary folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from twin.geo import utm_to_wgs84

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
REPO = Path(__file__).resolve().parents[1]

# A 1 km x 600 m patch of the centre in EPSG:25832.
EXTENT = (330000.0, 5689000.0, 331000.0, 5689600.0)

PACK_TOML = """
[pack]
name = "mini"
title = "A tiny test pack"
crs = "EPSG:25832"
extent = [330000.0, 5689000.0, 331000.0, 5689600.0]
resolution = 10.0

[layers.streets]
path = "streets.osm"
format = "osm"
status = "synthetic"
licence = "CC0-1.0"
source = "test fixture"

[layers.terrain]
path = "terrain.tif"
format = "raster"
status = "synthetic"
licence = "CC0-1.0"
source = "test fixture"

[layers.landcover]
path = "landcover.tif"
format = "raster"
status = "synthetic"
licence = "CC0-1.0"
source = "test fixture"
classes = [
  { code = 1, name = "building", sealed = 1.0 },
  { code = 2, name = "road", sealed = 0.9 },
  { code = 5, name = "grass", sealed = 0.0 },
]

[layers.blocks]
path = "blocks.geojson"
format = "vector"
status = "synthetic"
licence = "CC0-1.0"
source = "test fixture"

[layers.buildings]
path = "buildings.geojson"
format = "vector"
status = "synthetic"
licence = "CC0-1.0"
source = "test fixture"

[layers.wells]
path = "wells.csv"
format = "csv"
status = "synthetic"
licence = "CC0-1.0"
source = "test fixture"

[layers.climate_stations]
path = "stations.csv"
format = "csv"
status = "synthetic"
licence = "CC0-1.0"
source = "test fixture"
"""


def _lonlat_ring(x0: float, y0: float, w: float, h: float) -> list[list[float]]:
    xs = np.array([x0, x0 + w, x0 + w, x0, x0])
    ys = np.array([y0, y0, y0 + h, y0 + h, y0])
    lon, lat = utm_to_wgs84(xs, ys)
    return [[round(float(a), 8), round(float(b), 8)] for a, b in zip(lon, lat, strict=True)]


def write_mini_pack(folder: Path) -> Path:
    """Write a complete, valid pack with 6 buildings, 2 streets, 2 wells and 1 station; return pack.toml."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pack.toml").write_text(PACK_TOML, encoding="utf-8")
    # terrain: 20 m cells, a plane rising 2 m per km to the east, around 35 m
    t = from_origin(329900.0, 5689700.0, 20.0, 20.0)
    cols, rows = 60, 40
    xs = 329900.0 + (np.arange(cols) + 0.5) * 20.0
    z = np.tile(35.0 + 0.002 * (xs - 330000.0), (rows, 1)).astype("float32")
    with rasterio.open(
        folder / "terrain.tif", "w", driver="GTiff", width=cols, height=rows, count=1,
        dtype="float32", crs="EPSG:25832", transform=t, nodata=-9999.0,
    ) as dst:  # fmt: skip
        dst.write(z, 1)
    lc = np.full((60, 100), 5, dtype="uint8")
    lc[25:35, :] = 2
    with rasterio.open(
        folder / "landcover.tif", "w", driver="GTiff", width=100, height=60, count=1,
        dtype="uint8", crs="EPSG:25832", transform=from_origin(*EXTENT[::3], 10.0, 10.0), nodata=0,
    ) as dst:  # fmt: skip
        dst.write(lc, 1)
    buildings = []
    for i in range(6):
        x0 = 330100.0 + 120.0 * i
        buildings.append(
            {
                "type": "Feature",
                "properties": {"id": f"B{i}", "height": 10.0 + 3 * i, "use": "residential"},
                "geometry": {
                    "type": "Polygon",
                    "coordinates": [_lonlat_ring(x0, 5689100.0, 40, 25)],
                },
            }
        )
    (folder / "buildings.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": buildings}), encoding="utf-8"
    )
    block = {
        "type": "Feature",
        "properties": {"id": "K1", "use": "residential", "storeys_min": 3, "storeys_max": 5},
        "geometry": {"type": "Polygon", "coordinates": [_lonlat_ring(330050, 5689050, 900, 150)]},
    }
    (folder / "blocks.geojson").write_text(
        json.dumps({"type": "FeatureCollection", "features": [block]}), encoding="utf-8"
    )
    lon, lat = utm_to_wgs84(np.array([330000.0, 331000.0, 330500.0]), np.array([5689300.0] * 3))
    nodes = "\n".join(
        f'  <node id="{i + 1}" version="1" lat="{b:.7f}" lon="{a:.7f}"/>'
        for i, (a, b) in enumerate(zip(lon, lat, strict=True))
    )
    (folder / "streets.osm").write_text(
        f"""<?xml version="1.0" encoding="UTF-8"?>
<osm version="0.6" generator="test">
{nodes}
  <way id="10" version="1"><nd ref="1"/><nd ref="3"/>
    <tag k="highway" v="secondary"/><tag k="name" v="Teststraße"/></way>
  <way id="11" version="1"><nd ref="3"/><nd ref="2"/>
    <tag k="highway" v="residential"/><tag k="name" v="Nebenweg"/></way>
</osm>
""",
        encoding="utf-8",
    )
    (folder / "wells.csv").write_text(
        "id,dev_eui,name,x,y,ground_elevation_m,reference_height_m,well_depth_m,"
        "screen_top_m,screen_bottom_m,aquifer,status\n"
        "GWM-1,0011223344556677,Well 1,330200,5689200,35.4,35.9,20,8,18,upper,synthetic\n"
        "GWM-2,0011223344556678,Well 2,330800,5689400,36.6,37.1,25,10,22,upper,synthetic\n",
        encoding="utf-8",
    )
    (folder / "stations.csv").write_text(
        "id,dev_eui,name,x,y,elevation_m,sensor_height_m,kind,status\n"
        "KS-1,A011223344556677,Station 1,330500,5689300,36.0,2.0,lorawan,synthetic\n",
        encoding="utf-8",
    )
    return folder / "pack.toml"


@pytest.fixture
def mini_pack(tmp_path: Path) -> Path:
    """Path of a freshly written tiny pack.toml."""
    return write_mini_pack(tmp_path / "pack")


@pytest.fixture(scope="session")
def krefeld_build() -> Path:
    """The Krefeld data products, built (or brought up to date) once per test session in build/krefeld,
    exactly as `twin data build` does."""
    from twin.app.steps import build_products
    from twin.city.pack import load_pack

    out, _ = build_products(load_pack(REPO / "data" / "krefeld" / "pack.toml"), REPO / "build")
    return out


def _shared_listing() -> dict[str, tuple[int, int]]:
    if not SHARED_DATA.is_dir():
        return {}
    return {
        str(p.relative_to(SHARED_DATA)): (p.stat().st_size, p.stat().st_mtime_ns)
        for p in SHARED_DATA.rglob("*")
        if p.is_file()
    }


def pytest_sessionstart(session: pytest.Session) -> None:
    """Remember the shared reference data as it is: tests must only read it."""
    session.config._shared_before = _shared_listing()  # type: ignore[attr-defined]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any test wrote into the read-only shared reference data."""
    before = getattr(session.config, "_shared_before", None)
    if before is None:
        return
    after = _shared_listing()
    changed = sorted(k for k in after.keys() | before.keys() if after.get(k) != before.get(k))
    if changed:
        print(f"\nthe tests changed files in the shared reference data {SHARED_DATA}: {changed}")
        session.exitstatus = 1
