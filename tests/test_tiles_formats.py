"""Content encodings the samples do not cover, written here with known values: quantized and
oct-encoded pnts/i3dm, KHR_mesh_quantization, sparse accessors, strips, Draco, EXT_mesh_features
with EXT_structural_metadata, CESIUM_RTC, KTX2, legacy b3dm headers, gzip, 3TZ and implicit octrees."""

from __future__ import annotations

import gzip
import io
import json
import struct
import zipfile
from pathlib import Path

import DracoPy
import numpy as np
import pytest
from PIL import Image
from tile_bytes import BOX, glb, pad

from twin import geo
from twin.errors import DataError
from twin.tiles import ParseContext, open_tileset, parse_content, tile_meshes, tileset_info

Y_UP_TO_Z_UP = np.array([[1, 0, 0], [0, 0, -1], [0, 1, 0]], float)  # (x, y, z) -> (x, -z, y)


class Buffer:
    """Collects arrays into one glTF buffer with 8-byte aligned buffer views."""

    def __init__(self) -> None:
        self.data = b""
        self.views: list[dict] = []

    def add(self, raw: bytes) -> int:
        self.data = pad(self.data, 8, b"\0")
        self.views.append({"buffer": 0, "byteOffset": len(self.data), "byteLength": len(raw)})
        self.data += raw
        return len(self.views) - 1

    def gltf(self, **j) -> bytes:
        doc = {
            "asset": {"version": "2.0"},
            "buffers": [{"byteLength": len(pad(self.data, 4, b"\0"))}],
            "bufferViews": self.views,
            "nodes": [{"mesh": 0}],
            "scenes": [{"nodes": [0]}],
            "scene": 0,
            **j,
        }
        return glb(doc, self.data)


def tile_bytes(
    magic: bytes, ft: dict, ft_bin: bytes, bt: dict | None, bt_bin: bytes, body: bytes, header=()
) -> bytes:
    ftj = pad(json.dumps(ft).encode())
    ft_bin = pad(ft_bin, 8, b"\0")
    btj = pad(json.dumps(bt).encode()) if bt is not None else b""
    bt_bin = pad(bt_bin, 8, b"\0")
    hl = 28 + 4 * len(header)
    total = hl + len(ftj) + len(ft_bin) + len(btj) + len(bt_bin) + len(body)
    head = struct.pack(
        f"<4sII4I{len(header)}I",
        magic,
        1,
        total,
        len(ftj),
        len(ft_bin),
        len(btj),
        len(bt_bin),
        *header,
    )
    return head + ftj + ft_bin + btj + bt_bin + body


def parse(data: bytes, name: str = "mem"):
    return parse_content(data, ParseContext(name))


def triangle(positions: np.ndarray) -> bytes:
    b = Buffer()
    pv = b.add(np.asarray(positions, np.float32).tobytes())
    return b.gltf(
        accessors=[
            {"bufferView": pv, "componentType": 5126, "count": len(positions), "type": "VEC3"}
        ],
        meshes=[{"primitives": [{"attributes": {"POSITION": 0}}]}],
    )


# ---------------------------------------------------------------- pnts
def test_pnts_quantized_rgb565_oct_normals_batch_ids() -> None:
    q = np.array([[0, 0, 0], [65535, 65535, 65535], [32768, 0, 65535]], np.uint16)
    offset, scale, rtc = [10.0, 20.0, 30.0], [100.0, 200.0, 300.0], [1000.0, 0.0, 0.0]
    rgb565 = np.array([0xF800, 0x07E0, 0x001F], np.uint16)  # pure red, green, blue
    octs = np.array([[255, 128], [128, 128], [0, 128]], np.uint8)  # +x, +z, -x (to 1/255)
    bid = np.array([2, 0, 1], np.uint8)
    ft_bin = (
        q.tobytes()
        + b"\0\0"
        + rgb565.tobytes()
        + b"\0\0"
        + octs.tobytes()
        + b"\0\0"
        + bid.tobytes()
    )
    ft = {
        "POINTS_LENGTH": 3,
        "POSITION_QUANTIZED": {"byteOffset": 0},
        "QUANTIZED_VOLUME_OFFSET": offset,
        "QUANTIZED_VOLUME_SCALE": scale,
        "RTC_CENTER": rtc,
        "RGB565": {"byteOffset": 20},
        "NORMAL_OCT16P": {"byteOffset": 28},
        "BATCH_ID": {"byteOffset": 36, "componentType": "UNSIGNED_BYTE"},
        "BATCH_LENGTH": 3,
    }
    bt = {
        "temperature": {"byteOffset": 0, "componentType": "FLOAT", "type": "SCALAR"},
        "name": ["a", "b", "c"],
    }
    c = parse(
        tile_bytes(b"pnts", ft, ft_bin, bt, np.array([1.5, 2.5, 3.5], np.float32).tobytes(), b"")
    )
    # spec: position = quantized / 65535 * scale + offset, then + RTC_CENTER
    expected = q / 65535.0 * np.array(scale) + np.array(offset) + np.array(rtc)
    np.testing.assert_allclose(c.points.positions, expected, rtol=0, atol=1e-9)
    np.testing.assert_array_equal(
        c.points.colors, [[255, 0, 0, 255], [0, 255, 0, 255], [0, 0, 255, 255]]
    )
    np.testing.assert_allclose(c.points.normals, [[1, 0, 0], [0, 0, 1], [-1, 0, 0]], atol=0.01)
    np.testing.assert_array_equal(c.points.batch_ids, bid)
    assert c.n_points == 3 and c.n_features == 3
    props = c.properties()
    np.testing.assert_array_equal(props["temperature"], [1.5, 2.5, 3.5])
    assert props["name"] == ["a", "b", "c"]
    g = c.geometry()[0]
    np.testing.assert_array_equal(g.feature_ids, bid)


def test_pnts_draco_compressed() -> None:
    rng = np.random.default_rng(1)
    pts = rng.random((200, 3)).astype(np.float32) * 10
    colors = rng.integers(0, 255, (200, 3)).astype(np.uint8)
    draco = DracoPy.encode(pts, colors=colors, quantization_bits=16)
    decoded = DracoPy.decode(draco)
    pos_id = [a["unique_id"] for a in decoded.attributes if a["attribute_type"] == 0][0]
    col_id = [a["unique_id"] for a in decoded.attributes if a["attribute_type"] == 2][0]
    ft = {
        "POINTS_LENGTH": 200,
        "POSITION": {"byteOffset": 0},
        "RGB": {"byteOffset": 0},
        "extensions": {"3DTILES_draco_point_compression": {"properties": {"POSITION": pos_id, "RGB": col_id}, "byteOffset": 0, "byteLength": len(draco)}},
    }  # fmt: skip
    c = parse(tile_bytes(b"pnts", ft, draco, None, b"", b""))
    # Draco may reorder points: compare the sets, to the 16-bit quantization step (10 m / 65535)
    order_ours = np.lexsort(c.points.positions.T)
    order_ref = np.lexsort(pts.T)
    np.testing.assert_allclose(c.points.positions[order_ours], pts[order_ref], atol=10 / 65535 * 2)
    np.testing.assert_array_equal(c.points.colors[order_ours, :3], colors[order_ref])


# ---------------------------------------------------------------- i3dm
def test_i3dm_orientation_scale_quantized_positions() -> None:
    v = np.array([[1, 2, 3], [0, 0, 0], [1, 0, 0]], np.float32)  # glTF (y-up) vertices
    q = np.array([[0, 0, 0], [65535, 32768, 0]], np.uint16)
    up = np.array([[0, 0, 1], [0, 1, 0]], np.float32)
    right = np.array([[1, 0, 0], [1, 0, 0]], np.float32)
    scale = np.array([[2, 3, 4], [1, 1, 1]], np.float32)
    ft_bin = (
        q.tobytes()
        + b"\0" * 4
        + up.tobytes()
        + right.tobytes()
        + scale.tobytes()
        + np.array([7, 3], np.uint8).tobytes()
    )
    ft = {
        "INSTANCES_LENGTH": 2,
        "POSITION_QUANTIZED": {"byteOffset": 0},
        "QUANTIZED_VOLUME_OFFSET": [100, 200, 300],
        "QUANTIZED_VOLUME_SCALE": [10, 10, 10],
        "NORMAL_UP": {"byteOffset": 16},
        "NORMAL_RIGHT": {"byteOffset": 40},
        "SCALE_NON_UNIFORM": {"byteOffset": 64},
        "BATCH_ID": {"byteOffset": 88, "componentType": "UNSIGNED_BYTE"},
    }
    c = parse(tile_bytes(b"i3dm", ft, ft_bin, None, b"", triangle(v), header=(1,)))
    g = c.geometry()[0]
    pos = g.positions.reshape(2, 3, 3)
    # instance 0: glTF (1, 2, 3) -> z-up (1, -3, 2) -> scaled (2, -9, 8) -> rotated by the columns
    # [right, up, right x up] = [(1,0,0), (0,0,1), (0,-1,0)] -> (2, -8, -9), + position (100, 200, 300)
    np.testing.assert_allclose(pos[0, 0], [102, 192, 291], atol=1e-9)
    # instance 1: up = +y, right = +x -> forward = x cross y = +z: no rotation; position from q
    p1 = np.array([100 + 10, 200 + 10 * 32768 / 65535, 300])
    np.testing.assert_allclose(pos[1], v.astype(float) @ Y_UP_TO_Z_UP.T + p1, atol=1e-9)
    assert c.n_features == 8  # BATCH_ID up to 7 -> 8 features
    assert c.n_triangles == 2  # one (non-indexed) triangle drawn twice
    np.testing.assert_array_equal(g.feature_ids, [7, 7, 7, 3, 3, 3])


def test_i3dm_east_north_up_and_oct_normals() -> None:
    lon, lat, h = 6.56, 51.33, 40.0
    p = np.array(geo.wgs84_to_ecef(lon, lat, h), float)
    ft_bin = np.array([p, p], np.float32).tobytes()
    ft = {
        "INSTANCES_LENGTH": 2,
        "POSITION": {"byteOffset": 0},
        "RTC_CENTER": [0, 0, 0],
        "EAST_NORTH_UP": True,
    }
    v = np.array([[0, 5, 0], [3, 0, 0], [0, 0, -2]], np.float32)  # glTF up, +x, glTF -z (= north)
    c = parse(tile_bytes(b"i3dm", ft, ft_bin, None, b"", triangle(v), header=(1,)))
    frame = geo.LocalFrame(lon, lat, h)
    enu = frame.ecef_to_enu(c.geometry()[0].positions[:3])
    # float32 ECEF positions are good to about 0.5 m; compare relative to the instance origin
    origin = frame.ecef_to_enu(c.instance_matrices[0, :3, 3][None])[0]
    np.testing.assert_allclose(enu - origin, [[0, 0, 5], [3, 0, 0], [0, 2, 0]], atol=1e-6)
    # oct-encoded up/right (OCT32P): up = +z, right = +x
    octs = np.array([[32768, 32768], [65535, 32768]], np.uint16)  # (0, 0) -> +z ; (1, 0) -> +x
    ft = {
        "INSTANCES_LENGTH": 1,
        "POSITION": {"byteOffset": 0},
        "NORMAL_UP_OCT32P": {"byteOffset": 16},
        "NORMAL_RIGHT_OCT32P": {"byteOffset": 20},
    }
    c = parse(
        tile_bytes(
            b"i3dm",
            ft,
            np.zeros(4, np.float32).tobytes() + octs.tobytes(),
            None,
            b"",
            triangle(v),
            header=(1,),
        )
    )
    rot = c.instance_matrices[0, :3, :3]
    np.testing.assert_allclose(rot, [[1, 0, 0], [0, 0, -1], [0, 1, 0]], atol=1e-4)


# ---------------------------------------------------------------- glTF encodings
def test_quantized_sparse_strip_and_uint8_indices() -> None:
    q = np.array([[0, 0, 0], [32767, 0, 0], [0, 32767, 0], [32767, 32767, 0]], np.int16)
    b = Buffer()
    vq = b.add(q.tobytes())
    vi = b.add(np.array([0, 1, 2, 3], np.uint8).tobytes())
    vs_idx = b.add(np.array([3], np.uint8).tobytes())
    vs_val = b.add(np.array([[-32767, -32767, 16384]], np.int16).tobytes())
    data = b.gltf(
        extensionsUsed=["KHR_mesh_quantization"],
        extensionsRequired=["KHR_mesh_quantization"],
        accessors=[
            {
                "bufferView": vq,
                "componentType": 5122,
                "normalized": True,
                "count": 4,
                "type": "VEC3",
                "sparse": {"count": 1, "indices": {"bufferView": vs_idx, "componentType": 5121}, "values": {"bufferView": vs_val}},
            },
            {"bufferView": vi, "componentType": 5121, "count": 4, "type": "SCALAR"},
        ],
        meshes=[{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1, "mode": 5}]}],
        nodes=[{"mesh": 0, "scale": [2, 2, 2], "translation": [1, 0, 0]}],
    )  # fmt: skip
    c = parse(data)
    g = c.geometry()[0]
    # dequantize: normalized int16 -> q / 32767 (sparse override on vertex 3), node: 2 * p + (1, 0, 0)
    deq = q / 32767.0
    deq[3] = np.array([-32767, -32767, 16384]) / 32767.0
    expected = (2 * deq + [1, 0, 0]) @ Y_UP_TO_Z_UP.T
    np.testing.assert_allclose(g.positions, expected, atol=1e-6)
    # a strip of 4 indices is 2 triangles, the second with flipped order: (0,1,2), (1,3,2)
    np.testing.assert_array_equal(g.faces, [[0, 1, 2], [1, 3, 2]])
    assert c.n_triangles == 2


def test_draco_mesh_matches_its_source() -> None:
    rng = np.random.default_rng(0)
    pts = (rng.random((60, 3)) * 10).astype(np.float32)
    faces = np.array([[i, i + 1, i + 2] for i in range(58)], np.uint32)
    draco = DracoPy.encode(pts, faces, quantization_bits=16)
    decoded = DracoPy.decode(draco)
    pos_id, n_points = (
        decoded.attributes[0]["unique_id"],
        len(decoded.points),
    )  # Draco may split vertices
    b = Buffer()
    view = b.add(draco)

    def draco_glb(n_indices: int) -> bytes:
        return b.gltf(
            extensionsUsed=["KHR_draco_mesh_compression"],
            extensionsRequired=["KHR_draco_mesh_compression"],
            accessors=[
                {"componentType": 5126, "count": n_points, "type": "VEC3"},
                {"componentType": 5125, "count": n_indices, "type": "SCALAR"},
            ],
            meshes=[{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1, "extensions": {"KHR_draco_mesh_compression": {"bufferView": view, "attributes": {"POSITION": pos_id}}}}]}],
        )  # fmt: skip

    c = parse(draco_glb(174))
    assert c.n_triangles == 58  # the accessor count, checked against the decoded Draco data
    assert c.counts.declared_triangles == 0 and c.counts.notes == []
    with pytest.raises(
        DataError,
        match=r"Draco data holds \d+ vertices and 58 triangles, the accessors say \d+ vertices and 300 indices",
    ):
        parse(draco_glb(300)).counts  # noqa: B018
    g = c.geometry()[0]
    # Draco may reorder vertices and faces: compare sorted triangle centroids, to 2 quantization steps
    ours = g.positions[g.faces].mean(axis=1) @ Y_UP_TO_Z_UP  # back to glTF axes
    ref = pts[faces].mean(axis=1)
    key = lambda a: a[np.lexsort(np.round(a, 2).T)]  # noqa: E731
    np.testing.assert_allclose(key(ours), key(ref), atol=2 * 10 / 65535)


def test_mesh_features_and_structural_metadata() -> None:
    b = Buffer()
    pos = b.add(
        np.array(
            [[0, 0, 0], [1, 0, 0], [0, 1, 0], [5, 0, 0], [6, 0, 0], [5, 1, 0]], np.float32
        ).tobytes()
    )
    fid = b.add(np.array([0, 0, 0, 1, 1, 1], np.uint8).tobytes())
    height = b.add(np.array([12.5, 30.0], np.float32).tobytes())
    names = b.add(b"Haus am Wall" + b"Kirche")
    name_offs = b.add(np.array([0, 12, 18], np.uint32).tobytes())
    floors = b.add(np.array([1, 2, 3, 4, 5], np.uint8).tobytes())
    floor_offs = b.add(np.array([0, 2, 5], np.uint16).tobytes())
    year = b.add(np.array([190, 250], np.uint8).tobytes())
    schema = {
        "id": "city",
        "classes": {
            "building": {
                "properties": {
                    "height": {"type": "SCALAR", "componentType": "FLOAT32"},
                    "name": {"type": "STRING"},
                    "floors": {"type": "SCALAR", "componentType": "UINT8", "array": True},
                    "year": {
                        "type": "SCALAR",
                        "componentType": "UINT8",
                        "offset": 1700,
                        "scale": 1,
                    },
                }
            }
        },
    }
    table = {
        "class": "building",
        "count": 2,
        "properties": {
            "height": {"values": height},
            "name": {"values": names, "stringOffsets": name_offs},
            "floors": {"values": floors, "arrayOffsets": floor_offs, "arrayOffsetType": "UINT16"},
            "year": {"values": year},
        },
    }
    data = b.gltf(
        extensionsUsed=["EXT_mesh_features", "EXT_structural_metadata"],
        extensions={"EXT_structural_metadata": {"schema": schema, "propertyTables": [table]}},
        accessors=[
            {"bufferView": pos, "componentType": 5126, "count": 6, "type": "VEC3"},
            {"bufferView": fid, "componentType": 5121, "count": 6, "type": "SCALAR"},
        ],
        meshes=[{"primitives": [{"attributes": {"POSITION": 0, "_FEATURE_ID_0": 1}, "extensions": {"EXT_mesh_features": {"featureIds": [{"featureCount": 2, "attribute": 0, "propertyTable": 0}]}}}]}],
    )  # fmt: skip
    c = parse(data)
    assert c.n_features == 2 and c.n_triangles == 2
    props = c.properties()
    np.testing.assert_array_equal(props["height"], [12.5, 30.0])
    assert props["name"] == ["Haus am Wall", "Kirche"]
    assert [list(f) for f in props["floors"]] == [[1, 2], [3, 4, 5]]  # offsets count elements
    np.testing.assert_array_equal(props["year"], [1890, 1950])
    np.testing.assert_array_equal(c.geometry()[0].feature_ids, [0, 0, 0, 1, 1, 1])


def test_cesium_rtc_ktx2_and_png_textures(tmp_path: Path) -> None:
    png = io.BytesIO()
    Image.new("RGB", (7, 5), (10, 20, 30)).save(png, format="PNG")
    ktx2 = b"\xabKTX 20\xbb\r\n\x1a\n" + struct.pack("<5I", 0, 1, 64, 32, 0) + b"\0" * 40
    b = Buffer()
    pos = b.add(np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32).tobytes())
    uv = b.add(np.array([[0, 0], [1, 0], [0, 1]], np.float32).tobytes())
    img_png, img_ktx = b.add(png.getvalue()), b.add(ktx2)
    data = b.gltf(
        extensionsUsed=["CESIUM_RTC", "KHR_texture_basisu"],
        extensions={"CESIUM_RTC": {"center": [4000000.0, 500000.0, 4900000.0]}},
        accessors=[
            {"bufferView": pos, "componentType": 5126, "count": 3, "type": "VEC3"},
            {"bufferView": uv, "componentType": 5126, "count": 3, "type": "VEC2"},
        ],
        images=[{"bufferView": img_png, "mimeType": "image/png"}, {"bufferView": img_ktx, "mimeType": "image/ktx2"}],
        textures=[{"source": 0}, {"extensions": {"KHR_texture_basisu": {"source": 1}}}],
        materials=[{"pbrMetallicRoughness": {"baseColorTexture": {"index": 0}}}, {"pbrMetallicRoughness": {"baseColorTexture": {"index": 1}}}],
        meshes=[{"primitives": [{"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "material": 0}, {"attributes": {"POSITION": 0, "TEXCOORD_0": 1}, "material": 1}]}],
    )  # fmt: skip
    c = parse(data)
    assert [(t.format, t.width, t.height, t.ktx2) for t in c.textures] == [
        ("png", 7, 5, False),
        ("ktx2", 64, 32, True),
    ]
    g = c.geometry()
    np.testing.assert_allclose(
        g[0].positions[1], np.array([1, 0, 0]) + [4000000.0, 500000.0, 4900000.0]
    )
    root = tmp_path / "ts"
    root.mkdir()
    (root / "t.glb").write_bytes(data)
    (root / "tileset.json").write_text(
        json.dumps(
            {
                "asset": {"version": "1.1"},
                "geometricError": 1,
                "root": {
                    "boundingVolume": {"sphere": [4000000, 500000, 4900000, 10]},
                    "geometricError": 0,
                    "content": {"uri": "t.glb"},
                },
            }
        )
    )
    meshes = tile_meshes(open_tileset(root))
    assert meshes[0].visual.kind == "texture" and meshes[
        0
    ].visual.material.baseColorTexture.size == (7, 5)
    assert "ktx2" in meshes[1].metadata["texture_skipped"]  # detected, reported, not decoded
    info = tileset_info(root)
    assert info["textures"] == 2 and {t["format"] for t in info["texture_list"]} == {"png", "ktx2"}


def test_legacy_b3dm_header_with_batch_length() -> None:
    bt = pad(json.dumps({"kind": ["a", "b", "c"]}).encode())
    body = triangle(np.eye(3))
    total = 20 + len(bt) + len(body)
    data = (
        struct.pack("<4sIIII", b"b3dm", 1, total, 3, len(bt)) + bt + body
    )  # [batchLength, batchTableByteLength]
    c = parse(data)
    assert c.n_features == 3 and c.properties()["kind"] == ["a", "b", "c"]


def test_composite_of_pnts_and_b3dm() -> None:
    p = tile_bytes(
        b"pnts",
        {"POINTS_LENGTH": 2, "POSITION": {"byteOffset": 0}},
        np.zeros(6, np.float32).tobytes(),
        None,
        b"",
        b"",
    )
    b = tile_bytes(b"b3dm", {"BATCH_LENGTH": 4}, b"", None, b"", triangle(np.eye(3)))
    data = struct.pack("<4sIII", b"cmpt", 1, 16 + len(p) + len(b), 2) + p + b
    c = parse(data)
    assert [x.kind for x in c.inner] == ["pnts", "b3dm"]
    assert (c.n_points, c.n_features, c.n_triangles) == (2, 6, 1)


# ---------------------------------------------------------------- packaging
def write_simple_tileset(folder: Path, compress: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    content = tile_bytes(b"b3dm", {"BATCH_LENGTH": 1}, b"", None, b"", triangle(np.eye(3)))
    doc = {
        "asset": {"version": "1.0"},
        "geometricError": 10,
        "root": {
            "boundingVolume": BOX,
            "geometricError": 5,
            "refine": "ADD",
            "content": {"uri": "a.b3dm"},
            "children": [
                {"boundingVolume": BOX, "geometricError": 0, "content": {"uri": "sub/b.b3dm?v=2"}}
            ],
        },
    }
    raw = json.dumps(doc).encode()
    (folder / "sub").mkdir(exist_ok=True)
    (folder / "tileset.json").write_bytes(gzip.compress(raw) if compress else raw)
    (folder / "a.b3dm").write_bytes(gzip.compress(content) if compress else content)
    (folder / "sub" / "b.b3dm").write_bytes(content)


def test_gzip_files_and_3tz_archives(tmp_path: Path) -> None:
    write_simple_tileset(tmp_path / "plain")
    write_simple_tileset(tmp_path / "gz", compress=True)
    archive = tmp_path / "city.3tz"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as z:
        for f in (tmp_path / "plain").rglob("*"):
            if f.is_file():
                z.write(f, f.relative_to(tmp_path / "plain").as_posix())
    infos = [tileset_info(p) for p in (tmp_path / "plain", tmp_path / "gz", archive)]
    for info in infos:
        assert (info["tiles"], info["contents"], info["triangles"], info["features"]) == (
            2,
            {"b3dm": 2},
            2,
            2,
        )
        assert info["problems"] == [] or all("earth's centre" in p for p in info["problems"])


# ---------------------------------------------------------------- implicit octree
def test_implicit_octree_with_json_subtrees_and_constant_availability(tmp_path: Path) -> None:
    region = [0.1, 0.8, 0.1004, 0.8004, 0.0, 80.0]  # radians and metres
    root = {
        "boundingVolume": {"region": region},
        "geometricError": 64,
        "refine": "REPLACE",
        "content": {"uri": "c/{level}/{x}_{y}_{z}.glb"},
        "implicitTiling": {"subdivisionScheme": "OCTREE", "subtreeLevels": 2, "availableLevels": 3, "subtrees": {"uri": "s/{level}.{x}.{y}.{z}.json"}},
    }  # fmt: skip
    schema = {
        "classes": {
            "cell": {"properties": {"temperature": {"type": "SCALAR", "componentType": "FLOAT32"}}}
        }
    }
    (tmp_path / "tileset.json").write_text(
        json.dumps(
            {"asset": {"version": "1.1"}, "schema": schema, "geometricError": 100, "root": root}
        )
    )
    (tmp_path / "s").mkdir()
    # root subtree: levels 0-1 all available; contents on the level-1 tiles with odd Morton index
    bits = 0
    for m in (1, 3, 5, 7):
        bits |= 1 << (1 + m)
    temps = np.arange(9, dtype=np.float32) + 0.5  # one per tile of the root subtree, in bit order
    (tmp_path / "s" / "bits.bin").write_bytes(struct.pack("<H", bits) + b"\0" * 6 + temps.tobytes())
    sub0 = {
        "buffers": [{"uri": "bits.bin", "byteLength": 8 + 36}],
        "bufferViews": [{"buffer": 0, "byteOffset": 0, "byteLength": 2}, {"buffer": 0, "byteOffset": 8, "byteLength": 36}],
        "tileAvailability": {"constant": 1},
        "contentAvailability": [{"bitstream": 0, "availableCount": 4}],
        "childSubtreeAvailability": {"constant": 1},
        "propertyTables": [{"class": "cell", "count": 9, "properties": {"temperature": {"values": 1}}}],
        "tileMetadata": 0,
    }  # fmt: skip
    (tmp_path / "s" / "0.0.0.0.json").write_text(json.dumps(sub0))
    child = {
        "tileAvailability": {"constant": 1},
        "contentAvailability": [{"constant": 1}],
        "childSubtreeAvailability": {"constant": 0},
    }
    for x in range(4):
        for y in range(4):
            for z in range(4):
                (tmp_path / "s" / f"2.{x}.{y}.{z}.json").write_text(json.dumps(child))
    ts = open_tileset(tmp_path)
    tiles = ts.tiles()
    assert len(tiles) == 1 + 8 + 64
    contents = [r for t in tiles for r in t.contents]
    assert len(contents) == 4 + 64
    level1 = sorted(t.implicit_coordinates for t in tiles if t.depth == 1)
    assert level1 == [(1, x, y, z) for x in (0, 1) for y in (0, 1) for z in (0, 1)]
    with_content = sorted(t.implicit_coordinates for t in tiles if t.depth == 1 and t.contents)
    assert with_content == [
        (1, 1, 0, 0),
        (1, 1, 0, 1),
        (1, 1, 1, 0),
        (1, 1, 1, 1),
    ]  # odd Morton: x = 1
    t = next(t for t in tiles if t.implicit_coordinates == (2, 3, 1, 2))
    w, s, e, n, lo, hi = region
    expected = [
        w + 3 * (e - w) / 4,
        s + (n - s) / 4,
        w + 4 * (e - w) / 4,
        s + 2 * (n - s) / 4,
        40.0,
        60.0,
    ]
    np.testing.assert_allclose(t.bounding_volume["region"], expected, rtol=0, atol=1e-12)
    assert t.geometric_error == 16.0 and t.refine == "REPLACE"
    assert t.contents[0].uri == "c/2/3_1_2.glb"
    # tile metadata: row = position of the tile in the subtree's availability (bit) order
    assert ts.root.metadata == {"class": "cell", "properties": {"temperature": 0.5}}
    t = next(t for t in tiles if t.implicit_coordinates == (1, 1, 1, 0))  # Morton 3 -> bit 4
    assert t.metadata == {"class": "cell", "properties": {"temperature": 4.5}}
    assert next(t for t in tiles if t.depth == 2).metadata is None  # child subtrees have none
