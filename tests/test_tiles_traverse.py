"""Tile selection: CesiumJS's screen-space-error rule on hand-checked cases, culling, request
volumes, lazy loading, region selection and speed."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from twin import geo
from twin.tiles import Camera, open_tileset, select_by_camera, select_by_region

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "3dtiles-samples"
needs_samples = pytest.mark.skipif(
    not SAMPLES.exists(), reason=f"3D Tiles samples not found at {SAMPLES} (../shared/data absent)"
)


def box(cx: float, cy: float, half: float, hz: float = 1.0) -> dict:
    return {"box": [cx, cy, 0.0, half, 0, 0, 0, half, 0, 0, 0, hz]}


def small_tileset(folder: Path, root_refine: str = "REPLACE") -> Path:
    """Root 200 m x 200 m (GE 100) with four 100 m quadrants (GE 10); quadrant c0 has two
    50 m children (GE 0). Boxes are 2 m thick (z in [-1, 1]); no transform."""
    kids = [
        {"boundingVolume": box(-50, -50, 50), "geometricError": 10, "content": {"uri": "c0.b3dm"}},
        {"boundingVolume": box(50, -50, 50), "geometricError": 10, "content": {"uri": "c1.b3dm"}},
        {"boundingVolume": box(50, 50, 50), "geometricError": 10, "content": {"uri": "c2.b3dm"}},
        {"boundingVolume": box(-50, 50, 50), "geometricError": 10, "content": {"uri": "c3.b3dm"}},
    ]
    kids[0]["children"] = [
        {"boundingVolume": box(-75, -75, 25), "geometricError": 0, "content": {"uri": "g0.b3dm"}},
        {"boundingVolume": box(-25, -25, 25), "geometricError": 0, "content": {"uri": "g1.b3dm"}},
    ]
    doc = {
        "asset": {"version": "1.1"},
        "geometricError": 1000,
        "root": {
            "boundingVolume": box(0, 0, 100),
            "geometricError": 100,
            "refine": root_refine,
            "content": {"uri": "root.b3dm"},
            "children": kids,
        },
    }
    (folder / "tileset.json").write_text(json.dumps(doc))
    return folder / "tileset.json"


def chosen(sel) -> set[str]:
    return {t.contents[0].uri.split(".")[0] for t in sel}


def sse(ge: float, dist: float, height: float, fov_y: float) -> float:
    """CesiumJS: geometricError * height / (2 * distance * tan(fov_y / 2))."""
    return ge * height / (2 * dist * math.tan(fov_y / 2))


def down(x: float, y: float, z: float) -> Camera:
    return Camera([x, y, z], [0, 0, -1], [0, 1, 0])


def test_hand_checked_replace_selection(tmp_path: Path) -> None:
    ts = open_tileset(small_tileset(tmp_path))
    fov, view = math.radians(90), (1000, 1000)
    # camera 5000 m above the boxes' top: the tree is worth drawing (tileset error 1000 -> 100 px)
    # but the root (error 100 -> 10 px <= 16) needs no refinement
    assert sse(1000, 5000, 1000, fov) == pytest.approx(100) and sse(
        100, 5000, 1000, fov
    ) == pytest.approx(10)
    assert chosen(select_by_camera(ts, down(0, 0, 5001), 16, view, fov)) == {"root"}
    # 1000 m: root 50 px > 16 refines; quadrants 5 px are enough
    assert sse(100, 1000, 1000, fov) == pytest.approx(50) and sse(
        10, 1000, 1000, fov
    ) == pytest.approx(5)
    assert chosen(select_by_camera(ts, down(0, 0, 1001), 16, view, fov)) == {"c0", "c1", "c2", "c3"}
    # 100 m: quadrants 50 px > 16; c0 is replaced by its children, the others have none
    assert sse(10, 100, 1000, fov) == pytest.approx(50)
    sel = select_by_camera(ts, down(0, 0, 101), 16, view, fov)
    assert chosen(sel) == {"c1", "c2", "c3", "g0", "g1"}
    # the reported errors are the tiles' own: g0 and g1 have error 0, c1..c3 50 px
    errs = dict(zip([t.contents[0].uri for t in sel], sel.errors, strict=True))
    assert errs["c1.b3dm"] == pytest.approx(50) and errs["g0.b3dm"] == 0
    # looking away from the tiles: nothing is visible
    assert len(select_by_camera(ts, Camera([0, 0, 101], [0, 0, 1], [0, 1, 0]), 16, view, fov)) == 0
    # far beyond: the tileset's own error (1000 m -> 1000*1000/(2*40000)=12.5 px) is small enough
    assert sse(1000, 40000, 1000, fov) <= 16
    assert len(select_by_camera(ts, down(0, 0, 40001), 16, view, fov)) == 0


def test_frustum_culls_quadrants_out_of_view(tmp_path: Path) -> None:
    ts = open_tileset(small_tileset(tmp_path))
    # 50 m above (60, 60) with a 30 degree field of view the view covers x, y in about
    # [46, 74]: only quadrant c2 (x, y in [0, 100]) is seen; it cannot refine, so it is drawn
    sel = select_by_camera(ts, down(60, 60, 51), 16, (1000, 1000), math.radians(30))
    assert chosen(sel) == {"c2"}


def test_add_refinement_and_early_skip_of_children(tmp_path: Path) -> None:
    fov, view = math.radians(170), (1000, 1000)
    cam = down(-100, -100, 11)
    d_root, d_c0 = 10.0, 10.0  # camera is above both boxes
    d_c1 = math.hypot(100, 10)  # c1 spans x in [0, 100]: 100 m sideways, 10 m down
    d_c2 = math.sqrt(100**2 + 100**2 + 10**2)
    assert sse(100, d_root, 1000, fov) > 100  # root refines at max_sse 100
    # CesiumJS skips a child of an ADD tile when the parent's error seen from the child is small
    assert sse(100, d_c1, 1000, fov) <= 100 and sse(100, d_c2, 1000, fov) <= 100
    assert sse(100, d_c0, 1000, fov) > 100 and sse(10, d_c0, 1000, fov) <= 100
    add = open_tileset(small_tileset(tmp_path, "ADD"))
    assert chosen(select_by_camera(add, cam, 100, view, fov)) == {"root", "c0"}
    (tmp_path / "r").mkdir()
    rep = open_tileset(small_tileset(tmp_path / "r", "REPLACE"))
    assert chosen(select_by_camera(rep, cam, 100, view, fov)) == {"c0", "c1", "c2", "c3"}
    assert chosen(select_by_camera(add, down(0, 0, 1001), 16, view, math.radians(90))) == {
        "root", "c0", "c1", "c2", "c3"
    }  # fmt: skip


def krefeld_quadtree(
    folder: Path, levels: int, refine: str = "REPLACE"
) -> tuple[Path, geo.LocalFrame]:
    """A full quadtree of `levels` levels over 8 km x 8 km of Krefeld (ENU boxes, 40 m high),
    geometric error halving per level and 0 at the leaves."""
    frame = geo.LocalFrame.from_utm(332_000.0, 5_688_000.0, 40.0)
    half = 4000.0

    def node(level: int, x: int, y: int) -> dict:
        size = 2 * half / 2**level
        t = {
            "boundingVolume": box(-half + (x + 0.5) * size, -half + (y + 0.5) * size, size / 2, 20),
            "geometricError": 0.0 if level == levels - 1 else size / 20,
            "content": {"uri": f"{level}_{x}_{y}.b3dm"},
        }
        if level < levels - 1:
            t["children"] = [
                node(level + 1, 2 * x + dx, 2 * y + dy) for dx in (0, 1) for dy in (0, 1)
            ]
        return t

    root = node(0, 0, 0)
    root["transform"] = frame.tileset_transform()
    root["refine"] = refine
    (folder / "tileset.json").write_text(
        json.dumps({"asset": {"version": "1.0"}, "geometricError": 2000, "root": root})
    )
    return folder / "tileset.json", frame


def test_fewer_coarser_tiles_as_the_camera_rises(tmp_path: Path) -> None:
    path, frame = krefeld_quadtree(tmp_path, 6)
    ts = open_tileset(path)
    lon, lat = frame.lon, frame.lat
    counts, coarsest, finest = [], [], []
    # from 8 km up the whole 8 km x 8 km tileset is in view (60 degree field of view)
    for height in (8000, 12000, 16000, 24000, 32000, 64000, 128000):
        sel = select_by_camera(ts, Camera.from_lonlat(lon, lat, height, 0, -90, ellipsoidal=True))
        ge = np.array([t.geometric_error for t in sel])
        counts.append(len(sel))
        coarsest.append(ge.max())
        finest.append(ge.min())
    assert counts[0] > counts[-1] == 1
    assert all(a >= b for a, b in zip(counts, counts[1:], strict=False)), counts
    assert all(a <= b for a, b in zip(finest, finest[1:], strict=False)), finest
    assert all(a <= b for a, b in zip(coarsest, coarsest[1:], strict=False)), coarsest
    assert coarsest[-1] == ts.root.geometric_error
    low = select_by_camera(ts, Camera.from_lonlat(lon, lat, 150, 0, -90, ellipsoidal=True))
    assert min(t.geometric_error for t in low) == 0.0  # leaves right below a low camera
    # selected REPLACE tiles never overlap: no selected tile is an ancestor of another
    sel = select_by_camera(ts, Camera.from_lonlat(lon, lat, 300, 20, -30, ellipsoidal=True))
    chosen_ids = {t.index for t in sel}
    for t in sel:
        p = t.parent
        while p is not None:
            assert p.index not in chosen_ids
            p = p.parent


@needs_samples
def test_viewer_request_volume_of_a_real_tileset() -> None:
    ts = open_tileset(SAMPLES / "TilesetWithRequestVolume")
    points = ts.root.children[2]
    assert points.contents[0].uri == "points.pnts"
    centre = points.transform[:3, 3]  # request volume: 15 m sphere around the tile origin
    up = centre / np.linalg.norm(centre)
    near = select_by_camera(ts, Camera.look_at(centre + 10 * up, centre))
    far = select_by_camera(ts, Camera.look_at(centre + 40 * up, centre))
    assert points in near.tiles
    assert points not in far.tiles and len(far) > 0


@needs_samples
def test_traversal_loads_only_what_it_reaches() -> None:
    ts = open_tileset(SAMPLES / "SparseImplicitQuadtree")
    assert len(ts) == 1
    # the root box spans x, y in [0, 1]; from 1000 units away nothing but the root subtree is read
    far = select_by_camera(ts, down(0.5, 0.5, 1000.0))
    assert len(ts) == 7 and len(far) == 0
    near = select_by_camera(ts, down(0.5, 0.5, 1.5))
    assert len(ts) == 63  # all 8 child subtrees now read
    assert len(near) == 32 and all(t.implicit_coordinates[0] == 5 for t in near)
    ext = open_tileset(SAMPLES / "TilesetWithRequestVolume")
    centre = ext.root.obb[0]
    # 20 km up the tileset's error (100 m) is below 16 px: nothing drawn, nothing read
    assert len(select_by_camera(ext, Camera.look_at(centre * (1 + 20e3 / 6.37e6), centre))) == 0
    assert len(ext) == 4  # city/tileset.json not read


def test_external_tileset_out_of_view_is_not_read(tmp_path: Path) -> None:
    (tmp_path / "ext").mkdir()
    (tmp_path / "ext" / "tileset.json").write_text(
        json.dumps(
            {
                "asset": {"version": "1.0"},
                "geometricError": 10,
                "root": {
                    "boundingVolume": box(0, 0, 50),
                    "geometricError": 0,
                    "transform": [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 5000, 5000, 0, 1],
                    "content": {"uri": "far.b3dm"},
                },
            }
        )
    )
    doc = {
        "asset": {"version": "1.0"},
        "geometricError": 1000,
        "root": {
            "boundingVolume": box(2500, 2500, 2600),
            "geometricError": 100,
            "refine": "REPLACE",
            "children": [
                {
                    "boundingVolume": box(-50, -50, 50),
                    "geometricError": 0,
                    "content": {"uri": "near.b3dm"},
                },
                {
                    "boundingVolume": box(5000, 5000, 50),
                    "geometricError": 10,
                    "content": {"uri": "ext/tileset.json"},
                },
            ],
        },
    }
    (tmp_path / "tileset.json").write_text(json.dumps(doc))
    ts = open_tileset(tmp_path)
    fov = math.radians(90)
    assert chosen(select_by_camera(ts, down(-50, -50, 101), 16, (1000, 1000), fov)) == {"near"}
    assert len(ts) == 3  # the external tileset's root is not loaded
    sel = select_by_camera(ts, down(5000, 5000, 101), 16, (1000, 1000), fov)
    assert chosen(sel) == {"far"} and len(ts) == 4
    far = sel.tiles[0]
    assert far.address == "ext/tileset.json:root" and far.depth == 2
    np.testing.assert_allclose(far.obb[0], [5000, 5000, 0])  # its own transform moved it there


def test_select_by_region_finds_the_leaves_under_a_circle_and_a_polygon(tmp_path: Path) -> None:
    path, frame = krefeld_quadtree(tmp_path, 5)
    ts = open_tileset(path)
    leaf = 8000 / 16  # leaf tiles are 500 m wide; leaf (x, y) spans [-4000 + 500 x, ...]
    cx, cy = -4000 + 500 * 3 + 250, -4000 + 500 * 5 + 250
    x, y, _ = frame.enu_to_utm(np.array([[cx, cy, 0.0], [cx, cy, 0.0]]))
    x, y = float(x[0]), float(y[0])
    sel = select_by_region(ts, ((x, y), 5.0))
    assert chosen(sel) == {"4_3_5"}
    # a thin rectangle from the centre of leaf (3, 5) to that of leaf (4, 5), in lon/lat
    ring = np.array(
        [[cx, cy - 1, 0], [cx + leaf, cy - 1, 0], [cx + leaf, cy + 1, 0], [cx, cy + 1, 0]]
    )
    lon, lat, _ = geo.ecef_to_wgs84(*frame.enu_to_ecef(ring).T)
    sel = select_by_region(ts, np.stack([lon, lat], axis=1), crs="EPSG:4326")
    assert chosen(sel) == {"4_3_5", "4_4_5"}
    # coarser: stop refining at geometric error 100 m (level-2 tiles, 2000 m wide)
    sel = select_by_region(ts, ((x, y), 5.0), max_geometric_error=100)
    assert chosen(sel) == {"2_0_1"}
    assert len(select_by_region(ts, ((391_000.0, 5_820_000.0), 100.0))) == 0  # Berlin


def test_full_refinement_of_twenty_thousand_tiles_visits_every_tile(tmp_path: Path) -> None:
    # speed is measured in benchmarks/bench_tiles.py; this checks the full traversal's result
    path, frame = krefeld_quadtree(tmp_path, 8)  # 21 845 tiles
    ts = open_tileset(path)
    assert len(ts) == sum(4**k for k in range(8))
    cam = Camera.from_lonlat(frame.lon, frame.lat, 30000, 0, -90, ellipsoidal=True)
    sel = select_by_camera(ts, cam, max_sse=1e-3)  # refine everything: every tile is visited
    assert sel.visited == len(ts) and len(sel) == 4**7


def test_camera_from_lonlat_follows_cesium_heading_and_pitch() -> None:
    lon, lat, h = 6.5625, 51.3333, 120.0
    frame = geo.LocalFrame(lon, lat, h)
    east, north, up = frame.rotation
    cam = Camera.from_lonlat(lon, lat, h, heading_deg=90, pitch_deg=0, ellipsoidal=True)
    np.testing.assert_allclose(cam.position, frame.origin_ecef, atol=1e-6)
    np.testing.assert_allclose(cam.direction, east, atol=1e-12)  # heading 90: looking east
    np.testing.assert_allclose(cam.up, up, atol=1e-12)
    cam = Camera.from_lonlat(lon, lat, h, heading_deg=0, pitch_deg=-90, ellipsoidal=True)
    np.testing.assert_allclose(cam.direction, -up, atol=1e-12)  # straight down, north at the top
    np.testing.assert_allclose(cam.up, north, atol=1e-12)
    cam = Camera.from_lonlat(lon, lat, h, heading_deg=180, pitch_deg=-45, ellipsoidal=True)
    np.testing.assert_allclose(cam.direction, (-north - up) / math.sqrt(2), atol=1e-12)
    msl = Camera.from_lonlat(lon, lat, h - geo.GEOID_HEIGHT_M)  # heights a.s.l. by default
    np.testing.assert_allclose(msl.position, frame.origin_ecef, atol=1e-6)


def glb_with_samplers(path: Path) -> None:
    """One triangle drawn four times: textured with sampler REPEAT x MIRRORED_REPEAT and COLOR_0
    tints, textured without a sampler (glTF: repeat), textured with CLAMP_TO_EDGE, untextured."""
    import io
    import struct

    from PIL import Image

    pngs = []
    for rgb in ((200, 0, 0), (0, 200, 0), (0, 0, 200)):
        buf = io.BytesIO()
        Image.new("RGB", (2, 2), rgb).save(buf, format="PNG")
        pngs.append(buf.getvalue())
    arrays = [
        np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], "<f4"),
        np.array([[0, 0], [2, 0], [0, 1]], "<f4"),
        np.array([[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 128]], "u1"),
    ]
    blob, views = b"", []
    for part in [a.tobytes() for a in arrays] + pngs:
        blob += b"\0" * (-len(blob) % 4)
        views.append({"buffer": 0, "byteOffset": len(blob), "byteLength": len(part)})
        blob += part
    blob += b"\0" * (-len(blob) % 4)
    accessors = [
        {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"},
        {"bufferView": 1, "componentType": 5126, "count": 3, "type": "VEC2"},
        {"bufferView": 2, "componentType": 5121, "normalized": True, "count": 3, "type": "VEC4"},
    ]
    textured = {"POSITION": 0, "TEXCOORD_0": 1}
    doc = {
        "asset": {"version": "2.0"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [
            {
                "primitives": [
                    {"attributes": {**textured, "COLOR_0": 2}, "material": 0},
                    {"attributes": textured, "material": 1},
                    {"attributes": textured, "material": 2},
                    {"attributes": {"POSITION": 0}, "material": 3},
                ]
            }
        ],
        "materials": [
            {"pbrMetallicRoughness": {"baseColorTexture": {"index": k}}} for k in range(3)
        ]
        + [{"pbrMetallicRoughness": {"baseColorFactor": [0.5, 0.25, 1.0, 1.0]}}],
        "textures": [{"source": 0, "sampler": 0}, {"source": 1}, {"source": 2, "sampler": 1}],
        "samplers": [{"wrapS": 10497, "wrapT": 33648}, {"wrapS": 33071, "wrapT": 33071}],
        "images": [{"bufferView": 3 + k, "mimeType": "image/png"} for k in range(3)],
        "accessors": accessors,
        "bufferViews": views,
        "buffers": [{"byteLength": len(blob)}],
    }
    js = json.dumps(doc).encode()
    js += b" " * (-len(js) % 4)
    chunks = (
        struct.pack("<II", len(js), 0x4E4F534A) + js + struct.pack("<II", len(blob), 0x004E4942)
    )
    path.write_bytes(struct.pack("<4sII", b"glTF", 2, 12 + len(chunks) + len(blob)) + chunks + blob)


def test_textured_meshes_keep_sampler_wrap_and_vertex_tints(tmp_path: Path) -> None:
    from twin.tiles import tile_meshes

    glb_with_samplers(tmp_path / "t.glb")
    doc = {
        "asset": {"version": "1.1"},
        "geometricError": 1,
        "root": {"boundingVolume": box(0, 0, 2), "geometricError": 0, "content": {"uri": "t.glb"}},
    }
    (tmp_path / "tileset.json").write_text(json.dumps(doc))
    ts = open_tileset(tmp_path / "tileset.json")
    tinted, unsampled, clamped, plain = tile_meshes(ts, frame="ecef")
    # wrap modes as the samplers say; a texture without a sampler repeats (glTF 2.0)
    assert tinted.metadata["texture_wrap"] == (10497, 33648)
    assert unsampled.metadata["texture_wrap"] == (10497, 10497)
    assert clamped.metadata["texture_wrap"] == (33071, 33071)
    assert "texture_wrap" not in plain.metadata
    # each primitive samples its own image; COLOR_0 tints stay beside the texture, as written
    reds = [
        m.visual.material.baseColorTexture.getpixel((0, 0)) for m in (tinted, unsampled, clamped)
    ]
    assert reds == [(200, 0, 0), (0, 200, 0), (0, 0, 200)]
    np.testing.assert_array_equal(
        tinted.visual.vertex_attributes["color"],
        [[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 128]],
    )
    assert "color" not in unsampled.visual.vertex_attributes
    # UVs keep u beyond 1 (the repeat is the sampler's job) and flip v for trimesh
    np.testing.assert_allclose(tinted.visual.uv, [[0, 1], [2, 1], [0, 0]], atol=0)
    np.testing.assert_array_equal(plain.visual.face_colors[0], [128, 64, 255, 255])
