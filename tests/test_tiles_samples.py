"""twin.tiles on real third-party tilesets (CesiumGS samples in ../shared/data/3dtiles-samples).

Expected numbers are computed here independently of twin.tiles: tileset JSON walked with `json`,
headers read with `struct`, glTF JSON read with pygltflib (glTF 2) or `json` (glTF 1.0), implicit
subtree bits read bit by bit.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pygltflib
import pytest

from twin import geo
from twin.errors import DataError
from twin.tiles import open_tileset, tile_meshes, tileset_info, to_pyvista
from twin.tiles.source import FolderSource

SAMPLES = (
    Path(__file__).resolve().parents[1].parent / "shared" / "data" / "3dtiles-samples"
).resolve()
pytestmark = pytest.mark.skipif(
    not SAMPLES.exists(), reason=f"3D Tiles samples not found at {SAMPLES} (../shared/data absent)"
)
NAMES = sorted(p.parent.name for p in SAMPLES.glob("*/tileset.json")) if SAMPLES.exists() else []
BROKEN = {
    "TilesetOfTilesetsWithError/tileset3/ll.b3dm"
}  # deliberately wrong byteLength (SOURCES.md)
# Sample geometry overhangs its own volumes a little (a building 0.1 m over its 67 m box, points
# 5 mm over a 0.2 m-high box); positions must lie inside the volume grown by 2 % of its largest
# half extent.
VOLUME_TOLERANCE = 0.02


# ---------------------------------------------------------------- independent reference
def mat(values) -> np.ndarray:
    return np.array(values, dtype=float).reshape(4, 4).T


def gltf_counts(glb: bytes) -> tuple[int, int, int]:
    """(triangles, points, images) of a GLB, from its JSON alone, walking the default scene."""
    version = struct.unpack_from("<I", glb, 4)[0]
    clen = struct.unpack_from("<I", glb, 12)[0]
    if version == 1:  # glTF 1.0: objects keyed by id
        j = json.loads(glb[20 : 20 + clen])
        acc, meshes, nodes = j["accessors"], j["meshes"], j["nodes"]
        roots = j["scenes"][j["scene"]]["nodes"]
        prims = []
        stack = list(roots)
        while stack:
            n = nodes[stack.pop()]
            for m in n.get("meshes", []):
                prims += meshes[m]["primitives"]
            stack += n.get("children", [])
        tri = sum(acc[p["indices"]]["count"] // 3 for p in prims if p.get("mode", 4) == 4)
        return tri, 0, len(j.get("images", {}))
    g = pygltflib.GLTF2.from_json(glb[20 : 20 + clen].decode())
    prims = []
    stack = list(g.scenes[g.scene or 0].nodes)
    while stack:
        n = g.nodes[stack.pop()]
        if n.mesh is not None:
            prims += g.meshes[n.mesh].primitives
        stack += n.children or []
    tri = pts = 0
    for p in prims:
        mode = 4 if p.mode is None else p.mode
        count = (
            g.accessors[p.indices].count
            if p.indices is not None
            else g.accessors[p.attributes.POSITION].count
        )
        tri += count // 3 if mode == 4 else 0
        pts += count if mode == 0 else 0
    return tri, pts, len(g.images)


def declared(data: bytes) -> dict:
    """Counts a content declares in its headers, tables and glTF JSON."""
    magic = data[:4]
    if magic == b"cmpt":
        n = struct.unpack_from("<I", data, 12)[0]
        out = {"triangles": 0, "points": 0, "features": 0, "textures": 0}
        off = 16
        for _ in range(n):
            ln = struct.unpack_from("<I", data, off + 8)[0]
            for k, v in declared(data[off : off + ln]).items():
                out[k] += v
            off += ln
        return out
    if magic == b"glTF":
        tri, pts, tex = gltf_counts(data)
        return {"triangles": tri, "points": pts, "features": 0, "textures": tex}
    hl = 32 if magic == b"i3dm" else 28
    ftj, ftb, btj, btb = struct.unpack_from("<4I", data, 12)
    ft = json.loads(data[hl : hl + ftj])
    body = data[hl + ftj + ftb + btj + btb :]
    if magic == b"pnts":
        assert "BATCH_ID" not in ft  # the samples' points are their own features
        return {
            "triangles": 0,
            "points": ft["POINTS_LENGTH"],
            "features": ft["POINTS_LENGTH"],
            "textures": 0,
        }
    tri, pts, tex = gltf_counts(body)
    if magic == b"i3dm":
        assert "BATCH_ID" not in ft  # each instance is a feature
        k = ft["INSTANCES_LENGTH"]
        return {"triangles": tri * k, "points": pts * k, "features": k, "textures": tex}
    return {"triangles": tri, "points": pts, "features": ft["BATCH_LENGTH"], "textures": tex}


def subtree_bits(path: Path) -> tuple[dict, bytes]:
    data = path.read_bytes()
    jlen, blen = struct.unpack_from("<QQ", data, 8)
    return json.loads(data[24 : 24 + jlen]), data[24 + jlen : 24 + jlen + blen]


def bit(avail: dict, j: dict, binary: bytes, i: int) -> bool:
    if "constant" in avail:
        return bool(avail["constant"])
    v = j["bufferViews"][avail["bitstream"]]
    return bool((binary[v["byteOffset"] + i // 8] >> (i % 8)) & 1)


def walk(path: Path) -> dict:
    """Tiles, depth, contents and per-content volumes of a tileset, walked independently."""
    out = {"tiles": 0, "depth": 0, "contents": [], "volumes": {}}

    def visit(tile: dict, folder: Path, depth: int, world: np.ndarray) -> None:
        out["tiles"] += 1
        out["depth"] = max(out["depth"], depth)
        if "transform" in tile:
            world = world @ mat(tile["transform"])
        if "implicitTiling" in tile:
            implicit(tile, folder, depth, world)
            return
        items = [tile["content"]] if "content" in tile else tile.get("contents", [])
        for c in items:
            p = folder / (c.get("uri") or c["url"])
            if p.suffix == ".json":
                out["contents"].append(("json", p))
                ext = json.loads(p.read_text())
                visit(ext["root"], p.parent, depth + 1, world)
            else:
                out["contents"].append(("content", p))
                out["volumes"][p] = (tile["boundingVolume"], world)
        for ch in tile.get("children", []):
            visit(ch, folder, depth + 1, world)

    def implicit(tile: dict, folder: Path, depth: int, world: np.ndarray) -> None:
        it = tile["implicitTiling"]
        assert it["subdivisionScheme"] == "QUADTREE"
        levels, avail_levels = it["subtreeLevels"], it["availableLevels"]
        box = np.array(tile["boundingVolume"]["box"], float)
        out["tiles"] -= 1  # the implicit root is counted with its subtree

        def subtree(level: int, x: int, y: int) -> None:
            name = it["subtrees"]["uri"].format(level=level, x=x, y=y)
            j, binary = subtree_bits(folder / name)
            for rl in range(levels):
                if level + rl >= avail_levels:
                    break
                for m in range(4**rl):
                    i = (4**rl - 1) // 3 + m
                    if not bit(j["tileAvailability"], j, binary, i):
                        continue
                    rx = sum(((m >> (2 * b)) & 1) << b for b in range(rl))
                    ry = sum(((m >> (2 * b + 1)) & 1) << b for b in range(rl))
                    lv, tx, ty = level + rl, (x << rl) + rx, (y << rl) + ry
                    out["tiles"] += 1
                    out["depth"] = max(out["depth"], depth + lv)
                    if bit(j["contentAvailability"][0], j, binary, i):
                        p = folder / tile["content"]["uri"].format(level=lv, x=tx, y=ty)
                        out["contents"].append(("content", p))
                        s = 0.5**lv
                        c = (
                            box[:3]
                            + box[3:6] * ((2 * tx + 1) * s - 1)
                            + box[6:9] * ((2 * ty + 1) * s - 1)
                        )
                        b = np.concatenate([c, box[3:6] * s, box[6:9] * s, box[9:12]])
                        out["volumes"][p] = ({"box": b.tolist()}, world)
            if level + levels < avail_levels:
                for m in range(4**levels):
                    if bit(j["childSubtreeAvailability"], j, binary, m):
                        rx = sum(((m >> (2 * b)) & 1) << b for b in range(levels))
                        ry = sum(((m >> (2 * b + 1)) & 1) << b for b in range(levels))
                        subtree(level + levels, (x << levels) + rx, (y << levels) + ry)

        subtree(0, 0, 0)

    doc = json.loads(path.read_text())
    visit(doc["root"], path.parent, 0, np.eye(4))
    return out


def inside(points: np.ndarray, volume: dict, world: np.ndarray) -> float:
    """Largest distance (m) of points outside the volume, minus the allowed tolerance (<= 0: ok)."""
    if "region" in volume:
        w, s, e, n, lo, hi = volume["region"]
        lon, lat, h = geo.ecef_to_wgs84(points[:, 0], points[:, 1], points[:, 2])
        lon, lat = np.radians(lon), np.radians(lat)
        r = 6.371e6
        half = max((e - w) * r * np.cos(s), (n - s) * r, hi - lo) / 2
        out = np.maximum.reduce(
            [
                (w - lon) * r * np.cos(lat),
                (lon - e) * r * np.cos(lat),
                (s - lat) * r,
                (lat - n) * r,
                lo - h,
                h - hi,
            ]
        )
        return float(out.max() - VOLUME_TOLERANCE * half)
    if "sphere" in volume:
        c = world[:3, :3] @ np.array(volume["sphere"][:3]) + world[:3, 3]
        radius = volume["sphere"][3] * np.linalg.norm(world[:3, :3], axis=0).max()
        return float(
            (np.linalg.norm(points - c, axis=1) - radius).max() - VOLUME_TOLERANCE * radius
        )
    box = np.array(volume["box"], float)
    c = world[:3, :3] @ box[:3] + world[:3, 3]
    axes = world[:3, :3] @ box[3:].reshape(3, 3).T
    lengths = np.linalg.norm(axes, axis=0)
    proj = np.abs((points - c) @ (axes / lengths))
    return float((proj - lengths).max() - VOLUME_TOLERANCE * lengths.max())


# ---------------------------------------------------------------- tests
@pytest.mark.parametrize("name", NAMES)
def test_counts_equal_what_the_files_declare(name: str) -> None:
    ref = walk(SAMPLES / name / "tileset.json")
    info = tileset_info(SAMPLES / name)
    assert info["tiles"] == ref["tiles"]
    assert info["depth"] == ref["depth"]
    want = {"triangles": 0, "points": 0, "features": 0, "textures": 0}
    kinds: dict[str, int] = {}
    for kind, p in ref["contents"]:
        if kind == "json":
            kinds["json"] = kinds.get("json", 0) + 1
            continue
        data = p.read_bytes()
        magic = data[:4].decode()
        kinds[{"glTF": "glb"}.get(magic, magic)] = (
            kinds.get({"glTF": "glb"}.get(magic, magic), 0) + 1
        )
        if p.relative_to(SAMPLES).as_posix() in BROKEN:
            continue
        for k, v in declared(data).items():
            want[k] += v
    assert info["contents"] == kinds
    for k, v in want.items():
        assert info[k] == v, k
    broken = [b for b in BROKEN if b.startswith(name + "/")]
    assert len(info["problems"]) >= len(broken)
    for b in broken:
        assert any(b.split("/", 1)[1] in p and "byteLength" in p for p in info["problems"])


@pytest.mark.parametrize("name", NAMES)
def test_positions_lie_in_their_bounding_volumes(name: str) -> None:
    ref = walk(SAMPLES / name / "tileset.json")
    ts = open_tileset(SAMPLES / name)
    tiles = ts.tiles()
    checked = 0
    for t in tiles:
        if t.is_external:
            continue
        for r in t.contents:
            path = Path(ts.source.display(r.key))
            if path.relative_to(SAMPLES).as_posix() in BROKEN:
                continue
            volume, world = ref["volumes"][path]
            np.testing.assert_allclose(t.transform, world, atol=1e-6)
            content = ts.read_content(r)
            for leaf in content.leaves():
                if leaf.instance_matrices is not None:  # instanced models overhang; check placement
                    pts = leaf.instance_matrices[:, :3, 3] @ world[:3, :3].T + world[:3, 3]
                    assert inside(pts, volume, world) <= 0, f"{path} instances"
                    checked += 1
                    continue
                for g in leaf.geometry(world):
                    assert inside(g.positions, volume, world) <= 0, f"{path} {g.source}"
                    checked += 1
    assert checked > 0


def test_broken_sample_content_raises_clear_error() -> None:
    ts = open_tileset(SAMPLES / "TilesetOfTilesetsWithError")
    bad = [r for t in ts.tiles() for r in t.contents if r.uri == "ll.b3dm"]
    assert len(bad) == 1
    with pytest.raises(DataError, match=r"tileset3/ll\.b3dm: b3dm header byteLength says 9716"):
        ts.read_content(bad[0])


def test_opening_reads_only_the_tileset_json(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    original = FolderSource.read

    def spy(self, key):
        seen.append(key)
        return original(self, key)

    monkeypatch.setattr(FolderSource, "read", spy)
    ts = open_tileset(SAMPLES / "TilesetWithRequestVolume")
    assert seen == ["tileset.json"]
    ts.root.children  # noqa: B018 - children of the root are in the same file
    assert seen == ["tileset.json"]
    city = [t for t in ts.root.children if t.is_external][0]
    assert [c.address for c in city.children] == ["city/tileset.json:root"]
    assert seen == ["tileset.json", "city/tileset.json"]
    sp = open_tileset(SAMPLES / "SparseImplicitQuadtree")
    assert len(sp) == 1 and seen[-1] == "tileset.json"


def test_batch_table_json_and_binary_properties() -> None:
    path = SAMPLES / "BatchedWithBatchTable" / "batchedWithBatchTable.b3dm"
    data = path.read_bytes()
    ftj, ftb, btj, _ = struct.unpack_from("<4I", data, 12)
    bt = json.loads(data[28 + ftj + ftb : 28 + ftj + ftb + btj])
    props = open_tileset(path.parent).root.read_contents()[0].properties()
    np.testing.assert_array_equal(props["id"], bt["id"])
    np.testing.assert_allclose(props["Height"], bt["Height"])
    assert props["info"] == bt["info"]  # nested JSON objects stay as they are

    path = SAMPLES / "PointCloudWithPerPointProperties" / "pointCloudWithPerPointProperties.pnts"
    data = path.read_bytes()
    ftj, ftb, btj, btb = struct.unpack_from("<4I", data, 12)
    bt = json.loads(data[28 + ftj + ftb : 28 + ftj + ftb + btj])
    binary = data[28 + ftj + ftb + btj :]
    props = open_tileset(path.parent).root.read_contents()[0].properties()
    temp = np.frombuffer(binary, "<f4", 1000, bt["temperature"]["byteOffset"])
    color = np.frombuffer(binary, "<f4", 3000, bt["secondaryColor"]["byteOffset"]).reshape(-1, 3)
    ids = np.frombuffer(binary, "<u2", 1000, bt["id"]["byteOffset"])
    np.testing.assert_array_equal(props["temperature"], temp)
    np.testing.assert_array_equal(props["secondaryColor"], color)
    np.testing.assert_array_equal(props["id"], ids)


def test_legacy_gltf1_b3dm_geometry_matches_its_accessors() -> None:
    """glTF 1.0 in b3dm (KHR_binary_glTF, CESIUM_RTC): positions read from the accessor bytes."""
    data = (SAMPLES / "Tileset" / "ll.b3dm").read_bytes()
    glb = data[28 + 24 + 640 :]
    clen = struct.unpack_from("<I", glb, 12)[0]
    j = json.loads(glb[20 : 20 + clen])
    body = glb[20 + clen :]
    acc = j["accessors"]["accessor_position"]
    view = j["bufferViews"][acc["bufferView"]]
    raw = np.frombuffer(
        body, "<f4", acc["count"] * 3, view["byteOffset"] + acc["byteOffset"]
    ).reshape(-1, 3)
    node = mat(j["nodes"]["rootNode"]["matrix"])
    y_up_to_z_up = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)
    rtc = np.array(j["extensions"]["CESIUM_RTC"]["center"])
    expected = (raw @ node[:3, :3].T) @ y_up_to_z_up.T + rtc
    content = open_tileset(SAMPLES / "Tileset").root.children[0].read_contents()[0]
    assert content.gltf.version == 1
    g = content.geometry()[0]
    np.testing.assert_allclose(g.positions, expected, atol=1e-6)
    assert len(g.faces) == j["accessors"]["accessor_index_0"]["count"] // 3
    np.testing.assert_array_equal(np.unique(g.feature_ids), np.arange(10))


def test_meshes_in_each_frame_agree_and_keep_textures_and_ids() -> None:
    ts = open_tileset(SAMPLES / "BatchedTextured")
    ecef = tile_meshes(ts, None, "ecef")
    enu = tile_meshes(ts, None, "enu")
    utm = tile_meshes(ts, None, "EPSG:25832")
    assert len(ecef) == len(enu) == len(utm) == 1
    origin = enu[0].metadata["origin"]
    frame = geo.LocalFrame(origin["lon"], origin["lat"], origin["h_ellipsoidal"])
    np.testing.assert_allclose(frame.enu_to_ecef(enu[0].vertices), ecef[0].vertices, atol=1e-6)
    x, y, h = utm[0].vertices.T
    np.testing.assert_allclose(
        np.stack(geo.utm_to_ecef(x, y, h), axis=1), ecef[0].vertices, atol=1e-3
    )
    assert np.abs(enu[0].vertices).max() < 200  # local coordinates stay small
    m = ecef[0]
    assert m.visual.kind == "texture"
    assert m.visual.material.baseColorTexture.size == (128, 128)
    assert (
        m.visual.uv.shape == (len(m.vertices), 2)
        and m.visual.uv.min() >= 0
        and m.visual.uv.max() <= 1
    )
    fid = m.metadata["feature_ids"]
    assert fid.shape == (len(m.vertices),) and set(np.unique(fid)) == set(range(10))
    np.testing.assert_array_equal(m.metadata["face_feature_ids"], fid[m.faces[:, 0]])
    assert set(m.metadata["properties"]) == {"id", "Longitude", "Latitude", "Height"}
    blocks = to_pyvista(ecef)
    assert blocks[0].n_points == len(m.vertices)
    np.testing.assert_array_equal(blocks[0].point_data["feature_id"], fid)
    pc = tile_meshes(open_tileset(SAMPLES / "PointCloudRGB"), None, "ecef")[0]
    data = (SAMPLES / "PointCloudRGB" / "pointCloudRGB.pnts").read_bytes()
    ftj = struct.unpack_from("<I", data, 12)[0]
    rgb = np.frombuffer(data, np.uint8, 3000, 28 + ftj + 12000).reshape(-1, 3)
    np.testing.assert_array_equal(pc.colors[:, :3], rgb)


def test_info_region_is_the_root_region_in_degrees() -> None:
    root = json.loads((SAMPLES / "Tileset" / "tileset.json").read_text())["root"]
    w, s, e, n, lo, hi = root["boundingVolume"]["region"]
    info = tileset_info(SAMPLES / "Tileset")
    np.testing.assert_allclose(info["region"][:4], np.degrees([w, s, e, n]), atol=1e-12)
    np.testing.assert_allclose(info["region"][4:], [lo, hi], atol=1e-9)
    assert tileset_info(SAMPLES / "SparseImplicitQuadtree")["region"] is None  # not on the globe
