"""The textured 3D Tiles writer: read-back in EPSG:25832, textures, properties, level of detail,
bounding volumes, the b3dm variant, the Khronos glTF validator, atomic writes and the build step.

Read-back uses pygltflib (an independent glTF parser) and twin.geo's conversions; geometry is also
checked against the mini pack's analytic sources (a terrain plane, box-shaped footprints).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import shapely
from conftest import write_mini_pack
from PIL import Image

from twin.city.build import run_build
from twin.city.buildings import read_buildings
from twin.city.pack import load_pack
from twin.city.steps import city_steps
from twin.citytiles import writer as writer_module
from twin.citytiles.meshes import footprint_polygons, wall_mesh
from twin.citytiles.step import TILESET, tiles_step
from twin.citytiles.textures import (
    ATLAS_BAYS,
    BAY_M,
    STOREY_M,
    USES,
    GroundPainter,
    facade_atlas,
    jpeg_bytes,
    roof_atlas,
)
from twin.citytiles.writer import TilesetOptions, write_tileset_from_build
from twin.geo import ecef_to_utm, ecef_to_wgs84

REPO = Path(__file__).resolve().parents[1]
NPM_DIR = REPO / ".venv" / "npm"
PRODUCT_STEPS = ("terrain", "landcover", "streets", "buildings", "trees")
OPTIONS = TilesetOptions(
    leaf_size_m=250.0,
    ground_px=64,
    facade_width_px=128,
    roof_px=64,
    ground_format="png",
    b3dm=True,
    keep_contents=True,
)
Y_UP_TO_Z_UP = np.array([[1, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]], dtype=float)


def plane(x: np.ndarray) -> np.ndarray:
    """The mini pack's terrain: 35 m rising 2 m per km to the east of x = 330000."""
    return 35.0 + 0.002 * (np.asarray(x) - 330000.0)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[object, Path]:
    root = tmp_path_factory.mktemp("tiles")
    pack = load_pack(write_mini_pack(root / "pack"))
    steps = [s for s in city_steps() if s.name in PRODUCT_STEPS]
    run_build(pack, steps, root / "build")
    return pack, root / "build"


@pytest.fixture(scope="module")
def written(built, tmp_path_factory: pytest.TempPathFactory):
    pack, build = built
    out = tmp_path_factory.mktemp("out") / "tiles"
    return write_tileset_from_build(pack, build, out, OPTIONS)


# --- an independent reader ------------------------------------------------------------------------


def tiles_of(tileset: Path) -> list[dict]:
    """Every tile with its world matrix, level and parent index."""
    doc = json.loads(tileset.read_text())
    out = []

    def visit(tile: dict, parent_world: np.ndarray, level: int, parent: int | None) -> None:
        t = tile.get("transform")
        m = np.eye(4) if t is None else np.array(t, dtype=float).reshape(4, 4, order="F")
        world = parent_world @ m
        me = len(out)
        out.append({"tile": tile, "world": world, "level": level, "parent": parent})
        for c in tile.get("children", []):
            visit(c, world, level + 1, me)

    visit(doc["root"], np.eye(4), 0, None)
    return out


class Glb:
    """A GLB read with pygltflib; accessors decoded with numpy from the binary blob."""

    def __init__(self, path: Path):
        self.g = pygltflib.GLTF2().load_binary(str(path))
        self.blob = self.g.binary_blob()

    def view(self, i: int) -> bytes:
        v = self.g.bufferViews[i]
        return self.blob[v.byteOffset or 0 : (v.byteOffset or 0) + v.byteLength]

    def accessor(self, i: int) -> np.ndarray:
        a = self.g.accessors[i]
        dtype = {5126: "<f4", 5121: "u1", 5123: "<u2", 5125: "<u4"}[a.componentType]
        width = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}[a.type]
        v = self.g.bufferViews[a.bufferView]
        assert not v.byteStride, "the writer packs attributes tightly"
        raw = np.frombuffer(
            self.blob,
            dtype=dtype,
            count=a.count * width,
            offset=(v.byteOffset or 0) + (a.byteOffset or 0),
        )
        return raw.reshape(a.count, width) if width > 1 else raw

    def primitives(self) -> dict[str, pygltflib.Primitive]:
        mesh = self.g.meshes[self.g.nodes[0].mesh]
        names = {"ground": "terrain", "facade": "walls", "roof": "roofs", "tree": "trees"}
        return {names[self.g.materials[p.material].name]: p for p in mesh.primitives}

    def image(self, material: int) -> np.ndarray:
        tex = self.g.textures[
            self.g.materials[material].pbrMetallicRoughness.baseColorTexture.index
        ]
        data = self.view(self.g.images[tex.source].bufferView)
        return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))

    def property_table(self, class_name: str = "building") -> dict[str, list]:
        """The EXT_structural_metadata property table of a class, decoded as the specification lays
        it out."""
        ext = self.g.extensions["EXT_structural_metadata"]
        cls = ext["schema"]["classes"][class_name]["properties"]
        table = next(t for t in ext["propertyTables"] if t["class"] == class_name)
        out: dict[str, list] = {}
        for name, col in table["properties"].items():
            values = self.view(col["values"])
            if cls[name]["type"] == "STRING":
                off = np.frombuffer(self.view(col["stringOffsets"]), dtype="<u4")
                out[name] = [values[a:b].decode() for a, b in zip(off[:-1], off[1:], strict=True)]
            else:
                assert cls[name]["componentType"] == "FLOAT64"
                out[name] = list(np.frombuffer(values, dtype="<f8"))
            assert len(out[name]) == table["count"]
        return out


def positions_utm(glb: Glb, prim: pygltflib.Primitive, world: np.ndarray) -> np.ndarray:
    p = glb.accessor(prim.attributes.POSITION).astype(np.float64)
    ecef = (world @ Y_UP_TO_Z_UP @ np.column_stack([p, np.ones(len(p))]).T).T[:, :3]
    return np.column_stack(ecef_to_utm(ecef[:, 0], ecef[:, 1], ecef[:, 2]))


def glb_triangles(path: Path) -> int:
    g = Glb(path)
    return sum(g.g.accessors[p.indices].count // 3 for p in g.primitives().values())


# --- textures -------------------------------------------------------------------------------------


def test_atlases_are_deterministic_power_of_two_and_show_windows():
    a, b, c = facade_atlas(7), facade_atlas(7), facade_atlas(8)
    assert np.array_equal(a.image, b.image) and not np.array_equal(a.image, c.image)
    h, w = a.image.shape[:2]
    assert h & (h - 1) == 0 and w & (w - 1) == 0 and h == a.band_rows * len(USES)
    r = roof_atlas(7)
    assert (
        np.array_equal(r.image, roof_atlas(7).image)
        and r.image.shape[0] & (r.image.shape[0] - 1) == 0
    )
    # residential band, second storey: dark window panes alternate with light wall along a row
    row = a.image[int(a.v_of(0, 1.5) * h)].astype(float).mean(axis=1)
    assert row.max() - row.min() > 80
    # windows repeat once per bay: the row's brightness is periodic with w / ATLAS_BAYS pixels
    period = w // ATLAS_BAYS
    dark = (row < row.mean()).astype(float)
    assert np.abs(dark[:-period] - dark[period:]).mean() < 0.15


def test_wall_uvs_tile_whole_bays_and_storeys():
    # a 40 m x 25 m box, 12 m high (four 3 m storeys), standing on 30 m
    box = np.array([shapely.box(0, 0, 40, 25)])
    polys, owner = footprint_polygons(box)
    atlas = facade_atlas(0, 128, 32)
    m = wall_mesh(
        polys, owner, np.array([12.0]), np.array([30.0]), np.array([0]), np.array([0.0]), atlas
    )
    quads = m.uv.reshape(-1, 4, 2)
    xyz = m.xyz.reshape(-1, 4, 3)
    length = np.hypot(*(xyz[:, 1, :2] - xyz[:, 0, :2]).T)
    bays = np.round(length / BAY_M)
    assert np.allclose(quads[:, 1, 0] - quads[:, 0, 0], bays / ATLAS_BAYS)  # whole bays across
    # one band: ground floor at the band bottom up to four storeys, z from base to base + height
    assert np.allclose(xyz[:, 0, 2], 30.0) and np.allclose(xyz[:, 2, 2], 42.0)
    assert np.allclose(quads[:, 0, 1], atlas.v_of(0, 0)) and np.allclose(
        quads[:, 2, 1], atlas.v_of(0, 4)
    )
    # walls face outwards: (b - a) x up points away from the box centre
    mid = (xyz[:, 0, :2] + xyz[:, 1, :2]) / 2 - [20, 12.5]
    d = xyz[:, 1, :2] - xyz[:, 0, :2]
    outward = np.column_stack([d[:, 1], -d[:, 0]])
    assert ((outward * mid).sum(axis=1) > 0).all()
    # a 30 m building (10 storeys) is split into band pieces: 4 + 3 + 3 storeys
    m2 = wall_mesh(
        polys, owner, np.array([30.0]), np.array([0.0]), np.array([0]), np.array([0.0]), atlas
    )
    z = np.unique(np.round(m2.xyz[:, 2], 6))
    assert np.allclose(z, [0, 4 * STOREY_M, 7 * STOREY_M, 10 * STOREY_M])


def test_ground_painter_draws_roads_grey_grass_green_water_blue():
    lc = np.full((20, 20), 5, dtype=np.uint8)  # grass
    lc[:, 15:] = 13  # water in the east
    classes = [
        {"code": 5, "name": "grass", "sealed": 0.0},
        {"code": 13, "name": "water", "sealed": 0.0},
    ]
    road = shapely.linestrings([[0, 100], [150, 100]])
    streets = {
        "geometry": np.array([road]),
        "highway": np.array(["secondary"]),
        "railway": np.array([""]),
        "lanes": np.array(["2"]),
    }
    p = GroundPainter.from_products(lc, (0.0, 200.0, 10.0), classes, streets, None, seed=1)
    img = p.render((0.0, 0.0, 200.0, 200.0), 400, 400).astype(int)
    again = p.render((0.0, 0.0, 200.0, 200.0), 400, 400).astype(int)
    assert np.array_equal(img, again)  # deterministic
    road_px = img[205, 100]  # 2.5 m south of the centre line (y = 100 m is row 200 of 400)
    marking_px = img[200, 100]
    grass_px = img[300, 100]
    water_px = img[300, 380]
    assert np.ptp(road_px) < 12 and road_px.mean() < 110  # asphalt: dark neutral grey
    assert marking_px.min() > 180  # the centre line of a secondary road: white
    assert grass_px[1] > grass_px[0] + 15 and grass_px[1] > grass_px[2] + 15
    assert water_px[2] > water_px[0] + 25
    # neighbouring tiles join without a seam: drawing halves equals drawing the whole
    left = p.render((0.0, 0.0, 100.0, 200.0), 200, 400).astype(int)
    assert np.array_equal(left, img[:, :200])


# --- the written tileset --------------------------------------------------------------------------


def test_geometry_reads_back_in_epsg25832_within_1cm(written):
    tileset = written.path / "tileset.json"
    checked = 0
    for t in tiles_of(tileset):
        uri = t["tile"]["content"]["uri"]
        kept = written.kept[uri]
        glb = Glb(written.path / uri)
        prims = glb.primitives()
        assert set(prims) == set(kept.meshes)
        for name, prim in prims.items():
            mesh = kept.meshes[name]
            xyz = positions_utm(glb, prim, t["world"])
            assert len(xyz) == len(mesh.xyz)  # vertex count
            assert np.abs(xyz - mesh.xyz).max() < 0.01  # metres, EPSG:25832 + DHHN2016
            tris = glb.accessor(prim.indices).reshape(-1, 3)
            assert np.array_equal(tris, mesh.tris)
            # float32 positions stay small: relative to the tile centre, not ECEF
            assert np.abs(glb.accessor(prim.attributes.POSITION)).max() < 1000
            checked += len(xyz)
    assert checked > 1000


def test_geometry_matches_the_sources(written, built):
    _, build = built
    b = read_buildings(build / "buildings.gpkg")
    for uri, kept in written.kept.items():
        terrain = kept.meshes["terrain"].xyz
        on_plane = np.abs(terrain[:, 2] - plane(terrain[:, 0])) < 0.01
        top = {(round(x, 3), round(y, 3)) for x, y in terrain[on_plane, :2]}
        # the rest are skirt vertices: straight below a surface vertex
        for x, y, z in terrain[~on_plane]:
            assert (round(x, 3), round(y, 3)) in top and z < plane(x)
        assert on_plane.mean() > 0.5, uri
        for name in ("walls", "roofs"):
            if name not in kept.meshes:
                continue
            m = kept.meshes[name]
            rows = np.array([list(b["id"]).index(i) for i in kept.table["id"]])
            for local, row in enumerate(rows):
                sel = m.feature == row
                assert sel.any(), (uri, name, row)
                pts = shapely.points(m.xyz[sel, :2])
                ring = b["geometry"][row].exterior
                assert shapely.distance(pts, ring).max() < 0.01  # vertices on the footprint
                z = m.xyz[sel, 2]
                base, top_z = b["base"][row], b["base"][row] + b["height"][row]
                assert z.min() > base - 0.01 and z.max() < top_z + 0.01
                if name == "roofs":
                    assert np.abs(z - top_z).max() < 0.01
                assert local == list(kept.table["id"]).index(b["id"][row])


def test_textures_read_back_identically(written):
    n = 0
    for uri, kept in written.kept.items():
        glb = Glb(written.path / uri)
        for name, prim in glb.primitives().items():
            kind = {"terrain": "ground", "walls": "facade", "roofs": "roof"}[name]
            img = glb.image(prim.material)
            assert np.array_equal(img, kept.images[kind]), (uri, kind)
            h, w = img.shape[:2]
            assert h & (h - 1) == 0 and w & (w - 1) == 0  # powers of two
            n += 1
    assert n >= len(written.kept)


def test_properties_equal_the_buildings_table(written, built):
    _, build = built
    b = read_buildings(build / "buildings.gpkg")
    table = {str(i): k for k, i in enumerate(b["id"])}
    seen_in_leaves: list[str] = []
    for t in tiles_of(written.path / "tileset.json"):
        uri = t["tile"]["content"]["uri"]
        glb = Glb(written.path / uri)
        if glb.g.extensions is None or "EXT_structural_metadata" not in glb.g.extensions:
            assert "walls" not in glb.primitives()
            continue
        props = glb.property_table()
        for k, bid in enumerate(props["id"]):
            row = table[bid]
            assert props["height"][k] == b["height"][row]
            assert props["use"][k] == b["use"][row]
            assert props["base"][k] == b["base"][row]
        for name, prim in glb.primitives().items():
            ext = prim.extensions.get("EXT_mesh_features") if prim.extensions else None
            if name == "terrain":
                assert ext is None
                continue
            assert ext["featureIds"][0] == {
                "featureCount": len(props["id"]),
                "attribute": 0,
                "propertyTable": 0,
            }
            fid = glb.accessor(prim.attributes._FEATURE_ID_0)
            assert fid.min() >= 0 and fid.max() < len(props["id"]) and np.all(fid == np.round(fid))
            # each vertex lies on the footprint of the building its feature id names
            xyz = positions_utm(glb, prim, t["world"])
            rows = np.array([table[props["id"][int(f)]] for f in fid])
            pts = shapely.points(xyz[:, :2])
            assert shapely.distance(pts, shapely.boundary(b["geometry"][rows])).max() < 0.01
        if not t["tile"].get("children"):
            seen_in_leaves += props["id"]
    assert sorted(seen_in_leaves) == sorted(table)  # every building once, in exactly one leaf


def test_level_of_detail_and_bounding_regions(written):
    tiles = tiles_of(written.path / "tileset.json")
    assert tiles[0]["tile"]["refine"] == "REPLACE"
    assert max(t["level"] for t in tiles) == written.depth >= 2
    tri = {}
    for i, t in enumerate(tiles):
        tile = t["tile"]
        path = written.path / tile["content"]["uri"]
        tri[i] = glb_triangles(path)
        w, s, e, n, lo, hi = tile["boundingVolume"]["region"]
        glb = Glb(path)
        for prim in glb.primitives().values():
            p = glb.accessor(prim.attributes.POSITION).astype(np.float64)
            ecef = (t["world"] @ Y_UP_TO_Z_UP @ np.column_stack([p, np.ones(len(p))]).T).T
            lon, lat, h = ecef_to_wgs84(ecef[:, 0], ecef[:, 1], ecef[:, 2])
            lon, lat = np.radians(lon), np.radians(lat)
            assert (lon >= w).all() and (lon <= e).all() and (lat >= s).all() and (lat <= n).all()
            assert (h >= lo).all() and (h <= hi).all()
        if t["parent"] is not None:
            parent = tiles[t["parent"]]["tile"]
            assert tile["geometricError"] < parent["geometricError"]
            pw, ps, pe, pn, plo, phi = parent["boundingVolume"]["region"]
            assert pw <= w and ps <= s and pe >= e and pn >= n and plo <= lo and phi >= hi
        if not tile.get("children"):
            assert tile["geometricError"] == 0.0
    for i, t in enumerate(tiles):
        kids = [j for j, u in enumerate(tiles) if u["parent"] == i]
        if kids:
            assert tri[i] < sum(tri[j] for j in kids), t["tile"]["content"]["uri"]
    assert sum(tri.values()) == written.triangles


def test_reader_agrees(written):
    info_mod = pytest.importorskip("twin.tiles.info", reason="the 3D Tiles reader is not here yet")
    info = info_mod.tileset_info(written.path / "tileset.json")
    assert info["tiles"] == written.tiles and info["depth"] == written.depth
    assert info["triangles"] == written.triangles
    assert info["textures"] == sum(len(k.images) for k in written.kept.values())
    assert info["features"] == sum(len(k.table["id"]) for k in written.kept.values())


def test_b3dm_variant_has_batch_tables(written):
    doc = json.loads((written.path / "tileset_b3dm.json").read_text())
    assert doc["asset"]["version"] == "1.0"
    n = 0
    for t in tiles_of(written.path / "tileset_b3dm.json"):
        uri = t["tile"]["content"]["uri"]
        data = (written.path / uri).read_bytes()
        magic, version, length, ftj, ftb, btj, btb = struct.unpack_from("<4sIIIIII", data)
        assert magic == b"b3dm" and version == 1 and length == len(data)
        assert (28 + ftj) % 8 == 0 and (28 + ftj + ftb + btj + btb) % 8 == 0
        ft = json.loads(data[28 : 28 + ftj])
        glb = data[28 + ftj + ftb + btj + btb :]
        assert glb[:4] == b"glTF"
        kept = written.kept[uri.removesuffix(".b3dm") + ".glb"]
        assert ft["BATCH_LENGTH"] == len(kept.table["id"])
        if btj:
            bt = json.loads(data[28 + ftj + ftb : 28 + ftj + ftb + btj])
            assert bt["id"] == kept.table["id"] and bt["use"] == kept.table["use"]
            assert np.allclose(bt["height"], kept.table["height"])
            g = pygltflib.GLTF2.load_from_bytes(glb)
            assert not g.extensionsUsed  # 1.0 content: _BATCHID, no metadata extensions
            n += 1
    assert n > 0


def _validator() -> Path:
    """A node script running the Khronos glTF validator (npm gltf-validator) on files."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        pytest.skip("node/npm are not installed: the Khronos glTF validator cannot run")
    if not (NPM_DIR / "node_modules" / "gltf-validator").exists():
        r = subprocess.run(
            [
                npm,
                "install",
                "--prefix",
                str(NPM_DIR),
                "--no-audit",
                "--no-fund",
                "gltf-validator@2.0.0-dev.3.10",
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        if r.returncode != 0:
            pytest.skip(f"cannot install gltf-validator from npm: {r.stderr.strip()[-200:]}")
    script = NPM_DIR / "validate_gltf.js"
    script.write_text(
        "const fs = require('fs');\n"
        "const v = require('gltf-validator');\n"
        "(async () => {\n"
        "  const out = {};\n"
        "  for (const f of process.argv.slice(2)) {\n"
        "    const r = await v.validateBytes(new Uint8Array(fs.readFileSync(f)), {uri: f});\n"
        "    out[f] = {errors: r.issues.numErrors, warnings: r.issues.numWarnings,\n"
        "      messages: r.issues.messages.filter(m => m.severity < 2).map(m => m.code + ' ' +\n"
        "        (m.pointer || '') + ' ' + m.message)};\n"
        "  }\n"
        "  console.log(JSON.stringify(out));\n"
        "})();\n"
    )
    return script


def validate_glbs(files: list[str]) -> dict:
    """The Khronos glTF validator's {file: {errors, warnings, messages}} for GLB files (skips the
    test when npm cannot provide the validator)."""
    script = _validator()
    env = {**os.environ, "NODE_PATH": str(NPM_DIR / "node_modules")}
    r = subprocess.run(
        ["node", str(script), *files],
        capture_output=True,
        text=True,
        timeout=600,  # generous: hundreds of files on a loaded machine
        env=env,
        cwd=NPM_DIR,
    )
    assert r.returncode == 0, r.stderr
    return {f: _without_ktx2_warnings(f, res) for f, res in json.loads(r.stdout).items()}


def _without_ktx2_warnings(file: str, res: dict) -> dict:
    """The validator does not know KHR_texture_basisu (none of its releases does): it warns that
    image/ktx2 is not a known mimeType and that it cannot read those images. Those warnings, on the
    KTX2 images of a GLB that declares the extension, are moved to `ktx2_unchecked` (the KTX2 files
    are checked by tests/test_tiles_ktx2.py instead); every other message stays."""
    try:
        g = pygltflib.GLTF2().load_binary(file)
    except Exception:  # not a GLB this reader takes: leave the report as it is
        return res
    if "KHR_texture_basisu" not in (g.extensionsUsed or []):
        return res
    ktx = {i for i, im in enumerate(g.images) if im.mimeType == "image/ktx2"}
    known = set()
    for i in ktx:
        known.add(f"VALUE_NOT_IN_LIST /images/{i}/mimeType Invalid value 'image/ktx2'.")
        known.add(f"IMAGE_UNRECOGNIZED_FORMAT /images/{i} Image format not recognized.")
    kept = [m for m in res["messages"] if not any(m.startswith(k) for k in known)]
    moved = len(res["messages"]) - len(kept)
    return {**res, "warnings": res["warnings"] - moved, "messages": kept, "ktx2_unchecked": moved}


def test_gltf_validator_reports_no_errors(written, tmp_path):
    files = sorted(str(p) for p in written.path.rglob("*.glb"))
    assert len(files) == written.contents
    for b3dm in sorted(written.path.rglob("*.b3dm")):  # the GLBs inside the 1.0 variant too
        data = b3dm.read_bytes()
        _, _, _, ftj, ftb, btj, btb = struct.unpack_from("<4sIIIIII", data)
        inner = tmp_path / f"{b3dm.parent.name}_{b3dm.stem}_b3dm.glb"
        inner.write_bytes(data[28 + ftj + ftb + btj + btb :])
        files.append(str(inner))
    report = validate_glbs(files)
    assert len(report) == len(files) == 2 * written.contents
    for f, res in report.items():
        assert res["errors"] == 0, (f, res["messages"])
        assert res["warnings"] == 0, (f, res["messages"])


def test_jpeg_ground_images(built, tmp_path):
    pack, build = built
    opts = TilesetOptions(
        leaf_size_m=500.0,
        ground_px=64,
        facade_width_px=64,
        roof_px=32,
        ground_format="jpeg",
        keep_contents=True,
    )
    rep = write_tileset_from_build(pack, build, tmp_path / "t", opts)
    for uri, kept in rep.kept.items():
        glb = Glb(rep.path / uri)
        prim = glb.primitives()["terrain"]
        tex = glb.g.textures[
            glb.g.materials[prim.material].pbrMetallicRoughness.baseColorTexture.index
        ]
        assert glb.g.images[tex.source].mimeType == "image/jpeg"
        # the stored bytes are exactly the JPEG encoding of the image the writer drew ...
        assert glb.view(glb.g.images[tex.source].bufferView) == jpeg_bytes(
            kept.images["ground"], 85
        )
        # ... and decode to it within JPEG's loss (quality 85 on a small, busy image)
        diff = np.abs(glb.image(prim.material).astype(int) - kept.images["ground"].astype(int))
        assert diff.mean() < 8


def test_same_inputs_write_the_same_bytes(built, tmp_path):
    pack, build = built
    opts = TilesetOptions(leaf_size_m=500.0, ground_px=32, facade_width_px=64, roof_px=32)
    a = write_tileset_from_build(pack, build, tmp_path / "a", opts).path
    b = write_tileset_from_build(pack, build, tmp_path / "b", opts).path
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    c = write_tileset_from_build(
        pack,
        build,
        tmp_path / "c",
        TilesetOptions(leaf_size_m=500.0, ground_px=32, facade_width_px=64, roof_px=32, seed=1),
    ).path
    assert any((a / f).read_bytes() != (c / f).read_bytes() for f in files)  # the seed matters


def test_failed_write_leaves_the_old_tileset(built, tmp_path, monkeypatch):
    pack, build = built
    opts = TilesetOptions(leaf_size_m=500.0, ground_px=32, facade_width_px=64, roof_px=32)
    out = tmp_path / "tiles"
    write_tileset_from_build(pack, build, out, opts)
    before = (out / "tileset.json").read_bytes()
    calls = {"n": 0}
    real = writer_module.encode_glb

    def failing(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("disk full")
        return real(*args, **kwargs)

    monkeypatch.setattr(writer_module, "encode_glb", failing)
    with pytest.raises(RuntimeError, match="disk full"):
        write_tileset_from_build(pack, build, out, opts)
    assert (out / "tileset.json").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tiles"]  # no temporary folders left


def test_build_step_moves_the_tileset_into_place(tmp_path):
    pack_toml = write_mini_pack(tmp_path / "pack")
    steps = [s for s in city_steps() if s.name in PRODUCT_STEPS] + [tiles_step()]
    build = tmp_path / "build"
    status = {r.name: r.status for r in run_build(load_pack(pack_toml), steps, build)}
    assert status["tiles"] == "built"
    doc = json.loads((build / TILESET).read_text())
    uris = [t["tile"]["content"]["uri"] for t in tiles_of(build / TILESET)]
    assert uris and all((build / "tiles" / u).exists() for u in uris)
    assert doc["asset"]["version"] == "1.1"
    assert not (build / ".partial" / "tiles").exists()
    # unchanged inputs: cached; changed buildings: rebuilt, and the old folder is replaced whole
    again = {r.name: r.status for r in run_build(load_pack(pack_toml), steps, build)}
    assert again["tiles"] == "cached"
    before = {p.relative_to(build): p.read_bytes() for p in (build / "tiles").rglob("*.glb")}
    src = tmp_path / "pack" / "buildings.geojson"
    src.write_text(src.read_text().replace('"height": 10.0', '"height": 11.0'))
    third = {r.name: r.status for r in run_build(load_pack(pack_toml), steps, build)}
    assert third["tiles"] == "built"
    after = {p.relative_to(build): p.read_bytes() for p in (build / "tiles").rglob("*.glb")}
    assert after != before
    uris2 = [t["tile"]["content"]["uri"] for t in tiles_of(build / TILESET)]
    on_disk = {p.relative_to(build / "tiles").as_posix() for p in (build / "tiles").rglob("*.glb")}
    assert on_disk == set(uris2)  # nothing left over from the previous tileset
    assert sorted(p.name for p in build.iterdir() if p.name.startswith(".tiles")) == []
