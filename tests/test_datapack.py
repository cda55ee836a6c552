"""Checks of the Krefeld data pack in data/krefeld: stated coordinates honoured, a sound street network that
netconvert reads, sane rasters and sensor tables, valid and reproducible buildings, a reproducible pack."""

from __future__ import annotations

import csv
import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
import sumolib
from pyproj import Transformer
from shapely.geometry import LineString, Point, Polygon

REPO = Path(__file__).resolve().parents[1]
PACK = REPO / "data" / "krefeld"
SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
POINTS_CSV = SHARED / "krefeld" / "points.csv"

_TO_UTM = Transformer.from_crs("EPSG:4326", "EPSG:25832", always_xy=True)

# Each row of points.csv -> the pack features it names: (kind, name). Kinds: "street" (highway ways with
# that name), "square" / "area" (closed ways with that name), "station" (railway=station node with that
# name), "climate_station" (row id in sensors/climate_stations.csv). A new row must be added here.
POINT_FEATURES = {
    "Krefeld Hauptbahnhof": [("station", "Krefeld Hbf")],
    "Am Hauptbahnhof 5 (Fachbereich Ordnung)": [("street", "Am Hauptbahnhof")],
    "Parkhaus Hauptbahnhof/Cinemaxx (Hansastraße 28)": [("street", "Hansastraße")],
    "Westwall 143 (Parkhaus am Rathaus P1 entrance)": [("street", "Westwall")],
    "Rathaus (Von-der-Leyen-Platz 1)": [("square", "Von-der-Leyen-Platz")],
    "Kaiser Wilhelm Museum (Joseph-Beuys-Platz 1)": [("square", "Joseph-Beuys-Platz")],
    "Königstraße 146 (Parkhaus P3)": [("street", "Königstraße")],
    "Königstraße 45 (Parkhaus Galeria Kaufhof P7)": [("street", "Königstraße")],
    "Rheinstraße 138 (Standesamt)": [("street", "Rheinstraße")],
    "Theaterplatz 1": [("square", "Theaterplatz")],
    "Rheinhafen Krefeld (infobox)": [("area", "Rheinhafen Krefeld")],
    "Rheinhafen Krefeld (KuLaDig object KLD-328356)": [("area", "Rheinhafen Krefeld")],
    "Bahnhof Krefeld-Uerdingen P+R (Bahnhofstraße)": [
        ("station", "Krefeld-Uerdingen"),
        ("street", "Bahnhofstraße"),
    ],
    "Uerdinger Heimatmuseum (Am Zollhof 2)": [("street", "Am Zollhof")],
    "Uerdingen Am Marktplatz 1": [("street", "Am Marktplatz")],
    "DWD station 05064 Tönisvorst (nearest DWD hourly-temperature station)": [
        ("climate_station", "DWD-05064")
    ],
}
POINT_TOLERANCE_M = 50.0  # geocoded addresses sit on building fronts, not on the street axis


def utm(lon: float, lat: float) -> tuple[float, float]:
    x, y = _TO_UTM.transform(lon, lat)
    return float(x), float(y)


# ------------------------------------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def config() -> dict:
    return tomllib.loads((PACK / "pack.toml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def extent(config) -> tuple[float, float, float, float]:
    return tuple(float(v) for v in config["pack"]["extent"])


@pytest.fixture(scope="module")
def osm() -> dict:
    """streets.osm parsed with the standard library; coordinates projected to EPSG:25832."""
    root = ET.parse(PACK / "streets.osm").getroot()
    nodes, node_tags, ways = {}, {}, []
    for n in root.iter("node"):
        nodes[n.get("id")] = utm(float(n.get("lon")), float(n.get("lat")))
        node_tags[n.get("id")] = {t.get("k"): t.get("v") for t in n.iter("tag")}
    for w in root.iter("way"):
        refs = [nd.get("ref") for nd in w.iter("nd")]
        ways.append((w.get("id"), refs, {t.get("k"): t.get("v") for t in w.iter("tag")}))
    return {"root": root, "nodes": nodes, "node_tags": node_tags, "ways": ways}


def street_lines(osm: dict, name: str) -> list[LineString]:
    return [
        LineString([osm["nodes"][r] for r in refs])
        for _, refs, tags in osm["ways"]
        if "highway" in tags and tags.get("name") == name
    ]


def area(osm: dict, **match: str) -> Polygon:
    found = [
        Polygon([osm["nodes"][r] for r in refs])
        for _, refs, tags in osm["ways"]
        if refs[0] == refs[-1] and all(tags.get(k) == v for k, v in match.items())
    ]
    assert len(found) == 1, f"expected one closed way with {match}, found {len(found)}"
    return found[0]


def station(osm: dict, name: str) -> Point:
    found = [
        Point(osm["nodes"][i])
        for i, tags in osm["node_tags"].items()
        if tags.get("railway") == "station" and tags.get("name") == name
    ]
    assert len(found) == 1, f"expected one railway=station node named {name}"
    return found[0]


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def author():
    """data/krefeld/author.py imported as a module (it is a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("krefeld_author", PACK / "author.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def terrain():
    with rasterio.open(PACK / "terrain.tif") as src:
        return src.read(1), src.transform, src.nodata


def terrain_at(terrain, x: float, y: float) -> float:
    z, transform, _ = terrain
    row, col = rasterio.transform.rowcol(transform, x, y)
    return float(z[row, col])


# ------------------------------------------------------------------------------------------------ points
def test_every_stated_point_lies_at_its_feature(osm):
    """Each row of points.csv is within 50 m of (or inside) the pack feature it names."""
    if not POINTS_CSV.exists():
        pytest.skip(f"shared reference data not found at {POINTS_CSV}")
    climate = {r["id"]: r for r in read_csv(PACK / "sensors" / "climate_stations.csv")}
    problems = []
    for row in read_csv(POINTS_CSV):
        features = POINT_FEATURES.get(row["name"])
        if features is None:
            problems.append(f"{row['name']!r}: no feature mapped in POINT_FEATURES")
            continue
        p = Point(utm(float(row["lon"]), float(row["lat"])))
        for kind, name in features:
            if kind == "street":
                lines = street_lines(osm, name)
                d = min((line.distance(p) for line in lines), default=np.inf)
            elif kind in ("square", "area"):
                d = area(osm, name=name).distance(p)
            elif kind == "station":
                d = station(osm, name).distance(p)
            else:
                r = climate[name]
                d = Point(float(r["x"]), float(r["y"])).distance(p)
            if not d <= POINT_TOLERANCE_M:
                problems.append(f"{row['name']!r}: {d:.0f} m from {kind} {name!r}")
    assert not problems, "; ".join(problems)


# ------------------------------------------------------------------------------------------------ streets
def test_osm_file_is_well_formed(osm, extent):
    """OSM 0.6 with bounds; every element versioned and stamped; ways refer to known nodes."""
    root = osm["root"]
    assert root.get("version") == "0.6"
    b = root.find("bounds")
    assert b is not None
    for el in [*root.iter("node"), *root.iter("way")]:
        assert el.get("version") == "1" and el.get("timestamp"), el.get("id")
    ids = [n.get("id") for n in root.iter("node")]
    assert len(ids) == len(set(ids))
    for wid, refs, _ in osm["ways"]:
        assert len(refs) >= 2 and all(r in osm["nodes"] for r in refs), wid
    lat = [float(n.get("lat")) for n in root.iter("node")]
    lon = [float(n.get("lon")) for n in root.iter("node")]
    assert float(b.get("minlat")) <= min(lat) and max(lat) <= float(b.get("maxlat"))
    assert float(b.get("minlon")) <= min(lon) and max(lon) <= float(b.get("maxlon"))
    xmin, ymin, xmax, ymax = extent
    for x, y in osm["nodes"].values():  # everything inside the extent (0.5 m for rounding)
        assert xmin - 0.5 <= x <= xmax + 0.5 and ymin - 0.5 <= y <= ymax + 0.5


def test_walls_form_a_closed_ring_round_koenigstrasse(osm):
    """Four Wälle, corner nodes shared, enclose Königstraße; Ostwall 1,200 m +- 100 m, ends at the Hbf."""
    walls = ("Westwall", "Nordwall", "Ostwall", "Südwall")
    ends = {}
    for name in walls:  # a wall may be split into ways (route relations): one unbranched chain
        pieces = [refs for _, refs, tags in osm["ways"] if tags.get("name") == name]
        degree = Counter(n for refs in pieces for n in (refs[0], refs[-1]))
        ends[name] = {n for n, k in degree.items() if k == 1}
        assert len(ends[name]) == 2 and set(degree.values()) <= {1, 2}, f"{name}: one chain"
    corner_use = Counter(n for e in ends.values() for n in e)
    assert len(corner_use) == 4 and set(corner_use.values()) == {2}, "corners must be shared nodes"
    # walk the ring: Westwall -> ... must return to the start through all four
    order, current = ["Westwall"], ends["Westwall"]
    node = sorted(current)[0]
    while len(order) < 4:
        node = next(iter(ends[order[-1]] - {node}))
        nxt = [w for w in walls if w not in order and node in ends[w]]
        assert len(nxt) == 1
        order.append(nxt[0])
    assert ends[order[-1]] & ends[order[0]]
    lines = [shapely.line_merge(shapely.union_all(street_lines(osm, w))) for w in walls]
    ring = shapely.polygonize(lines).geoms[0]
    assert ring.is_valid and ring.area > 0.5e6  # ~600 m x 1,200 m
    for line in street_lines(osm, "Königstraße"):
        assert ring.buffer(1.0).contains(line)
    ostwall = lines[walls.index("Ostwall")]
    assert ostwall.length == pytest.approx(1200.0, abs=100.0)
    (x0, y0), (x1, y1) = ostwall.coords[0], ostwall.coords[-1]
    south = Point((x0, y0) if y0 < y1 else (x1, y1))
    assert south.distance(station(osm, "Krefeld Hbf")) <= 150.0
    bearing = np.degrees(np.arctan2(abs(x1 - x0), abs(y1 - y0)))
    assert bearing < 20.0, "the Ostwall runs north-south"


def test_harbour_basin_length_and_side(osm):
    """The basin is about 3.5 km (+- 0.5 km) long, lies west of the Rhine, inside the port area."""
    basin = area(osm, water="basin")
    river = area(osm, water="river")
    port = area(osm, name="Rheinhafen Krefeld", industrial="port")
    rect = np.asarray(basin.minimum_rotated_rectangle.exterior.coords)
    length = max(np.hypot(*(rect[1] - rect[0])), np.hypot(*(rect[2] - rect[1])))
    assert length == pytest.approx(3500.0, abs=500.0)
    # shared bank vertices are rounded to 1e-7 degrees (about 1 cm): allow a 2 cm sliver along it
    assert basin.intersection(river).area < 0.02 * basin.length
    for x, y in basin.exterior.coords:  # river only east of each basin vertex (1 m for rounding)
        cut = river.intersection(LineString([(x - 20000.0, y), (x + 20000.0, y)]))
        if not cut.is_empty:
            assert cut.bounds[0] >= x - 1.0
    c = basin.centroid
    cut = river.intersection(LineString([(c.x, c.y), (c.x + 5000.0, c.y)]))
    assert not cut.is_empty, "the Rhine must lie east of the basin"
    assert port.buffer(1.0).intersection(basin).area > 0.8 * basin.area


def _netconvert() -> str:
    exe = Path(sys.executable).parent / "netconvert"
    if exe.exists():
        return str(exe)
    found = shutil.which("netconvert")
    if found is None:
        pytest.skip("netconvert (eclipse-sumo) not installed")
    return found


def test_netconvert_reads_streets_with_signals_bus_and_bike_lanes(osm, tmp_path):
    """netconvert imports streets.osm; signal nodes become traffic lights; bus, bike and tram lanes exist."""
    out = tmp_path / "net.net.xml"
    cmd = [_netconvert(), "--osm-files", str(PACK / "streets.osm"), "-o", str(out)]
    cmd += ["--osm.bike-access", "--osm.lane-access"]  # bike lanes and bus:lanes need these options
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    net = sumolib.net.readNet(str(out))
    assert len(net.getTrafficLights()) > 0
    signals = [i for i, t in osm["node_tags"].items() if t.get("highway") == "traffic_signals"]
    for i in signals:
        assert net.hasNode(i) and net.getNode(i).getType() == "traffic_light", i
    way_name = {wid: tags.get("name") for wid, _, tags in osm["ways"]}

    def lanes_of(name):
        return [
            lane
            for e in net.getEdges()
            if way_name.get(e.getID().lstrip("-").split("#")[0]) == name
            for lane in e.getLanes()
        ]

    def bus_only(lane):
        return lane.allows("bus") and not lane.allows("passenger")

    def bike_only(lane):
        return lane.allows("bicycle") and not lane.allows("passenger")

    assert any(bus_only(lane) for lane in lanes_of("Ostwall"))
    assert any(bus_only(lane) for lane in lanes_of("Nordwall"))
    assert any(bike_only(lane) for lane in lanes_of("Westwall"))
    assert any(lane.allows("tram") for lane in lanes_of("Rheinstraße"))
    assert any(lane.allows("rail") for e in net.getEdges() for lane in e.getLanes())


# ------------------------------------------------------------------------------------------------ rasters
def test_terrain_raster(osm, extent, terrain):
    """EPSG:25832, 25 m float32, covers the extent; centre 38-40 m, water 28-29 m, dikes about 33 m."""
    with rasterio.open(PACK / "terrain.tif") as src:
        assert src.crs.to_epsg() == 25832
        assert src.res == (25.0, 25.0) and src.dtypes[0] == "float32"
        assert src.nodata is not None and src.profile["compress"] == "deflate"
        b = src.bounds
    xmin, ymin, xmax, ymax = extent
    assert b.left <= xmin and b.bottom <= ymin and b.right >= xmax and b.top >= ymax
    z, _, nodata = terrain
    valid = z[z != nodata]
    assert valid.size == z.size
    assert valid.min() >= 27.0 and valid.max() <= 42.0
    koenig = street_lines(osm, "Königstraße")[0]
    for s in np.linspace(0.0, 1.0, 5):
        p = koenig.interpolate(s, normalized=True)
        assert 38.0 - 0.5 <= terrain_at(terrain, p.x, p.y) <= 40.0 + 0.5  # stated ~38-40 m
    river, basin = area(osm, water="river"), area(osm, water="basin")
    for poly in (river, basin):
        p = poly.representative_point()
        assert 28.0 - 0.2 <= terrain_at(terrain, p.x, p.y) <= 29.0 + 0.2


def test_terrain_has_dikes_along_the_rhine(author, terrain):
    """Along every dike crest line the 3x3 cells round each vertex peak at 33 m (-0.5 m for the grid)."""
    z, transform, _ = terrain
    for line in author.DIKES:
        for lat, lon in line:
            x, y = utm(lon, lat)
            r, c = rasterio.transform.rowcol(transform, x, y)
            window = z[max(r - 1, 0) : r + 2, max(c - 1, 0) : c + 2]
            assert 32.5 <= window.max() <= 33.0 + 1e-3, (lat, lon, window.max())


def test_landcover_raster(config, osm, extent):
    """EPSG:25832, 10 m uint8, nodata 0, only codes from the class table; water, port and buildings in place."""
    classes = {c["name"]: c["code"] for c in config["layers"]["landcover"]["classes"]}
    for c in config["layers"]["landcover"]["classes"]:
        assert 0.0 <= c["sealed"] <= 1.0
    with rasterio.open(PACK / "landcover.tif") as src:
        assert src.crs.to_epsg() == 25832 and src.res == (10.0, 10.0)
        assert src.dtypes[0] == "uint8" and src.nodata == 0
        lc, transform, b = src.read(1), src.transform, src.bounds
    xmin, ymin, xmax, ymax = extent
    assert b.left <= xmin and b.bottom <= ymin and b.right >= xmax and b.top >= ymax
    assert set(np.unique(lc).tolist()) <= set(classes.values())

    def code_at(p):
        r, c = rasterio.transform.rowcol(transform, p.x, p.y)
        return int(lc[r, c])

    assert code_at(area(osm, water="river").representative_point()) == classes["water"]
    assert code_at(area(osm, water="basin").representative_point()) == classes["water"]
    port = area(osm, name="Rheinhafen Krefeld", industrial="port")
    rows, cols = np.indices(lc.shape)
    xs, ys = rasterio.transform.xy(transform, rows.ravel(), cols.ravel())
    in_port = shapely.contains_xy(port, np.asarray(xs), np.asarray(ys)).reshape(lc.shape)
    port_codes = Counter(lc[in_port].tolist())
    assert (
        port_codes[classes["industrial_yard"]] + port_codes[classes["building"]]
        > 0.4 * in_port.sum()
    )
    assert (lc == classes["building"]).sum() > 1000  # thousands of footprints at 10 m


# ------------------------------------------------------------------------------------------------ sensors
WELL_COLUMNS = [
    "id",
    "dev_eui",
    "name",
    "x",
    "y",
    "ground_elevation_m",
    "reference_height_m",
    "well_depth_m",
    "screen_top_m",
    "screen_bottom_m",
    "aquifer",
    "status",
]
STATION_COLUMNS = [
    "id",
    "dev_eui",
    "name",
    "x",
    "y",
    "elevation_m",
    "sensor_height_m",
    "kind",
    "status",
]


def test_sensor_tables(extent, terrain):
    """Both CSVs parse; ids and dev_euis unique; inside the extent (but DWD); heights match the terrain (3 m)."""
    wells = read_csv(PACK / "sensors" / "wells.csv")
    stations = read_csv(PACK / "sensors" / "climate_stations.csv")
    assert list(wells[0]) == WELL_COLUMNS and list(stations[0]) == STATION_COLUMNS
    assert 400 <= len(wells) <= 450 and 30 <= len(stations) <= 40
    ids = [r["id"] for r in wells + stations]
    assert len(ids) == len(set(ids))
    assert all(re.fullmatch(r"GWM-\d{4}", r["id"]) for r in wells)
    euis = [r["dev_eui"] for r in wells + stations]
    assert len(euis) == len(set(euis))
    assert all(re.fullmatch(r"[0-9A-F]{16}", e) for e in euis)
    xmin, ymin, xmax, ymax = extent
    for r in wells:
        x, y = float(r["x"]), float(r["y"])
        assert xmin <= x <= xmax and ymin <= y <= ymax, r["id"]
        ground, ref = float(r["ground_elevation_m"]), float(r["reference_height_m"])
        assert abs(ref - terrain_at(terrain, x, y)) <= 3.0, r["id"]
        assert 0.0 <= ref - ground <= 1.5
        top, bottom, depth = (
            float(r[k]) for k in ("screen_top_m", "screen_bottom_m", "well_depth_m")
        )
        assert 0.0 < top < bottom <= depth <= 100.0, r["id"]
        assert r["status"] == "synthetic" and r["aquifer"] in ("quaternary", "tertiary")
    official = [r for r in stations if r["status"] == "official"]
    assert [r["id"] for r in official] == ["DWD-05064"]
    for r in stations:
        if r["status"] == "official":
            continue
        x, y = float(r["x"]), float(r["y"])
        assert xmin <= x <= xmax and ymin <= y <= ymax, r["id"]
        assert abs(float(r["elevation_m"]) - terrain_at(terrain, x, y)) <= 3.0, r["id"]
        assert 1.5 <= float(r["sensor_height_m"]) <= 10.0


# ------------------------------------------------------------------------------------------------ blocks & buildings
def read_polygons(path: Path) -> list[tuple[dict, Polygon]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for f in data["features"]:
        rings = []
        for ring in f["geometry"]["coordinates"]:
            a = np.asarray(ring, dtype=float)
            x, y = _TO_UTM.transform(a[:, 0], a[:, 1])
            rings.append(np.column_stack([x, y]))
        out.append((f["properties"], Polygon(rings[0], rings[1:])))
    return out


def test_blocks_leave_the_streets_free(osm):
    """Blocks are valid, disjoint, and clear of every street centreline by at least 2 m (half a lane)."""
    blocks = read_polygons(PACK / "blocks.geojson")
    assert len(blocks) >= 30
    uses = {"residential", "mixed", "commercial", "civic", "industrial", "port"}
    streets = shapely.union_all(
        [
            LineString([osm["nodes"][r] for r in refs])
            for _, refs, tags in osm["ways"]
            if "highway" in tags and refs[0] != refs[-1]
        ]
    )
    polys = [p for _, p in blocks]
    for props, poly in blocks:
        assert poly.is_valid and props["use"] in uses
        assert 1 <= props["storeys_min"] <= props["storeys_max"] <= 12
        assert poly.distance(streets) >= 2.0, props["id"]
    tree = shapely.STRtree(polys)
    for i, j in zip(*tree.query(polys, predicate="intersects"), strict=True):
        if i < j:
            assert polys[i].intersection(polys[j]).area < 0.01


def test_buildings_inside_blocks_disjoint_and_regenerable(author, config):
    """Footprints stay in their block (5 cm for lon/lat rounding), do not overlap (0.01 m2), and
    regenerating them from blocks.geojson with the pack's seed gives the shipped file exactly."""
    path = PACK / "buildings.geojson"
    assert path.stat().st_size < 12_000_000
    blocks = {p["id"]: (p, poly) for p, poly in read_polygons(PACK / "blocks.geojson")}
    buildings = read_polygons(path)
    assert 15_000 <= len(buildings) <= 32_000  # the whole city, bounded (Krefeld ~230,000 people)
    ids = [p["id"] for p, _ in buildings]
    assert len(ids) == len(set(ids))
    for props, poly in buildings:
        bprops, block = blocks[props["block"]]
        assert poly.is_valid and block.buffer(0.05).contains(poly), props["id"]
        assert props["use"] == bprops["use"] and props["roof"] in ("flat", "gabled")
        assert bprops["storeys_min"] <= props["storeys"] <= bprops["storeys_max"]
        assert 2.5 <= props["height"] <= 60.0
    polys = [p for _, p in buildings]
    tree = shapely.STRtree(polys)
    for i, j in zip(*tree.query(polys, predicate="intersects"), strict=True):
        if i < j:
            assert polys[i].intersection(polys[j]).area < 0.01, (ids[i], ids[j])
    seed = config["layers"]["buildings"]["procedural_seed"]
    from twin.city.procedural import generate_footprints

    regenerated = author.buildings_geojson(
        generate_footprints(author.read_blocks(PACK / "blocks.geojson"), seed)
    )
    assert regenerated == path.read_text(encoding="utf-8")


def test_procedural_footprints_follow_the_block_and_the_seed():
    """Perimeter buildings fill the edge band of a block (area bound from the band depth), leave the
    courtyard free, repeat for one seed and change with another; halls stay inside port yards; bad input
    raises DataError naming the field."""
    from twin.city.procedural import generate_footprints
    from twin.errors import DataError

    w, h = 120.0, 80.0
    block = {"id": "T1", "use": "mixed", "storeys_min": 3, "storeys_max": 5}
    block["geometry"] = shapely.box(0.0, 0.0, w, h)
    a = generate_footprints([block], 7)
    b = generate_footprints([block], 7)
    c = generate_footprints([block], 8)
    assert [f["geometry"].wkb for f in a] == [f["geometry"].wkb for f in b]
    assert [f["geometry"].wkb for f in a] != [f["geometry"].wkb for f in c]
    # mixed blocks: band depth 13 m x (0.9 .. 1.15), so the band covers 1 - (w-2d)(h-2d)/(wh) of the block
    d_max = 13.0 * 1.15
    band_max = 1.0 - (w - 2 * d_max) * (h - 2 * d_max) / (w * h)
    built = shapely.union_all([f["geometry"] for f in a]).area / (w * h)
    assert 0.3 < built <= band_max
    courtyard = shapely.box(d_max, d_max, w - d_max, h - d_max)
    assert not any(f["geometry"].intersects(courtyard) for f in a)
    assert all(3 <= f["storeys"] <= 5 and f["id"].startswith("T1-") for f in a)

    yard = {"id": "P1", "use": "port", "storeys_min": 1, "storeys_max": 2}
    yard["geometry"] = shapely.affinity.rotate(shapely.box(0.0, 0.0, 900.0, 140.0), 33.0)
    halls = generate_footprints([yard], 7)
    assert len(halls) >= 5
    assert all(yard["geometry"].contains(f["geometry"]) for f in halls)

    with pytest.raises(DataError, match="'use'"):
        generate_footprints([{**block, "use": "castle"}], 1)
    with pytest.raises(DataError, match="storeys"):
        generate_footprints([{**block, "storeys_min": 4, "storeys_max": 2}], 1)
    with pytest.raises(DataError, match="geometry"):
        generate_footprints([{**block, "geometry": shapely.Point(0, 0)}], 1)
    with pytest.raises(DataError, match="'form' = 'igloo'"):
        generate_footprints([{**block, "form": "igloo"}], 1)


def test_house_forms_terraced_detached_and_villas():
    """On one street block (140 m x 60 m) terraced rows hold the most and smallest houses, villas the
    fewest and largest; every house stays in the block, set back from its edge, within the storeys."""
    from twin.city.procedural import generate_footprints

    counts, sizes = {}, {}
    for form in ("terraced", "detached", "villa"):
        block = {"id": f"H-{form}", "use": "residential", "form": form, "storeys_min": 1}
        block |= {"storeys_max": 3, "geometry": shapely.box(0.0, 0.0, 140.0, 60.0)}
        houses = generate_footprints([block], 3)
        assert houses and all(1 <= f["storeys"] <= 3 for f in houses)
        setback = shapely.box(0.0, 0.0, 140.0, 60.0).buffer(-2.9, join_style="mitre")
        assert all(setback.contains(f["geometry"]) for f in houses), form
        counts[form] = len(houses)
        sizes[form] = float(np.median([f["geometry"].area for f in houses]))
    assert counts["terraced"] > counts["detached"] > counts["villa"]
    assert sizes["terraced"] < sizes["detached"] < sizes["villa"]
    assert 45.0 <= sizes["terraced"] <= 95.0  # 5.5-7.5 m fronts, 9-12 m deep


# ------------------------------------------------------------------------------------------------ the whole city
@pytest.fixture(scope="module")
def buildings() -> list[tuple[dict, Polygon]]:
    return read_polygons(PACK / "buildings.geojson")


def test_every_district_has_buildings(osm, buildings):
    """Each district area (landuse=residential) and industrial estate of streets.osm holds buildings:
    perimeter blocks in the centre, houses of 1-3 storeys in the outer districts, halls in estates."""
    areas: dict[str, list[Polygon]] = {}
    for _, refs, tags in osm["ways"]:
        if (
            refs[0] == refs[-1]
            and tags.get("landuse") in ("residential", "industrial")
            and ("name" in tags and "industrial" not in tags)
        ):
            areas.setdefault(tags["name"], []).append(Polygon([osm["nodes"][r] for r in refs]))
    assert {"Fischeln", "Verberg", "Gartenstadt", "Bockum", "Oppum", "Linn"} <= set(areas)
    points = shapely.points([p.representative_point().coords[0] for _, p in buildings])
    props = [b for b, _ in buildings]
    for name, polys in areas.items():
        inside = np.flatnonzero(shapely.contains(shapely.union_all(polys), points))
        assert inside.size > 0, f"no building in {name}"
        storeys = np.array([props[i]["storeys"] for i in inside])
        uses = Counter(props[i]["use"] for i in inside)
        if name in ("Fischeln", "Verberg", "Gartenstadt", "Bockum", "Inrath"):
            assert np.mean(storeys <= 3) > 0.9, name  # houses of 1-3 storeys
        if "gebiet" in name:
            assert uses["industrial"] == inside.size, name


def test_every_wall_has_built_fronts_on_both_sides(author, buildings):
    """Along each of the four Wälle, buildings stand at the edge of its street space on both sides
    over most of its length (60 %; the Bahnhofsvorplatz at the Südwall's east end and the Stadtgarten
    behind the Nordwall leave gaps)."""
    g = author.PackGeometry()
    tree = shapely.STRtree([p for _, p in buildings])
    for name in ("Ostwall", "Westwall", "Nordwall", "Südwall"):
        (line, tags), *_ = [(ln, t) for ln, t in g.ways if t.get("name") == name]
        half = author.street_space_m(tags) / 2.0
        for side in (1.0, -1.0):
            edge = shapely.offset_curve(line, side * (half + 12.0))
            probes = [edge.interpolate(s, normalized=True) for s in np.linspace(0.02, 0.98, 50)]
            built = [tree.query(p.buffer(12.0), predicate="intersects").size > 0 for p in probes]
            assert np.mean(built) >= 0.6, (name, side, np.mean(built))


def test_parking_bays_lie_in_their_streets_and_not_in_buildings(author, buildings):
    """Each parking-bay sensor stands inside the street space of the street it is named after (within
    its half width of a way of that name) and in no building footprint."""
    g = author.PackGeometry()
    tree = shapely.STRtree([p for _, p in buildings])
    with (PACK / "sensors" / "parking.csv").open(encoding="utf-8") as f:
        bays = list(csv.DictReader(f))
    assert len(bays) == 50 and len({b["dev_eui"] for b in bays}) == 50
    for bay in bays:
        street = bay["name"].rsplit(" bay ", 1)[0]
        point = Point(float(bay["x"]), float(bay["y"]))
        ways = [(ln, t) for ln, t in g.ways if t.get("name") == street and "highway" in t]
        assert ways, bay["name"]
        half = author.street_space_m(ways[0][1]) / 2.0
        assert min(ln.distance(point) for ln, _ in ways) < half, bay["name"]
        assert tree.query(point, predicate="intersects").size == 0, bay["name"]


def test_district_streets_are_synthetic_and_joined(osm):
    """The districts' local streets are residential (or estate) ways tagged note=synthetic, named
    after their district, and joined to the main streets (shared nodes, as OSM joins ways)."""
    local = [
        (refs, t) for _, refs, t in osm["ways"] if t.get("note") == "synthetic" and "highway" in t
    ]
    assert len(local) >= 200
    assert {t["highway"] for _, t in local} == {"residential", "unclassified"}
    assert all(re.fullmatch(r".+ Straße \d+", t["name"]) for _, t in local)
    # every local street reaches the main streets through shared nodes (union-find over the ways)
    parent: dict[str, str] = {}

    def root(n: str) -> str:
        while parent.setdefault(n, n) != n:
            parent[n] = parent[parent[n]]
            n = parent[n]
        return n

    for _, refs, t in osm["ways"]:
        if "highway" in t:
            for r in refs[1:]:
                parent[root(r)] = root(refs[0])
    main = {root(r) for _, refs, t in osm["ways"] if t.get("highway") == "primary" for r in refs}
    assert len(main) == 1, "the main streets form one network"
    assert all(root(refs[0]) in main for refs, _ in local)


def test_trees_csv_is_a_valid_register(config, extent, author):
    """trees.csv reads with the pack's field options, every tree inside the extent and synthetic; the
    Wälle's rows stand on the tree_row bands of boulevards.toml (within 0.5 m of a band's middle)."""
    from twin.city.boulevards import band_offsets, read_boulevards
    from twin.city.trees import inside_extent, read_trees

    layer = config["layers"]["trees"]
    trees = read_trees(PACK / layer["path"], layer)
    assert 2000 <= len(trees["id"]) <= 20000 and inside_extent(trees, extent).all()
    rows = read_csv(PACK / layer["path"])
    assert {r["status"] for r in rows} == {"synthetic"}
    common = {"Tilia cordata", "Platanus × hispanica", "Acer platanoides", "Quercus robur"}
    assert common <= set(trees["species"])
    sections = read_boulevards(PACK / config["layers"]["boulevards"]["path"])
    g = author.PackGeometry()
    sites = np.array([r["site"] for r in rows])
    for name in ("Ostwall", "Westwall", "Südwall"):
        line = next(ln for ln, t in g.ways if t.get("name") == name)
        centres = sorted(
            abs(a + b) / 2 for k, a, b in band_offsets(sections[name]) if k == "tree_row"
        )
        sel = sites == f"{name} tree row"
        assert sel.sum() >= 30, name
        d = shapely.distance(line, shapely.points(trees["x"][sel], trees["y"][sel]))
        assert np.all(np.min(np.abs(d[:, None] - np.array(centres)[None, :]), axis=1) < 0.5), name


def test_readme_counts_match_the_data():
    """The table of buildings per district and use in data/README.md is the shipped data's."""
    blocks = {p["id"]: p for p, _ in read_polygons(PACK / "blocks.geojson")}
    data = json.loads((PACK / "buildings.geojson").read_text(encoding="utf-8"))
    counts: Counter = Counter()
    for f in data["features"]:
        p = f["properties"]
        counts[(blocks[p["block"]]["district"], p["use"])] += 1
    text = (REPO / "data" / "README.md").read_text(encoding="utf-8")
    table = text.split("<!-- buildings per district -->")[1].split("<!-- end -->")[0]
    lines = [ln for ln in table.strip().splitlines() if ln.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    uses = header[2:]
    seen = Counter()
    for ln in lines[2:]:
        cells = [c.strip().strip("*") for c in ln.strip("|").split("|")]
        name, total = cells[0], int(cells[1].replace(",", ""))
        for use, cell in zip(uses, cells[2:], strict=True):
            n = int(cell.replace(",", "").replace("–", "0") or 0)
            if name != "all":
                seen[(name, use)] = n
            else:
                assert n == sum(v for (_, u), v in counts.items() if u == use), use
        if name == "all":
            assert total == len(data["features"])
        else:
            assert total == sum(v for (d, _), v in counts.items() if d == name), name
    assert {k: v for k, v in counts.items() if v} == {k: v for k, v in seen.items() if v}
    trees = read_csv(PACK / "trees.csv")
    assert f"{len(trees):,} trees" in text


# ------------------------------------------------------------------------------------------------ pack
def test_pack_toml_describes_every_layer(config, author):
    """Every layer has a status, licence and source; the class table and seed match the authoring script."""
    assert config["pack"]["crs"] == "EPSG:25832"
    assert tuple(config["pack"]["extent"]) == author.EXTENT
    for name, layer in config["layers"].items():
        assert layer["status"] in ("official", "approximate", "synthetic"), name
        assert layer["licence"].strip() and layer["source"].strip(), name
        assert (PACK / layer["path"]).exists(), name
    classes = [
        (c["code"], c["name"], c["sealed"]) for c in config["layers"]["landcover"]["classes"]
    ]
    assert classes == author.CLASSES
    assert config["layers"]["buildings"]["procedural_seed"] == author.SEED


def test_authoring_reproduces_the_committed_files(author, tmp_path):
    """Re-running the authoring script writes the committed files byte for byte (rasters: same pixels
    and profile as well)."""
    written = author.author(tmp_path)
    assert written
    for path in written:
        rel = path.relative_to(tmp_path)
        shipped = PACK / rel
        if path.suffix == ".tif":
            with rasterio.open(path) as a, rasterio.open(shipped) as b:
                assert a.profile == b.profile, rel
                assert np.array_equal(a.read(), b.read()), rel
        else:
            assert path.read_bytes() == shipped.read_bytes(), rel
