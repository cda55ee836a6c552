"""glTF 2.0 and legacy glTF 1.0 assets (GLB or JSON) read into numpy arrays, lazily.

We parse glTF ourselves rather than with pygltflib or trimesh because tile contents need things
those loaders drop or do not read: glTF 1.0 inside old b3dm files (KHR_binary_glTF, CESIUM_RTC),
_BATCHID and EXT_mesh_features feature ids, EXT_structural_metadata tables, Draco and quantized
attributes, and array-speed access (np.frombuffer on the accessor views, no per-vertex loops).
Opening an asset only checks its structure; arrays are built when first asked for. Counts
(`GltfModel.counts`) come only from accessors whose bytes are there and inside their buffer view
and buffer; counts of accessors without data are kept apart as declared, not verified.
"""

from __future__ import annotations

import base64
import io
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from twin.errors import DataError
from twin.tiles.binary import (
    mat4_from_column_major,
    parse_json,
    require_dict,
    require_int,
    require_numbers,
    typed_array,
    unpack,
)
from twin.tiles.metadata import decode_property_table

GLB_MAGIC = b"glTF"
KTX2_MAGIC = b"\xabKTX 20\xbb\r\n\x1a\n"
COMPONENT_DTYPES: dict[int, np.dtype] = {
    5120: np.dtype("<i1"),
    5121: np.dtype("<u1"),
    5122: np.dtype("<i2"),
    5123: np.dtype("<u2"),
    5125: np.dtype("<u4"),
    5126: np.dtype("<f4"),
}
TYPE_NCOMP: dict[str, int] = {
    "SCALAR": 1,
    "VEC2": 2,
    "VEC3": 3,
    "VEC4": 4,
    "MAT2": 4,
    "MAT3": 9,
    "MAT4": 16,
}
MODE_POINTS, MODE_TRIANGLES, MODE_STRIP, MODE_FAN = 0, 4, 5, 6
# Extensions whose absence from this reader would make geometry wrong if they are required.
UNSUPPORTED_GEOMETRY_EXTENSIONS = {"EXT_meshopt_compression", "KHR_meshopt_compression"}
MAX_NODE_VISITS = 1_000_000
# An accessor without a bufferView is all zeros (then sparse); more than this is a lie.
MAX_ZERO_ACCESSOR_BYTES = 256 * 1024**2
# EXT_mesh_gpu_instancing instances of one node (each becomes a 4x4 float64 matrix: 128 bytes).
MAX_GPU_INSTANCES = 2_000_000

Resolver = Callable[[str], bytes]


def _decode_data_uri(uri: str, name: str, field_name: str) -> bytes:
    head, _, payload = uri.partition(",")
    try:
        if head.endswith(";base64"):
            return base64.b64decode(payload, validate=False)
        return urllib.parse.unquote_to_bytes(payload)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{name}: {field_name} is a malformed data URI ({exc})") from exc


def _load_uri(uri: Any, name: str, field_name: str, resolve: Resolver | None) -> bytes:
    if not isinstance(uri, str):
        raise DataError(f"{name}: {field_name} must be a string URI, got {uri!r}")
    if uri.startswith("data:"):
        return _decode_data_uri(uri, name, field_name)
    if resolve is None:
        raise DataError(
            f"{name}: {field_name} refers to external file {uri!r}, which cannot be read here"
        )
    return resolve(uri)


def split_glb(data: bytes | memoryview, name: str) -> tuple[dict, memoryview | None, int]:
    """The JSON, the binary chunk and the glTF version of a GLB (binary glTF 1 or 2)."""
    mv = memoryview(data)
    magic, version, length = unpack("<4sII", mv, 0, name, "GLB header")
    if magic != GLB_MAGIC:
        raise DataError(f"{name}: GLB magic must be 'glTF', got {bytes(magic)!r}")
    if length > len(mv):
        raise DataError(
            f"{name}: GLB header length says {length} bytes, but only {len(mv)} are there (truncated)"
        )
    if length < 20:
        raise DataError(f"{name}: GLB header length {length} is too small")
    mv = mv[:length]
    if version == 1:
        content_len, content_fmt = unpack("<II", mv, 12, name, "GLB 1.0 header")
        if content_fmt != 0:
            raise DataError(f"{name}: GLB 1.0 contentFormat must be 0 (JSON), got {content_fmt}")
        if 20 + content_len > length:
            raise DataError(f"{name}: GLB 1.0 contentLength {content_len} runs past the end")
        gltf = parse_json(mv[20 : 20 + content_len], name, "glTF JSON")
        return require_dict(gltf, name, "glTF JSON"), mv[20 + content_len :], 1
    if version != 2:
        raise DataError(f"{name}: GLB version must be 1 or 2, got {version}")
    offset = 12
    gltf, binary = None, None
    while offset + 8 <= length:
        chunk_len, chunk_type = unpack("<I4s", mv, offset, name, "GLB chunk header")
        start = offset + 8
        if start + chunk_len > length:
            raise DataError(
                f"{name}: GLB chunk {bytes(chunk_type)!r} at offset {offset} says {chunk_len} bytes, "
                f"which runs past the end ({length})"
            )
        chunk = mv[start : start + chunk_len]
        if gltf is None:
            if chunk_type != b"JSON":
                raise DataError(
                    f"{name}: the first GLB chunk must be JSON, got {bytes(chunk_type)!r}"
                )
            gltf = parse_json(chunk, name, "glTF JSON chunk")
        elif chunk_type == b"BIN\x00" and binary is None:
            binary = chunk
        offset = start + chunk_len
    if gltf is None:
        raise DataError(f"{name}: GLB has no JSON chunk")
    return require_dict(gltf, name, "glTF JSON"), binary, 2


# ---------------------------------------------------------------- glTF 1.0 -> 2.0 shaped JSON
def _upgrade_v1(j: dict, name: str) -> dict:
    """Re-shape a glTF 1.0 JSON (objects keyed by id) into glTF 2.0 layout (arrays, indices),
    enough to read geometry, textures and batch ids."""

    def table(key: str) -> tuple[list[dict], dict[str, int]]:
        d = j.get(key) or {}
        if not isinstance(d, dict):
            raise DataError(f"{name}: glTF 1.0 '{key}' must be an object keyed by id")
        ids = list(d)
        return [dict(d[i]) if isinstance(d[i], dict) else {} for i in ids], {
            k: n for n, k in enumerate(ids)
        }

    def ref(ids: dict[str, int], value: Any, what: str) -> int:
        if value not in ids:
            raise DataError(f"{name}: glTF 1.0 {what} refers to unknown id {value!r}")
        return ids[value]

    buffers, buf_ids = table("buffers")
    views, view_ids = table("bufferViews")
    accessors, acc_ids = table("accessors")
    meshes, mesh_ids = table("meshes")
    nodes, node_ids = table("nodes")
    materials, mat_ids = table("materials")
    textures, tex_ids = table("textures")
    images, img_ids = table("images")
    scenes, scene_ids = table("scenes")
    for bid, b in zip(buf_ids, buffers, strict=True):
        if bid == "binary_glTF" or b.get("extensions", {}).get("KHR_binary_glTF") is not None:
            b.pop("uri", None)
            b["_glb_body"] = True
    for v in views:
        v["buffer"] = ref(buf_ids, v.get("buffer"), "bufferView.buffer")
        v.pop("byteStride", None)
    for a in accessors:
        a["bufferView"] = ref(view_ids, a.get("bufferView"), "accessor.bufferView")
        if not a.get("byteStride"):
            a.pop("byteStride", None)
    for m in meshes:
        prims = []
        for p in m.get("primitives") or []:
            p = dict(p)
            p["attributes"] = {
                sem: ref(acc_ids, acc, f"attribute {sem}")
                for sem, acc in (p.get("attributes") or {}).items()
            }
            if "indices" in p:
                p["indices"] = ref(acc_ids, p["indices"], "primitive.indices")
            if "material" in p:
                p["material"] = ref(mat_ids, p["material"], "primitive.material")
            p.pop("extensions", None)
            prims.append(p)
        m["primitives"] = prims
    for nd in nodes:
        nd["children"] = [ref(node_ids, c, "node.children") for c in nd.get("children") or []]
        nd["meshes"] = [ref(mesh_ids, m, "node.meshes") for m in nd.get("meshes") or []]
        nd.pop("mesh", None)
        nd.pop("extensions", None)
    for s in scenes:
        s["nodes"] = [ref(node_ids, n, "scene.nodes") for n in s.get("nodes") or []]
    for t in textures:
        if t.get("source") in img_ids:
            t["source"] = img_ids[t["source"]]
        else:
            t.pop("source", None)
    for im in images:
        binary = (im.get("extensions") or {}).get("KHR_binary_glTF")
        if isinstance(binary, dict):
            im["bufferView"] = ref(view_ids, binary.get("bufferView"), "image bufferView")
            im["mimeType"] = binary.get("mimeType", "")
            im.pop("uri", None)
    for mat in materials:
        values = mat.get("values") or {}
        common = (mat.get("extensions") or {}).get("KHR_materials_common")
        if isinstance(common, dict):
            values = {**values, **(common.get("values") or {})}
        diffuse = values.get("diffuse")
        pbr: dict[str, Any] = {}
        if isinstance(diffuse, str) and diffuse in tex_ids:
            pbr["baseColorTexture"] = {"index": tex_ids[diffuse]}
        elif isinstance(diffuse, list) and len(diffuse) in (3, 4):
            pbr["baseColorFactor"] = list(diffuse) + [1.0] * (4 - len(diffuse))
        mat.clear()
        mat["pbrMetallicRoughness"] = pbr
    out = {
        "asset": j.get("asset") or {},
        "buffers": buffers,
        "bufferViews": views,
        "accessors": accessors,
        "meshes": meshes,
        "nodes": nodes,
        "materials": materials,
        "textures": textures,
        "images": images,
        "scenes": scenes,
        "extensions": j.get("extensions") or {},
        "extensionsUsed": j.get("extensionsUsed") or [],
    }
    if j.get("scene") in scene_ids:
        out["scene"] = scene_ids[j["scene"]]
    return out


# ---------------------------------------------------------------- images
@dataclass
class TextureImage:
    """One image of a glTF: where it is, its type and (decoded header) size."""

    index: int
    mime: str
    name: str
    source: str
    _loader: Callable[[], bytes] = field(repr=False)
    _header: tuple | None = field(default=None, repr=False)

    def data(self) -> bytes:
        """The encoded image bytes (PNG, JPEG, KTX2, WebP...)."""
        return bytes(self._loader())

    def _probe(self) -> tuple:
        if self._header is None:
            try:
                raw = self.data()
            except DataError as exc:
                self._header = ("error", None, None, str(exc))
                return self._header
            if raw.startswith(KTX2_MAGIC) and len(raw) >= 28:
                w, h = np.frombuffer(raw, "<u4", 2, 20)
                self._header = ("ktx2", int(w), int(h), None)
            else:
                from PIL import Image, UnidentifiedImageError

                try:
                    with Image.open(io.BytesIO(raw)) as im:  # reads the header only
                        self._header = ((im.format or "").lower(), im.size[0], im.size[1], None)
                except (UnidentifiedImageError, OSError, ValueError) as exc:
                    self._header = ("unknown", None, None, f"image cannot be read: {exc}")
        return self._header

    @property
    def format(self) -> str:
        """Detected format: png, jpeg, webp, ktx2, ... ('unknown' or 'error' when unreadable)."""
        return self._probe()[0]

    @property
    def ktx2(self) -> bool:
        """True for KTX2 (Basis Universal) textures, which are detected but not decoded."""
        return self.format == "ktx2"

    @property
    def width(self) -> int | None:
        """Image width in pixels (from its header), None if unreadable."""
        return self._probe()[1]

    @property
    def height(self) -> int | None:
        """Image height in pixels (from its header), None if unreadable."""
        return self._probe()[2]

    @property
    def error(self) -> str | None:
        """Why the image cannot be read, or None."""
        return self._probe()[3]

    def pil(self):
        """The decoded image as a PIL image (RGB/RGBA), or None for KTX2 or unreadable data."""
        if self.ktx2 or self.error:
            return None
        from PIL import Image

        try:
            im = Image.open(io.BytesIO(self.data()))
            im.load()
        except (OSError, ValueError, Image.DecompressionBombError):
            return None
        return im if im.mode in ("RGB", "RGBA") else im.convert("RGBA")


@dataclass
class MaterialInfo:
    """What a mesh needs of a glTF material: base colour and its texture."""

    base_color: np.ndarray
    image: int | None = None
    tex_coord: int = 0
    texture_transform: dict | None = None
    double_sided: bool = False
    alpha_mode: str = "OPAQUE"
    name: str = ""


@dataclass
class Counts:
    """What a model or content draws: triangles and points counted from data that was read and
    bounds-checked, and apart from them those only declared (accessors without data), with notes
    saying where."""

    triangles: int = 0
    points: int = 0
    declared_triangles: int = 0
    declared_points: int = 0
    notes: list[str] = field(default_factory=list)

    def scaled(self, k: int) -> Counts:
        """These counts drawn `k` times (instances)."""
        return Counts(
            self.triangles * k,
            self.points * k,
            self.declared_triangles * k,
            self.declared_points * k,
            list(self.notes),
        )

    def __add__(self, other: Counts) -> Counts:
        return Counts(
            self.triangles + other.triangles,
            self.points + other.points,
            self.declared_triangles + other.declared_triangles,
            self.declared_points + other.declared_points,
            self.notes + other.notes,
        )


# ---------------------------------------------------------------- buffers and accessors
class _Reader:
    """Buffers, buffer views and accessors of one glTF, with every range checked."""

    def __init__(
        self, j: dict, glb_bin: memoryview | None, name: str, resolve: Resolver | None
    ) -> None:
        self.json, self.name, self.resolve = j, name, resolve
        self.glb_bin = glb_bin
        self._buffers: dict[int, memoryview] = {}
        self._cache: dict[int, np.ndarray] = {}
        self.buffer_defs = self._list("buffers")
        self.view_defs = self._list("bufferViews")
        self.accessor_defs = self._list("accessors")
        for i, v in enumerate(self.view_defs):
            f = f"bufferViews[{i}]"
            b = require_int(v.get("buffer"), name, f + ".buffer")
            if b >= len(self.buffer_defs):
                raise DataError(
                    f"{name}: {f}.buffer {b} does not exist ({len(self.buffer_defs)} buffers)"
                )
            off = require_int(v.get("byteOffset", 0), name, f + ".byteOffset")
            ln = require_int(v.get("byteLength"), name, f + ".byteLength")
            blen = self.buffer_defs[b].get("byteLength")
            if isinstance(blen, int) and off + ln > blen:
                raise DataError(
                    f"{name}: {f} (offset {off} + length {ln}) runs past buffer {b}'s byteLength {blen}"
                )
        for i, a in enumerate(self.accessor_defs):
            self._check_accessor(i, a)

    def _list(self, key: str) -> list[dict]:
        v = self.json.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, dict) for x in v):
            raise DataError(f"{self.name}: glTF '{key}' must be an array of objects")
        return v

    def _check_accessor(self, i: int, a: dict) -> None:
        f = f"accessors[{i}]"
        ct = a.get("componentType")
        if ct not in COMPONENT_DTYPES:
            raise DataError(
                f"{self.name}: {f}.componentType must be one of {sorted(COMPONENT_DTYPES)}, got {ct!r}"
            )
        if a.get("type") not in TYPE_NCOMP:
            raise DataError(
                f"{self.name}: {f}.type must be one of {sorted(TYPE_NCOMP)}, got {a.get('type')!r}"
            )
        count = require_int(a.get("count"), self.name, f + ".count")
        if "bufferView" in a:
            bv = require_int(a["bufferView"], self.name, f + ".bufferView")
            if bv >= len(self.view_defs):
                raise DataError(f"{self.name}: {f}.bufferView {bv} does not exist")
            view = self.view_defs[bv]
            elem = COMPONENT_DTYPES[ct].itemsize * TYPE_NCOMP[a["type"]]
            stride = a.get("byteStride") or view.get("byteStride") or elem
            stride = require_int(stride, self.name, f + " byteStride", elem)
            off = require_int(a.get("byteOffset", 0), self.name, f + ".byteOffset")
            need = 0 if count == 0 else off + stride * (count - 1) + elem
            if need > view.get("byteLength", 0):
                raise DataError(
                    f"{self.name}: {f} needs {need} bytes ({count} x {a['type']}, stride {stride}) "
                    f"but bufferView {bv} has byteLength {view.get('byteLength')}"
                )
        elif "sparse" not in a and count:
            pass  # all zeros, legal

    def buffer(self, i: int) -> memoryview:
        """Bytes of buffer i (GLB chunk, data URI or external file), length checked."""
        if i not in self._buffers:
            b = self.buffer_defs[i]
            f = f"buffers[{i}]"
            if b.get("_glb_body") or ("uri" not in b and i == 0):
                if self.glb_bin is None:
                    raise DataError(
                        f"{self.name}: {f} refers to the GLB binary chunk, which is missing"
                    )
                data = self.glb_bin
            elif "uri" in b:
                data = memoryview(_load_uri(b["uri"], self.name, f + ".uri", self.resolve))
            else:
                ext = b.get("extensions") or {}
                if any(k in ext for k in UNSUPPORTED_GEOMETRY_EXTENSIONS):
                    raise DataError(
                        f"{self.name}: {f} is a meshopt fallback buffer; EXT_meshopt_compression is not supported"
                    )
                raise DataError(f"{self.name}: {f} has no uri and is not the GLB binary chunk")
            blen = b.get("byteLength")
            if isinstance(blen, int) and blen > len(data):
                raise DataError(
                    f"{self.name}: {f}.byteLength says {blen} bytes, but only {len(data)} are there"
                )
            self._buffers[i] = memoryview(data)
        return self._buffers[i]

    def view(self, i: int) -> memoryview:
        """Bytes of buffer view i, range checked."""
        if not isinstance(i, int) or not 0 <= i < len(self.view_defs):
            raise DataError(f"{self.name}: bufferView {i!r} does not exist")
        v = self.view_defs[i]
        if any(k in (v.get("extensions") or {}) for k in UNSUPPORTED_GEOMETRY_EXTENSIONS):
            raise DataError(
                f"{self.name}: bufferViews[{i}] uses EXT_meshopt_compression, not supported"
            )
        buf = self.buffer(v["buffer"])
        off, ln = v.get("byteOffset", 0), v["byteLength"]
        if off + ln > len(buf):
            raise DataError(
                f"{self.name}: bufferViews[{i}] (offset {off} + length {ln}) runs past the end of "
                f"buffer {v['buffer']} ({len(buf)} bytes)"
            )
        return buf[off : off + ln]

    def count(self, i: int) -> int:
        """Element count of accessor i (from the JSON)."""
        return int(self.accessor_defs[i]["count"])

    def has_data(self, i: int) -> bool:
        """True when accessor i's bytes are there: offset + count x stride inside its buffer view
        (checked on opening) and the view inside the bytes its buffer really has (checked here,
        reading the buffer). False for an accessor without a bufferView, whose count is only
        declared. DataError when the buffer is shorter than the view needs."""
        a = self.accessor_defs[i]
        if "bufferView" not in a:
            return False
        self.view(a["bufferView"])
        return True

    def accessor(self, i: Any, what: str = "accessor") -> np.ndarray:
        """Accessor i as a (count, ncomp) array; normalized integers become floats in [0,1]/[-1,1]."""
        if not isinstance(i, int) or isinstance(i, bool) or not 0 <= i < len(self.accessor_defs):
            raise DataError(f"{self.name}: {what} refers to accessor {i!r}, which does not exist")
        if i in self._cache:
            return self._cache[i]
        a = self.accessor_defs[i]
        dtype, ncomp, count = (
            COMPONENT_DTYPES[a["componentType"]],
            TYPE_NCOMP[a["type"]],
            a["count"],
        )
        f = f"accessors[{i}]"
        if "bufferView" in a:
            view = self.view(a["bufferView"])
            stride = a.get("byteStride") or self.view_defs[a["bufferView"]].get("byteStride")
            arr = typed_array(
                view, a.get("byteOffset", 0), dtype, count, ncomp, self.name, f, stride
            )
        else:
            if count * dtype.itemsize * ncomp > MAX_ZERO_ACCESSOR_BYTES:
                raise DataError(
                    f"{self.name}: {f} has no bufferView but claims {count} elements; refused"
                )
            arr = np.zeros((count, ncomp), dtype=dtype)
        if "sparse" in a:
            arr = self._apply_sparse(arr, a["sparse"], f)
        if a.get("normalized") and arr.dtype.kind in "iu":
            arr = normalize_integers(arr)
        self._cache[i] = arr
        return arr

    def _apply_sparse(self, arr: np.ndarray, sparse: Any, f: str) -> np.ndarray:
        sparse = require_dict(sparse, self.name, f + ".sparse")
        n = require_int(sparse.get("count"), self.name, f + ".sparse.count", 1)
        idx_def = require_dict(sparse.get("indices"), self.name, f + ".sparse.indices")
        val_def = require_dict(sparse.get("values"), self.name, f + ".sparse.values")
        ict = idx_def.get("componentType")
        if ict not in (5121, 5123, 5125):
            raise DataError(
                f"{self.name}: {f}.sparse.indices.componentType must be unsigned, got {ict!r}"
            )
        iv = self.view(
            require_int(idx_def.get("bufferView"), self.name, f + ".sparse.indices.bufferView")
        )
        idx = typed_array(
            iv,
            idx_def.get("byteOffset", 0),
            COMPONENT_DTYPES[ict],
            n,
            1,
            self.name,
            f + ".sparse.indices",
        )[:, 0]
        vv = self.view(
            require_int(val_def.get("bufferView"), self.name, f + ".sparse.values.bufferView")
        )
        vals = typed_array(
            vv,
            val_def.get("byteOffset", 0),
            arr.dtype,
            n,
            arr.shape[1],
            self.name,
            f + ".sparse.values",
        )
        if idx.size and int(idx.max()) >= arr.shape[0]:
            raise DataError(
                f"{self.name}: {f}.sparse.indices go past the accessor count {arr.shape[0]}"
            )
        out = np.array(arr, copy=True)
        out[idx.astype(np.int64)] = vals
        return out


def normalize_integers(arr: np.ndarray) -> np.ndarray:
    """glTF normalized integer -> float32 (unsigned to [0, 1], signed to [-1, 1])."""
    info = np.iinfo(arr.dtype)
    out = arr.astype(np.float32) / np.float32(info.max)
    return np.maximum(out, -1.0) if info.min < 0 else out


def _quat_to_matrix(q: np.ndarray) -> np.ndarray:
    """Rotation matrices (..., 3, 3) from unit quaternions (..., 4) in glTF order x, y, z, w."""
    q = np.asarray(q, dtype=np.float64)
    n = np.linalg.norm(q, axis=-1, keepdims=True)
    q = q / np.where(n == 0, 1.0, n)
    x, y, z, w = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    m = np.empty(q.shape[:-1] + (3, 3))
    m[..., 0, 0] = 1 - 2 * (y * y + z * z)
    m[..., 0, 1] = 2 * (x * y - z * w)
    m[..., 0, 2] = 2 * (x * z + y * w)
    m[..., 1, 0] = 2 * (x * y + z * w)
    m[..., 1, 1] = 1 - 2 * (x * x + z * z)
    m[..., 1, 2] = 2 * (y * z - x * w)
    m[..., 2, 0] = 2 * (x * z - y * w)
    m[..., 2, 1] = 2 * (y * z + x * w)
    m[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return m


def _node_matrix(node: dict, name: str, f: str) -> np.ndarray:
    if "matrix" in node:
        return mat4_from_column_major(node["matrix"], name, f + ".matrix")
    m = np.eye(4)
    if "scale" in node or "rotation" in node or "translation" in node:
        t = require_numbers(node.get("translation", [0, 0, 0]), 3, name, f + ".translation")
        r = require_numbers(node.get("rotation", [0, 0, 0, 1]), 4, name, f + ".rotation")
        s = require_numbers(node.get("scale", [1, 1, 1]), 3, name, f + ".scale")
        m[:3, :3] = _quat_to_matrix(r) * s[None, :]
        m[:3, 3] = t
    return m


# ---------------------------------------------------------------- primitives
class Primitive:
    """One drawn glTF primitive: its arrays (read on first use) and its node transform."""

    def __init__(
        self,
        model: GltfModel,
        reader: _Reader,
        prim: dict,
        where: str,
        matrix: np.ndarray,
        instances: np.ndarray | None,
        instance_features: np.ndarray | None,
        instance_accessors: tuple[int, ...] = (),
    ) -> None:
        self.model, self._r, self.json, self.where = model, reader, prim, where
        self.matrix = matrix  # node global transform, glTF space
        self.instances = instances  # (k, 4, 4) EXT_mesh_gpu_instancing, applied before `matrix`
        self.instance_features = instance_features
        self.instance_accessors = instance_accessors  # the accessors `instances` were read from
        name = reader.name
        self.mode = require_int(prim.get("mode", MODE_TRIANGLES), name, where + ".mode")
        attrs = prim.get("attributes")
        if not isinstance(attrs, dict) or "POSITION" not in attrs:
            raise DataError(f"{name}: {where}.attributes must be an object with POSITION")
        for sem, acc in attrs.items():
            if not isinstance(acc, int) or not 0 <= acc < len(reader.accessor_defs):
                raise DataError(
                    f"{name}: {where}.attributes.{sem} refers to missing accessor {acc!r}"
                )
        self.attribute_accessors: dict[str, int] = dict(attrs)
        self.indices_accessor = prim.get("indices")
        if self.indices_accessor is not None and (
            not isinstance(self.indices_accessor, int)
            or not 0 <= self.indices_accessor < len(reader.accessor_defs)
        ):
            raise DataError(
                f"{name}: {where}.indices refers to missing accessor {self.indices_accessor!r}"
            )
        ext = prim.get("extensions") or {}
        self.draco = ext.get("KHR_draco_mesh_compression")
        self.mesh_features = ext.get("EXT_mesh_features")

    # --- counts from the JSON alone (no array read)
    @property
    def vertex_count(self) -> int:
        """Number of vertices (POSITION accessor count)."""
        return self._r.count(self.attribute_accessors["POSITION"])

    @property
    def element_count(self) -> int:
        """Number of indices (or vertices when not indexed)."""
        if self.indices_accessor is not None:
            return self._r.count(self.indices_accessor)
        return self.vertex_count

    @property
    def instance_count(self) -> int:
        """GPU instances (EXT_mesh_gpu_instancing) this primitive is drawn with."""
        return 1 if self.instances is None else len(self.instances)

    @property
    def n_triangles(self) -> int:
        """Triangles drawn by this primitive once (instances not counted)."""
        n = self.element_count
        if self.mode == MODE_TRIANGLES:
            return n // 3
        if self.mode in (MODE_STRIP, MODE_FAN):
            return max(n - 2, 0)
        return 0

    @property
    def n_points(self) -> int:
        """Points drawn once (POINTS mode), instances not counted."""
        return self.element_count if self.mode == MODE_POINTS else 0

    def unverified(self) -> str | None:
        """Why this primitive's counts are only declared (an accessor they come from has no
        bufferView), or None when they come from bytes that are there and bounds-checked (for
        Draco: decoded and equal to the accessors' counts). DataError when bytes are missing."""
        name = self._r.name
        if self.draco is not None:
            m = self._draco_mesh
            n_faces = len(np.asarray(getattr(m, "faces", np.zeros((0, 3)))).reshape(-1, 3))
            n_vertices = len(np.asarray(m.points).reshape(-1, 3))
            if n_vertices != self.vertex_count or (
                self.indices_accessor is not None and 3 * n_faces != self.element_count
            ):
                raise DataError(
                    f"{name}: {self.where}: Draco data holds {n_vertices} vertices and "
                    f"{n_faces} triangles, the accessors say {self.vertex_count} vertices and "
                    f"{self.element_count} indices"
                )
            sources = list(self.instance_accessors)
        else:
            sources = [self.attribute_accessors["POSITION"], *self.instance_accessors]
            if self.indices_accessor is not None:
                sources.append(self.indices_accessor)
        for acc in sources:
            if not self._r.has_data(acc):
                return f"accessors[{acc}] has no bufferView"
        return None

    # --- arrays
    @cached_property
    def _draco_mesh(self):
        import DracoPy

        d = require_dict(
            self.draco, self._r.name, self.where + ".extensions.KHR_draco_mesh_compression"
        )
        view = self._r.view(
            require_int(d.get("bufferView"), self._r.name, self.where + ".draco.bufferView")
        )
        try:
            return DracoPy.decode(bytes(view))
        except Exception as exc:  # DracoPy raises its own types; any failure means corrupt data
            raise DataError(
                f"{self._r.name}: {self.where}: Draco data cannot be decoded ({exc})"
            ) from exc

    def attribute(self, semantic: str) -> np.ndarray | None:
        """Vertex attribute `semantic` as (n, ncomp), or None when absent."""
        if semantic not in self.attribute_accessors:
            return None
        acc = self.attribute_accessors[semantic]
        if self.draco is not None and semantic in (self.draco.get("attributes") or {}):
            att = self._draco_mesh.get_attribute_by_unique_id(self.draco["attributes"][semantic])
            if att is None:
                raise DataError(
                    f"{self._r.name}: {self.where}: Draco data lacks attribute {semantic}"
                )
            data = np.asarray(att["data"])
            data = data.reshape(len(data), -1)
            a = self._r.accessor_defs[acc]
            if a.get("normalized") and data.dtype.kind in "iu":
                data = normalize_integers(data)
            if len(data) != a["count"]:
                raise DataError(
                    f"{self._r.name}: {self.where}: Draco {semantic} has {len(data)} values, "
                    f"accessor says {a['count']}"
                )
            return data
        return self._r.accessor(acc, f"{self.where}.attributes.{semantic}")

    @cached_property
    def positions(self) -> np.ndarray:
        """Vertex positions (n, 3) in the glTF mesh space (before the node transform)."""
        p = self.attribute("POSITION")
        if p.shape[1] != 3:
            raise DataError(f"{self._r.name}: {self.where}.attributes.POSITION must be VEC3")
        return p

    @cached_property
    def indices(self) -> np.ndarray:
        """Element indices (flat), or arange(vertex_count) when not indexed."""
        if self.draco is not None:
            idx = np.asarray(self._draco_mesh.faces).reshape(-1)
        elif self.indices_accessor is not None:
            idx = self._r.accessor(self.indices_accessor, self.where + ".indices")[:, 0]
        else:
            return np.arange(self.vertex_count)
        if idx.size and int(idx.max()) >= self.vertex_count:
            raise DataError(
                f"{self._r.name}: {self.where}.indices reach vertex {int(idx.max())}, but there are "
                f"only {self.vertex_count} vertices"
            )
        return idx

    def faces(self) -> np.ndarray:
        """Triangles (m, 3) as vertex indices (strips and fans unrolled); empty for points/lines."""
        idx = self.indices
        if self.mode == MODE_TRIANGLES:
            return idx[: len(idx) // 3 * 3].reshape(-1, 3)
        if self.mode == MODE_STRIP and len(idx) >= 3:
            i = np.arange(len(idx) - 2)
            odd = i % 2
            return np.stack([idx[i], idx[i + 1 + odd], idx[i + 2 - odd]], axis=1)
        if self.mode == MODE_FAN and len(idx) >= 3:
            i = np.arange(1, len(idx) - 1)
            return np.stack([idx[i], idx[i + 1], np.full_like(i, idx[0])], axis=1)
        return np.zeros((0, 3), dtype=np.int64)

    @property
    def batch_ids(self) -> np.ndarray | None:
        """Per-vertex 3D Tiles 1.0 batch ids (_BATCHID), or None."""
        for key in ("_BATCHID", "BATCHID", "_FEATURE_ID_0"):
            if key in self.attribute_accessors:
                if key == "_FEATURE_ID_0" and self.mesh_features is None:
                    continue
                return self.attribute(key)[:, 0].astype(np.int64)
        return None

    @property
    def feature_id_sets(self) -> list[dict]:
        """EXT_mesh_features feature ID definitions of this primitive."""
        if not isinstance(self.mesh_features, dict):
            return []
        sets = self.mesh_features.get("featureIds") or []
        return [s for s in sets if isinstance(s, dict)]

    def feature_ids(self, set_index: int = 0) -> np.ndarray | None:
        """Per-vertex feature ids: EXT_mesh_features set `set_index` (attribute, texture or
        implicit), else the 1.0 _BATCHID attribute; None when the primitive has neither."""
        sets = self.feature_id_sets
        if not sets:
            return self.batch_ids
        if set_index >= len(sets):
            return None
        s = sets[set_index]
        if "attribute" in s:
            return self.attribute(f"_FEATURE_ID_{s['attribute']}")[:, 0].astype(np.int64)
        if "texture" in s:
            return self._texture_feature_ids(s["texture"])
        return np.arange(self.vertex_count, dtype=np.int64)

    def _texture_feature_ids(self, tex: dict) -> np.ndarray:
        """Feature ids sampled (nearest texel) from a feature ID texture at the vertices' UVs."""
        name = self._r.name
        img_index = self.model.texture_image(
            require_int(tex.get("index"), name, self.where + " feature texture")
        )
        uv = self.attribute(f"TEXCOORD_{tex.get('texCoord', 0)}")
        if img_index is None or uv is None:
            raise DataError(f"{name}: {self.where}: feature ID texture or its UVs are missing")
        im = self.model.images[img_index].pil()
        if im is None:
            raise DataError(f"{name}: {self.where}: feature ID texture cannot be decoded")
        px = np.asarray(im)
        px = px[..., None] if px.ndim == 2 else px
        h, w = px.shape[:2]
        col = np.clip((uv[:, 0] * w).astype(np.int64), 0, w - 1)
        row = np.clip((uv[:, 1] * h).astype(np.int64), 0, h - 1)
        ids = np.zeros(len(uv), dtype=np.int64)
        for k, ch in enumerate(tex.get("channels", [0])):
            ids |= px[row, col, min(int(ch), px.shape[2] - 1)].astype(np.int64) << (8 * k)
        return ids

    @cached_property
    def material(self) -> MaterialInfo:
        """Base colour and texture of this primitive's material."""
        return self.model.material(self.json.get("material"))


# ---------------------------------------------------------------- the model
class GltfModel:
    """A parsed glTF asset: primitives placed by the node hierarchy, images, metadata."""

    def __init__(
        self,
        gltf: dict,
        glb_bin: memoryview | None,
        name: str,
        version: int,
        resolve: Resolver | None = None,
    ) -> None:
        self.name, self.version = name, version
        if version == 1:
            gltf = _upgrade_v1(gltf, name)
        self.json = gltf
        self.asset = gltf.get("asset") or {}
        self.extensions_used = list(gltf.get("extensionsUsed") or [])
        self.extensions_required = list(gltf.get("extensionsRequired") or [])
        self.extensions = gltf.get("extensions") or {}
        self._r = _Reader(gltf, glb_bin, name, resolve)
        self.unsupported_required = [
            e for e in self.extensions_required if e in UNSUPPORTED_GEOMETRY_EXTENSIONS
        ]
        rtc = self.extensions.get("CESIUM_RTC")
        self.rtc_center = (
            require_numbers(rtc.get("center"), 3, name, "extensions.CESIUM_RTC.center")
            if isinstance(rtc, dict)
            else None
        )
        self.images = self._images()
        self.primitives = self._place_primitives()

    # --- images and materials
    def _images(self) -> list[TextureImage]:
        out = []
        for i, im in enumerate(self._r._list("images")):
            f = f"images[{i}]"
            if "bufferView" in im:
                src = f"bufferView {im['bufferView']}"
            elif "uri" in im:
                uri = im["uri"]
                src = uri[:40] if isinstance(uri, str) else repr(uri)
            else:
                raise DataError(f"{self.name}: {f} has neither a bufferView nor a uri")
            mime, name = str(im.get("mimeType", "")), str(im.get("name", ""))
            out.append(TextureImage(i, mime, name, src, self._image_loader(im, f)))
        return out

    def _image_loader(self, im: dict, f: str) -> Callable[[], bytes]:
        """A function reading the bytes of image `im` when first needed."""

        def load() -> bytes:
            if "bufferView" in im:
                return self._r.view(require_int(im["bufferView"], self.name, f + ".bufferView"))
            return _load_uri(im["uri"], self.name, f + ".uri", self._r.resolve)

        return load

    def texture_image(self, texture_index: Any) -> int | None:
        """The image index a texture refers to (core source or a KTX2/WebP extension)."""
        textures = self._r._list("textures")
        if not isinstance(texture_index, int) or not 0 <= texture_index < len(textures):
            return None
        t = textures[texture_index]
        src = t.get("source")
        for ext in ("KHR_texture_basisu", "EXT_texture_webp", "EXT_texture_avif"):
            e = (t.get("extensions") or {}).get(ext)
            if isinstance(e, dict) and "source" in e:
                src = e["source"] if src is None or ext != "KHR_texture_basisu" else src
        if isinstance(src, int) and 0 <= src < len(self.images):
            return src
        return None

    def material(self, index: Any) -> MaterialInfo:
        """MaterialInfo for material `index` (default white without texture)."""
        mats = self._r._list("materials")
        if not isinstance(index, int) or not 0 <= index < len(mats):
            return MaterialInfo(np.ones(4))
        m = mats[index]
        pbr = m.get("pbrMetallicRoughness") or {}
        color = np.ones(4)
        bcf = pbr.get("baseColorFactor")
        if isinstance(bcf, list) and len(bcf) == 4:
            color = np.array(bcf, dtype=np.float64)
        tex = pbr.get("baseColorTexture")
        ext = m.get("extensions") or {}
        sg = ext.get("KHR_materials_pbrSpecularGlossiness")
        if tex is None and isinstance(sg, dict):
            tex = sg.get("diffuseTexture")
        tech = ext.get("KHR_techniques_webgl")
        if tex is None and isinstance(tech, dict):
            for v in (tech.get("values") or {}).values():
                if isinstance(v, dict) and "index" in v:
                    tex = v
                    break
        image = tex_coord = None
        transform = None
        if isinstance(tex, dict):
            image = self.texture_image(tex.get("index"))
            tex_coord = (
                int(tex.get("texCoord", 0)) if isinstance(tex.get("texCoord", 0), int) else 0
            )
            transform = (tex.get("extensions") or {}).get("KHR_texture_transform")
            if isinstance(transform, dict) and isinstance(transform.get("texCoord"), int):
                tex_coord = transform["texCoord"]
        return MaterialInfo(
            color,
            image,
            tex_coord or 0,
            transform if isinstance(transform, dict) else None,
            bool(m.get("doubleSided", False)),
            str(m.get("alphaMode", "OPAQUE")),
            str(m.get("name", "")),
        )

    # --- scene graph
    def _scene_roots(self) -> list[int]:
        nodes = self._r._list("nodes")
        scenes = self._r._list("scenes")
        if scenes:
            s = self.json.get("scene", 0)
            if not isinstance(s, int) or not 0 <= s < len(scenes):
                s = 0
            roots = scenes[s].get("nodes") or []
        else:
            children = {c for n in nodes for c in (n.get("children") or []) if isinstance(c, int)}
            roots = [i for i in range(len(nodes)) if i not in children]
        for r in roots:
            if not isinstance(r, int) or not 0 <= r < len(nodes):
                raise DataError(f"{self.name}: scene refers to node {r!r}, which does not exist")
        return list(roots)

    def _place_primitives(self) -> list[Primitive]:
        nodes = self._r._list("nodes")
        meshes = self._r._list("meshes")
        out: list[Primitive] = []
        stack = [(r, np.eye(4), (r,)) for r in reversed(self._scene_roots())]
        visits = 0
        while stack:
            i, parent_m, path = stack.pop()
            visits += 1
            if visits > MAX_NODE_VISITS:
                raise DataError(
                    f"{self.name}: node hierarchy has more than {MAX_NODE_VISITS} placements"
                )
            node = nodes[i]
            f = f"nodes[{i}]"
            m = parent_m @ _node_matrix(node, self.name, f)
            mesh_ids = (
                node.get("meshes")
                if "meshes" in node
                else ([node["mesh"]] if "mesh" in node else [])
            )
            instances, inst_feat, inst_acc = self._gpu_instances(node, f)
            for mi in mesh_ids:
                if not isinstance(mi, int) or not 0 <= mi < len(meshes):
                    raise DataError(f"{self.name}: {f}.mesh {mi!r} does not exist")
                for pi, prim in enumerate(meshes[mi].get("primitives") or []):
                    where = f"meshes[{mi}].primitives[{pi}]"
                    out.append(
                        Primitive(
                            self,
                            self._r,
                            require_dict(prim, self.name, where),
                            where,
                            m,
                            instances,
                            inst_feat,
                            inst_acc,
                        )
                    )
            for c in reversed(node.get("children") or []):
                if not isinstance(c, int) or not 0 <= c < len(nodes):
                    raise DataError(
                        f"{self.name}: {f}.children refers to node {c!r}, which does not exist"
                    )
                if c in path:
                    raise DataError(f"{self.name}: {f}.children makes a cycle through node {c}")
                stack.append((c, m, path + (c,)))
        return out

    def _gpu_instances(
        self, node: dict, f: str
    ) -> tuple[np.ndarray | None, np.ndarray | None, tuple[int, ...]]:
        ext = (node.get("extensions") or {}).get("EXT_mesh_gpu_instancing")
        if not isinstance(ext, dict):
            return None, None, ()
        attrs = require_dict(ext.get("attributes") or {}, self.name, f + ".EXT_mesh_gpu_instancing")
        where = f"{f}.EXT_mesh_gpu_instancing"
        for key, v in attrs.items():
            if (
                not isinstance(v, int)
                or isinstance(v, bool)
                or not 0 <= v < len(self._r.accessor_defs)
            ):
                raise DataError(
                    f"{self.name}: {where}.{key} refers to accessor {v!r}, which does not exist"
                )
            if self._r.count(v) > MAX_GPU_INSTANCES:
                raise DataError(
                    f"{self.name}: {where}.{key} claims {self._r.count(v)} instances, more than "
                    f"{MAX_GPU_INSTANCES}; refused"
                )
        acc = {k: self._r.accessor(v, f"{where}.{k}") for k, v in attrs.items()}
        n = {len(a) for a in acc.values()}
        if len(n) != 1:
            raise DataError(f"{self.name}: {f}.EXT_mesh_gpu_instancing attributes differ in count")
        k = n.pop()
        mats = np.tile(np.eye(4), (k, 1, 1))
        if "ROTATION" in acc:
            mats[:, :3, :3] = _quat_to_matrix(acc["ROTATION"])
        if "SCALE" in acc:
            mats[:, :3, :3] *= acc["SCALE"][:, None, :].astype(np.float64)
        if "TRANSLATION" in acc:
            mats[:, :3, 3] = acc["TRANSLATION"]
        fid = acc.get("_FEATURE_ID_0")
        return mats, (None if fid is None else fid[:, 0].astype(np.int64)), tuple(attrs.values())

    # --- counts
    @cached_property
    def counts(self) -> Counts:
        """Triangles and points drawn (GPU instances included): from accessors whose bytes were
        read and bounds-checked, and apart from them those only declared (with a note why).
        DataError when an accessor's bytes are not there."""
        out = Counts()
        for p in self.primitives:
            tri, pts = p.n_triangles * p.instance_count, p.n_points * p.instance_count
            reason = p.unverified()
            if reason is None:
                out.triangles += tri
                out.points += pts
            else:
                out.declared_triangles += tri
                out.declared_points += pts
                out.notes.append(
                    f"{self.name}: {p.where}: {reason}, so its {tri} triangles and {pts} points "
                    "are declared, not verified"
                )
        return out

    @property
    def n_triangles(self) -> int:
        """Triangles drawn (GPU instances included), from data read and bounds-checked."""
        return self.counts.triangles

    @property
    def n_points(self) -> int:
        """Points drawn (primitives with mode POINTS), from data read and bounds-checked."""
        return self.counts.points

    @property
    def structural_metadata(self) -> dict | None:
        """The EXT_structural_metadata object of the asset, or None."""
        sm = self.extensions.get("EXT_structural_metadata")
        return sm if isinstance(sm, dict) else None

    @property
    def feature_count(self) -> int:
        """Features declared by EXT_mesh_features (first feature ID set of each primitive; sets
        that share a property table are counted once)."""
        seen_tables: set[int] = set()
        total = 0
        for p in self.primitives:
            sets = p.feature_id_sets
            if not sets:
                continue
            s = sets[0]
            table = s.get("propertyTable")
            if isinstance(table, int):
                if table in seen_tables:
                    continue
                seen_tables.add(table)
            total += int(s.get("featureCount", 0)) * p.instance_count
        return total

    def property_tables(self, schema: dict | None = None) -> list[dict[str, Any]]:
        """EXT_structural_metadata property tables decoded to arrays (schema from the asset unless given)."""
        sm = self.structural_metadata
        if sm is None:
            return []
        schema = schema or sm.get("schema")
        if schema is None and "schemaUri" in sm:
            schema = parse_json(
                _load_uri(sm["schemaUri"], self.name, "schemaUri", self._r.resolve),
                self.name,
                "schemaUri",
            )
        return [
            decode_property_table(schema, t, self._r.view, self.name, f"propertyTables[{i}]")
            for i, t in enumerate(sm.get("propertyTables") or [])
        ]


def parse_gltf(data: bytes | memoryview, name: str, resolve: Resolver | None = None) -> GltfModel:
    """Parse a GLB (glTF 1 or 2) or a glTF JSON file; `resolve(uri)` reads external buffers/images."""
    mv = memoryview(data)
    if bytes(mv[:4]) == GLB_MAGIC:
        j, binary, version = split_glb(mv, name)
    else:
        j = require_dict(parse_json(mv, name, "glTF JSON"), name, "glTF JSON")
        binary = None
        version = (
            1
            if str((j.get("asset") or {}).get("version", "2")).startswith("1")
            or isinstance(j.get("accessors"), dict)
            else 2
        )
    if version == 2 and str((j.get("asset") or {}).get("version", "2.0")).startswith("1"):
        version = 1
    try:
        return GltfModel(j, binary, name, version, resolve)
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataError(
            f"{name}: glTF structure is malformed ({type(exc).__name__}: {exc})"
        ) from exc
