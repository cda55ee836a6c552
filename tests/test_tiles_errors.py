"""Malformed tilesets and contents give a clear DataError naming the file and the field
(never a crash, a hang or a huge allocation). Every broken file is written into tmp_path."""

from __future__ import annotations

import gzip
import json
import os
import struct
from pathlib import Path

import numpy as np
import pytest
from tile_bytes import BOX, glb, pad

from twin.errors import DataError
from twin.tiles import open_tileset, tileset_info

TRIANGLE_ACCESSORS = [
    {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"},
    {"bufferView": 1, "componentType": 5123, "count": 3, "type": "SCALAR"},
]


def triangle_glb(**changes) -> bytes:
    pos = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32).tobytes()
    idx = np.array([0, 1, 2, 0], np.uint16).tobytes()
    j = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": 44}],
        "bufferViews": [
            {"buffer": 0, "byteOffset": 0, "byteLength": 36},
            {"buffer": 0, "byteOffset": 36, "byteLength": 8},
        ],
        "accessors": list(TRIANGLE_ACCESSORS),
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
        "nodes": [{"mesh": 0}],
        "scenes": [{"nodes": [0]}],
        "scene": 0,
    }
    for key, value in changes.items():
        j[key] = value
    return glb(j, pos + idx)


def b3dm(
    body: bytes, ft: dict | None = None, byte_length: int | None = None, ftj_len: int | None = None
) -> bytes:
    ftj = pad(json.dumps(ft if ft is not None else {"BATCH_LENGTH": 0}).encode())
    total = 28 + len(ftj) + len(body)
    head = struct.pack(
        "<4sII4I",
        b"b3dm",
        1,
        byte_length or total,
        ftj_len if ftj_len is not None else len(ftj),
        0,
        0,
        0,
    )
    return head + ftj + body


def pnts(ft: dict, binary: bytes) -> bytes:
    ftj = pad(json.dumps(ft).encode())
    binary = pad(binary, 8, b"\0")
    total = 28 + len(ftj) + len(binary)
    return struct.pack("<4sII4I", b"pnts", 1, total, len(ftj), len(binary), 0, 0) + ftj + binary


def i3dm(ft: dict, binary: bytes, body: bytes) -> bytes:
    ftj = pad(json.dumps(ft).encode())
    binary = pad(binary, 8, b"\0")
    total = 32 + len(ftj) + len(binary) + len(body)
    return (
        struct.pack("<4sII5I", b"i3dm", 1, total, len(ftj), len(binary), 0, 0, 1)
        + ftj
        + binary
        + body
    )


def cmpt(*tiles: bytes, count: int | None = None) -> bytes:
    total = 16 + sum(len(t) for t in tiles)
    return struct.pack(
        "<4sIII", b"cmpt", 1, total, len(tiles) if count is None else count
    ) + b"".join(tiles)


def write_tileset(folder: Path, root: dict, name: str = "tileset.json", **top) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"asset": {"version": "1.0"}, "geometricError": 10, "root": root, **top}
    (folder / name).write_text(json.dumps(doc))
    return folder / name


def one_content(folder: Path, data: bytes, uri: str = "c.b3dm"):
    """A tileset with one tile holding `data`; returns (tileset, its content ref)."""
    write_tileset(folder, {"boundingVolume": BOX, "geometricError": 0, "content": {"uri": uri}})
    (folder / uri).write_bytes(data)
    ts = open_tileset(folder)
    return ts, ts.root.contents[0]


# ---------------------------------------------------------------- tileset JSON
@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{not json", r"tileset\.json: tileset JSON is not valid JSON"),
        ("[" * 100_000, r"tileset\.json: tileset JSON is nested too deeply"),
        ('{"geometricError": 1, "root": {}}', r"tileset\.json: asset\.version is required"),
        ('{"asset": {"version": "1.0"}, "root": {}}', r"tileset\.json: geometricError must be"),
        (
            '{"asset": {"version": "1.0"}, "geometricError": 1}',
            r"tileset\.json: root must be a JSON object",
        ),
    ],
)
def test_bad_tileset_json(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "tileset.json").write_text(text)
    with pytest.raises(DataError, match=message):
        open_tileset(tmp_path)


@pytest.mark.parametrize(
    ("child", "message"),
    [
        ({"boundingVolume": BOX}, r"root\.children\[1\]\.geometricError must be a finite number"),
        ({"boundingVolume": BOX, "geometricError": -1}, r"root\.children\[1\]\.geometricError must be >= 0"),
        ({"boundingVolume": {"box": [0] * 11}, "geometricError": 1}, r"root\.children\[1\]\.boundingVolume\.box must be an array of 12"),
        ({"boundingVolume": {"box": [0] * 11 + ["x"]}, "geometricError": 1}, r"root\.children\[1\]\.boundingVolume\.box must hold numbers"),
        ({"boundingVolume": {"region": [0, 1, 0.1, 0.5, 0, 10]}, "geometricError": 1}, r"root\.children\[1\]\.boundingVolume\.region must be \[west, south"),
        ({"boundingVolume": {"sphere": [0, 0, 0, -1]}, "geometricError": 1}, r"root\.children\[1\]\.boundingVolume\.sphere must be 4 finite numbers with radius >= 0"),
        ({"boundingVolume": {"extensions": {"3DTILES_bounding_volume_S2": {}}}, "geometricError": 1}, r"3DTILES_bounding_volume_S2, which is not supported"),
        ({"boundingVolume": BOX, "geometricError": 1, "refine": "SIDEWAYS"}, r"root\.children\[1\]\.refine must be \"ADD\" or \"REPLACE\""),
        ({"boundingVolume": BOX, "geometricError": 1, "transform": [1] * 15}, r"root\.children\[1\]\.transform must be an array of 16"),
        ({"boundingVolume": BOX, "geometricError": 1, "transform": [1] * 15 + ["x"]}, r"root\.children\[1\]\.transform must hold numbers only"),
        ({"boundingVolume": {"region": [0, 1, 0.1]}, "geometricError": 1}, r"root\.children\[1\]\.boundingVolume\.region must be an array of 6"),
        ({"boundingVolume": BOX, "geometricError": 1, "content": {"uri": ""}}, r"root\.children\[1\]\.content\.uri must be a non-empty string"),
        ({"boundingVolume": BOX, "geometricError": 1, "children": {}}, r"root\.children\[1\]\.children must be an array"),
        ({"boundingVolume": BOX, "geometricError": 1, "content": {"uri": "x.json"}, "children": [{}]}, r"root\.children\[1\] points to an external tileset and must not have children"),
    ],
)  # fmt: skip
def test_bad_tile_fields_name_the_field(tmp_path: Path, child: dict, message: str) -> None:
    good = {"boundingVolume": BOX, "geometricError": 1}
    write_tileset(
        tmp_path,
        {"boundingVolume": BOX, "geometricError": 5, "refine": "ADD", "children": [good, child]},
    )
    with pytest.raises(
        DataError, match=r"tileset\.json: " + message if not message.startswith("3D") else message
    ):
        open_tileset(tmp_path)


# ---------------------------------------------------------------- URIs and files
@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("../outside.b3dm", "points outside the tileset folder"),
        ("a/../../outside.b3dm", "points outside the tileset folder"),
        ("%2E%2E/outside.b3dm", "points outside the tileset folder"),
        ("..\\outside.b3dm", "points outside the tileset folder"),
        ("/etc/passwd", "is an absolute path"),
        ("C:\\Windows\\win.ini", "is an absolute path"),
        ("file:///etc/passwd", "is an absolute URL"),
        ("https://example.com/tile.b3dm", "is an absolute URL"),
    ],
)
def test_escaping_uris_are_refused(tmp_path: Path, uri: str, message: str) -> None:
    root = tmp_path / "ts"
    write_tileset(root, {"boundingVolume": BOX, "geometricError": 0, "content": {"uri": uri}})
    (tmp_path / "outside.b3dm").write_bytes(b"secret")
    ts = open_tileset(root)
    with pytest.raises(DataError, match=r"tileset\.json: content uri .*" + message):
        ts.root.contents  # noqa: B018
    info = tileset_info(root)  # info reports it instead of failing, as an error
    assert any(message in p and repr(uri) in p for p in info["errors"])
    with pytest.raises(DataError, match=message):
        tileset_info(root, strict=True)


@pytest.mark.skipif(os.name == "nt", reason="symlinks")
def test_symlinks_out_of_the_root_are_refused(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.b3dm").write_bytes(b"secret")
    root = tmp_path / "ts"
    write_tileset(
        root,
        {
            "boundingVolume": BOX,
            "geometricError": 1,
            "refine": "ADD",
            "children": [
                {"boundingVolume": BOX, "geometricError": 0, "content": {"uri": "link.b3dm"}},
                {"boundingVolume": BOX, "geometricError": 0, "content": {"uri": "dir/secret.b3dm"}},
            ],
        },
    )
    (root / "link.b3dm").symlink_to(outside / "secret.b3dm")
    (root / "dir").symlink_to(outside)
    ts = open_tileset(root)
    for child in ts.root.children:
        with pytest.raises(DataError, match=r"through a symlink\) to .*outside the tileset folder"):
            ts.read_content(child.contents[0])


def test_missing_content_and_missing_external_tileset(tmp_path: Path) -> None:
    write_tileset(
        tmp_path,
        {
            "boundingVolume": BOX,
            "geometricError": 1,
            "children": [
                {"boundingVolume": BOX, "geometricError": 0, "content": {"uri": "gone.b3dm"}},
                {
                    "boundingVolume": BOX,
                    "geometricError": 0,
                    "content": {"uri": "gone/tileset.json"},
                },
            ],
        },
    )
    ts = open_tileset(tmp_path)
    a, b = ts.root.children
    with pytest.raises(DataError, match=r"gone\.b3dm: file not found"):
        a.read_contents()
    with pytest.raises(DataError, match=r"gone/tileset\.json: file not found"):
        b.children  # noqa: B018
    info = tileset_info(tmp_path)
    assert sum("file not found" in p for p in info["errors"]) == 2 and info["tiles"] == 3


def test_cycles_of_external_tilesets(tmp_path: Path) -> None:
    link = {"boundingVolume": BOX, "geometricError": 1, "content": {"uri": "b.json"}}
    write_tileset(tmp_path, link, "tileset.json")
    write_tileset(tmp_path, {**link, "content": {"uri": "sub/c.json"}}, "b.json")
    write_tileset(tmp_path / "sub", {**link, "content": {"uri": "../tileset.json"}}, "c.json")
    ts = open_tileset(tmp_path)
    with pytest.raises(
        DataError,
        match=r"cycle of external tilesets: tileset\.json -> b\.json -> sub/c\.json -> tileset\.json",
    ):
        ts.expand_all()
    write_tileset(tmp_path / "self", {**link, "content": {"uri": "tileset.json"}})
    with pytest.raises(DataError, match="cycle"):
        open_tileset(tmp_path / "self").tiles()


def test_implicit_root_must_be_box_or_region(tmp_path: Path) -> None:
    root = {
        "boundingVolume": {"sphere": [0, 0, 0, 1]},
        "geometricError": 1,
        "content": {"uri": "{level}.glb"},
        "implicitTiling": {"subdivisionScheme": "QUADTREE", "subtreeLevels": 2, "availableLevels": 2, "subtrees": {"uri": "{level}.subtree"}},
    }  # fmt: skip
    write_tileset(tmp_path, root)
    with pytest.raises(
        DataError, match=r"root\.boundingVolume of an implicit root must be a box or region"
    ):
        open_tileset(tmp_path)
    root["boundingVolume"] = BOX
    root["implicitTiling"]["subdivisionScheme"] = "BINARY"
    write_tileset(tmp_path, root)
    with pytest.raises(
        DataError, match=r"root\.implicitTiling\.subdivisionScheme must be QUADTREE or OCTREE"
    ):
        open_tileset(tmp_path)


def subtree_file(
    j: dict, binary: bytes, json_len: int | None = None, bin_len: int | None = None
) -> bytes:
    js = pad(json.dumps(j).encode())
    return (
        struct.pack(
            "<4sIQQ",
            b"subt",
            1,
            json_len or len(js),
            bin_len if bin_len is not None else len(binary),
        )
        + js
        + binary
    )


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (subtree_file({"buffers": [{"byteLength": 1}], "bufferViews": [{"buffer": 0, "byteLength": 1}], "tileAvailability": {"bitstream": 0}, "childSubtreeAvailability": {"constant": 0}}, b"\x01"), r"tileAvailability bitstream has 1 bytes, 3 are needed for 21 bits"),
        (subtree_file({"tileAvailability": {"constant": 1}}, b"", bin_len=10**9), r"subtree header says JSON \d+ \+ binary 1000000000 bytes"),
        (subtree_file({"tileAvailability": {"constant": 2}, "childSubtreeAvailability": {"constant": 0}}, b""), r"tileAvailability\.constant must be 0 or 1"),
        (subtree_file({"tileAvailability": {"constant": 0}, "childSubtreeAvailability": {"constant": 0}}, b""), r"the subtree's root tile is not available"),
        # bits 0 (root) and 5 (first tile of level 2) set, its level-1 parent (bit 1) not
        (subtree_file({"buffers": [{"byteLength": 8}], "bufferViews": [{"buffer": 0, "byteLength": 3}], "tileAvailability": {"bitstream": 0}, "childSubtreeAvailability": {"constant": 0}}, b"\x21\x00\x00\x00\x00\x00\x00\x00"), r"marks tiles at level 2 available whose parent tile is not"),
        (b"subt\x01\x00", r"subtree header needs 24 bytes"),
    ],
)  # fmt: skip
def test_bad_subtrees(tmp_path: Path, data: bytes, message: str) -> None:
    root = {
        "boundingVolume": BOX,
        "geometricError": 1,
        "content": {"uri": "{level}_{x}_{y}.glb"},
        "implicitTiling": {"subdivisionScheme": "QUADTREE", "subtreeLevels": 3, "availableLevels": 3, "subtrees": {"uri": "{level}.{x}.{y}.subtree"}},
    }  # fmt: skip
    write_tileset(tmp_path, root)
    (tmp_path / "0.0.0.subtree").write_bytes(data)
    ts = open_tileset(tmp_path)
    with pytest.raises(DataError, match=r"0\.0\.0\.subtree: .*" + message):
        ts.tiles()


# ---------------------------------------------------------------- contents
def glb_with_lying_chunk() -> bytes:
    data = bytearray(triangle_glb())
    struct.pack_into("<I", data, 12, 10**6)
    return bytes(data)


def big_count_glb() -> bytes:
    g = triangle_glb()
    j = json.loads(g[20 : 20 + struct.unpack_from("<I", g, 12)[0]])
    j["accessors"][0]["count"] = 10**9
    return triangle_glb(accessors=j["accessors"])


def bad_index_glb() -> bytes:
    pos = np.zeros((3, 3), np.float32).tobytes()
    idx = np.array([0, 1, 7, 0], np.uint16).tobytes()
    return glb(
        {
            "asset": {"version": "2.0"},
            "buffers": [{"byteLength": 44}],
            "bufferViews": [
                {"buffer": 0, "byteLength": 36},
                {"buffer": 0, "byteOffset": 36, "byteLength": 8},
            ],
            "accessors": [
                {"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"},
                {"bufferView": 1, "componentType": 5123, "count": 3, "type": "SCALAR"},
            ],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "indices": 1}]}],
            "nodes": [{"mesh": 0}],
            "scenes": [{"nodes": [0]}],
        },
        pos + idx,
    )


def draco_garbage_glb() -> bytes:
    return glb(
        {
            "asset": {"version": "2.0"},
            "extensionsUsed": ["KHR_draco_mesh_compression"],
            "buffers": [{"byteLength": 16}],
            "bufferViews": [{"buffer": 0, "byteLength": 16}],
            "accessors": [{"componentType": 5126, "count": 3, "type": "VEC3"}],
            "meshes": [{"primitives": [{"attributes": {"POSITION": 0}, "extensions": {"KHR_draco_mesh_compression": {"bufferView": 0, "attributes": {"POSITION": 0}}}}]}],
            "nodes": [{"mesh": 0}],
            "scenes": [{"nodes": [0]}],
        },
        b"DRACOgarbage\x00\x00\x00\x00",
    )  # fmt: skip


CONTENT_CASES = [
    (b"XXXX" + b"\0" * 40, r"unknown content: magic b'XXXX'"),
    (b3dm(triangle_glb(), byte_length=10_000), r"b3dm header byteLength says 10000 bytes, but the tile has \d+ bytes \(truncated\)"),
    (b3dm(triangle_glb())[:-10], r"byteLength says \d+ bytes, but the tile has \d+ bytes \(truncated\)"),
    (b3dm(triangle_glb(), ftj_len=10**8), r"header table lengths \(feature table JSON 100000000"),
    (b3dm(triangle_glb(), ft={}), r"b3dm feature table must have BATCH_LENGTH"),
    (b3dm(triangle_glb(), ft={"BATCH_LENGTH": -3}), r"feature table BATCH_LENGTH must be an integer|BATCH_LENGTH must be >= 0"),
    (b3dm(b"") , r"b3dm has no glTF after its tables"),
    (b3dm(b"glTF" + struct.pack("<II", 3, 20) + b"\0" * 8), r"GLB version must be 1 or 2, got 3"),
    (b3dm(b"glTF" + struct.pack("<II", 2, 4000)), r"GLB header length says 4000 bytes, but only 12 are there"),
    (b3dm(glb_with_lying_chunk()), r"GLB chunk b'JSON' at offset 12 says 1000000 bytes"),
    (b3dm(glb({"asset": {"version": "2.0"}, "accessors": {}})), r"glTF 'accessors' must be an array of objects"),
    (b3dm(big_count_glb()), r"accessors\[0\] needs 12000000000 bytes"),
    (b3dm(bad_index_glb()), r"indices reach vertex 7, but there are only 3 vertices"),
    (b3dm(triangle_glb(nodes=[{"mesh": 0, "children": [1]}, {"children": [0]}])), r"nodes\[1\]\.children makes a cycle through node 0"),
    (b3dm(draco_garbage_glb()), r"Draco data cannot be decoded"),
    (pnts({"POINTS_LENGTH": 10**9, "POSITION": {"byteOffset": 0}}, b"\0" * 24), r"feature table POSITION needs 12000000000 bytes"),
    (pnts({"POINTS_LENGTH": 2}, b""), r"feature table must have POSITION or POSITION_QUANTIZED"),
    (pnts({"POINTS_LENGTH": 1, "POSITION_QUANTIZED": {"byteOffset": 0}}, b"\0" * 8), r"needs QUANTIZED_VOLUME_OFFSET and QUANTIZED_VOLUME_SCALE"),
    (pnts({"POINTS_LENGTH": 1, "POSITION": {"byteOffset": 0}, "RGB": {"byteOffset": 100}}, b"\0" * 16), r"feature table RGB needs 103 bytes"),
    (i3dm({"INSTANCES_LENGTH": 10**6, "POSITION": {"byteOffset": 0}}, b"\0" * 12, triangle_glb()), r"feature table POSITION needs 12000000 bytes"),
    (i3dm({"INSTANCES_LENGTH": 10**9, "POSITION": {"byteOffset": 0}}, b"\0" * 12, triangle_glb()), r"INSTANCES_LENGTH 1000000000 is more than 2000000; refused"),
    (b3dm(triangle_glb(buffers=[{"byteLength": 10**9}])), r"buffers\[0\]\.byteLength says 1000000000 bytes, but only 44 are there"),
    (b3dm(triangle_glb(nodes=[{"mesh": 0, "extensions": {"EXT_mesh_gpu_instancing": {"attributes": {"TRANSLATION": 2}}}}], accessors=[*TRIANGLE_ACCESSORS, {"componentType": 5126, "count": 10**8, "type": "VEC3"}])), r"TRANSLATION claims 100000000 instances, more than 2000000; refused"),
    (i3dm({"POSITION": {"byteOffset": 0}}, b"\0" * 12, triangle_glb()), r"i3dm feature table must have INSTANCES_LENGTH"),
    (cmpt(b3dm(triangle_glb()), count=5), r"cmpt header tilesLength says 5 inner tiles, but the data ends after 1"),
    (cmpt(b"b3dm\x01\0\0\0" + struct.pack("<I", 10**6) + b"\0" * 20), r"inner tile 0 at offset 16 has byteLength 1000000"),
    (cmpt(cmpt(cmpt(cmpt(cmpt(cmpt(cmpt(cmpt(cmpt(b3dm(triangle_glb())))))))))), r"composite tiles nested more than 8 deep"),
    (gzip.compress(b3dm(triangle_glb()))[:-20], r"gzip data is (truncated|corrupt)"),
]  # fmt: skip


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("data", "message"), CONTENT_CASES)
def test_malformed_contents(tmp_path: Path, data: bytes, message: str) -> None:
    ts, ref = one_content(tmp_path, data)
    with pytest.raises(DataError, match=r"c\.b3dm.*" + message):
        ts.read_content(ref).geometry()  # some checks wait until the arrays are built


def test_gltf_external_buffer_is_confined(tmp_path: Path) -> None:
    j = {
        "asset": {"version": "2.0"},
        "buffers": [{"byteLength": 36, "uri": "../../secret.bin"}],
        "bufferViews": [{"buffer": 0, "byteLength": 36}],
        "accessors": [{"bufferView": 0, "componentType": 5126, "count": 3, "type": "VEC3"}],
        "meshes": [{"primitives": [{"attributes": {"POSITION": 0}}]}],
        "nodes": [{"mesh": 0}],
        "scenes": [{"nodes": [0]}],
    }
    (tmp_path / "secret.bin").write_bytes(b"\0" * 36)
    ts, ref = one_content(tmp_path / "ts", json.dumps(j).encode(), "m.gltf")
    content = ts.read_content(ref)  # parsing reads no buffer yet
    with pytest.raises(
        DataError, match=r"m\.gltf: referenced file '\.\./\.\./secret\.bin' points outside"
    ):
        content.geometry()


def test_http_tilesets_stay_below_their_base_url() -> None:
    from twin.tiles.source import HttpSource

    src = HttpSource("https://tiles.example.org/krefeld/v1/tileset.json")
    assert src.resolve("tileset.json", "a/b.b3dm?x=1") == "a/b.b3dm?x=1"
    assert src.resolve("a/t.json", "https://tiles.example.org/krefeld/v1/c/d.glb") == "c/d.glb"
    for uri in (
        "../../v0/secret.b3dm",
        "https://evil.example.com/x.b3dm",
        "https://tiles.example.org/other/x.b3dm",
    ):
        with pytest.raises(
            DataError,
            match=r"https://tiles\.example\.org/krefeld/v1/tileset\.json: .*(outside|refused)",
        ):
            src.resolve("tileset.json", uri)
