"""3D Tiles 1.0/1.1 tilesets, opened lazily: tileset.json now, external tilesets, implicit
subtrees and contents when traversal (or the caller) reaches them.

Tiles live in flat numpy arrays (`TileIndex`): world boxes/spheres, geometric error, refinement,
parent/children ranges. Children of a tile are stored contiguously, so traversal can visit a whole
level of tiles with array operations. `Tile` is a small view on one row.
"""

from __future__ import annotations

import os
import posixpath
import urllib.parse
from collections import deque
from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.errors import DataError
from twin.tiles.binary import (
    malformed,
    mat4_from_column_major,
    parse_json,
    require_dict,
    require_number,
)
from twin.tiles.bounds import (
    KINDS,
    axes_and_lengths,
    boxes_to_world,
    check_volumes,
    obb_sphere_radius,
    parse_volume,
    regions_to_obb,
    spheres_to_world,
    volume_kind,
)
from twin.tiles.content import Content, ParseContext, parse_content
from twin.tiles.implicit import (
    MAX_SUBTREE_TILES,
    ImplicitTiling,
    fill_template,
    morton_decode,
    morton_encode,
    parse_implicit,
    parse_subtree,
    subdivide_volumes,
)
from twin.tiles.metadata import decode_property_table
from twin.tiles.source import Source, open_source

DEFAULT_MAX_TILES = 2_000_000  # about 0.9 GB of tile arrays
MAX_EXTERNAL_DEPTH = 64
CONTENT_EXTENSIONS = {
    ".b3dm": "b3dm",
    ".i3dm": "i3dm",
    ".pnts": "pnts",
    ".cmpt": "cmpt",
    ".glb": "glb",
    ".gltf": "gltf",
    ".json": "json",
}
VOLUME_KINDS = ("box", "region", "sphere")

# name: (dtype, per-row shape, default)
_FIELDS: dict[str, tuple[Any, tuple, Any]] = {
    "parent": (np.int64, (), -1),
    "depth": (np.int32, (), 0),
    "first_child": (np.int64, (), -1),
    "n_children": (np.int32, (), 0),
    "children_known": (np.bool_, (), False),
    "content_known": (np.bool_, (), True),
    "n_contents": (np.int32, (), 0),
    "link": (np.bool_, (), False),
    "ge": (np.float64, (), 0.0),
    "add": (np.bool_, (), False),
    "vol_kind": (np.int8, (), 0),
    "region": (np.float64, (6,), 0.0),
    "obb_c": (np.float64, (3,), 0.0),
    "obb_h": (np.float64, (3, 3), 0.0),
    "axes": (np.float64, (3, 3), 0.0),
    "lengths": (np.float64, (3,), 0.0),
    "sph_r": (np.float64, (), 0.0),
    "has_rv": (np.bool_, (), False),
    "xf": (np.int32, (), 0),
    "record": (np.int64, (), -1),
    "impl": (np.int32, (), -1),
    "level": (np.int32, (), 0),
    "x": (np.int64, (), 0),
    "y": (np.int64, (), 0),
    "z": (np.int64, (), 0),
}


class TileIndex:
    """Growable column arrays, one row per tile; `n` rows are in use."""

    def __init__(self, max_tiles: int) -> None:
        self.n = 0
        self.max_tiles = max_tiles
        self._cap = 0
        for name, (dtype, shape, fill) in _FIELDS.items():
            setattr(self, name, np.full((0, *shape), fill, dtype=dtype))
        self.transforms = np.eye(4)[None].copy()  # transform 0 is the identity
        # viewer request volumes are rare: row -> (is_sphere, centre, unit axes, half lengths, radius)
        self.request_volumes: dict[int, tuple] = {}
        self.n_transforms = 1

    def append(self, count: int) -> int:
        """Add `count` rows with default values; returns the first new row."""
        if self.n + count > self.max_tiles:
            raise DataError(
                f"tileset has more than {self.max_tiles} tiles; raise max_tiles to read it whole"
            )
        if self.n + count > self._cap:
            cap = max(1024, 2 * self._cap, self.n + count)
            for name, (dtype, shape, fill) in _FIELDS.items():
                old = getattr(self, name)
                new = np.full((cap, *shape), fill, dtype=dtype)
                new[: self.n] = old[: self.n]
                setattr(self, name, new)
            self._cap = cap
        start = self.n
        self.n += count
        return start

    def add_transform(self, m: np.ndarray) -> int:
        """Store a world transform; returns its index."""
        if self.n_transforms == len(self.transforms):
            grown = np.zeros((2 * len(self.transforms), 4, 4))
            grown[: self.n_transforms] = self.transforms[: self.n_transforms]
            self.transforms = grown
        self.transforms[self.n_transforms] = m
        self.n_transforms += 1
        return self.n_transforms - 1

    def set_children(self, parent: int, start: int, count: int) -> None:
        """Record rows start..start+count as the children of `parent`."""
        self.first_child[parent] = start
        self.n_children[parent] = count
        self.children_known[parent] = True
        self.parent[start : start + count] = parent
        self.depth[start : start + count] = self.depth[parent] + 1

    def children_of(self, parents: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """All children of `parents` (known ranges) and, for each, the position of its parent."""
        counts = self.n_children[parents].astype(np.int64)
        total = int(counts.sum())
        if total == 0:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        owner = np.repeat(np.arange(len(parents)), counts)
        starts = np.repeat(self.first_child[parents] - np.cumsum(counts) + counts, counts)
        return starts + np.arange(total), owner


@dataclass(frozen=True)
class ContentRef:
    """One content of a tile: its URI (template filled in) and where it resolves."""

    uri: str
    key: str
    index: int
    group: int | None = None
    metadata: dict | None = None
    bounding_volume: dict | None = None
    up_axis: str = "Y"

    @property
    def kind_hint(self) -> str:
        """Content kind guessed from the file extension ('unknown' if none matches)."""
        path = urllib.parse.urlsplit(self.key).path.lower()
        if path.endswith(".gz"):
            path = path[:-3]
        return CONTENT_EXTENSIONS.get(posixpath.splitext(path)[1], "unknown")


@dataclass
class _Doc:
    key: str
    json: dict
    up_axis: str
    chain: tuple[str, ...]


@dataclass
class _Record:
    json: dict
    doc: int
    parent: int  # record of the parent tile in the same document, -1 for the document's root
    k: int  # position among the parent's children


class _LazyFields:
    """Field names (JSON paths) of many tiles, built only when an error message needs one."""

    def __init__(self, ts: Tileset, recs: tuple, what: str) -> None:
        self.ts, self.recs, self.what = ts, recs, what

    def __getitem__(self, k: int) -> str:
        return f"{self.ts._path(self.recs[k])}.{self.what}"

    def __iter__(self):
        return (self[k] for k in range(len(self.recs)))

    def __len__(self) -> int:
        return len(self.recs)


def _is_tileset_uri(uri: str) -> bool:
    path = uri.split("?", 1)[0].split("#", 1)[0].lower()
    return path.endswith(".json") or path.endswith(".json.gz")


class Tile:
    """A view on one tile of a Tileset (cheap to create; data lives in the tileset's arrays)."""

    __slots__ = ("tileset", "index")

    def __init__(self, tileset: Tileset, index: int) -> None:
        self.tileset, self.index = tileset, int(index)

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Tile) and other.tileset is self.tileset and other.index == self.index
        )

    def __hash__(self) -> int:
        return hash((id(self.tileset), self.index))

    def __repr__(self) -> str:
        return f"Tile({self.address!r}, depth={self.depth}, geometric_error={self.geometric_error})"

    @property
    def _ix(self) -> TileIndex:
        return self.tileset.index

    @property
    def parent(self) -> Tile | None:
        """The parent tile (for an external root: the tile linking to it), or None."""
        p = int(self._ix.parent[self.index])
        return None if p < 0 else Tile(self.tileset, p)

    @property
    def children(self) -> list[Tile]:
        """Child tiles (an external tileset's root, implicit children: loaded on first access)."""
        self.tileset.resolve([self.index], children=True)
        start, count = int(self._ix.first_child[self.index]), int(self._ix.n_children[self.index])
        return [Tile(self.tileset, start + k) for k in range(count)]

    @property
    def depth(self) -> int:
        """Depth in the whole tree (root 0; an external root is one below its link)."""
        return int(self._ix.depth[self.index])

    @property
    def geometric_error(self) -> float:
        """Geometric error in metres."""
        return float(self._ix.ge[self.index])

    @property
    def refine(self) -> str:
        """ "ADD" or "REPLACE" (inherited when the tile does not say)."""
        return "ADD" if self._ix.add[self.index] else "REPLACE"

    @property
    def transform(self) -> np.ndarray:
        """World transform (4x4, row-major math matrix) of this tile: its own and its ancestors'."""
        return self._ix.transforms[self._ix.xf[self.index]].copy()

    @property
    def obb(self) -> tuple[np.ndarray, np.ndarray]:
        """World (ECEF) oriented box: centre (3,) and half axes as columns (3, 3)."""
        return self._ix.obb_c[self.index].copy(), self._ix.obb_h[self.index].copy()

    @property
    def sphere(self) -> tuple[np.ndarray, float]:
        """World (ECEF) bounding sphere: centre and radius."""
        return self._ix.obb_c[self.index].copy(), float(self._ix.sph_r[self.index])

    @property
    def is_implicit(self) -> bool:
        """True for tiles generated by implicit tiling."""
        return self._ix.record[self.index] < 0

    @property
    def is_external(self) -> bool:
        """True when the content of this tile is an external tileset."""
        return bool(self._ix.link[self.index])

    @property
    def implicit_coordinates(self) -> tuple[int, ...] | None:
        """(level, x, y) or (level, x, y, z) within an implicit tree, else None."""
        impl = int(self._ix.impl[self.index])
        if impl < 0:
            return None
        i = self.index
        c = (int(self._ix.level[i]), int(self._ix.x[i]), int(self._ix.y[i]))
        return c + (int(self._ix.z[i]),) if self.tileset._implicit[impl].dims == 3 else c

    @property
    def json(self) -> dict | None:
        """The tile's JSON object (explicit tiles), else None."""
        r = int(self._ix.record[self.index])
        return None if r < 0 else self.tileset._records[r].json

    @property
    def bounding_volume(self) -> dict:
        """The bounding volume as in tileset JSON (generated for implicit tiles)."""
        j = self.json
        if j is not None:
            return j["boundingVolume"]
        ctx = self.tileset._implicit[int(self._ix.impl[self.index])]
        i = self.index
        z = np.array([self._ix.z[i]]) if ctx.dims == 3 else None
        kind, root = ctx.root_volume
        vol = subdivide_volumes(
            kind,
            root,
            np.array([self._ix.level[i]]),
            np.array([self._ix.x[i]]),
            np.array([self._ix.y[i]]),
            z,
        )
        return {kind: [float(v) for v in vol[0]]}

    @property
    def metadata(self) -> dict | None:
        """Tile metadata (3D Tiles 1.1): the tile's `metadata` object, or for an implicit tile its
        row of the subtree's tileMetadata property table ({"class", "properties"}); else None."""
        j = self.json
        if j is not None and (j.get("metadata") is not None or self._ix.impl[self.index] < 0):
            return j.get("metadata")
        return self.tileset._implicit_tile_metadata(self.index)

    @property
    def address(self) -> str:
        """Where the tile is defined: 'file:json.path' or the implicit root plus level/x/y[/z]."""
        r = int(self._ix.record[self.index])
        if r >= 0:
            rec = self.tileset._records[r]
            return f"{self.tileset._docs[rec.doc].key}:{self.tileset._path(r)}"
        ctx = self.tileset._implicit[int(self._ix.impl[self.index])]
        coords = "/".join(str(c) for c in self.implicit_coordinates)
        return f"{Tile(self.tileset, ctx.root_index).address}@{coords}"

    @property
    def contents(self) -> list[ContentRef]:
        """The tile's contents (external tileset links included)."""
        return self.tileset.content_refs(self.index)

    def read_contents(self) -> list[Content]:
        """Read and parse every renderable content of this tile (none for an external link)."""
        if self.is_external:
            return []
        return [self.tileset.read_content(ref) for ref in self.contents]


class Tileset:
    """A 3D Tiles tileset. Opening reads only the tileset JSON; the rest is read on demand.

    `location` is a tileset JSON path, a folder with tileset.json, a .3tz archive, a .3dtiles
    package or an http URL. `max_file_bytes` replaces the cap on the bytes of any one file read
    (source.MAX_FILE_BYTES, and MAX_INFLATED_BYTES after gzip).
    """

    def __init__(
        self,
        location: str | os.PathLike,
        *,
        max_tiles: int = DEFAULT_MAX_TILES,
        max_file_bytes: int | None = None,
    ) -> None:
        self.source: Source
        self.source, self.key = open_source(location, max_file_bytes=max_file_bytes)
        self.name = self.source.display(self.key)
        self.index = TileIndex(max_tiles)
        self._docs: list[_Doc] = []
        self._records: list[_Record] = []
        self._implicit: list[ImplicitTiling] = []
        self.problems: list[str] = []
        with malformed(self.name, "tileset JSON"):
            self._load_doc(self.key, parent=-1, chain=(self.key,))
        top = self._docs[0].json
        self.json = top
        self.asset: dict = top["asset"]
        self.version = str(self.asset.get("version"))
        self.tileset_version = self.asset.get("tilesetVersion")
        self.geometric_error = require_number(
            top.get("geometricError"), self.name, "geometricError", 0
        )
        self.properties = top.get("properties")
        self.metadata = top.get("metadata")
        self.groups = top.get("groups") or []
        self.extensions_used = list(top.get("extensionsUsed") or [])
        self.extensions_required = list(top.get("extensionsRequired") or [])
        self._schema = top.get("schema")

    def __repr__(self) -> str:
        return f"Tileset({self.name!r}, version={self.version!r}, tiles_loaded={len(self)})"

    def __len__(self) -> int:
        return self.index.n

    # ------------------------------------------------------------------ public
    @property
    def root(self) -> Tile:
        """The root tile."""
        return Tile(self, 0)

    @property
    def schema(self) -> dict | None:
        """The metadata schema (inline, or read from schemaUri on first use)."""
        if self._schema is None and "schemaUri" in self.json:
            key = self.source.resolve(self.key, self.json["schemaUri"], "schemaUri")
            self._schema = require_dict(
                parse_json(self.source.read(key), self.source.display(key), "schema"),
                self.name,
                "schema",
            )
        return self._schema

    def tile(self, index: int) -> Tile:
        """The loaded tile at row `index`."""
        if not 0 <= index < self.index.n:
            raise IndexError(f"tile {index} is not loaded ({self.index.n} tiles)")
        return Tile(self, index)

    def tiles(self) -> list[Tile]:
        """Every tile, with external tilesets and implicit subtrees all loaded."""
        self.expand_all()
        return [Tile(self, i) for i in range(self.index.n)]

    def expand_all(self, errors: list[str] | None = None) -> None:
        """Load every external tileset and implicit subtree. With `errors`, a broken one is noted
        there (and left without children) instead of raising."""
        ix = self.index
        while True:
            pending = np.flatnonzero(~ix.content_known[: ix.n] | ~ix.children_known[: ix.n])
            if len(pending) == 0:
                return
            for i in pending:
                try:
                    self.resolve([int(i)], children=True)
                except DataError as exc:
                    if errors is None:
                        raise
                    errors.append(str(exc))
                    if not ix.content_known[i]:  # an unreadable subtree: no contents known
                        ix.n_contents[i] = 0
                    ix.content_known[i] = True
                    ix.children_known[i] = True

    def read_content(self, ref: ContentRef) -> Content:
        """Read and parse one content (b3dm, i3dm, pnts, cmpt, glb, gltf)."""
        data = self.source.read(ref.key)
        base = ref.key

        def resolve(uri: str) -> bytes:
            return self.source.read(self.source.resolve(base, uri, "referenced file"))

        name = self.source.display(ref.key)
        with malformed(name, "content"):
            return parse_content(data, ParseContext(name, resolve, ref.up_axis))

    def content_refs(self, i: int) -> list[ContentRef]:
        """ContentRefs of tile `i` (implicit templates filled for the contents available)."""
        ix = self.index
        self.resolve([i], children=False)
        r = int(ix.record[i])
        impl = int(ix.impl[i])
        if impl >= 0:
            ctx = self._implicit[impl]
            if ix.n_contents[i] == 0:
                return []
            bits = self._content_bits(i)
            doc = self._docs[ctx.doc]
            coords = (
                int(ix.level[i]),
                int(ix.x[i]),
                int(ix.y[i]),
                int(ix.z[i]) if ctx.dims == 3 else None,
            )
            out = []
            for k, (tpl, ok) in enumerate(zip(ctx.content_templates, bits, strict=True)):
                if ok:
                    uri = fill_template(tpl.get("uri", tpl.get("url")), *coords)
                    key = self.source.resolve(doc.key, uri, "content uri")
                    out.append(
                        ContentRef(
                            uri, key, k, tpl.get("group"), tpl.get("metadata"), None, doc.up_axis
                        )
                    )
            return out
        rec = self._records[r]
        doc = self._docs[rec.doc]
        out = []
        for k, c in enumerate(_content_list(rec.json, doc.key, r, self._path)):
            uri = c.get("uri", c.get("url"))
            key = self.source.resolve(doc.key, uri, "content uri")
            out.append(
                ContentRef(
                    uri,
                    key,
                    k,
                    c.get("group"),
                    c.get("metadata"),
                    c.get("boundingVolume"),
                    doc.up_axis,
                )
            )
        return out

    # ------------------------------------------------------------------ lazy loading
    def resolve(self, indices, children: bool = True) -> None:
        """Make contents (and with `children`, child lists) of these tiles known, loading
        external tilesets and implicit subtrees as needed."""
        ix = self.index
        for i in indices:
            i = int(i)
            with malformed(self.name, lambda i=i: f"tile {Tile(self, i).address}"):
                if not ix.content_known[i]:
                    self._load_subtree_of(i)
                if children and not ix.children_known[i]:
                    if ix.link[i]:
                        self._expand_link(i)
                    elif ix.impl[i] >= 0:
                        self._expand_child_subtrees(i)
                    else:
                        ix.children_known[i] = True

    def _path(self, rec: int) -> str:
        """JSON path of a tile record inside its document, e.g. root.children[2].children[0]."""
        parts = []
        while rec >= 0:
            r = self._records[rec]
            if r.parent < 0:
                break
            parts.append(f".children[{r.k}]")
            rec = r.parent
        return "root" + "".join(reversed(parts))

    def _load_doc(self, key: str, parent: int, chain: tuple[str, ...]) -> None:
        display = self.source.display(key)
        j = require_dict(
            parse_json(self.source.read(key), display, "tileset JSON"), display, "tileset JSON"
        )
        asset = j.get("asset")
        if not isinstance(asset, dict) or "version" not in asset:
            raise DataError(f'{display}: asset.version is required (e.g. "1.0" or "1.1")')
        if str(asset["version"]) not in ("0.0", "1.0", "1.1"):
            self.problems.append(f"{display}: asset.version {asset['version']!r} is not 1.0 or 1.1")
        require_number(j.get("geometricError"), display, "geometricError", 0)
        root = require_dict(j.get("root"), display, "root")
        up = str(asset.get("gltfUpAxis", "Y")).upper()
        doc = len(self._docs)
        self._docs.append(_Doc(key, j, up, chain))
        ix = self.index
        start = ix.append(1)
        parent_add = False
        if parent >= 0:
            ix.set_children(parent, start, 1)
            parent_add = bool(ix.add[parent])
        xf_parent = int(ix.xf[parent]) if parent >= 0 else 0
        pending: dict[str, list] = {k: [] for k in VOLUME_KINDS}
        rv_pending: dict[str, list] = {k: [] for k in VOLUME_KINDS}
        # per-tile values gathered in lists and written to the arrays at once (much faster)
        rows, ges, adds, xfs_l, recs, ncont, links, leaf = [], [], [], [], [], [], [], []
        blocks = []  # (parent row, first child row, count)
        queue = deque([(start, root, parent_add, xf_parent, -1, 0)])
        records = self._records
        while queue:
            i, t, inherited_add, xf_par, parent_rec, k = queue.popleft()
            rec = len(records)
            records.append(_Record(t, doc, parent_rec, k))
            if not isinstance(t, dict):
                raise DataError(f"{display}: {self._path(rec)} must be a JSON object")
            ge = t.get("geometricError")
            if (
                isinstance(ge, bool)
                or not isinstance(ge, int | float)
                or not ge >= 0
                or ge == float("inf")
            ):
                require_number(ge, display, f"{self._path(rec)}.geometricError", 0)
            refine = t.get("refine")
            if refine is None:
                add = inherited_add
            elif refine in ("ADD", "REPLACE") or (
                isinstance(refine, str) and refine.upper() in ("ADD", "REPLACE")
            ):
                add = refine.upper() == "ADD"
            else:
                raise DataError(
                    f'{display}: {self._path(rec)}.refine must be "ADD" or "REPLACE", got {refine!r}'
                )
            xf = xf_par
            if "transform" in t:
                m = _transform(t["transform"])
                if m is None:  # not 16 finite numbers: the checked read says what is wrong
                    m = mat4_from_column_major(
                        t["transform"], display, f"{self._path(rec)}.transform"
                    )
                xf = ix.add_transform(ix.transforms[xf_par] @ m)
            bv = t.get("boundingVolume")
            kind, values = _volume_fast(bv) or volume_kind(
                bv, display, f"{self._path(rec)}.boundingVolume"
            )
            pending[kind].append((i, values, xf, rec))
            if "viewerRequestVolume" in t:
                rk, rvals = volume_kind(
                    t["viewerRequestVolume"], display, f"{self._path(rec)}.viewerRequestVolume"
                )
                rv_pending[rk].append((i, rvals, xf, rec))
            contents = _content_list(t, display, rec, self._path)
            children = t.get("children")
            children = [] if children is None else children
            if not isinstance(children, list):
                raise DataError(f"{display}: {self._path(rec)}.children must be an array")
            implicit = (
                parse_implicit(t, display, self._path(rec))
                if ("implicitTiling" in t or "extensions" in t)
                else None
            )
            link = (
                implicit is None
                and len(contents) == 1
                and _is_tileset_uri(contents[0].get("uri", contents[0].get("url", "")))
            )
            rows.append(i)
            ges.append(ge)
            adds.append(add)
            xfs_l.append(xf)
            recs.append(rec)
            ncont.append(len(contents))
            links.append(link)
            if implicit is not None:
                path = self._path(rec)
                if children:
                    raise DataError(
                        f"{display}: {path} uses implicit tiling and must not have children"
                    )
                if kind == "sphere":
                    raise DataError(
                        f"{display}: {path}.boundingVolume of an implicit root must be a box or region"
                    )
                ix.impl[i] = len(self._implicit)
                self._implicit.append(
                    ImplicitTiling(
                        implicit["scheme"],
                        implicit["subtree_levels"],
                        implicit["available_levels"],
                        implicit["uri"],
                        contents,
                        parse_volume(bv, display, f"{path}.boundingVolume"),
                        float(ge),
                        doc,
                        xf,
                        add,
                        root_index=i,
                    )
                )
                ix.content_known[i] = False
            elif link:
                if children:
                    raise DataError(
                        f"{display}: {self._path(rec)} points to an external tileset and must not have children"
                    )
            elif children:
                first = ix.append(len(children))
                blocks.append((i, first, len(children)))
                for kk, c in enumerate(children):
                    queue.append((first + kk, c, add, xf, rec, kk))
            else:
                leaf.append(i)
        rows_a = np.array(rows, dtype=np.int64)
        ix.ge[rows_a] = ges
        ix.add[rows_a] = adds
        ix.xf[rows_a] = xfs_l
        ix.record[rows_a] = recs
        ix.n_contents[rows_a] = ncont
        ix.link[rows_a] = links
        ix.children_known[np.array(leaf, dtype=np.int64)] = True
        # children blocks were appended breadth first, so parents' depths are set before children's
        for i, first, count in blocks:
            ix.set_children(i, first, count)
        for kind in VOLUME_KINDS:
            for target, setter, what in (
                (pending, self._set_volumes, "boundingVolume"),
                (rv_pending, self._set_request_volumes, "viewerRequestVolume"),
            ):
                if target[kind]:
                    idx, vals, xfs, recs_k = zip(*target[kind], strict=True)
                    fields = _LazyFields(self, recs_k, what)
                    vals = check_volumes(kind, list(vals), fields, display)
                    setter(np.array(idx), kind, vals, np.array(xfs))

    def _world_volumes(self, kind: str, vals: np.ndarray, xfs: np.ndarray):
        """World box (centre, half axes) and enclosing-sphere radius of volumes (same centre)."""
        mats = self.index.transforms[xfs]
        if kind == "box":
            c, h = boxes_to_world(vals, mats)
            return c, h, obb_sphere_radius(h)
        if kind == "region":
            c, h = regions_to_obb(vals)
            return c, h, obb_sphere_radius(h)
        c, r = spheres_to_world(vals, mats)
        return c, np.eye(3)[None] * r[:, None, None], r

    def _set_volumes(self, idx: np.ndarray, kind: str, vals: np.ndarray, xfs: np.ndarray) -> None:
        ix = self.index
        oc, oh, sr = self._world_volumes(kind, vals, xfs)
        ix.vol_kind[idx] = VOLUME_KINDS.index(kind)
        if kind == "region":
            ix.region[idx] = vals
        ix.obb_c[idx], ix.obb_h[idx], ix.sph_r[idx] = oc, oh, sr
        ix.axes[idx], ix.lengths[idx] = axes_and_lengths(oh)

    def _set_request_volumes(
        self, idx: np.ndarray, kind: str, vals: np.ndarray, xfs: np.ndarray
    ) -> None:
        ix = self.index
        oc, oh, sr = self._world_volumes(kind, vals, xfs)
        axes, lengths = axes_and_lengths(oh)
        ix.has_rv[idx] = True
        for k, i in enumerate(idx):
            ix.request_volumes[int(i)] = (
                kind == "sphere",
                oc[k],
                axes[k],
                lengths[k],
                float(sr[k]),
            )

    def _expand_link(self, i: int) -> None:
        ix = self.index
        rec = self._records[int(ix.record[i])]
        doc = self._docs[rec.doc]
        c = _content_list(rec.json, doc.key)[0]
        key = self.source.resolve(doc.key, c.get("uri", c.get("url")), "content uri")
        if key in doc.chain:
            cycle = " -> ".join(doc.chain + (key,))
            raise DataError(
                f"{self.source.display(doc.key)}: {self._path(int(ix.record[i]))}.content.uri "
                f"{c.get('uri', c.get('url'))!r} "
                f"makes a cycle of external tilesets: {cycle}"
            )
        if len(doc.chain) >= MAX_EXTERNAL_DEPTH:
            raise DataError(
                f"{self.source.display(key)}: external tilesets nested more than {MAX_EXTERNAL_DEPTH} deep"
            )
        self._load_doc(key, parent=i, chain=doc.chain + (key,))

    # --- implicit tiling
    def _subtree_root(
        self, ctx: ImplicitTiling, level: int, x: int, y: int, z: int
    ) -> tuple[int, int, int, int, int]:
        rl = level % ctx.subtree_levels
        return level - rl, x >> rl, y >> rl, z >> rl, rl

    def _bit_index(self, ctx: ImplicitTiling, i: int) -> tuple[tuple, int, int]:
        """(subtree key, bit index of tile i in it, relative morton)."""
        ix = self.index
        level, x, y, z = int(ix.level[i]), int(ix.x[i]), int(ix.y[i]), int(ix.z[i])
        sl, sx, sy, sz, rl = self._subtree_root(ctx, level, x, y, z)
        coords = [np.array([x - (sx << rl)]), np.array([y - (sy << rl)])]
        if ctx.dims == 3:
            coords.append(np.array([z - (sz << rl)]))
        m = int(morton_encode(coords)[0])
        n = ctx.branching
        return (sl, sx, sy, sz), (n**rl - 1) // (n - 1) + m, m

    def _implicit_tile_metadata(self, i: int) -> dict | None:
        ctx = self._implicit[int(self.index.impl[i])]
        key, bit, _ = self._bit_index(ctx, i)
        st = ctx.subtrees[key]
        which = st.json.get("tileMetadata")
        tables = st.json.get("propertyTables") or []
        if not isinstance(which, int) or not 0 <= which < len(tables):
            return None
        if st.tile_table is None:
            name = self.source.display(self._docs[ctx.doc].key)
            st.tile_table = decode_property_table(
                self.schema, tables[which], st.buffer_view, name, f"subtree {key} tileMetadata"
            )
        # rows follow the available tiles in bit order
        if st.tiles.constant is not None:
            row = bit
        else:
            row = int(np.unpackbits(st.tiles.bits, bitorder="little")[:bit].sum())
        props = {k: (v[row] if row < len(v) else None) for k, v in st.tile_table.items()}
        return {"class": tables[which].get("class"), "properties": props}

    def _content_bits(self, i: int) -> list[bool]:
        ctx = self._implicit[int(self.index.impl[i])]
        key, bit, _ = self._bit_index(ctx, i)
        st = ctx.subtrees[key]
        return [bool(c.get(np.array([bit]))[0]) for c in st.contents]

    def _load_subtree_of(self, i: int) -> None:
        """Read the subtree whose root is tile i, set its contents, append its tiles."""
        ix = self.index
        ctx = self._implicit[int(ix.impl[i])]
        level, x, y, z = int(ix.level[i]), int(ix.x[i]), int(ix.y[i]), int(ix.z[i])
        doc = self._docs[ctx.doc]
        uri = fill_template(ctx.subtrees_uri, level, x, y, z if ctx.dims == 3 else None)
        key = self.source.resolve(doc.key, uri, "implicitTiling.subtrees.uri")
        display = self.source.display(key)

        def resolve(u: str) -> bytes:
            return self.source.read(self.source.resolve(key, u, "subtree buffer uri"))

        st = parse_subtree(
            self.source.read(key),
            display,
            ctx.subtree_levels,
            ctx.branching,
            len(ctx.content_templates),
            resolve,
        )
        if not st.tiles.get(np.array([0]))[0]:
            raise DataError(
                f"{display}: tileAvailability says the subtree's root tile is not available"
            )
        ctx.subtrees[(level, x, y, z)] = st
        ix.n_contents[i] = sum(bool(c.get(np.array([0]))[0]) for c in st.contents)
        ix.content_known[i] = True
        self._append_subtree_levels(ctx, i, st, display)

    def _append_subtree_levels(self, ctx: ImplicitTiling, root: int, st, display: str) -> None:
        ix = self.index
        n, dims, shift = ctx.branching, ctx.dims, 2 if ctx.dims == 2 else 3
        g0 = int(ix.level[root])
        x0, y0, z0 = int(ix.x[root]), int(ix.y[root]), int(ix.z[root])
        prev_idx = np.array([root], dtype=np.int64)
        prev_m = np.array([0], dtype=np.int64)
        total = 0
        for rl in range(1, ctx.subtree_levels):
            if g0 + rl >= ctx.available_levels:
                break
            off = (n**rl - 1) // (n - 1)
            if st.tiles.constant and total + n**rl > MAX_SUBTREE_TILES:
                raise DataError(
                    f"{display}: more than {MAX_SUBTREE_TILES} tiles in one subtree; refused"
                )
            m = st.tiles.level_indices(off, n**rl)
            total += len(m)
            if total > MAX_SUBTREE_TILES:
                raise DataError(
                    f"{display}: more than {MAX_SUBTREE_TILES} tiles in one subtree; refused"
                )
            ix.children_known[prev_idx] = True
            if len(m) == 0:
                prev_idx, prev_m = np.zeros(0, np.int64), np.zeros(0, np.int64)
                continue
            pm = m >> shift
            if len(prev_m) == 0:
                raise DataError(
                    f"{display}: tileAvailability marks tiles at level {g0 + rl} available whose "
                    "parent tile is not available"
                )
            pos = np.searchsorted(prev_m, pm)
            pos_c = np.minimum(pos, len(prev_m) - 1)
            if not np.all(prev_m[pos_c] == pm):
                raise DataError(
                    f"{display}: tileAvailability marks tiles at level {g0 + rl} available whose "
                    "parent tile is not available"
                )
            start = ix.append(len(m))
            new = np.arange(start, start + len(m))
            parents = prev_idx[pos_c]
            uniq, first, counts = np.unique(pos_c, return_index=True, return_counts=True)
            ix.first_child[prev_idx[uniq]] = start + first
            ix.n_children[prev_idx[uniq]] = counts
            ix.parent[new] = parents
            ix.depth[new] = ix.depth[parents] + 1
            rel = morton_decode(m, dims)
            level = g0 + rl
            ix.level[new] = level
            ix.x[new] = (x0 << rl) + rel[0]
            ix.y[new] = (y0 << rl) + rel[1]
            if dims == 3:
                ix.z[new] = (z0 << rl) + rel[2]
            bits = off + m
            ix.n_contents[new] = (
                sum(c.get(bits).astype(np.int32) for c in st.contents) if st.contents else 0
            )
            ix.content_known[new] = True
            self._init_implicit_rows(ctx, new)
            prev_idx, prev_m = new, m
        # tiles on the last level of the subtree get children from child subtrees, unless the
        # tree ends there
        if len(prev_idx):
            last_level = int(ix.level[prev_idx[0]])
            ix.children_known[prev_idx] = last_level >= ctx.available_levels - 1

    def _init_implicit_rows(self, ctx: ImplicitTiling, new: np.ndarray) -> None:
        ix = self.index
        ix.impl[new] = ix.impl[ctx.root_index]
        ix.ge[new] = ctx.root_error * np.ldexp(1.0, -ix.level[new].astype(np.int64))
        ix.add[new] = ctx.add
        ix.xf[new] = ctx.xf
        kind, root_vals = ctx.root_volume
        vols = subdivide_volumes(
            kind,
            root_vals,
            ix.level[new],
            ix.x[new],
            ix.y[new],
            ix.z[new] if ctx.dims == 3 else None,
        )
        self._set_volumes(new, kind, vols, np.full(len(new), ctx.xf))

    def _expand_child_subtrees(self, i: int) -> None:
        """Children of a tile on the last level of its subtree: roots of available child subtrees."""
        ix = self.index
        ctx = self._implicit[int(ix.impl[i])]
        if int(ix.level[i]) >= ctx.available_levels - 1:
            ix.children_known[i] = True
            return
        key, _, m = self._bit_index(ctx, i)
        if (int(ix.level[i]) - key[0]) != ctx.subtree_levels - 1:
            ix.children_known[i] = True  # inside a subtree: children were appended with it
            return
        st = ctx.subtrees[key]
        n = ctx.branching
        cm = (m * n) + np.arange(n)
        avail = cm[st.children.get(cm)]
        if len(avail) == 0:
            ix.children_known[i] = True
            return
        start = ix.append(len(avail))
        new = np.arange(start, start + len(avail))
        ix.set_children(i, start, len(avail))
        rel = morton_decode(avail - m * n, ctx.dims)
        ix.level[new] = ix.level[i] + 1
        ix.x[new] = 2 * ix.x[i] + rel[0]
        ix.y[new] = 2 * ix.y[i] + rel[1]
        if ctx.dims == 3:
            ix.z[new] = 2 * ix.z[i] + rel[2]
        ix.content_known[new] = False
        ix.children_known[new] = False
        self._init_implicit_rows(ctx, new)


def _content_list(t: dict, display: str, rec: int = -1, path_of=None) -> list[dict]:
    """The tile's content objects: `content` (1.0) or `contents` (1.1), each with a uri."""
    c = t.get("content")
    if c is not None:
        items = [c]
    else:
        items = t.get("contents") or []
        if not isinstance(items, list):
            raise DataError(f"{display}: {_p(path_of, rec)}.contents must be an array")
    for k, item in enumerate(items):
        uri = item.get("uri", item.get("url")) if isinstance(item, dict) else None
        if not isinstance(uri, str) or not uri:
            f = f"{_p(path_of, rec)}." + ("content" if c is not None else f"contents[{k}]")
            if not isinstance(item, dict):
                raise DataError(f"{display}: {f} must be an object")
            raise DataError(f"{display}: {f}.uri must be a non-empty string")
    return items


def _volume_fast(bv: object) -> tuple[str, list] | None:
    """`volume_kind`'s answer where the volume is well formed, else None (its error names the
    tile's JSON path, built only then)."""
    if isinstance(bv, dict):
        for kind, n in KINDS.items():
            if kind in bv:
                v = bv[kind]
                return (kind, v) if isinstance(v, list) and len(v) == n else None
    return None


def _transform(values: object) -> np.ndarray | None:
    """A tile transform (16 numbers, column-major) as 4x4, or None where it is not one: the
    unchecked fast path of `mat4_from_column_major` (whose error names the tile's JSON path,
    built only then)."""
    if type(values) is not list or len(values) != 16:
        return None
    try:
        m = np.array(values, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    if m.shape != (16,) or not np.isfinite(m).all():
        return None
    return m.reshape(4, 4).T.copy()


def _p(path_of, rec: int) -> str:
    return path_of(rec) if path_of is not None and rec >= 0 else "tile"


def open_tileset(
    location: str | os.PathLike,
    *,
    max_tiles: int = DEFAULT_MAX_TILES,
    max_file_bytes: int | None = None,
) -> Tileset:
    """Open a tileset lazily (reads the tileset JSON only)."""
    return Tileset(location, max_tiles=max_tiles, max_file_bytes=max_file_bytes)
