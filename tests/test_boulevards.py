"""Boulevard cross-sections: the reader's errors, the band layout along a centre line, the build step
and the ground images that draw the bands."""

from __future__ import annotations

import shutil
import tomllib
from pathlib import Path

import numpy as np
import pytest
import shapely
from conftest import REPO
from PIL import Image

from twin.app.steps import build_steps
from twin.city.boulevards import (
    JUNCTION_BAND,
    PRODUCT,
    Band,
    Section,
    band_offsets,
    band_polygons,
    boulevard_bands,
    build_boulevards,
    oriented,
    read_boulevard_product,
    read_boulevards,
    street_centre_lines,
)
from twin.city.build import StepContext, run_build
from twin.city.pack import DataPack, Layer, load_pack
from twin.city.vector import read_vector, write_gpkg
from twin.citytiles.textures import GroundPainter, ground_painter_from_build
from twin.errors import ConfigError

KREFELD = REPO / "data" / "krefeld"
LAYER_ENTRY = """
[layers.boulevards]
path = "boulevards.toml"
format = "toml"
status = "approximate"
licence = "CC-BY-4.0 (Krefeld twin data pack)"
source = "cross-sections of the Wälle and the Rheinstraße"
"""

STREET = """
[streets."Teststraße"]
order = "west_to_east"
status = "approximate"
source = "test"
bands = [
  {{ kind = "sidewalk", width = 3.0 }},
  {{ kind = "{kind}", width = {width} }},
  {{ kind = "tram", width = 6.0 }},
  {{ kind = "promenade", width = 6.0 }},
  {{ kind = "carriageway", width = 6.0 }},
  {{ kind = "sidewalk", width = 3.0 }},
]
"""


def _toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "boulevards.toml"
    path.write_text(text, encoding="utf-8")
    return path


def _section(*bands: tuple[str, float], order: str = "west_to_east") -> Section:
    return Section("Teststraße", order, tuple(Band(k, w) for k, w in bands), "synthetic", "test")


# --- the reader -----------------------------------------------------------------------------------


def test_the_shipped_sections_read_and_span_their_widths():
    sections = read_boulevards(KREFELD / "boulevards.toml")
    assert {"Ostwall", "Westwall", "Nordwall", "Südwall"} <= sections.keys()
    for s in sections.values():
        assert s.status in ("official", "approximate", "synthetic") and s.source
        assert 10 <= s.width <= 120
    ostwall = sections["Ostwall"]
    kinds = [b.kind for b in ostwall.bands]
    assert kinds.count("tram") == 2 and kinds.count("tree_row") == 2 and "promenade" in kinds
    assert ostwall.width == pytest.approx(36.0)
    assert sections["Rheinstraße"].width == pytest.approx(20.7)  # the stated figures add up


@pytest.mark.parametrize(
    ("kind", "width", "key", "what"),
    [
        ("tramway", 3.0, "streets.Teststraße.bands[1].kind", "must be one of"),
        ("parking", -2.0, "streets.Teststraße.bands[1].width", "greater than zero"),
        ("parking", 0, "streets.Teststraße.bands[1].width", "greater than zero"),
        ("parking", 200.0, "streets.Teststraße.bands", "must add up to 10-120 m"),
    ],
)
def test_a_bad_band_names_file_street_and_key(tmp_path, kind, width, key, what):
    path = _toml(tmp_path, STREET.format(kind=kind, width=width))
    with pytest.raises(ConfigError) as err:
        read_boulevards(path)
    msg = str(err.value)
    assert str(path) in msg and f"'{key}" in msg and what in msg and "\n" not in msg


def test_tracks_only_on_tram_and_carriageway_bands(tmp_path):
    text = STREET.format(kind="parking", width=2.0).replace(
        '{ kind = "promenade", width = 6.0 }', '{ kind = "promenade", width = 6.0, tracks = 1 }'
    )
    with pytest.raises(ConfigError, match=r"'streets\.Teststraße\.bands\[3\]\.tracks'"):
        read_boulevards(_toml(tmp_path, text))


def test_a_street_the_pack_does_not_have_is_named(tmp_path):
    path = _toml(tmp_path, STREET.format(kind="parking", width=2.0))
    streets = {
        "geometry": np.array([shapely.LineString([(0, 0), (0, 100)])]),
        "name": np.array(["Anderestraße"]),
        "highway": np.array(["primary"]),
    }
    with pytest.raises(ConfigError) as err:
        boulevard_bands(read_boulevards(path), streets, file=path)
    msg = str(err.value)
    assert str(path) in msg and "'streets.Teststraße'" in msg and "no way named" in msg


def test_an_order_across_the_course_is_an_error(tmp_path):
    path = _toml(tmp_path, STREET.format(kind="parking", width=2.0))
    streets = {
        "geometry": np.array([shapely.LineString([(0, 0), (100, 5)])]),  # runs east-west
        "name": np.array(["Teststraße"]),
        "highway": np.array(["primary"]),
    }
    with pytest.raises(ConfigError, match=r"'streets\.Teststraße\.order'.*runs east-west"):
        boulevard_bands(read_boulevards(path), streets, file=path)


# --- layout ---------------------------------------------------------------------------------------


def test_band_offsets_touch_and_span_the_width():
    for s in read_boulevards(KREFELD / "boulevards.toml").values():
        offsets = band_offsets(s)
        assert offsets[0][1] == pytest.approx(s.width / 2)
        assert offsets[-1][2] == pytest.approx(-s.width / 2)
        for (_, _, right), (_, left, _) in zip(offsets, offsets[1:], strict=False):
            assert left == pytest.approx(right)  # contiguous
        widths = [left - right for _, left, right in offsets]
        assert widths == pytest.approx([b.width for b in s.bands])
        assert sum(widths) == pytest.approx(s.width)


def test_the_first_band_lies_west_or_south_whatever_the_way_direction():
    s = _section(("sidewalk", 4.0), ("carriageway", 8.0), ("median", 4.0))
    for coords in ([(0, 0), (0, 100)], [(0, 100), (0, 0)]):
        polys = dict(band_polygons(shapely.LineString(coords), s))
        assert polys["sidewalk"].centroid.x == pytest.approx(-6.0)  # west of the centre line
        assert polys["median"].centroid.x == pytest.approx(6.0)
    s2 = _section(("sidewalk", 4.0), ("carriageway", 8.0), ("median", 4.0), order="south_to_north")
    for coords in ([(0, 0), (100, 0)], [(100, 0), (0, 0)]):
        assert oriented(shapely.LineString(coords), s2).coords[0][0] == 100.0  # runs westward
        polys = dict(band_polygons(shapely.LineString(coords), s2))
        assert polys["sidewalk"].centroid.y == pytest.approx(-6.0)  # south


def _step_context(tmp_path: Path, streets: dict, toml: Path) -> StepContext:
    build = tmp_path / "build"
    build.mkdir()
    write_gpkg(
        build / "streets.gpkg",
        "streets",
        "EPSG:25832",
        streets["geometry"],
        {k: v for k, v in streets.items() if k != "geometry"},
    )
    layer = Layer("boulevards", toml, "toml", "synthetic", "CC0-1.0", "test")
    pack = DataPack(
        tmp_path / "pack.toml",
        "t",
        "",
        "EPSG:25832",
        (0.0, 0.0, 1000.0, 1000.0),
        10.0,
        {"boulevards": layer},
    )
    out = tmp_path / "partial"
    out.mkdir()
    return StepContext(pack, build, out, lambda m: None)


def test_the_step_writes_bands_of_length_times_width(tmp_path):
    """On a centre line with a gentle bend (10 degrees) every band's area is its length times its
    width within 0.5 % (a mitred bend shifts area from the inner to the outer side)."""
    toml = _toml(tmp_path, STREET.format(kind="bike_path", width=2.0))
    line = shapely.LineString([(500, 100), (500, 500), (500 + 400 * np.sin(0.1745), 894)])
    streets = {
        "geometry": np.array([line, shapely.LineString([(0, 50), (900, 60)])]),
        "name": np.array(["Teststraße", "Querweg"]),
        "highway": np.array(["primary", "residential"]),
        "railway": np.array(["tram", ""]),
    }
    ctx = _step_context(tmp_path, streets, toml)
    build_boulevards(ctx)
    bands, tracks = read_boulevard_product(ctx.out(PRODUCT))
    section = read_boulevards(toml)["Teststraße"]
    assert list(bands["kind"]) == [b.kind for b in section.bands]
    assert set(bands["street"]) == {"Teststraße"}
    areas = shapely.area(bands["geometry"])
    assert areas == pytest.approx(line.length * np.asarray(bands["width"]), rel=5e-3)
    assert shapely.area(shapely.union_all(bands["geometry"])) == pytest.approx(sum(areas), rel=1e-6)
    assert len(tracks) == 2  # a 6 m tram band holds two tracks, 3 m apart
    assert shapely.distance(tracks[0], tracks[1]) == pytest.approx(3.0, abs=0.05)


def test_the_step_without_the_layer_writes_an_empty_product(tmp_path):
    streets = {
        "geometry": np.array([shapely.LineString([(0, 0), (0, 100)])]),
        "name": np.array(["X"]),
        "highway": np.array(["primary"]),
    }
    ctx = _step_context(tmp_path, streets, tmp_path / "none.toml")
    ctx.pack.layers.clear()
    build_boulevards(ctx)
    bands, tracks = read_boulevard_product(ctx.out(PRODUCT))
    assert len(bands["geometry"]) == 0 and len(tracks) == 0


# --- ground images --------------------------------------------------------------------------------


def _painter(section_toml: str, tmp_path: Path) -> tuple[GroundPainter, float]:
    """A painter over a 100 m square of grass with the test boulevard along x = 50 m."""
    toml = _toml(tmp_path, section_toml)
    line = shapely.LineString([(50, 0), (50, 100)])
    streets = {
        "geometry": np.array([line]),
        "name": np.array(["Teststraße"]),
        "highway": np.array(["primary"]),
        "railway": np.array([""]),
        "lanes": np.array(["4"]),
    }
    bands, tracks = boulevard_bands(read_boulevards(toml), streets, file=toml)
    lc = np.full((10, 10), 5, dtype=np.uint8)
    classes = [{"code": 5, "name": "grass", "sealed": 0.0}]
    p = GroundPainter.from_products(
        lc, (0.0, 100.0, 10.0), classes, streets, None, 3, bands, tracks["geometry"]
    )
    return p, read_boulevards(toml)["Teststraße"].width


def test_the_painter_draws_each_band_at_its_offset(tmp_path):
    """0.1 m pixels across the section sidewalk 3 | bike 2 | tram 6 | promenade 6 | carriageway 6 |
    sidewalk 3 (26 m, the first band at the west edge x = 37 m)."""
    p, width = _painter(STREET.format(kind="bike_path", width=2.0), tmp_path)
    img = p.render((30.0, 40.0, 70.0, 60.0), 400, 200).astype(int)

    def at(x: float) -> np.ndarray:  # mean colour of a 0.5 m x 10 m patch centred on x
        c = round((x - 30.0) / 0.1)
        return img[50:150, c - 2 : c + 3].reshape(-1, 3).mean(axis=0)

    west = 50.0 - width / 2
    sidewalk, bike, promenade, road = at(west + 1.5), at(west + 4.0), at(west + 14.0), at(west + 20)
    tram_bed = at(west + 6.2)  # beside the west track of the two, away from its rails
    assert promenade.min() > 150 and promenade[0] > promenade[2] + 20  # light gravel
    assert bike[0] > bike[1] + 40 and bike[0] > bike[2] + 40  # red-tinted asphalt
    assert road.max() < 105 and np.ptp(road) < 12  # asphalt
    assert sidewalk.min() > 150 and np.ptp(sidewalk) < 20  # paving
    assert tram_bed[0] > tram_bed[2] + 10 and tram_bed.mean() > road.mean() + 15  # ballast, grass
    # the rails: two pairs at the track centres x = west + 5 + 1.5 and + 4.5, 1.435 m gauge
    for track in (west + 6.5, west + 9.5):
        for rail in (track - 0.7175, track + 0.7175):
            c = round((rail - 30.0) / 0.1)
            assert img[100, c - 1 : c + 2].max(axis=0).min() > 140  # a light rail head
    # the boulevard's own way is not drawn as a street besides: no centre marking on the promenade
    assert at(50.0).min() < 215 and abs(at(50.0) - promenade).max() < 25


def test_without_boulevards_the_street_is_painted_as_before():
    streets = {
        "geometry": np.array([shapely.LineString([(50, 0), (50, 100)])]),
        "name": np.array(["Teststraße"]),
        "highway": np.array(["primary"]),
        "railway": np.array([""]),
        "lanes": np.array(["4"]),
    }
    classes = [{"code": 5, "name": "grass", "sealed": 0.0}]
    lc = np.full((10, 10), 5, dtype=np.uint8)
    plain = GroundPainter.from_products(lc, (0.0, 100.0, 10.0), classes, streets, None, 3)
    img = plain.render((30.0, 40.0, 70.0, 60.0), 400, 200).astype(int)
    assert img[100, 200].min() > 180  # the primary road's centre marking at x = 50 m
    assert img[100, 230].max() < 110  # its asphalt, 3 m east
    assert img[100, 20][1] > img[100, 20][0] + 15  # grass beside it


# --- the Krefeld pack -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def krefeld_boulevards(tmp_path_factory) -> Path:
    """A copy of the Krefeld pack with the boulevards layer, and its boulevards, land cover and
    buildings built (the layer joins pack.toml itself where it is not yet there)."""
    root = tmp_path_factory.mktemp("krefeld-boulevards")
    pack_dir = root / "krefeld"
    shutil.copytree(KREFELD, pack_dir)
    toml = pack_dir / "pack.toml"
    if "[layers.boulevards]" not in toml.read_text(encoding="utf-8"):
        toml.write_text(toml.read_text(encoding="utf-8") + LAYER_ENTRY, encoding="utf-8")
    build = root / "build"
    run_build(load_pack(toml), build_steps(), build, only=["boulevards", "landcover", "buildings"])
    return build


def test_krefeld_boulevards_are_built_along_the_walle(krefeld_boulevards):
    bands, tracks = read_boulevard_product(krefeld_boulevards / PRODUCT)
    sections = read_boulevards(KREFELD / "boulevards.toml")
    assert set(bands["street"]) == set(sections)
    assert shapely.is_valid(bands["geometry"]).all()
    street, kind = bands["street"].astype(str), bands["kind"].astype(str)
    ostwall = street == "Ostwall"
    assert (kind[ostwall] == "tree_row").sum() == 2 and (kind[ostwall] == "tram").sum() == 2
    # Ostwall 1, Rheinstraße 2 tracks; the Rheinstraße's stop at the Ostwall's central strip
    assert len(tracks) == 4
    strip = shapely.union_all(
        bands["geometry"][ostwall & np.isin(kind, ["tree_row", "promenade", "median"])]
    )
    assert all(shapely.intersection(t, strip).length < 0.01 for t in tracks)
    # away from the junctions the bands are whole: the Ostwall's area is its length times 36 m
    # less what crossing carriageways take out of its footways (at most 6 x 9 m by 3 m each side)
    body = bands["geometry"][ostwall & (bands["band"] != JUNCTION_BAND)]
    assert shapely.area(body).sum() == pytest.approx(1200 * 36.0, rel=0.03)
    # where bands overlap, at junctions, they are both road or both footway at a corner: central
    # strips, tree rows and lawns overlap nothing
    geoms, road = bands["geometry"], np.isin(kind, ["carriageway", "tram"])
    edge = np.isin(kind, ["sidewalk", "bike_path", "parking"])
    i, j = shapely.STRtree(geoms).query(geoms, predicate="intersects")
    pairs = i < j
    i, j = i[pairs], j[pairs]
    overlap = shapely.area(shapely.intersection(geoms[i], geoms[j])) > 0.01
    i, j = i[overlap], j[overlap]
    assert len(i) > 0  # the corners and the Rheinstraße's ends
    assert ((road[i] & road[j]) | (edge[i] & edge[j])).all()


def test_krefeld_ground_image_over_the_ostwall_reads_as_a_boulevard(krefeld_boulevards, tmp_path):
    """Render 120 m of the Ostwall at 0.1 m a pixel and sample across it at mid-length: sidewalk,
    asphalt, tram bed, tree row, promenade, lawn, ... from west to east."""
    classes = tomllib.loads((KREFELD / "pack.toml").read_text(encoding="utf-8"))["layers"][
        "landcover"
    ]["classes"]
    painter = ground_painter_from_build(krefeld_boulevards, classes, seed=0)
    sections = read_boulevards(KREFELD / "boulevards.toml")
    line = oriented(_centre_line(krefeld_boulevards, "Ostwall"), sections["Ostwall"])
    others = _other_streets(krefeld_boulevards, "Ostwall")
    # the point of the centre line farthest from any side street, away from the ends
    mid = max(
        (line.interpolate(f, normalized=True) for f in np.linspace(0.1, 0.9, 81)),
        key=lambda p: shapely.distance(p, others),
    )
    assert shapely.distance(mid, others) > 40.0
    x0, y0 = mid.x - 30.0, mid.y - 30.0
    img = painter.render((x0, y0, x0 + 60.0, y0 + 60.0), 600, 600)
    Image.fromarray(img).save(tmp_path / "ostwall.png")
    # the unit normal pointing to the left (west) of the northward line at mid-length
    a, b = line.interpolate(line.project(mid) - 5), line.interpolate(line.project(mid) + 5)
    tx, ty = (b.x - a.x) / 10.0, (b.y - a.y) / 10.0
    nx, ny = -ty, tx

    def at(offset: float) -> np.ndarray:
        x, y = mid.x + nx * offset, mid.y + ny * offset
        r, c = round((y0 + 60.0 - y) / 0.1), round((x - x0) / 0.1)
        return img[r - 2 : r + 3, c - 2 : c + 3].reshape(-1, 3).astype(int).mean(axis=0)

    seen = {}
    for kind, left, right in band_offsets(sections["Ostwall"]):
        seen.setdefault(kind, []).append(at((left + right) / 2 + 0.4))
    for road in seen["carriageway"]:
        assert road.max() < 110 and np.ptp(road) < 15
    for gravel in seen["promenade"]:
        assert gravel.min() > 150 and gravel[0] > gravel[2] + 15
    for green in seen["median"] + seen["tree_row"]:
        assert green[1] > green[2] + 15  # lawn, grass and soil: no grey
    for side in seen["sidewalk"]:
        assert side.min() > 140 and np.ptp(side) < 25


def _other_streets(build: Path, name: str) -> shapely.Geometry:
    streets = read_vector(
        build / "streets.gpkg", "EPSG:25832", fields=["name", "highway"], what="streets"
    )
    other = (streets["name"] != name) & (streets["highway"] != "")
    return shapely.union_all(streets["geometry"][other])


def _centre_line(build: Path, name: str) -> shapely.LineString:
    streets = read_vector(
        build / "streets.gpkg", "EPSG:25832", fields=["name", "highway"], what="streets"
    )
    (line,) = street_centre_lines(streets, name)
    return line
