"""The city tileset from real (LoD2) building surfaces: wall and roof areas per building read back from
the GLBs equal the input's, feature ids, the LoD2 property columns, texture coordinates, parents, the
Khronos glTF validator; and the buildings-only tileset (no terrain) checked by `twin tiles info`.

The input is built here: a gabled house, a tall hipped block (walls higher than a facade-atlas band)
and a flat-roofed footprint-only building, with wall and roof areas known in closed form.
`tileset_areas` maps any written tileset back to areas per building and kind (for real tiles too).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import shapely
from conftest import write_mini_pack
from test_tiles_writer import OPTIONS, PRODUCT_STEPS, Glb, positions_utm, tiles_of, validate_glbs

from twin.city.build import run_build
from twin.city.buildings import SURFACE_KINDS, SURFACES, read_buildings, write_surfaces
from twin.city.pack import load_pack
from twin.city.steps import city_steps
from twin.city.vector import write_gpkg
from twin.citytiles.textures import BAND_STOREYS, facade_atlas, roof_atlas
from twin.citytiles.writer import (
    LOD2_COLUMNS,
    NO_DATA,
    TilesetOptions,
    write_buildings_tileset,
    write_tileset_from_build,
)
from twin.tiles.info import tileset_info

WALL, ROOF, GROUND = SURFACE_KINDS["wall"], SURFACE_KINDS["roof"], SURFACE_KINDS["ground"]


# --- synthetic LoD2 buildings ---------------------------------------------------------------------


def gabled(
    x0: float, y0: float, z0: float, length: float, width: float, eaves: float, ridge: float
):
    """A gabled house on a length x width footprint (ridge along x), its polygons outward-facing
    (counter-clockwise seen from outside) with kinds, and its wall and roof areas."""
    x1, y1, ym = x0 + length, y0 + width, y0 + width / 2
    ze, zr = z0 + eaves, z0 + ridge
    polys = [
        ([(x0, y0, z0), (x0, y1, z0), (x1, y1, z0), (x1, y0, z0)], GROUND),
        ([(x0, y0, z0), (x1, y0, z0), (x1, y0, ze), (x0, y0, ze)], WALL),  # south
        ([(x1, y1, z0), (x0, y1, z0), (x0, y1, ze), (x1, y1, ze)], WALL),  # north
        ([(x1, y0, z0), (x1, y1, z0), (x1, y1, ze), (x1, ym, zr), (x1, y0, ze)], WALL),  # east
        ([(x0, y1, z0), (x0, y0, z0), (x0, y0, ze), (x0, ym, zr), (x0, y1, ze)], WALL),  # west
        ([(x0, y0, ze), (x1, y0, ze), (x1, ym, zr), (x0, ym, zr)], ROOF),
        ([(x1, y1, ze), (x0, y1, ze), (x0, ym, zr), (x1, ym, zr)], ROOF),
    ]
    rise = ridge - eaves
    walls = 2 * length * eaves + 2 * (width * eaves + width * rise / 2)
    roofs = 2 * length * np.hypot(width / 2, rise)
    return polys, walls, roofs


def hipped(x0: float, y0: float, z0: float, length: float, width: float, eaves: float, rise: float):
    """A hipped block (all four roof faces at one slope, ridge along x), as gabled() returns it."""
    x1, y1, ym = x0 + length, y0 + width, y0 + width / 2
    ze, zr = z0 + eaves, z0 + eaves + rise
    a, b = x0 + width / 2, x1 - width / 2  # the ridge's ends
    polys = [
        ([(x0, y0, z0), (x0, y1, z0), (x1, y1, z0), (x1, y0, z0)], GROUND),
        ([(x0, y0, z0), (x1, y0, z0), (x1, y0, ze), (x0, y0, ze)], WALL),
        ([(x1, y0, z0), (x1, y1, z0), (x1, y1, ze), (x1, y0, ze)], WALL),
        ([(x1, y1, z0), (x0, y1, z0), (x0, y1, ze), (x1, y1, ze)], WALL),
        ([(x0, y1, z0), (x0, y0, z0), (x0, y0, ze), (x0, y1, ze)], WALL),
        ([(x0, y0, ze), (x1, y0, ze), (b, ym, zr), (a, ym, zr)], ROOF),  # south
        ([(x1, y1, ze), (x0, y1, ze), (a, ym, zr), (b, ym, zr)], ROOF),  # north
        ([(x1, y0, ze), (x1, y1, ze), (b, ym, zr)], ROOF),  # east hip
        ([(x0, y1, ze), (x0, y0, ze), (a, ym, zr)], ROOF),  # west hip
    ]
    walls = 2 * (length + width) * eaves
    roofs = length * width * np.hypot(width / 2, rise) / (width / 2)  # footprint / cos(slope)
    return polys, walls, roofs


def surfaces_of(polys_by_building: list[list]) -> dict[str, np.ndarray]:
    """building_surfaces.npz arrays: each (convex) polygon fanned into triangles, its own vertices."""
    xyz, tris, bld, kind = [], [], [], []
    for row, polys in enumerate(polys_by_building):
        for ring, k in polys:
            first = sum(len(p) for p in xyz)
            xyz.append(np.array(ring, dtype=float))
            for j in range(1, len(ring) - 1):
                tris.append([first, first + j, first + j + 1])
                bld.append(row)
                kind.append(k)
    return {
        "xyz": np.concatenate(xyz),
        "tris": np.array(tris, dtype=np.int64),
        "building": np.array(bld, dtype=np.int64),
        "kind": np.array(kind, dtype=np.uint8),
    }


def plane(x: float) -> float:
    """The mini pack's terrain height (see tests/test_tiles_writer.py)."""
    return 35.0 + 0.002 * (x - 330000.0)


def lod2_input() -> tuple[dict, dict, dict]:
    """(buildings columns, surfaces, expected {(id, kind): area}) of three buildings."""
    specs = [  # id, x0, y0, length, width
        ("DENW_GABLE", 330310.0, 5689410.0, 14.0, 9.0),
        ("DENW_HIP", 330340.0, 5689400.0, 30.0, 12.0),
        ("FLAT_FOOT", 330620.0, 5689420.0, 20.0, 15.0),
    ]
    expected = {}
    polys_by_building, geoms = [], []
    for bid, x0, y0, length, width in specs:
        geoms.append(shapely.box(x0, y0, x0 + length, y0 + width))
        z0 = plane(x0)
        if bid == "DENW_GABLE":
            polys, walls, roofs = gabled(x0, y0, z0, length, width, 6.0, 10.5)
        elif bid == "DENW_HIP":  # 22 m to the eaves: 7 storeys, cut at band heights
            polys, walls, roofs = hipped(x0, y0, z0, length, width, 22.0, 4.0)
        else:  # no surfaces: extruded from the footprint, 8 m high
            polys = []
            walls, roofs = 2 * (length + width) * 8.0, length * width
        polys_by_building.append(polys)
        expected[(bid, "walls")] = walls
        expected[(bid, "roofs")] = roofs
    buildings = {
        "geometry": np.array(geoms, dtype=object),
        "id": np.array([s[0] for s in specs], dtype=object),
        "height": np.array([10.5, 26.0, 8.0]),
        "use": np.array(["residential", "commercial", "industrial"], dtype=object),
        "base": np.array([plane(s[1]) for s in specs]),
        "area": shapely.area(np.array(geoms)),
        "function": np.array(["31001_1000", "31001_2000", "31001_2100"], dtype=object),
        "roof_type": np.array(["3100", "3200", "1000"], dtype=object),
        "measured_height": np.array([10.5, 26.0, np.nan]),
        "storeys": np.array([2.0, 7.0, np.nan]),
    }
    return buildings, surfaces_of(polys_by_building), expected


@pytest.fixture(scope="module")
def lod2_build(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path, dict]:
    """The mini pack built, its buildings product replaced by the LoD2 input."""
    root = tmp_path_factory.mktemp("lod2")
    pack = load_pack(write_mini_pack(root / "pack"))
    run_build(pack, [s for s in city_steps() if s.name in PRODUCT_STEPS], root / "build")
    buildings, surfaces, expected = lod2_input()
    fields = {k: v for k, v in buildings.items() if k != "geometry"}
    write_gpkg(
        root / "build" / "buildings.gpkg", "buildings", pack.crs, buildings["geometry"], fields
    )
    write_surfaces(root / "build" / SURFACES, *(surfaces[k] for k in surfaces))
    return pack, root / "build", expected


@pytest.fixture(scope="module")
def written(lod2_build, tmp_path_factory: pytest.TempPathFactory):
    pack, build, _ = lod2_build
    return write_tileset_from_build(pack, build, tmp_path_factory.mktemp("out") / "t", OPTIONS)


# --- reading a tileset back -----------------------------------------------------------------------


def _triangle_areas(xyz: np.ndarray, tris: np.ndarray) -> np.ndarray:
    c = xyz[tris]
    return 0.5 * np.linalg.norm(np.cross(c[:, 1] - c[:, 0], c[:, 2] - c[:, 0]), axis=1)


def tileset_areas(tileset: Path, leaves_only: bool = True) -> dict[tuple[str, str], float]:
    """Triangle area (m², EPSG:25832 + DHHN2016) per (building id, "walls" | "roofs") of a written
    tileset, through each triangle's feature id and the property table; leaves only by default
    (every building lies in exactly one leaf)."""
    out: dict[tuple[str, str], float] = {}
    for t in tiles_of(tileset):
        if "content" not in t["tile"] or (leaves_only and t["tile"].get("children")):
            continue
        glb = Glb(tileset.parent / t["tile"]["content"]["uri"])
        prims = glb.primitives()
        if "walls" not in prims and "roofs" not in prims:
            continue
        ids = glb.property_table()["id"]
        for name in ("walls", "roofs"):
            if name not in prims:
                continue
            prim = prims[name]
            xyz = positions_utm(glb, prim, t["world"])
            tris = glb.accessor(prim.indices).reshape(-1, 3).astype(np.int64)
            fid = glb.accessor(prim.attributes._FEATURE_ID_0).astype(np.int64)
            area = np.bincount(fid[tris[:, 0]], _triangle_areas(xyz, tris), len(ids))
            for k, bid in enumerate(ids):
                out[(bid, name)] = out.get((bid, name), 0.0) + float(area[k])
    return out


# --- tests ----------------------------------------------------------------------------------------


def test_wall_and_roof_areas_per_building_equal_the_input(written, lod2_build):
    _, _, expected = lod2_build
    got = tileset_areas(written.path / "tileset.json")
    assert set(got) == set(expected)
    for key, area in expected.items():
        assert got[key] == pytest.approx(area, rel=0.005), key


def test_parents_keep_full_surfaces(written, lod2_build):
    _, _, expected = lod2_build
    seen = 0
    for t in tiles_of(written.path / "tileset.json"):
        if not t["tile"].get("children"):
            continue
        kept = written.kept[t["tile"]["content"]["uri"]]
        lod2 = [(row, bid) for row, bid in enumerate(("DENW_GABLE", "DENW_HIP"))
                if bid in kept.table["id"]]  # fmt: skip
        if t["parent"] is None:  # small input: the root keeps everything
            assert len(lod2) == 2 and "FLAT_FOOT" in kept.table["id"]
        for name in ("walls", "roofs"):
            m = kept.meshes[name]
            area = np.bincount(m.feature[m.tris[:, 0]], _triangle_areas(m.xyz, m.tris))
            for row, bid in lod2:
                assert area[row] == pytest.approx(expected[(bid, name)], rel=1e-9)
                seen += 1
    assert seen >= 8


def test_every_vertex_carries_its_buildings_feature_id(written, lod2_build):
    _, build, _ = lod2_build
    b = read_buildings(build / "buildings.gpkg")
    row_of = {str(i): k for k, i in enumerate(b["id"])}
    n = 0
    for t in tiles_of(written.path / "tileset.json"):
        glb = Glb(written.path / t["tile"]["content"]["uri"])
        prims = glb.primitives()
        if "walls" not in prims:
            continue
        ids = glb.property_table()["id"]
        for name in ("walls", "roofs"):
            prim = prims[name]
            fid = glb.accessor(prim.attributes._FEATURE_ID_0)
            assert np.all(fid == np.round(fid)) and fid.min() >= 0 and fid.max() < len(ids)
            rows = np.array([row_of[ids[int(f)]] for f in fid])
            xyz = positions_utm(glb, prim, t["world"])
            # on or inside the footprint of the building the feature id names, between its ground
            # and its top
            d = shapely.distance(b["geometry"][rows], shapely.points(xyz[:, :2]))
            assert d.max() < 0.01
            assert (xyz[:, 2] > b["base"][rows] - 0.01).all()
            assert (xyz[:, 2] < b["base"][rows] + b["height"][rows] + 0.01).all()
            # and every triangle's three vertices name one building
            tris = glb.accessor(prim.indices).reshape(-1, 3)
            assert (fid[tris] == fid[tris[:, :1]]).all()
            n += len(fid)
    assert n > 100


def test_property_table_has_the_lod2_columns(written, lod2_build):
    _, build, _ = lod2_build
    b = read_buildings(build / "buildings.gpkg")
    n = 0
    for t in tiles_of(written.path / "tileset.json"):
        glb = Glb(written.path / t["tile"]["content"]["uri"])
        if "EXT_structural_metadata" not in (glb.g.extensions or {}):
            assert "walls" not in glb.primitives()
            continue
        n += 1
        ext = glb.g.extensions["EXT_structural_metadata"]
        schema = ext["schema"]["classes"]["building"]["properties"]
        assert set(schema) == {"id", "height", "use", "base", *LOD2_COLUMNS}
        assert all(schema[c].get("description") for c in schema)
        assert schema["storeys"]["noData"] == NO_DATA and schema["roof_type"]["type"] == "STRING"
        props = glb.property_table()
        for k, bid in enumerate(props["id"]):
            row = list(b["id"]).index(bid)
            assert props["function"][k] == b["function"][row]
            assert props["roof_type"][k] == b["roof_type"][row]
            want_h, want_s = b["measured_height"][row], b["storeys"][row]
            assert props["measured_height"][k] == (want_h if np.isfinite(want_h) else NO_DATA)
            assert props["storeys"][k] == (want_s if np.isfinite(want_s) else NO_DATA)
    assert n >= 4


def test_b3dm_batch_tables_carry_the_lod2_columns(written):
    n = 0
    for uri, kept in written.kept.items():
        data = (written.path / uri.replace(".glb", ".b3dm")).read_bytes()
        ftj, ftb, btj = np.frombuffer(data[12:24], dtype="<u4")
        if not btj:
            continue
        bt = json.loads(data[28 + ftj + ftb : 28 + ftj + ftb + btj])
        assert bt["roof_type"] == kept.table["roof_type"]
        assert np.allclose(bt["storeys"], kept.table["storeys"])
        n += 1
    assert n > 0


def test_texture_coordinates_stay_in_the_uses_band_and_cell(written, lod2_build):
    _, build, _ = lod2_build
    b = read_buildings(build / "buildings.gpkg")
    facade, roof = facade_atlas(0, 128, 32), roof_atlas(0, 64)
    use = {"residential": 0, "commercial": 1, "industrial": 2}
    for kept in written.kept.values():
        if "walls" not in kept.meshes:
            continue
        rows = {i: list(b["id"]).index(i) for i in kept.table["id"]}
        for bid, row in rows.items():
            if bid == "FLAT_FOOT":
                continue
            u = use[b["use"][row]]
            w = kept.meshes["walls"]
            sel = w.feature == row
            v = w.uv[sel, 1]
            lo, hi = facade.v_of(u, BAND_STOREYS), facade.v_of(u, 0)
            assert v.min() >= lo - 1e-9 and v.max() <= hi + 1e-9
            # no wall triangle is taller than a band: tall walls are cut at band heights
            tri = w.tris[w.feature[w.tris[:, 0]] == row]
            z = w.xyz[tri, 2]
            assert (z.max(axis=1) - z.min(axis=1)).max() <= BAND_STOREYS * 3.75 + 1e-6
            r = kept.meshes["roofs"]
            uv = r.uv[r.feature == row]
            cell = roof.uv_of(np.array([u, u]), np.array([0.0, 1.0]), np.array([0.0, 1.0]))
            assert (uv >= cell[0] - 1e-9).all() and (uv <= cell[1] + 1e-9).all()
        # the tall block's walls are cut where bands meet: 22 m in 7 storeys -> 4 + 3 storeys
        if "DENW_HIP" in rows:
            w = kept.meshes["walls"]
            z = np.unique(np.round(w.xyz[w.feature == rows["DENW_HIP"], 2] - b["base"][1], 3))
            assert np.allclose(z, [0.0, 4 * 22 / 7, 22.0], atol=2e-3)


def test_gltf_validator_reports_no_errors(written):
    files = sorted(str(p) for p in written.path.rglob("*.glb"))
    report = validate_glbs(files)
    assert len(report) == len(files) == written.contents
    for f, res in report.items():
        assert res["errors"] == 0, (f, res["messages"])


# --- buildings only -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def buildings_only(tmp_path_factory: pytest.TempPathFactory):
    buildings, surfaces, expected = lod2_input()
    out = tmp_path_factory.mktemp("bo") / "tiles"
    opts = TilesetOptions(leaf_size_m=100.0, facade_width_px=128, roof_px=64, keep_contents=True)
    return write_buildings_tileset(buildings, surfaces, out, "EPSG:25832", opts), expected


def test_buildings_only_tileset_has_buildings_and_no_terrain(buildings_only):
    report, expected = buildings_only
    tileset = report.path / "tileset.json"
    doc = json.loads(tileset.read_text())
    assert doc["asset"]["version"] == "1.1" and doc["geometricError"] > 0
    for t in tiles_of(tileset):
        if "content" in t["tile"]:
            glb = Glb(report.path / t["tile"]["content"]["uri"])
            assert "terrain" not in glb.primitives()
            assert not glb.g.images or all(
                glb.g.materials[p.material].name != "ground" for p in glb.g.meshes[0].primitives
            )
    got = tileset_areas(tileset)
    assert set(got) == set(expected)
    for key, area in expected.items():
        assert got[key] == pytest.approx(area, rel=0.005), key
    # the extent is the buildings' bounds: no leaf without buildings
    for kept in report.kept.values():
        assert kept.table["id"] and "terrain" not in kept.meshes


def test_buildings_only_tileset_passes_the_validators(buildings_only):
    report, _ = buildings_only
    info = tileset_info(report.path / "tileset.json")  # what `twin tiles info` checks
    assert info["errors"] == [] and info["problems"] == []
    assert info["tiles"] == report.tiles and info["triangles"] == report.triangles
    files = sorted(str(p) for p in report.path.rglob("*.glb"))
    for f, res in validate_glbs(files).items():
        assert res["errors"] == 0 and res["warnings"] == 0, (f, res["messages"])


def test_buildings_only_tileset_refuses_other_crs_and_no_buildings(tmp_path):
    from twin.errors import DataError

    buildings, surfaces, _ = lod2_input()
    with pytest.raises(DataError, match="EPSG:25832"):
        write_buildings_tileset(buildings, surfaces, tmp_path / "a", "EPSG:4326")
    empty = {k: v[:0] for k, v in buildings.items()}
    with pytest.raises(DataError, match="empty"):
        write_buildings_tileset(empty, None, tmp_path / "b", "EPSG:25832")


def test_surfaces_naming_a_missing_building_are_refused(tmp_path):
    from twin.errors import DataError

    buildings, surfaces, _ = lod2_input()
    surfaces["building"][0] = 7
    with pytest.raises(DataError, match="building row 7"):
        write_buildings_tileset(buildings, surfaces, tmp_path / "c", "EPSG:25832")
