"""Implicit tiling (3D Tiles 1.1 and 3DTILES_implicit_tiling): schemes, subtrees, availability.

Tiles of a quadtree/octree are addressed by (level, x, y[, z]); inside a subtree, availability
bitstreams list tiles level by level in Morton order (bit i of byte i // 8, least significant
bit first). A subtree is read from a binary `.subtree` file ("subt" header, JSON, binary) or a
JSON file with external buffers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from twin.errors import DataError
from twin.tiles.binary import parse_json, require_dict, require_int, unpack

SUBTREE_MAGIC = b"subt"
# Refuse to expand a subtree that would create more tiles than this in one go.
MAX_SUBTREE_TILES = 5_000_000


@dataclass
class ImplicitTiling:
    """The implicitTiling object of a tile, with its root's volume and content templates."""

    scheme: str  # "QUADTREE" or "OCTREE"
    subtree_levels: int
    available_levels: int
    subtrees_uri: str
    content_templates: list[dict]
    root_volume: tuple[str, np.ndarray]
    root_error: float
    doc: int
    xf: int
    add: bool
    root_index: int = 0
    subtrees: dict[tuple, Subtree] = field(default_factory=dict)

    @property
    def branching(self) -> int:
        """Children per tile: 4 (quadtree) or 8 (octree)."""
        return 4 if self.scheme == "QUADTREE" else 8

    @property
    def dims(self) -> int:
        """Subdivided axes: 2 or 3."""
        return 2 if self.scheme == "QUADTREE" else 3


def parse_implicit(tile: dict, name: str, field_name: str) -> dict | None:
    """The implicit tiling definition of a tile JSON (1.1 or the 1.0 extension), normalised."""
    it = tile.get("implicitTiling")
    legacy = False
    if it is None:
        it = (tile.get("extensions") or {}).get("3DTILES_implicit_tiling")
        legacy = it is not None
    if it is None:
        return None
    it = require_dict(it, name, f"{field_name}.implicitTiling")
    f = f"{field_name}.implicitTiling"
    scheme = it.get("subdivisionScheme")
    if scheme not in ("QUADTREE", "OCTREE"):
        raise DataError(f"{name}: {f}.subdivisionScheme must be QUADTREE or OCTREE, got {scheme!r}")
    levels = require_int(it.get("subtreeLevels"), name, f + ".subtreeLevels", 1)
    if legacy and "availableLevels" not in it:
        available = require_int(it.get("maximumLevel"), name, f + ".maximumLevel", 0) + 1
    else:
        available = require_int(it.get("availableLevels"), name, f + ".availableLevels", 1)
    if available > 48:
        raise DataError(f"{name}: {f}.availableLevels {available} is beyond what can be addressed")
    subtrees = require_dict(it.get("subtrees"), name, f + ".subtrees")
    uri = subtrees.get("uri")
    if not isinstance(uri, str) or not uri:
        raise DataError(f"{name}: {f}.subtrees.uri must be a URI template string")
    return {"scheme": scheme, "subtree_levels": levels, "available_levels": available, "uri": uri}


def fill_template(template: str, level: int, x: int, y: int, z: int | None = None) -> str:
    """An implicit URI template with {level}, {x}, {y}, {z} filled in."""
    out = template.replace("{level}", str(level)).replace("{x}", str(x)).replace("{y}", str(y))
    return out.replace("{z}", str(z if z is not None else 0))


def _spread(v: np.ndarray, dims: int) -> np.ndarray:
    out = np.zeros_like(v, dtype=np.int64)
    for b in range(32 if dims == 2 else 21):
        out |= ((v >> b) & 1) << (dims * b)
    return out


def morton_encode(coords: list[np.ndarray]) -> np.ndarray:
    """Interleave x, y[, z] bits (x lowest) into Morton indices."""
    dims = len(coords)
    out = np.zeros_like(np.asarray(coords[0]), dtype=np.int64)
    for d, c in enumerate(coords):
        out |= _spread(np.asarray(c, dtype=np.int64), dims) << d
    return out


def morton_decode(m: np.ndarray, dims: int) -> list[np.ndarray]:
    """Split Morton indices into x, y[, z]."""
    m = np.asarray(m, dtype=np.int64)
    out = []
    for d in range(dims):
        v = np.zeros_like(m)
        for b in range(32 if dims == 2 else 21):
            v |= ((m >> (dims * b + d)) & 1) << b
        out.append(v)
    return out


class Availability:
    """One availability: a constant (all or none) or a bitstream."""

    def __init__(self, constant: bool | None, bits: np.ndarray | None) -> None:
        self.constant, self.bits = constant, bits

    def level_indices(self, offset: int, count: int) -> np.ndarray:
        """Indices (0..count-1) available among bits [offset, offset + count)."""
        if self.constant is not None:
            return np.arange(count, dtype=np.int64) if self.constant else np.zeros(0, np.int64)
        start, stop = offset, offset + count
        b0, b1 = start // 8, (stop + 7) // 8
        chunk = np.unpackbits(self.bits[b0:b1], bitorder="little")
        sel = chunk[start - b0 * 8 : stop - b0 * 8]
        return np.flatnonzero(sel).astype(np.int64)

    def get(self, idx: np.ndarray) -> np.ndarray:
        """Availability (bool) of bit indices `idx`."""
        idx = np.asarray(idx, dtype=np.int64)
        if self.constant is not None:
            return np.full(idx.shape, bool(self.constant))
        return ((self.bits[idx >> 3] >> (idx & 7)) & 1).astype(bool)


@dataclass
class Subtree:
    """A parsed subtree: tile, content and child-subtree availability (+ raw JSON for metadata)."""

    json: dict
    tiles: Availability
    contents: list[Availability]
    children: Availability
    buffer_view: Callable[[int], memoryview]
    tile_table: dict | None = None  # decoded tileMetadata property table, on first use


def parse_subtree(
    data: bytes,
    name: str,
    levels: int,
    branching: int,
    n_contents: int,
    resolve: Callable[[str], bytes] | None,
) -> Subtree:
    """Parse a binary or JSON subtree and check its bitstreams are long enough."""
    mv = memoryview(data)
    internal: memoryview | None = None
    if bytes(mv[:4]) == SUBTREE_MAGIC:
        magic, version, jlen, blen = unpack("<4sIQQ", mv, 0, name, "subtree header")
        if version != 1:
            raise DataError(f"{name}: subtree header version must be 1, got {version}")
        if 24 + jlen + blen > len(mv):
            raise DataError(
                f"{name}: subtree header says JSON {jlen} + binary {blen} bytes, but only "
                f"{len(mv) - 24} follow the header (truncated)"
            )
        j = parse_json(mv[24 : 24 + jlen], name, "subtree JSON")
        internal = mv[24 + jlen : 24 + jlen + blen]
    else:
        j = parse_json(mv, name, "subtree JSON")
    j = require_dict(j, name, "subtree JSON")
    buffers: dict[int, memoryview] = {}
    buffer_defs = j.get("buffers") or []
    view_defs = j.get("bufferViews") or []
    if not isinstance(buffer_defs, list) or not isinstance(view_defs, list):
        raise DataError(f"{name}: subtree buffers and bufferViews must be arrays")

    def buffer(i: int) -> memoryview:
        if i not in buffers:
            if not 0 <= i < len(buffer_defs) or not isinstance(buffer_defs[i], dict):
                raise DataError(f"{name}: subtree buffer {i} does not exist")
            b = buffer_defs[i]
            blen = require_int(b.get("byteLength"), name, f"subtree buffers[{i}].byteLength")
            if "uri" in b:
                if resolve is None:
                    raise DataError(
                        f"{name}: subtree buffers[{i}] is external and cannot be read here"
                    )
                raw = memoryview(resolve(b["uri"]))
            elif internal is not None:
                raw = internal
            else:
                raise DataError(
                    f"{name}: subtree buffers[{i}] has no uri and there is no binary chunk"
                )
            if blen > len(raw):
                raise DataError(
                    f"{name}: subtree buffers[{i}].byteLength says {blen}, only {len(raw)} bytes are there"
                )
            buffers[i] = raw[:blen]
        return buffers[i]

    def buffer_view(i: int) -> memoryview:
        if (
            not isinstance(i, int)
            or not 0 <= i < len(view_defs)
            or not isinstance(view_defs[i], dict)
        ):
            raise DataError(f"{name}: subtree bufferView {i!r} does not exist")
        v = view_defs[i]
        f = f"subtree bufferViews[{i}]"
        buf = buffer(require_int(v.get("buffer"), name, f + ".buffer"))
        off = require_int(v.get("byteOffset", 0), name, f + ".byteOffset")
        ln = require_int(v.get("byteLength"), name, f + ".byteLength")
        if off + ln > len(buf):
            raise DataError(
                f"{name}: {f} (offset {off} + length {ln}) runs past its buffer ({len(buf)} bytes)"
            )
        return buf[off : off + ln]

    n_tiles = (branching**levels - 1) // (branching - 1)
    if n_tiles > MAX_SUBTREE_TILES * 8:
        raise DataError(
            f"{name}: subtrees of {levels} levels hold {n_tiles} tiles, too many to read"
        )
    n_children = branching**levels

    def availability(obj: Any, nbits: int, what: str) -> Availability:
        obj = require_dict(obj, name, f"subtree {what}")
        if "constant" in obj:
            c = obj["constant"]
            if c not in (0, 1):
                raise DataError(f"{name}: subtree {what}.constant must be 0 or 1, got {c!r}")
            return Availability(bool(c), None)
        key = "bitstream" if "bitstream" in obj else "bufferView"
        view = buffer_view(require_int(obj.get(key), name, f"subtree {what}.bitstream"))
        need = (nbits + 7) // 8
        if len(view) < need:
            raise DataError(
                f"{name}: subtree {what} bitstream has {len(view)} bytes, {need} are needed for "
                f"{nbits} bits"
            )
        return Availability(None, np.frombuffer(view, np.uint8, need))

    tiles = availability(j.get("tileAvailability"), n_tiles, "tileAvailability")
    content_objs = j.get("contentAvailability")
    if content_objs is None:
        content_objs = []
    if isinstance(content_objs, dict):  # 3DTILES_implicit_tiling used a single object
        content_objs = [content_objs]
    if not isinstance(content_objs, list):
        raise DataError(f"{name}: subtree contentAvailability must be an array")
    contents = [
        availability(c, n_tiles, f"contentAvailability[{i}]") for i, c in enumerate(content_objs)
    ]
    while len(contents) < n_contents:
        contents.append(Availability(False, None))
    children = availability(
        j.get("childSubtreeAvailability"), n_children, "childSubtreeAvailability"
    )
    return Subtree(j, tiles, contents[:n_contents], children, buffer_view)


def subdivide_volumes(
    kind: str,
    root: np.ndarray,
    level: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray | None,
) -> np.ndarray:
    """Volumes (n, 12) boxes or (n, 6) regions of implicit tiles, from the root volume."""
    level = np.asarray(level, dtype=np.int64)
    size = np.ldexp(1.0, -level)  # 1 / 2**level
    if kind == "box":
        c, h1, h2, h3 = root[:3], root[3:6], root[6:9], root[9:12]
        fx = (2 * x + 1) * size - 1.0
        fy = (2 * y + 1) * size - 1.0
        center = c[None] + fx[:, None] * h1[None] + fy[:, None] * h2[None]
        if z is not None:
            fz = (2 * z + 1) * size - 1.0
            center = center + fz[:, None] * h3[None]
            a3 = h3[None] * size[:, None]
        else:
            a3 = np.broadcast_to(h3[None], (len(level), 3))
        return np.concatenate(
            [center, h1[None] * size[:, None], h2[None] * size[:, None], a3], axis=1
        )
    if kind == "region":
        w, s, e, n, lo, hi = root
        if e < w:
            e = e + 2 * np.pi
        dw, ds, dh = (e - w) * size, (n - s) * size, (hi - lo) * size
        west = w + x * dw
        east = west + dw
        west = np.where(west > np.pi, west - 2 * np.pi, west)
        east = np.where(east > np.pi, east - 2 * np.pi, east)
        south = s + y * ds
        out = [west, south, east, south + ds]
        if z is not None:
            out += [lo + z * dh, lo + (z + 1) * dh]
        else:
            out += [np.full_like(west, lo), np.full_like(west, hi)]
        return np.stack(out, axis=1)
    raise DataError(f"implicit tiling needs a box or region root volume, got {kind}")
