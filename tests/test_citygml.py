"""The CityGML LoD2 reader on the two real Geobasis NRW tiles: every bldg:Building read, heights,
surface areas and positions checked against the files themselves (parsed here independently with
ElementTree); damaged copies reported building by building; the buildings step of a pack on the
tiles; `twin data citygml` end to end."""

from __future__ import annotations

import gzip
import json
import re
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from conftest import SHARED_DATA
from second_pack import write_second_pack

from twin.city.build import run_build
from twin.city.buildings import SURFACE_KINDS, SURFACES, read_buildings, read_surfaces
from twin.city.citygml import (
    function_use,
    read_citygml,
    srs_accepted,
    triangulate,
)
from twin.city.pack import load_pack
from twin.city.steps import city_steps
from twin.errors import ConfigError, DataError

LOD2 = SHARED_DATA / "nrw-lod2"
TILES = sorted(LOD2.glob("*.gml")) if LOD2.is_dir() else []
SMALL = LOD2 / "LoD2_32_333_5725_1_NW.gml"  # 39 buildings, 1.4 MB
pytestmark = pytest.mark.skipif(not TILES, reason=f"the NRW LoD2 tiles are not at {LOD2}")

GML = "{http://www.opengis.net/gml}"
BLDG = "{http://www.opengis.net/citygml/building/1.0}"
KIND_OF = {"WallSurface": "wall", "RoofSurface": "roof", "GroundSurface": "ground",
           "ClosureSurface": "other"}  # fmt: skip
# measuredHeight is given to the mm and runs from the ground height of the (part's) footprint to
# its highest roof point. Where a building's ground surfaces lie at different heights (parts on
# sloping ground, a bridge), its base is the lowest of them, so top - base exceeds the tallest
# part's measuredHeight by up to the spread of its ground heights: seen here 0.09 m (3 parts),
# 0.32 m (2 parts) and up to 0.74 m (bridges, whose measuredHeight is 1.0 throughout).
HEIGHT_MM = 0.002  # m: the rounding of both values to the mm
# A tile holds a building whole when its footprint's centroid lies in the tile's square: parts of
# such buildings reach beyond the square, here by up to 15.7 m (a bridge).
EDGE_M = 20.0
# The envelopes' heights leave out two silos of the 336 tile (their tops 1.06 m higher).
HEIGHT_MARGIN_M = 2.0
AREA_REL = 0.005  # triangle areas per building and kind vs the polygons' Newell areas


def building_elements(path: Path) -> dict[str, ET.Element]:
    """The file's bldg:Building elements by gml:id, parsed with the standard library."""
    root = ET.parse(path).getroot()
    return {b.get(GML + "id"): b for b in root.iter(BLDG + "Building")}


def ring_points(ring: ET.Element) -> np.ndarray:
    return np.array(ring.find(GML + "posList").text.split(), dtype=float).reshape(-1, 3)


def newell_area(polygon: ET.Element) -> float:
    """Exterior minus interior areas, from the rings' Newell normals."""
    total = 0.0
    for tag, sign in (("exterior", 1.0), ("interior", -1.0)):
        for r in polygon.findall(f"{GML}{tag}/{GML}LinearRing"):
            p = ring_points(r)
            p = p - p[0]
            total += sign * 0.5 * np.linalg.norm(np.cross(p, np.roll(p, -1, axis=0)).sum(axis=0))
    return total


def expected_areas(b: ET.Element) -> dict[str, float]:
    """Polygon areas of a building by kind (its boundary surfaces, parts included)."""
    out = dict.fromkeys(SURFACE_KINDS, 0.0)
    for el in b.iter():
        name = el.tag.rpartition("}")[2]
        if el.tag.startswith(BLDG) and name in KIND_OF:
            for poly in el.iter(GML + "Polygon"):
                out[KIND_OF[name]] += newell_area(poly)
    return out


def envelope(path: Path) -> tuple[np.ndarray, np.ndarray]:
    env = ET.parse(path).getroot().find(f"{GML}boundedBy/{GML}Envelope")
    lo = np.array(env.find(GML + "lowerCorner").text.split(), dtype=float)
    hi = np.array(env.find(GML + "upperCorner").text.split(), dtype=float)
    return lo, hi


@pytest.fixture(scope="module")
def tiles():
    """Both tiles read together."""
    return read_citygml(LOD2)


def vertices_of(b, row: int) -> np.ndarray:
    return b.xyz[np.unique(b.tris[b.building == row])]


# --- the real tiles ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", TILES, ids=lambda p: p.name)
def test_one_row_per_building_element(path: Path):
    text = path.read_text(encoding="utf-8")
    count = len(re.findall(r"<bldg:Building\b", text))  # not bldg:BuildingPart
    b = read_citygml(path)
    assert b.problems == []
    assert len(b) == count == len(building_elements(path))
    assert set(b.id) == set(building_elements(path))
    assert set(b.source) == {path.name}


def test_both_tiles_and_their_columns(tiles):
    assert len(tiles) == 39 + 88 and [f.name for f in tiles.files] == [p.name for p in TILES]
    assert set(tiles.use) <= {"residential", "mixed", "commercial", "civic", "industrial", "port"}
    assert all(f.startswith(("31001_", "51002_", "51009_", "53001_")) for f in tiles.function)
    assert set(tiles.roof_type) == {"1000", "2100", "3100", "3200", "3300", "3500", "5000", "9999"}
    assert np.isnan(tiles.storeys).all()  # the tiles give no storeysAboveGround
    attrs = [json.loads(a) for a in tiles.attributes]
    assert all(a["Gemeindeschluessel"] == "05170048" for a in attrs)
    assert all(g.is_valid and g.area > 0 for g in tiles.footprint)
    assert {g.geom_type for g in tiles.footprint} <= {"Polygon", "MultiPolygon"}


def test_height_span_matches_measured_height(tiles):
    for path in TILES:
        for gid, el in building_elements(path).items():
            i = list(tiles.id).index(gid)
            heights = [float(m.text) for m in el.iter(BLDG + "measuredHeight")]
            assert tiles.measured_height[i] == max(heights)
            ground = [ring_points(r)[:, 2] for g in el.iter(BLDG + "GroundSurface")
                      for r in g.iter(GML + "LinearRing")]  # fmt: skip
            z = np.concatenate(ground)
            assert tiles.base[i] == z.min()
            spread = z.max() - z.min()
            excess = tiles.height[i] - tiles.measured_height[i]
            assert -HEIGHT_MM <= excess <= spread + HEIGHT_MM, (gid, excess, spread)


def test_triangle_areas_equal_polygon_areas_per_building_and_kind(tiles):
    a = tiles.xyz[tiles.tris]
    tri_area = 0.5 * np.linalg.norm(np.cross(a[:, 1] - a[:, 0], a[:, 2] - a[:, 0]), axis=1)
    got = np.zeros((len(tiles), len(SURFACE_KINDS)))
    np.add.at(got, (tiles.building, tiles.kind), tri_area)
    checked = 0
    for path in TILES:
        for gid, el in building_elements(path).items():
            i = list(tiles.id).index(gid)
            for kind, area in expected_areas(el).items():
                k = SURFACE_KINDS[kind]
                assert got[i, k] == pytest.approx(area, rel=AREA_REL, abs=1e-6), (gid, kind)
                assert tiles.areas[i, k] == pytest.approx(area, rel=1e-9, abs=1e-9)
                checked += area > 0
    assert checked >= 127 * 3  # every building has walls, a roof and a ground surface


def test_every_vertex_lies_in_its_tile(tiles):
    for path in TILES:
        lo, hi = envelope(path)
        square = shapely.box(lo[0], lo[1], hi[0], hi[1])
        for i in np.flatnonzero(tiles.source == path.name):
            assert square.contains(tiles.footprint[i].centroid), tiles.id[i]
            p = vertices_of(tiles, i)
            assert (p[:, :2] >= lo[:2] - EDGE_M).all() and (p[:, :2] <= hi[:2] + EDGE_M).all()
            assert (p[:, 2] >= lo[2] - HEIGHT_MARGIN_M).all()
            assert (p[:, 2] <= hi[2] + HEIGHT_MARGIN_M).all()
            assert tiles.top[i] == p[:, 2].max()


def test_triangles_face_outwards(tiles):
    """Roof triangles face up, ground triangles down: the rings run counter-clockwise seen from
    outside and the triangles keep that."""
    a = tiles.xyz[tiles.tris]
    n = np.cross(a[:, 1] - a[:, 0], a[:, 2] - a[:, 0])
    roof = tiles.kind == SURFACE_KINDS["roof"]
    ground = tiles.kind == SURFACE_KINDS["ground"]
    assert (n[roof, 2] > 0).mean() > 0.99 and (n[ground, 2] < 0).mean() > 0.99


def test_gzip_and_glob_give_the_same_buildings(tmp_path: Path, tiles):
    with gzip.open(tmp_path / f"{SMALL.name}.gz", "wb") as f:
        f.write(SMALL.read_bytes())
    shutil.copy(TILES[1], tmp_path / TILES[1].name)
    (tmp_path / "SOURCES.md").write_text("not a tile\n", encoding="utf-8")
    for source in (tmp_path, str(tmp_path / "LoD2_*")):
        b = read_citygml(source)
        assert sorted(b.id) == sorted(tiles.id)
        assert len(b.tris) == len(tiles.tris)


def test_extent_keeps_the_buildings_that_meet_it(tiles):
    b = read_citygml(LOD2, extent=(336000.0, 5724000.0, 337000.0, 5725000.0))
    assert len(b) == 88 and set(b.source) == {TILES[1].name}
    assert int(b.building.max()) == len(b) - 1 and len(b.xyz) == int(b.tris.max()) + 1


# --- damaged copies ---------------------------------------------------------------------------


def _buildings(text: str) -> list[tuple[str, int, int]]:
    """(gml:id, start, end) of each bldg:Building in a file's text."""
    starts = [
        (m.group(1), m.start()) for m in re.finditer(r'<bldg:Building gml:id="([^"]+)"', text)
    ]
    return [(gid, s, text.index("</bldg:Building>", s)) for gid, s in starts]


def _damage(text: str, span: tuple[str, int, int], old: re.Pattern, new, after: str = "") -> str:
    """The text with the first match of `old` in a building (after `after` in it) replaced."""
    _, s, e = span
    s = text.index(after, s) if after else s
    part = old.sub(new, text[s:e], count=1)
    assert part != text[s:e]
    return text[:s] + part + text[e:]


def test_damaged_buildings_are_reported_and_the_rest_kept(tmp_path: Path):
    text = SMALL.read_text(encoding="utf-8")
    spans = _buildings(text)
    a, b, c, d = spans[1], spans[5], spans[9], spans[20]
    poslist = re.compile(r'(<gml:posList srsDimension="3">)([^<]*)(</gml:posList>)')
    two_points = "333100.0 5725100.0 20.0 333101.0 5725100.0 20.0 333100.0 5725100.0 20.0"

    def word(m: re.Match) -> str:
        return m.group(1) + m.group(2).replace(" ", " 7,5x ", 1) + m.group(3)

    surfaces = "<bldg:boundedBy>"  # (before them: the terrain intersection's lines)
    # later buildings first, so the earlier spans stay where they are
    text = _damage(text, d, re.compile(r"(<bldg:measuredHeight[^>]*>)[^<]*"), r"\1NaN")
    text = _damage(text, c, poslist, word, after=surfaces)
    text = _damage(text, b, poslist, rf"\g<1>{two_points}\3", after=surfaces)
    text = _damage(text, a, re.compile(r'xlink:href="#[^"]+"'), 'xlink:href="#no-such-polygon"')
    path = tmp_path / "damaged.gml"
    path.write_text(text, encoding="utf-8")
    got = read_citygml(path)
    assert len(got) == 39 - 4
    assert not {a[0], b[0], c[0], d[0]} & set(got.id)
    assert len(got.problems) == 4
    expect = [
        (a[0], "xlink:href '#no-such-polygon' names no polygon of this building"),
        (b[0], "has 2 distinct points; expected at least 3"),
        (c[0], "coordinate '7,5x' is not a number"),
        (d[0], "bldg:measuredHeight 'NaN' is not a finite number"),
    ]
    for gid, what in expect:
        line = next(p for p in got.problems if f"building {gid}:" in p)
        assert line.startswith(f"{path}: building {gid}: ") and what in line, line


def test_truncated_file_keeps_the_buildings_before_the_cut(tmp_path: Path):
    text = SMALL.read_text(encoding="utf-8")
    cut = int(len(text) * 0.6)
    path = tmp_path / "truncated.gml"
    path.write_text(text[:cut], encoding="utf-8")
    got = read_citygml(path)
    complete = text[:cut].count("</core:cityObjectMember>")
    assert 0 < complete < 39 and len(got) == complete
    assert [g for g, _, _ in _buildings(text)[:complete]] == list(got.id)
    (line,) = got.problems
    assert line.startswith(f"{path}: XML error at line {text[:cut].count(chr(10)) + 1}: ")
    assert line.endswith("; buildings after it are missing")


def test_foreign_srs_is_refused_naming_the_file(tmp_path: Path):
    path = tmp_path / "utm33.gml"
    srs = "urn:adv:crs:ETRS89_UTM33*DE_DHHN2016_NH*GCG2016"
    text = SMALL.read_text(encoding="utf-8")
    path.write_text(text.replace("urn:adv:crs:ETRS89_UTM32*DE_DHHN2016_NH*GCG2016", srs, 1),
                    encoding="utf-8")  # fmt: skip
    with pytest.raises(DataError, match=re.escape(f"{path}: srsName '{srs}' is not EPSG:25832")):
        read_citygml(path)


@pytest.mark.parametrize(
    "srs, ok",
    [
        ("urn:adv:crs:ETRS89_UTM32*DE_DHHN2016_NH*GCG2016", True),
        ("urn:adv:crs:ETRS89_UTM32*DE_DHHN92_NH", True),
        ("urn:adv:crs:ETRS89_UTM32", True),
        ("EPSG:25832", True),
        ("urn:ogc:def:crs:EPSG::25832", True),
        ("urn:ogc:def:crs,crs:EPSG::25832,crs:EPSG::7837", True),
        ("http://www.opengis.net/def/crs/EPSG/0/25832", True),
        ("EPSG:258320", False),
        ("EPSG:4647", False),  # UTM 32N with the zone in front of the easting
        ("EPSG:4326", False),
        ("urn:adv:crs:ETRS89_UTM33", False),
        ("urn:adv:crs:DE_DHDN_3GK2", False),
    ],
)
def test_srs_names(srs: str, ok: bool):
    assert srs_accepted(srs) is ok


@pytest.mark.parametrize(
    "code, use",
    [
        ("31001_1010", "residential"), ("31001_1100", "mixed"), ("31001_1120", "mixed"),
        ("31001_2020", "commercial"), ("31001_2081", "commercial"), ("31001_2463", "commercial"),
        ("31001_2100", "industrial"), ("31001_2143", "industrial"), ("31001_2723", "industrial"),
        ("31001_2310", "mixed"), ("31001_2441", "port"), ("31001_3211", "civic"),
        ("51002_1251", "industrial"), ("53001_1800", "residential"), ("31001_9998", "residential"),
        ("", "residential"), ("2100", "industrial"),
    ],
)  # fmt: skip
def test_function_codes_to_uses(code: str, use: str):
    assert function_use(code) == use


# --- triangulation ----------------------------------------------------------------------------


def test_triangulation_keeps_area_holes_and_winding():
    """An L-shaped sloping roof with a hole, and a bow-tie ring GEOS refuses (earcut takes it)."""
    l_shape = np.array([[0, 0], [10, 0], [10, 4], [4, 4], [4, 9], [0, 9]], dtype=float)
    hole = np.array([[1, 1], [1, 3], [3, 3], [3, 1]], dtype=float)  # clockwise: a hole
    slope = lambda xy: np.column_stack([xy + 330000.0, 40.0 + 0.5 * xy[:, 1]])  # noqa: E731
    bowtie = np.array([[0, 0, 0], [4, 4, 0], [4, 0, 0], [0, 2, 0]], dtype=float)
    xyz, tris, owner, area = triangulate([[slope(l_shape), slope(hole)], [bowtie]])
    plan = 10 * 4 + 4 * 5 - 4
    assert area[0] == pytest.approx(plan * np.hypot(1, 0.5))
    t = xyz[tris]
    n = np.cross(t[:, 1] - t[:, 0], t[:, 2] - t[:, 0])
    assert 0.5 * np.linalg.norm(n[owner == 0], axis=1).sum() == pytest.approx(area[0], rel=1e-12)
    assert (n[owner == 0, 2] > 0).all()  # counter-clockwise seen from above, as the ring
    centroids = t[owner == 0].mean(axis=1)
    hole_box = shapely.box(330001.0, 330001.0, 330003.0, 330003.0)
    assert not shapely.contains_xy(hole_box, centroids[:, 0], centroids[:, 1]).any()
    assert (owner == 1).sum() >= 1  # earcut makes what it can of a self-crossing ring


# --- the buildings step -----------------------------------------------------------------------


@pytest.fixture
def lod2_pack(tmp_path: Path):
    """The swap-in pack on copies of the tiles, its extent cut to the 336_5724 tile."""
    tiles = tmp_path / "lod2"
    tiles.mkdir()
    for p in TILES:
        shutil.copy(p, tiles / p.name)
    toml = write_second_pack(tmp_path / "pack", tiles)
    text = toml.read_text(encoding="utf-8")
    toml.write_text(text.replace("extent = [333000.0, 5724000.0, 337000.0, 5726000.0]",
                                 "extent = [336000.0, 5724000.0, 337000.0, 5725000.0]"),
                    encoding="utf-8")  # fmt: skip
    return load_pack(toml), tiles


STEPS = ("terrain", "buildings", "building_rasters")


def _build(pack, out: Path) -> dict[str, str]:
    steps = [s for s in city_steps() if s.name in STEPS]
    return {r.name: r.status for r in run_build(pack, steps, out)}


def test_build_from_citygml_tiles(lod2_pack, tmp_path: Path):
    pack, tiles = lod2_pack
    assert [f.name for f in pack.layers["buildings"].files()] == [p.name for p in TILES]
    out = tmp_path / "build"
    assert _build(pack, out) == dict.fromkeys(STEPS, "built")
    b = read_buildings(out / "buildings.gpkg")
    assert len(b["id"]) == len(building_elements(TILES[1])) == 88
    assert set(b["source"]) == {TILES[1].name}
    for col in ("id", "height", "use", "base", "area", "function", "roof_type",
                "measured_height", "storeys", "attributes", "source"):  # fmt: skip
        assert col in b
    assert (b["height"] > 0).all() and (b["area"] > 0).all()
    s = read_surfaces(out / SURFACES)
    assert len(s["tris"]) > 1000 and s["building"].max() == 87
    assert set(np.unique(s["kind"])) == set(SURFACE_KINDS.values())
    with rasterio.open(out / "building_height.tif") as src:
        height = src.read(1)
    with rasterio.open(out / "building_id.tif") as src:
        ids = src.read(1)
    built = ids > 0
    assert built.sum() > 100
    np.testing.assert_allclose(height[built], b["height"][ids[built] - 1], rtol=1e-6)
    # nothing changed: nothing rebuilt; one tile changed: the buildings and what reads them
    assert set(_build(pack, out).values()) == {"cached"}
    with (tiles / TILES[0].name).open("a", encoding="utf-8") as f:
        f.write("<!-- touched -->\n")
    assert _build(pack, out) == {"terrain": "cached", "buildings": "built",
                                 "building_rasters": "built"}  # fmt: skip


def test_a_glob_without_tiles_names_the_layer(tmp_path: Path):
    toml = write_second_pack(tmp_path / "pack", tmp_path / "none" / "*.gml")
    with pytest.raises(ConfigError, match=r"'layers\.buildings\.path': no CityGML file at"):
        load_pack(toml)
    toml = write_second_pack(tmp_path / "pack", LOD2 / "LoD2_32_336_*.gml")
    assert [f.name for f in load_pack(toml).layers["buildings"].files()] == [TILES[1].name]


# --- twin data citygml ------------------------------------------------------------------------


def test_twin_data_citygml(tmp_path: Path, capsys):
    from twin.cli import main

    out = tmp_path / "out"
    assert main(["data", "citygml", str(LOD2), "-o", str(out)]) == 0
    said = capsys.readouterr()
    assert "127 buildings from 2 file(s)" in said.out
    assert "reading LoD2_32_333_5725_1_NW.gml (1/2)" in said.err
    b = read_buildings(out / "buildings.gpkg")
    assert (
        sorted(b["id"]) == sorted(gid for p in TILES for gid in building_elements(p))
        and "roof_type" in b
    )
    assert main(["tiles", "info", str(out / "tiles"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["version"] == "1.1" and info["problems"] == [] and info["triangles"] > 8000
    assert main(["data", "citygml", str(tmp_path / "nothing"), "-o", str(out)]) == 1
    assert "no CityGML file" in capsys.readouterr().err


# --- CityGML 2.0, inline solids, parts, holes ---------------------------------------------------

CITYGML2 = """<?xml version="1.0" encoding="UTF-8"?>
<core:CityModel xmlns:core="http://www.opengis.net/citygml/2.0"
    xmlns:bldg="http://www.opengis.net/citygml/building/2.0"
    xmlns:gen="http://www.opengis.net/citygml/generics/2.0"
    xmlns:gml="http://www.opengis.net/gml" xmlns:xlink="http://www.w3.org/1999/xlink">
  <gml:boundedBy><gml:Envelope srsName="urn:ogc:def:crs:EPSG::25832" srsDimension="3">
    <gml:lowerCorner>330000 5689000 30</gml:lowerCorner>
    <gml:upperCorner>331000 5690000 60</gml:upperCorner></gml:Envelope></gml:boundedBy>
  <core:cityObjectMember><bldg:Building gml:id="B2">
    <gen:intAttribute name="floors"><gen:value>3</gen:value></gen:intAttribute>
    <gen:doubleAttribute name="volume"><gen:value>512.5</gen:value></gen:doubleAttribute>
    <bldg:function>31001_2020</bldg:function>
    <bldg:storeysAboveGround>3</bldg:storeysAboveGround>
    <bldg:lod2Solid><gml:Solid><gml:exterior><gml:CompositeSurface>
      {cube}
    </gml:CompositeSurface></gml:exterior></gml:Solid></bldg:lod2Solid>
    <bldg:boundedBy><bldg:WallSurface gml:id="W1"><bldg:lod2MultiSurface><gml:MultiSurface>
      <gml:surfaceMember xlink:href="#south"/>
    </gml:MultiSurface></bldg:lod2MultiSurface></bldg:WallSurface></bldg:boundedBy>
    <bldg:consistsOfBuildingPart><bldg:BuildingPart gml:id="B2-part">
      <bldg:roofType>1000</bldg:roofType>
      <bldg:measuredHeight uom="m">10.0</bldg:measuredHeight>
      <bldg:boundedBy><bldg:RoofSurface><bldg:lod2MultiSurface><gml:MultiSurface>
        <gml:surfaceMember><gml:Polygon>
          <gml:exterior><gml:LinearRing>{court}</gml:LinearRing></gml:exterior>
          <gml:interior><gml:LinearRing>{hole}</gml:LinearRing></gml:interior>
        </gml:Polygon></gml:surfaceMember>
      </gml:MultiSurface></bldg:lod2MultiSurface></bldg:RoofSurface></bldg:boundedBy>
    </bldg:BuildingPart></bldg:consistsOfBuildingPart>
  </bldg:Building></core:cityObjectMember>
  <core:cityObjectMember><bldg:Building gml:id="NOGEOM">
    <bldg:function>31001_1000</bldg:function>
  </bldg:Building></core:cityObjectMember>
</core:CityModel>
"""


def _pos(points) -> str:
    return "".join(f"<gml:pos>{x} {y} {z}</gml:pos>" for x, y, z in [*points, points[0]])


def test_citygml2_inline_solid_parts_and_holes(tmp_path: Path):
    """Inline lod2Solid polygons count as other unless a semantic surface names them (here the
    south wall); a part's roof with a courtyard hole; gen attributes typed; parts merged."""
    x0, y0, z0 = 330100.0, 5689100.0, 35.0
    c = [(x0 + dx, y0 + dy, z0 + dz) for dz in (0, 10) for dy in (0, 8) for dx in (0, 8)]
    faces = {  # corners: index = dx/8 + 2 dy/8 + 4 dz/10, each face counter-clockwise outside
        "bottom": (0, 2, 3, 1), "south": (0, 1, 5, 4), "east": (1, 3, 7, 5),
        "north": (3, 2, 6, 7), "west": (2, 0, 4, 6), "top": (4, 5, 7, 6),
    }  # fmt: skip
    cube = "".join(
        f'<gml:surfaceMember><gml:Polygon gml:id="{name}"><gml:exterior><gml:LinearRing>'
        f"{_pos([c[i] for i in idx])}</gml:LinearRing></gml:exterior></gml:Polygon>"
        "</gml:surfaceMember>"
        for name, idx in faces.items()
    )
    court = _pos([(x0, y0 + 20, 45.0), (x0 + 10, y0 + 20, 45.0), (x0 + 10, y0 + 30, 45.0),
                  (x0, y0 + 30, 45.0)])  # fmt: skip
    hole = _pos([(x0 + 4, y0 + 24, 45.0), (x0 + 4, y0 + 26, 45.0), (x0 + 6, y0 + 26, 45.0),
                 (x0 + 6, y0 + 24, 45.0)])  # fmt: skip
    path = tmp_path / "v2.gml"
    path.write_text(CITYGML2.format(cube=cube, court=court, hole=hole), encoding="utf-8")
    b = read_citygml(path)
    assert list(b.id) == ["B2"]
    assert b.problems == [f"{path}: building NOGEOM: no LoD2 geometry (no polygon in lod2Solid, "
                          "lod2MultiSurface or its surfaces)"]  # fmt: skip
    assert b.function[0] == "31001_2020" and b.use[0] == "commercial"
    assert b.roof_type[0] == "1000" and b.measured_height[0] == 10.0 and b.storeys[0] == 3
    assert json.loads(b.attributes[0]) == {"floors": 3, "volume": 512.5}
    areas = dict(zip(SURFACE_KINDS, b.areas[0], strict=True))
    assert areas == pytest.approx({"wall": 80.0, "roof": 96.0, "ground": 0.0, "other": 368.0})
    a = b.xyz[b.tris]
    tri = 0.5 * np.linalg.norm(np.cross(a[:, 1] - a[:, 0], a[:, 2] - a[:, 0]), axis=1)
    by_kind = np.bincount(b.kind, tri, minlength=len(SURFACE_KINDS))
    assert by_kind == pytest.approx(b.areas[0])
    # no ground surface: the footprint is the union of all polygons seen from above, the base
    # the lowest point of all
    assert b.footprint[0].area == pytest.approx(64.0 + 96.0)
    assert b.base[0] == z0 and b.top[0] == 45.0
