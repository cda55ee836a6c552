"""Binary glTF 2.0 (GLB) and 3D Tiles 1.0 b3dm encoding from numpy arrays.

Written by hand rather than through pygltflib: the buffers are numpy arrays laid end to end, and the JSON
is a few dicts, so this keeps every byte (alignment, accessor bounds, extension layout) explicit and costs
no per-object Python work. Feature ids go out either as `EXT_mesh_features` + `EXT_structural_metadata`
(3D Tiles 1.1; several property tables, one class each, each primitive's ids naming its table) or as
`_BATCHID` with a batch table (b3dm, 3D Tiles 1.0: the first table only).

Textures are PNG/JPEG or KTX2 (Basis Universal, `KHR_texture_basisu`; see twin.tiles.ktx2). A KTX2
texture given with a PNG/JPEG fallback has that as the texture's core `source`, and the extension is
only in `extensionsUsed`: a viewer that reads KTX2 loads only the KTX2 image, any other glTF viewer
(and this project's reader, renderer and scene composer, which do not decode KTX2) the fallback.
Without a fallback the extension is in `extensionsRequired`.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
FLOAT, UNSIGNED_BYTE, UNSIGNED_SHORT, UNSIGNED_INT = 5126, 5121, 5123, 5125
REPEAT, CLAMP_TO_EDGE = 10497, 33071
LINEAR, LINEAR_MIPMAP_LINEAR = 9729, 9987
GLB_MAGIC, JSON_CHUNK, BIN_CHUNK = 0x46546C67, 0x4E4F534A, 0x004E4942

# glTF is y-up: (east, north, up) -> (east, up, -north); 3D Tiles runtimes turn it back to z-up
ENU_TO_GLTF = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]])


def enu_to_gltf(p: np.ndarray) -> np.ndarray:
    """Rotate (N, 3) east-north-up vectors into glTF's y-up axes."""
    return np.asarray(p) @ ENU_TO_GLTF.T


@dataclass
class Material:
    """A metallic-roughness material with an optional base-colour texture (image index)."""

    name: str
    image: int | None = None
    wrap_s: int = CLAMP_TO_EDGE
    wrap_t: int = CLAMP_TO_EDGE
    base_color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    roughness: float = 0.9


@dataclass(frozen=True)
class Ktx2Image:
    """A KTX2 texture and, optionally, the same image as PNG/JPEG for viewers without KTX2."""

    ktx2: bytes
    fallback: bytes | None = None


KHR_TEXTURE_BASISU = "KHR_texture_basisu"


@dataclass
class Primitive:
    """Indexed triangles with optional normals, texture coordinates, colours and feature ids."""

    positions: np.ndarray  # (N, 3) float32, glTF axes
    indices: np.ndarray  # (M, 3) integer
    material: int | None = None
    normals: np.ndarray | None = None  # (N, 3) float32
    uv: np.ndarray | None = None  # (N, 2) float32
    colors: np.ndarray | None = None  # (N, 4) uint8
    feature_ids: np.ndarray | None = None  # (N,) ints into the property table
    name: str = ""
    property_table: int = 0  # which of the GLB's property tables the feature ids index


@dataclass
class PropertyTable:
    """Per-feature properties: numeric columns (float64) and string columns (lists of str)."""

    class_name: str
    count: int
    columns: dict[str, Any] = field(default_factory=dict)
    descriptions: dict[str, str] = field(default_factory=dict)
    no_data: dict[str, float] = field(default_factory=dict)  # numeric columns: "no value" marker


class _Builder:
    """Collects aligned buffer views into one binary chunk."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []
        self.length = 0
        self.views: list[dict[str, Any]] = []
        self.accessors: list[dict[str, Any]] = []

    def view(self, data: bytes, target: int | None = None, align: int = 8) -> int:
        pad = (-self.length) % align
        if pad:
            self.parts.append(b"\0" * pad)
            self.length += pad
        v: dict[str, Any] = {"buffer": 0, "byteOffset": self.length, "byteLength": len(data)}
        if target is not None:
            v["target"] = target
        self.parts.append(data)
        self.length += len(data)
        self.views.append(v)
        return len(self.views) - 1

    def accessor(
        self,
        array: np.ndarray,
        gl_type: str,
        component: int,
        target: int | None,
        *,
        normalized: bool = False,
        bounds: bool = False,
    ) -> int:
        dtype = {FLOAT: "<f4", UNSIGNED_BYTE: "u1", UNSIGNED_SHORT: "<u2", UNSIGNED_INT: "<u4"}
        a = np.ascontiguousarray(array, dtype=dtype[component])
        count = a.shape[0] if gl_type != "SCALAR" or a.ndim == 1 else a.size
        acc: dict[str, Any] = {
            "bufferView": self.view(a.tobytes(), target),
            "componentType": component,
            "count": int(count),
            "type": gl_type,
        }
        if normalized:
            acc["normalized"] = True
        if bounds and len(a):
            flat = a.reshape(int(count), -1)
            acc["min"] = [_num(v) for v in flat.min(axis=0)]
            acc["max"] = [_num(v) for v in flat.max(axis=0)]
        self.accessors.append(acc)
        return len(self.accessors) - 1

    def blob(self) -> bytes:
        pad = (-self.length) % 8
        return b"".join(self.parts) + b"\0" * pad


def _num(v: Any) -> float | int:
    return int(v) if isinstance(v, np.integer) else float(v)


def encode_glb(
    primitives: list[Primitive],
    materials: list[Material],
    images: Sequence[bytes | Ktx2Image],
    *,
    properties: PropertyTable | Sequence[PropertyTable] | None = None,
    feature_mode: str = "ext",
    translation: tuple[float, float, float] | None = None,
    extras: dict[str, Any] | None = None,
) -> bytes:
    """One GLB with a single node and mesh holding `primitives`.

    feature_mode "ext": feature ids as `_FEATURE_ID_0` + `EXT_mesh_features`, properties as
    `EXT_structural_metadata` property tables (a primitive's ids index `properties[p.property_table]`);
    "batchid": feature ids as `_BATCHID` (for b3dm) of the primitives of the first table only, no
    metadata extensions (the properties then belong in the b3dm batch table).
    """
    if feature_mode not in ("ext", "batchid"):
        raise ValueError(f"feature_mode must be 'ext' or 'batchid', got {feature_mode!r}")
    if properties is None:
        tables: list[PropertyTable] = []
    elif isinstance(properties, PropertyTable):
        tables = [properties]
    else:
        tables = list(properties)
    b = _Builder()
    gl_prims = []
    uses_features = False
    for p in primitives:
        n = len(p.positions)
        attrs = {"POSITION": b.accessor(p.positions, "VEC3", FLOAT, ARRAY_BUFFER, bounds=True)}
        if p.normals is not None:
            attrs["NORMAL"] = b.accessor(p.normals, "VEC3", FLOAT, ARRAY_BUFFER)
        if p.uv is not None:
            attrs["TEXCOORD_0"] = b.accessor(p.uv, "VEC2", FLOAT, ARRAY_BUFFER)
        if p.colors is not None:
            attrs["COLOR_0"] = b.accessor(
                p.colors, "VEC4", UNSIGNED_BYTE, ARRAY_BUFFER, normalized=True
            )
        prim: dict[str, Any] = {"attributes": attrs, "mode": 4}
        ti = p.property_table
        has_table = 0 <= ti < len(tables) and (feature_mode == "ext" or ti == 0)
        if p.feature_ids is not None and has_table:
            uses_features = True
            fid = np.asarray(p.feature_ids, dtype=np.float32)  # exact for ids below 2**24
            name = "_FEATURE_ID_0" if feature_mode == "ext" else "_BATCHID"
            attrs[name] = b.accessor(fid, "SCALAR", FLOAT, ARRAY_BUFFER)
            if feature_mode == "ext":
                prim["extensions"] = {
                    "EXT_mesh_features": {
                        "featureIds": [
                            {
                                "featureCount": int(tables[ti].count),
                                "attribute": 0,
                                "propertyTable": ti,
                            }
                        ]
                    }
                }
        idx = np.asarray(p.indices).reshape(-1)
        if n <= 65535:
            prim["indices"] = b.accessor(idx, "SCALAR", UNSIGNED_SHORT, ELEMENT_ARRAY_BUFFER)
        else:
            prim["indices"] = b.accessor(idx, "SCALAR", UNSIGNED_INT, ELEMENT_ARRAY_BUFFER)
        if p.material is not None:
            prim["material"] = p.material
        gl_prims.append(prim)

    gltf: dict[str, Any] = {
        "asset": {"version": "2.0", "generator": "krefeld-twin tiles writer"},
        "scene": 0,
        "scenes": [{"nodes": [0]}],
        "nodes": [{"mesh": 0}],
        "meshes": [{"primitives": gl_prims}],
    }
    if translation is not None:
        gltf["nodes"][0]["translation"] = [float(v) for v in translation]
    gl_images, slots = _images(b, images)
    if materials:
        gltf["materials"], gltf["textures"], gltf["samplers"] = _materials(materials, slots)
    if gl_images:
        gltf["images"] = gl_images
    used, required = [], []
    if uses_features and feature_mode == "ext":
        gltf["extensions"] = {"EXT_structural_metadata": _metadata(b, tables)}
        used = ["EXT_mesh_features", "EXT_structural_metadata"]
    textured = [slots[m.image] for m in materials if m.image is not None]
    if any(ktx is not None for _, ktx in textured):
        used.append(KHR_TEXTURE_BASISU)
        if any(core is None for core, _ in textured):
            required.append(KHR_TEXTURE_BASISU)
    if used:
        gltf["extensionsUsed"] = used
    if required:
        gltf["extensionsRequired"] = required
    if extras:
        gltf["extras"] = extras
    gltf["accessors"] = b.accessors
    gltf["bufferViews"] = b.views
    blob = b.blob()
    gltf["buffers"] = [{"byteLength": len(blob)}]
    return _glb(gltf, blob)


def _mime(image: bytes) -> str:
    if image[:8] == b"\x89PNG\r\n\x1a\n":
        return "image/png"
    if image[:3] == b"\xff\xd8\xff":
        return "image/jpeg"
    if image[:12] == b"\xabKTX 20\xbb\r\n\x1a\n":
        return "image/ktx2"
    raise ValueError("images must be PNG, JPEG or KTX2 bytes")


def _images(
    b: _Builder, images: Sequence[bytes | Ktx2Image]
) -> tuple[list[dict[str, Any]], list[tuple[int | None, int | None]]]:
    """glTF images and, per given image, its (core source, KHR_texture_basisu source) indices."""
    out: list[dict[str, Any]] = []
    slots: list[tuple[int | None, int | None]] = []

    def add(data: bytes, want: tuple[str, ...]) -> int:
        mime = _mime(data)
        if mime not in want:
            raise ValueError(f"expected {' or '.join(want)} image bytes, got {mime}")
        out.append({"bufferView": b.view(data, None), "mimeType": mime})
        return len(out) - 1

    for img in images:
        if isinstance(img, Ktx2Image):
            core = None
            if img.fallback is not None:
                core = add(img.fallback, ("image/png", "image/jpeg"))
            slots.append((core, add(img.ktx2, ("image/ktx2",))))
        elif _mime(img) == "image/ktx2":
            slots.append((None, add(img, ("image/ktx2",))))
        else:
            slots.append((add(img, ("image/png", "image/jpeg")), None))
    return out, slots


def _materials(
    materials: list[Material], slots: list[tuple[int | None, int | None]]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """glTF materials, one texture and one sampler per textured material."""
    mats, textures, samplers = [], [], []
    for m in materials:
        pbr: dict[str, Any] = {"metallicFactor": 0.0, "roughnessFactor": m.roughness}
        if tuple(m.base_color) != (1.0, 1.0, 1.0, 1.0):
            pbr["baseColorFactor"] = [float(c) for c in m.base_color]
        if m.image is not None:
            samplers.append(
                {
                    "magFilter": LINEAR,
                    "minFilter": LINEAR_MIPMAP_LINEAR,
                    "wrapS": m.wrap_s,
                    "wrapT": m.wrap_t,
                }
            )
            core, ktx = slots[m.image]
            tex: dict[str, Any] = {"sampler": len(samplers) - 1}
            if core is not None:
                tex["source"] = core
            if ktx is not None:
                tex["extensions"] = {KHR_TEXTURE_BASISU: {"source": ktx}}
            textures.append(tex)
            pbr["baseColorTexture"] = {"index": len(textures) - 1}
        mats.append({"name": m.name, "pbrMetallicRoughness": pbr})
    return mats, textures, samplers


def _metadata(b: _Builder, tables: list[PropertyTable]) -> dict[str, Any]:
    """EXT_structural_metadata: an embedded schema with one class per property table."""
    names = [t.class_name for t in tables]
    if len(set(names)) != len(names):
        raise ValueError(f"property tables need distinct class names, got {names}")
    classes, out = {}, []
    for table in tables:
        schema, props = _table(b, table)
        classes[table.class_name] = {"properties": schema}
        out.append({"class": table.class_name, "count": int(table.count), "properties": props})
    return {"schema": {"id": "krefeld_twin", "classes": classes}, "propertyTables": out}


def _table(b: _Builder, table: PropertyTable) -> tuple[dict[str, Any], dict[str, Any]]:
    """One class's property schema and its property table's buffer views."""
    props_schema: dict[str, Any] = {}
    props_table: dict[str, Any] = {}
    for name, values in table.columns.items():
        desc = table.descriptions.get(name)
        if isinstance(values, np.ndarray) and values.dtype.kind in "fiu":
            if len(values) != table.count:
                raise ValueError(f"property {name!r} has {len(values)} values, not {table.count}")
            props_schema[name] = {"type": "SCALAR", "componentType": "FLOAT64"}
            view = b.view(np.ascontiguousarray(values, dtype="<f8").tobytes())
            props_table[name] = {"values": view}
        else:
            strings = [str(v).encode("utf-8") for v in values]
            if len(strings) != table.count:
                raise ValueError(f"property {name!r} has {len(strings)} values, not {table.count}")
            offsets = np.zeros(len(strings) + 1, dtype="<u4")
            offsets[1:] = np.cumsum([len(s) for s in strings])
            props_schema[name] = {"type": "STRING"}
            props_table[name] = {
                "values": b.view(b"".join(strings)),
                "stringOffsets": b.view(offsets.tobytes()),
                "stringOffsetType": "UINT32",
            }
        if desc:
            props_schema[name]["description"] = desc
        if name in table.no_data:
            props_schema[name]["noData"] = float(table.no_data[name])
    return props_schema, props_table


def _glb(gltf: dict[str, Any], blob: bytes) -> bytes:
    """GLB container: 12-byte header, JSON chunk (space-padded), BIN chunk (zero-padded).

    The JSON chunk is padded to 4 more than a multiple of 8 and the BIN chunk to a multiple of 8, so
    the BIN data starts on an 8-byte boundary (float64 metadata) and the whole GLB is a multiple of 8
    bytes long, as a b3dm requires of the GLB it embeds.
    """
    js = json.dumps(gltf, separators=(",", ":")).encode("utf-8")
    js += b" " * ((4 - len(js)) % 8)
    if len(blob) % 8:
        raise ValueError("the binary chunk must be padded to 8 bytes")
    total = 12 + 8 + len(js) + 8 + len(blob)
    return b"".join(
        [
            struct.pack("<III", GLB_MAGIC, 2, total),
            struct.pack("<II", len(js), JSON_CHUNK),
            js,
            struct.pack("<II", len(blob), BIN_CHUNK),
            blob,
        ]
    )


def encode_b3dm(glb: bytes, batch_table: dict[str, list[Any]], batch_length: int) -> bytes:
    """A 3D Tiles 1.0 Batched 3D Model: header, feature table (BATCH_LENGTH), JSON batch table, GLB.

    Each section starts on an 8-byte boundary of the file, as the b3dm specification requires.
    """
    ft = _padded_json({"BATCH_LENGTH": int(batch_length)}, start=28)
    bt = _padded_json(batch_table, start=28 + len(ft)) if batch_table else b""
    body = ft + bt
    if len(glb) % 8:
        raise ValueError(
            "a GLB in a b3dm must be a multiple of 8 bytes long (encode_glb makes it so)"
        )
    total = 28 + len(body) + len(glb)
    header = struct.pack("<4sIIIIII", b"b3dm", 1, total, len(ft), 0, len(bt), 0)
    return header + body + glb


def _padded_json(data: dict[str, Any], start: int) -> bytes:
    raw = json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return raw + b" " * ((-(start + len(raw))) % 8)
