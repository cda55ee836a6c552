"""Tile contents (b3dm, i3dm, pnts, cmpt, glb, gltf) parsed into one `Content` shape.

A Content knows its counts (triangles, points, features, textures): triangles and points only from
data that is there and bounds-checked (`Content.counts` keeps declared-only ones apart), and builds
geometry (`Content.geometry`) in any frame given as a 4x4 matrix.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twin.errors import DataError
from twin.tiles.binary import malformed, parse_json, up_axis_matrix
from twin.tiles.gltf import GLB_MAGIC, Counts, GltfModel, MaterialInfo, Primitive, TextureImage
from twin.tiles.tables import BatchTable, BinaryTable

MAX_CMPT_NESTING = 8
# Instancing multiplies small arrays; refuse geometry beyond this many vertices (~2.4 GB as float64).
MAX_GEOMETRY_VERTICES = 100_000_000
KNOWN_MAGICS = {
    b"b3dm": "b3dm",
    b"i3dm": "i3dm",
    b"pnts": "pnts",
    b"cmpt": "cmpt",
    GLB_MAGIC: "glb",
}


@dataclass
class ParseContext:
    """What a content parser needs besides its bytes: a name, a way to read referenced files
    (relative URIs, confined by the tileset) and the tileset's glTF up axis."""

    name: str
    resolve: Callable[[str], bytes] | None = None
    up_axis: str = "Y"
    depth: int = 0


@dataclass
class Geometry:
    """Drawable geometry of one content part, placed in the frame the caller asked for."""

    kind: str  # "mesh" or "points"
    positions: np.ndarray  # (n, 3) float64
    faces: np.ndarray | None = None  # (m, 3) int64, meshes only
    uv: np.ndarray | None = None  # (n, 2), glTF convention (v down)
    colors: np.ndarray | None = None  # (n, 4) uint8
    feature_ids: np.ndarray | None = None  # (n,) int64, -1 where none
    property_table: int = 0  # the EXT_structural_metadata table the feature ids index (1.1)
    image: TextureImage | None = None
    material: MaterialInfo | None = None
    source: str = ""


@dataclass
class PointData:
    """Points of a pnts content in the tile frame (RTC and quantization applied)."""

    positions: np.ndarray  # (n, 3) float64
    colors: np.ndarray | None = None  # (n, 4) uint8
    normals: np.ndarray | None = None  # (n, 3) float32
    batch_ids: np.ndarray | None = None  # (n,) int64


@dataclass
class Content:
    """One parsed content: tables, glTF model, points or inner contents, with their counts."""

    kind: str
    name: str
    byte_length: int
    feature_table: BinaryTable | None = None
    batch_table: BatchTable | None = None
    gltf: GltfModel | None = None
    points: PointData | None = None
    inner: list[Content] = field(default_factory=list)
    # glTF space -> tile frame (RTC and up axis), or per-instance matrices for i3dm
    local_matrix: np.ndarray = field(default_factory=lambda: np.eye(4))
    instance_matrices: np.ndarray | None = None
    instance_feature_ids: np.ndarray | None = None
    features: int = 0
    header: dict[str, Any] = field(default_factory=dict)

    # --- counts
    @property
    def counts(self) -> Counts:
        """Triangles and points drawn (instances included), verified and declared-only apart;
        DataError when the bytes a count needs are not there."""
        if self.kind == "cmpt":
            return sum((c.counts for c in self.inner), Counts())
        if self.points is not None:
            return Counts(points=len(self.points.positions))
        if self.gltf is None:
            return Counts()
        k = 1 if self.instance_matrices is None else len(self.instance_matrices)
        return self.gltf.counts.scaled(k)

    @property
    def n_triangles(self) -> int:
        """Triangles drawn (instances included), from data read and bounds-checked."""
        return self.counts.triangles

    @property
    def n_points(self) -> int:
        """Points drawn (pnts points and glTF POINTS primitives), from data read and checked."""
        return self.counts.points

    @property
    def n_features(self) -> int:
        """Features (batch length, instances or EXT_mesh_features count)."""
        if self.kind == "cmpt":
            return sum(c.n_features for c in self.inner)
        return self.features

    @property
    def textures(self) -> list[TextureImage]:
        """Images of the embedded glTF models (inner contents included)."""
        if self.kind == "cmpt":
            return [t for c in self.inner for t in c.textures]
        return list(self.gltf.images) if self.gltf is not None else []

    def leaves(self) -> list[Content]:
        """This content, or the inner contents of a composite, flattened."""
        if self.kind == "cmpt":
            return [leaf for c in self.inner for leaf in c.leaves()]
        return [self]

    # --- properties
    def properties(self) -> dict[str, Any]:
        """Per-feature properties: the batch table (1.0) or the first EXT_structural_metadata
        property table (1.1), as arrays indexed by feature id."""
        with malformed(self.name, "feature properties"):
            if self.batch_table is not None:
                return self.batch_table.properties(self.features)
            if self.gltf is not None:
                tables = self.gltf.property_tables()
                if tables:
                    return tables[0]
            return {}

    # --- geometry
    def geometry(
        self, matrix: np.ndarray | None = None, *, attributes: bool = True
    ) -> list[Geometry]:
        """All geometry with positions mapped by `matrix` (4x4, tile frame -> target frame);
        without `attributes` only positions, faces and feature ids (no UVs, colours, images)."""
        m = np.eye(4) if matrix is None else np.asarray(matrix, dtype=np.float64)
        with malformed(self.name, "geometry"):
            return self._geometry(m, attributes)

    def _geometry(self, m: np.ndarray, attributes: bool = True) -> list[Geometry]:
        if self.kind == "cmpt":
            return [g for c in self.inner for g in c.geometry(m, attributes=attributes)]
        if self.points is not None:
            p = self.points
            return [
                Geometry(
                    "points",
                    _apply(m[None], p.positions),
                    colors=p.colors,
                    feature_ids=p.batch_ids
                    if p.batch_ids is not None
                    else (np.arange(len(p.positions)) if self.features else None),
                    source=self.name,
                )
            ]
        if self.gltf is None:
            return []
        if self.instance_matrices is not None:
            outer = m[None] @ self.instance_matrices @ self.local_matrix[None]
        else:
            outer = (m @ self.local_matrix)[None]
        return [
            g for prim in self.gltf.primitives if (g := self._primitive(prim, outer, attributes))
        ]

    def _primitive(self, prim: Primitive, outer: np.ndarray, attributes: bool) -> Geometry | None:
        mats = outer @ prim.matrix[None]
        inst_ids = self.instance_feature_ids
        if prim.instances is not None:
            mats = (mats[:, None] @ prim.instances[None]).reshape(-1, 4, 4)
            if prim.instance_features is not None:
                inst_ids = np.tile(prim.instance_features, len(outer))
        n = prim.vertex_count
        k = len(mats)
        if n * k > MAX_GEOMETRY_VERTICES:
            raise DataError(
                f"{self.name}: {prim.where}: {k} instances of {n} vertices make more than "
                f"{MAX_GEOMETRY_VERTICES} vertices; refused"
            )
        pos = _apply(mats, prim.positions)
        kind = "points" if prim.mode == 0 else "mesh"
        faces = None
        if kind == "mesh":
            f = prim.faces().astype(np.int64)
            if len(f) == 0:
                return None
            faces = (f[None] + (np.arange(k) * n)[:, None, None]).reshape(-1, 3)
        fid = prim.feature_ids()
        sets = prim.feature_id_sets
        table = sets[0].get("propertyTable", 0) if sets else 0
        if inst_ids is not None and len(inst_ids) == k:
            fid = np.repeat(inst_ids, n)
        elif fid is not None:
            fid = np.tile(fid, k)
        table = table if isinstance(table, int) else 0
        if not attributes:
            return Geometry(kind, pos, faces, feature_ids=fid, property_table=table,
                            source=f"{self.name} {prim.where}")  # fmt: skip
        mat = prim.material
        uv = prim.attribute(f"TEXCOORD_{mat.tex_coord}")
        uv = (
            None
            if uv is None
            else _texture_transform(uv[:, :2].astype(np.float64), mat.texture_transform)
        )
        colors = prim.attribute("COLOR_0")
        return Geometry(
            kind,
            pos,
            faces,
            uv=None if uv is None else np.tile(uv, (k, 1)),
            colors=None if colors is None else np.tile(_colors_u8(colors), (k, 1)),
            feature_ids=fid,
            property_table=table,
            image=None if mat.image is None else self.gltf.images[mat.image],
            material=mat,
            source=f"{self.name} {prim.where}",
        )


def _apply(mats: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Apply k 4x4 matrices to n points: (k*n, 3) float64."""
    p = np.asarray(p, dtype=np.float64)
    if len(mats) == 1:  # the common case, a matmul: ~2.5x einsum's speed
        return p @ mats[0, :3, :3].T + mats[0, :3, 3]
    out = np.einsum("kij,nj->kni", mats[:, :3, :3], p) + mats[:, None, :3, 3]
    return out.reshape(-1, 3)


def _colors_u8(c: np.ndarray) -> np.ndarray:
    """Colours of any glTF/pnts storage as (n, 4) uint8."""
    c = np.asarray(c)
    if c.dtype.kind == "f":
        c = np.clip(np.rint(c * 255.0), 0, 255)
    elif c.dtype == np.uint16:
        c = c >> 8
    c = c.astype(np.uint8)
    if c.shape[1] == 3:
        c = np.concatenate([c, np.full((len(c), 1), 255, np.uint8)], axis=1)
    return c


def _texture_transform(uv: np.ndarray, t: dict | None) -> np.ndarray:
    """KHR_texture_transform: offset, rotation, scale applied to UVs."""
    if not t:
        return uv
    off = np.asarray(t.get("offset", [0, 0]), dtype=np.float64)
    rot = float(t.get("rotation", 0.0))
    sc = np.asarray(t.get("scale", [1, 1]), dtype=np.float64)
    c, s = np.cos(rot), np.sin(rot)
    r = np.array([[c, s], [-s, c]])
    return (uv * sc) @ r.T + off


def gltf_content(
    kind: str, data: memoryview, ctx: ParseContext, rtc: np.ndarray | None = None
) -> GltfModel:
    """Parse the glTF of a content; helper shared by b3dm, i3dm and plain glb/gltf."""
    from twin.tiles.gltf import parse_gltf

    return parse_gltf(data, ctx.name, ctx.resolve)


def content_matrix(model: GltfModel, up_axis: str, rtc: np.ndarray | None) -> np.ndarray:
    """glTF space -> tile frame: up axis to z-up, then the RTC centre (feature table or CESIUM_RTC)."""
    m = up_axis_matrix(up_axis).copy()
    center = rtc if rtc is not None else model.rtc_center
    if center is not None:
        m[:3, 3] += center
    return m


def sniff_kind(data: bytes | memoryview) -> str | None:
    """Content kind from the first bytes: a magic, or 'json' for JSON (tileset or glTF)."""
    head = bytes(data[:4])
    if head in KNOWN_MAGICS:
        return KNOWN_MAGICS[head]
    if bytes(data[:64]).lstrip(b"\xef\xbb\xbf \t\r\n").startswith(b"{"):
        return "json"
    return None


def parse_content(data: bytes | memoryview, ctx: ParseContext) -> Content:
    """Parse any tile content by its magic: b3dm, i3dm, pnts, cmpt, GLB, or glTF JSON."""
    with malformed(ctx.name, "content"):
        return _parse_content(data, ctx)


def _parse_content(data: bytes | memoryview, ctx: ParseContext) -> Content:
    from twin.tiles import b3dm, cmpt, i3dm, pnts

    mv = memoryview(data)
    kind = sniff_kind(mv)
    if kind == "b3dm":
        return b3dm.parse_b3dm(mv, ctx)
    if kind == "i3dm":
        return i3dm.parse_i3dm(mv, ctx)
    if kind == "pnts":
        return pnts.parse_pnts(mv, ctx)
    if kind == "cmpt":
        return cmpt.parse_cmpt(mv, ctx)
    if kind == "glb":
        model = gltf_content(kind, mv, ctx)
        return Content(
            "glb",
            ctx.name,
            len(mv),
            gltf=model,
            local_matrix=content_matrix(model, ctx.up_axis, None),
            features=model.feature_count,
        )
    if kind == "json":
        j = parse_json(mv, ctx.name, "content")
        if isinstance(j, dict) and "root" in j:
            raise DataError(f"{ctx.name}: is an external tileset, not a renderable content")
        model = gltf_content("gltf", mv, ctx)
        return Content(
            "gltf",
            ctx.name,
            len(mv),
            gltf=model,
            local_matrix=content_matrix(model, ctx.up_axis, None),
            features=model.feature_count,
        )
    magic = bytes(mv[:4])
    if magic in (b"vctr", b"geom"):
        raise DataError(
            f"{ctx.name}: {magic.decode()} contents (3D Tiles vector/geometry) are not supported"
        )
    raise DataError(
        f"{ctx.name}: unknown content: magic {magic!r} is none of b3dm, i3dm, pnts, cmpt, glTF"
    )
