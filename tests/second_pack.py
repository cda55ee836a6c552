"""A second, independent data pack in the official formats a city delivers, for swap-in tests (it has
no blocks layer: its buildings are official).

It covers the two real Geobasis NRW LoD2 tiles (CityGML, from Wesel) and names its fields unlike the
Krefeld pack: land cover is an ALKIS-like vector with German class names mapped by `class_map`, the
terrain a GDAL VRT of two GeoTIFF tiles, the tree register has Baumkataster column names, and its port
gates are found by a different area tag. Everything but the LoD2 tiles is synthetic and written here;
nothing in the package knows this pack, so building it proves that a pack swaps in by pack.toml alone.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import rasterio
from rasterio.transform import from_origin

from twin.geo import utm_to_wgs84

EXTENT = (333000.0, 5724000.0, 337000.0, 5726000.0)  # the two LoD2 tiles' 1 km squares and between
GROUND_M = (
    19.5  # about the ground height of the LoD2 tiles' lowest corners (envelopes: 19.3, 19.6 m)
)

PACK_TOML = """
[pack]
name = "wesel-test"
title = "Swap-in test pack on two real NRW LoD2 tiles"
crs = "EPSG:25832"
extent = [333000.0, 5724000.0, 337000.0, 5726000.0]
resolution = 10.0

[layers.streets]
path = "strassen.osm"
format = "osm"
status = "synthetic"
licence = "CC0-1.0"
source = "test fixture"
gate_area_tag = "landuse=port"

[layers.terrain]
path = "dgm/dgm.vrt"
format = "raster"
status = "synthetic"
licence = "CC0-1.0"
source = "test fixture: two GeoTIFF tiles in a VRT"

[layers.landcover]
path = "nutzung.geojson"
format = "vector"
status = "synthetic"
licence = "CC0-1.0"
source = "test fixture: ALKIS-like actual land use"
class_field = "nutzung"
class_map = {{ "Wohnbaufläche" = 8, "Straßenverkehr" = 2, "Industrie und Gewerbe" = 7, "Hafen" = 7, "Wald" = 10, "Landwirtschaft" = 11 }}
classes = [
  {{ code = 1, name = "building", sealed = 1.0 }},
  {{ code = 2, name = "road", sealed = 0.95 }},
  {{ code = 7, name = "industrial_yard", sealed = 0.85 }},
  {{ code = 8, name = "suburban_residential", sealed = 0.45 }},
  {{ code = 10, name = "forest", sealed = 0.0 }},
  {{ code = 11, name = "farmland", sealed = 0.0 }},
]

[layers.buildings]
path = "{lod2}"
format = "citygml"
status = "official"
licence = "dl-de/zero-2-0"
source = "Geobasis NRW, 3D-Gebäudemodell LoD2 (two unchanged tiles)"

[layers.trees]
path = "baumkataster.csv"
format = "csv"
status = "synthetic"
licence = "CC0-1.0"
source = "test fixture"
id_field = "baumnr"
species_field = "gattung_art"
height_field = "hoehe_m"
crown_field = "kronendurchmesser_m"
x_field = "rechtswert"
y_field = "hochwert"

[layers.wells]
path = "messstellen.csv"
format = "csv"
status = "synthetic"
licence = "CC0-1.0"
source = "test fixture"

[layers.climate_stations]
path = "klimastationen.csv"
format = "csv"
status = "synthetic"
licence = "CC0-1.0"
source = "test fixture"
"""

# Streets: (name, highway, lanes, [(x, y), ...]) in EPSG:25832. The Ringallee crosses the pack from
# border to border (external connections at both ends), the Hafenweg leads to the port area.
STREETS = [
    ("Ringallee", "primary", 2, [(333000, 5725000), (334000, 5725000), (335000, 5725000),
                                 (336000, 5725000), (336500, 5725000), (337000, 5725000)]),
    ("Nordstraße", "secondary", 1, [(334000, 5724000), (334000, 5725000), (334000, 5726000)]),
    ("Mittelstraße", "secondary", 1, [(335000, 5725000), (335000, 5725600)]),
    ("Bahnhofstraße", "secondary", 1, [(336000, 5724000), (336000, 5725000), (336000, 5726000)]),
    ("Hafenweg", "service", 1, [(336500, 5725000), (336500, 5724700), (336500, 5724300),
                                (336500, 5724150)]),
    ("Feldweg", "tertiary", 1, [(333300, 5725000), (333300, 5725600), (334000, 5725600)]),
]  # fmt: skip
SIGNALS = [(334000, 5725000), (335000, 5725000), (336000, 5725000)]
PORT_AREA = [(336250, 5724100), (336900, 5724100), (336900, 5724750), (336250, 5724750)]
PORT_GATE = (336500, 5724700)  # on the Hafenweg, inside the port area: a terminal gate
FARM_GATE = (334000, 5725800)  # on the Nordstraße, outside any port: not a terminal gate
# Bus line B1 along the Ringallee, platforms 8 m north of the carriageway.
BUS_STOPS = [("Westtor", 333600), ("Rathausplatz", 335400), ("Hafen Nord", 336700)]


def _lonlat(x: float, y: float) -> tuple[float, float]:
    lon, lat = utm_to_wgs84(np.array([float(x)]), np.array([float(y)]))
    return float(lon[0]), float(lat[0])


def _ring(xs: list[float], ys: list[float]) -> list[list[float]]:
    pts = [_lonlat(x, y) for x, y in zip(xs, ys, strict=True)]
    return [[round(a, 8), round(b, 8)] for a, b in [*pts, pts[0]]]


def _osm() -> str:
    nodes: dict[tuple[float, float], int] = {}
    tags_of: dict[int, dict[str, str]] = {}

    def node(xy: tuple[float, float], tags: dict[str, str] | None = None) -> int:
        key = (float(xy[0]), float(xy[1]))
        if key not in nodes:
            nodes[key] = len(nodes) + 1
        tags_of.setdefault(nodes[key], {}).update(tags or {})
        return nodes[key]

    for xy in SIGNALS:
        node(xy, {"highway": "traffic_signals"})
    ways = []
    wid = 100
    ring_ways = []
    for name, highway, lanes, pts in STREETS:
        line = list(pts)
        if (
            name == "Nordstraße"
        ):  # the farm gate sits on the way (the port gate is a Hafenweg point)
            line = [*line[:2], FARM_GATE, line[2]]
        refs = [node(p) for p in line]
        for a, b in zip(refs[:-1], refs[1:], strict=True):
            wid += 1
            tags = {"highway": highway, "name": name, "lanes": str(2 * lanes), "maxspeed": "50"}
            if highway == "service":
                tags["hgv"] = "designated"
            ways.append((wid, [a, b], tags))
            if name == "Ringallee":
                ring_ways.append(wid)
    node(PORT_GATE, {"barrier": "gate", "name": "Hafentor"})
    node(FARM_GATE, {"barrier": "gate", "name": "Weidetor"})
    platforms = [node((x, 5725008), {"highway": "bus_stop", "public_transport": "platform",
                                     "bus": "yes", "name": n}) for n, x in BUS_STOPS]  # fmt: skip
    port = [node(p) for p in PORT_AREA]
    wid += 1
    ways.append((wid, [*port, port[0]], {"landuse": "port", "name": "Hafen Wesel (Test)"}))
    out = ['<?xml version="1.0" encoding="UTF-8"?>', '<osm version="0.6" generator="test fixture">']
    for (x, y), nid in nodes.items():
        lon, lat = _lonlat(x, y)
        tags = "".join(f'<tag k="{k}" v="{v}"/>' for k, v in tags_of.get(nid, {}).items())
        out.append(f'  <node id="{nid}" version="1" lat="{lat:.8f}" lon="{lon:.8f}">{tags}</node>')
    for w, refs, tags in ways:
        nds = "".join(f'<nd ref="{r}"/>' for r in refs)
        t = "".join(f'<tag k="{k}" v="{v}"/>' for k, v in tags.items())
        out.append(f'  <way id="{w}" version="1">{nds}{t}</way>')
    members = "".join(f'<member type="node" ref="{p}" role="platform"/>' for p in platforms)
    members += "".join(f'<member type="way" ref="{w}" role=""/>' for w in ring_ways)
    out.append(
        f'  <relation id="900" version="1">{members}<tag k="type" v="route"/>'
        '<tag k="route" v="bus"/><tag k="ref" v="B1"/><tag k="name" v="Bus B1 Westtor - Hafen"/>'
        '<tag k="public_transport:version" v="2"/></relation>'
    )
    out.append("</osm>")
    return "\n".join(out) + "\n"


def _geojson(features: list[tuple[dict, list[list[float]]]]) -> str:
    return json.dumps(
        {
            "type": "FeatureCollection",
            "features": [
                {
                    "type": "Feature",
                    "properties": p,
                    "geometry": {"type": "Polygon", "coordinates": [r]},
                }
                for p, r in features
            ],
        },
        ensure_ascii=False,
    )


def _landuse() -> str:
    x0, y0, x1, y1 = EXTENT
    feats = [
        ({"nutzung": "Landwirtschaft"}, _ring([x0, x1, x1, x0], [y0, y0, y1, y1])),
        ({"nutzung": "Wohnbaufläche"}, _ring([333000, 334200, 334200, 333000],
                                             [5725000, 5725000, 5726000, 5726000])),
        ({"nutzung": "Wohnbaufläche"}, _ring([335800, 337000, 337000, 335800],
                                             [5724750, 5724750, 5725300, 5725300])),
        ({"nutzung": "Hafen"}, _ring(*zip(*PORT_AREA, strict=True))),
        ({"nutzung": "Wald"}, _ring([334400, 335600, 335600, 334400],
                                    [5725200, 5725200, 5725900, 5725900])),
    ]  # fmt: skip
    return _geojson(feats)


def _terrain(folder: Path) -> None:
    """Two 2 x 2 km GeoTIFF tiles (25 m cells) of a plane rising 1 m per km to the east, in one VRT."""
    folder.mkdir(parents=True, exist_ok=True)
    cell, n = 25.0, 80
    sources = []
    for k, x0 in enumerate((333000.0, 335000.0)):
        xs = x0 + (np.arange(n) + 0.5) * cell
        z = np.tile(GROUND_M + 0.001 * (xs - EXTENT[0]), (n, 1)).astype("float32")
        name = f"dgm_{k}.tif"
        with rasterio.open(
            folder / name, "w", driver="GTiff", width=n, height=n, count=1, dtype="float32",
            crs="EPSG:25832", transform=from_origin(x0, EXTENT[3], cell, cell), nodata=-9999.0,
        ) as dst:  # fmt: skip
            dst.write(z, 1)
        sources.append(
            f"""    <SimpleSource>
      <SourceFilename relativeToVRT="1">{name}</SourceFilename><SourceBand>1</SourceBand>
      <SrcRect xOff="0" yOff="0" xSize="{n}" ySize="{n}"/>
      <DstRect xOff="{k * n}" yOff="0" xSize="{n}" ySize="{n}"/>
    </SimpleSource>"""
        )
    srs = rasterio.crs.CRS.from_epsg(25832).to_wkt()
    (folder / "dgm.vrt").write_text(
        f"""<VRTDataset rasterXSize="{2 * n}" rasterYSize="{n}">
  <SRS>{srs.replace("&", "&amp;").replace("<", "&lt;")}</SRS>
  <GeoTransform>{EXTENT[0]}, {cell}, 0.0, {EXTENT[3]}, 0.0, -{cell}</GeoTransform>
  <VRTRasterBand dataType="Float32" band="1">
    <NoDataValue>-9999</NoDataValue>
{chr(10).join(sources)}
  </VRTRasterBand>
</VRTDataset>
""",
        encoding="utf-8",
    )


def _trees() -> str:
    rows = ["baumnr,gattung_art,hoehe_m,kronendurchmesser_m,rechtswert,hochwert"]
    rng = np.random.default_rng(7)
    for i, x in enumerate(range(333100, 336900, 40)):
        h = round(float(rng.uniform(8, 22)), 1)
        rows.append(f"W-{i:04d},Tilia cordata,{h},{round(h * 0.6, 1)},{x},5725018")
    return "\n".join(rows) + "\n"


def write_second_pack(folder: Path, lod2: Path) -> Path:
    """Write the pack into `folder` with its buildings layer pointing at the LoD2 tiles; return pack.toml."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "pack.toml").write_text(
        PACK_TOML.format(lod2=lod2.as_posix()).replace("{{", "{").replace("}}", "}"),
        encoding="utf-8",
    )
    (folder / "strassen.osm").write_text(_osm(), encoding="utf-8")
    _terrain(folder / "dgm")
    (folder / "nutzung.geojson").write_text(_landuse(), encoding="utf-8")
    (folder / "baumkataster.csv").write_text(_trees(), encoding="utf-8")
    (folder / "messstellen.csv").write_text(
        "id,dev_eui,name,x,y,ground_elevation_m,reference_height_m,well_depth_m,"
        "screen_top_m,screen_bottom_m,aquifer,status\n"
        "W-GWM-1,00AA223344556677,Messstelle 1,334500,5724500,19.8,20.3,20,8,18,upper,synthetic\n"
        "W-GWM-2,00AA223344556678,Messstelle 2,336200,5725500,20.9,21.4,25,10,22,upper,synthetic\n",
        encoding="utf-8",
    )
    (folder / "klimastationen.csv").write_text(
        "id,dev_eui,name,x,y,elevation_m,sensor_height_m,kind,status\n"
        "W-KS-1,A0AA223344556677,Station Markt,335000,5725100,20.0,2.0,lorawan,synthetic\n",
        encoding="utf-8",
    )
    return folder / "pack.toml"
