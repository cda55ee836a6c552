"""Write the textured city (terrain + buildings) as an OGC 3D Tiles 1.1 tileset with GLB content.

A quadtree over the pack extent, subdivided where there is something to see: down to the leaf size
where buildings are, `street_leaf_factor` leaf sizes where only streets are, `open_leaf_factor` over
open land. A leaf holds the full terrain grid, its ground image and every building whose footprint
lies (by a point on its surface) in it. Each parent holds a terrain grid at half the resolution, the
mosaic of its children's ground images at half the pixel density, and its most significant buildings
(tallest and largest first) within a triangle budget: at most its children's building triangles, and
at most `parent_triangles` unless `lod_ratio` of its children's is more. With terrain at a quarter, a
parent always has fewer triangles than its children together. Refinement is REPLACE; the geometric
error of a tile is what it leaves out (dropped buildings, terrain deviation, footprint simplification,
ground texel size), and at least twice that of its children.

Buildings with real surfaces (building_surfaces.npz, from LoD2 CityGML) are drawn from them: walls
and roofs textured per face (see twin.citytiles.meshes.surface_meshes), ground surfaces left out, in
parents in full. Other buildings are extruded from their footprints, simplified in parents.

Trees (trees.gpkg) are low-poly crowns on trunks (twin.citytiles.meshes.tree_mesh) with vertex
colours, in the leaf holding their point (trees make tiles split down to the leaf size as buildings
do); parents keep the tallest within `parent_tree_triangles` (or `lod_ratio` of their children's).

Without terrain (write_buildings_tileset) the tileset holds buildings alone: the quadtree covers their
bounds, tiles without buildings are left out, and a parent that keeps none has no content.

Vertex positions are float32 metres relative to each tile's centre in an east-north-up frame at the
pack's centre; each tile's `transform` carries its centre (the root's also the ENU->ECEF rotation), so no
float32 ever holds an ECEF coordinate (SUMO2Unity #24 shows what happens otherwise). Bounding volumes are
`region`s in radians with ellipsoidal heights (DHHN2016 + twin.geo.GEOID_HEIGHT_M).

Textures are KTX2 (Basis Universal ETC1S, mipmapped: `KHR_texture_basisu`, see twin.tiles.ktx2) with
the JPEG (ground) or PNG (atlases) as fallback source for viewers without KTX2: a viewer that reads
KTX2 holds an eighth of the GPU memory on a tablet (ETC1 at 0.5 byte per texel against RGBA8). They
are encoded in batches on background threads while the quadtree is written, identical ones once.
Without the basisu encoder (or with `ktx2=False`) the textures are JPEG/PNG alone, and the tileset's
`extras.textures` says why.

Buildings carry per-vertex feature ids (`EXT_mesh_features`, `_FEATURE_ID_0`) into a property table
(`EXT_structural_metadata`, class `building`) of id, height, use and base, plus function, roof_type,
measured_height and storeys where buildings.gpkg has them (LoD2 sources; BUILDING_COLUMNS and
LOD2_COLUMNS describe each); trees into a second table (class `tree`: TREE_COLUMNS). Optionally a
3D Tiles 1.0 variant with b3dm content and batch tables (buildings only: trees are left out, as a
b3dm has one batch table; textures JPEG/PNG only) is written beside it for older viewers.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from twin.city.buildings import SURFACES, read_buildings, read_surfaces
from twin.city.vector import read_vector
from twin.citytiles.meshes import (
    Mesh,
    TerrainSampler,
    footprint_polygons,
    roof_mesh,
    terrain_mesh,
    triangles_per_building,
    vertex_normals,
    wall_mesh,
)
from twin.citytiles.surfaces import ByFeature, check_surfaces, concat, surface_meshes
from twin.citytiles.textures import (
    ATLAS_BAYS,
    USES,
    FacadeAtlas,
    GroundPainter,
    RoofAtlas,
    building_hashes,
    building_tints,
    downsample,
    facade_atlas,
    ground_painter_from_build,
    jpeg_bytes,
    png_bytes,
    quantize,
    roof_atlas,
    use_index,
)
from twin.citytiles.tree_meshes import tree_colours, tree_mesh
from twin.errors import DataError
from twin.geo import CRS_PLANAR, GEOID_HEIGHT_M, LocalFrame, utm_to_wgs84, wgs84_to_ecef
from twin.tiles.ktx2 import CODECS, Ktx2Batch, missing_encoder_reason
from twin.tiles.write_glb import (
    CLAMP_TO_EDGE,
    REPEAT,
    Ktx2Image,
    Material,
    Primitive,
    PropertyTable,
    encode_b3dm,
    encode_glb,
    enu_to_gltf,
)

TILESET_JSON = "tileset.json"
# property table columns: always, and those buildings.gpkg has when it comes from LoD2 (CityGML)
BUILDING_COLUMNS = {
    "id": "building id in buildings.gpkg",
    "height": "height above ground, m",
    "use": "building use",
    "base": "ground height, m above sea level (DHHN2016)",
}
LOD2_COLUMNS = {
    "function": "building function code (CityGML bldg:function, AdV code list, e.g. 31001_1000)",
    "roof_type": "roof type code (CityGML bldg:roofType, AdV code list: 1000 flat, 2100 shed, "
    "3100 gabled, 3200 hipped, ...)",
    "measured_height": "measured height from the lowest ground point to the highest roof point, m "
    "(CityGML bldg:measuredHeight)",
    "storeys": "storeys above ground (CityGML bldg:storeysAboveGround)",
}
NO_DATA = -1.0  # numeric LoD2 columns: the value where the source gives none
TREE_COLUMNS = {
    "id": "tree id in trees.gpkg (the pack's tree register)",
    "species": "species, as the tree register names it",
    "height": "tree height above ground, m",
    "crown_diameter": "crown diameter, m",
}
TREES = "trees.gpkg"
TILESET_B3DM_JSON = "tileset_b3dm.json"
REGION_PAD_RAD = 1e-8  # about 6 cm: covers float32 rounding of positions relative to tile centres
REGION_PAD_M = 0.05
# A parent's ground texels count as this much geometric error each: with the usual 16 px maximum
# screen-space error, its children are drawn before one of its texels covers more than 2 pixels.
TEXEL_ERROR = 8.0


@dataclass(frozen=True)
class TilesetOptions:
    """How the tileset is cut and drawn."""

    leaf_size_m: float = 256.0  # leaf tiles are at most this wide (the quadtree's root is square)
    terrain_step_m: float | None = None  # terrain grid step in leaves; None: pack resolution
    ground_px: int = 512  # ground image side per tile (power of two)
    facade_width_px: int = 512  # facade atlas width in leaves (parents get halved atlases)
    roof_px: int = 256  # roof atlas side in leaves
    parent_triangles: int = 50_000  # building triangles a parent may keep (at most its children's)
    lod_ratio: float = 0.3  # ... or this share of its children's building triangles, if more
    parent_tree_triangles: int = 30_000  # the same for trees (tallest first)
    street_leaf_factor: int = 1  # leaves with streets only are this many leaf sizes wide
    open_leaf_factor: int = 4  # leaves over open land are this many leaf sizes wide
    ground_format: str = "jpeg"  # "jpeg" (like real orthophotos, ~5x smaller) or "png" (lossless)
    ground_quality: int = 85  # JPEG quality
    ktx2: bool = True  # KTX2 textures (KHR_texture_basisu) where basisu is found, else JPEG/PNG
    ktx2_codec: str = "etc1s"  # "etc1s" (small, 0.5-1 byte/texel) or "uastc" (sharper, 6x larger)
    ktx2_fallback: bool = True  # keep the JPEG/PNG as fallback source (for viewers without KTX2)
    skirt: bool = True  # vertical skirts around terrain tiles hide cracks between levels of detail
    b3dm: bool = False  # also write tileset_b3dm.json with b3dm contents (3D Tiles 1.0)
    content_dir: str = "content"
    seed: int = 0
    keep_contents: bool = False  # keep what was written in memory (for read-back checks)

    def __post_init__(self) -> None:
        for name in ("ground_px", "facade_width_px", "roof_px"):
            v = getattr(self, name)
            if v < 8 or v & (v - 1):
                raise ValueError(f"TilesetOptions.{name} must be a power of two >= 8, got {v}")
        if self.ground_format not in ("png", "jpeg"):
            raise ValueError(
                f"TilesetOptions.ground_format must be 'png' or 'jpeg', got {self.ground_format!r}"
            )
        if self.ktx2_codec not in CODECS:
            raise ValueError(
                f"TilesetOptions.ktx2_codec must be one of {CODECS}, got {self.ktx2_codec!r}"
            )
        for name in ("street_leaf_factor", "open_leaf_factor"):
            v = getattr(self, name)
            if v < 1 or v & (v - 1):
                raise ValueError(f"TilesetOptions.{name} must be a power of two >= 1, got {v}")
        if self.leaf_size_m <= 0:
            raise ValueError("TilesetOptions.leaf_size_m must be > 0")
        if not 0 < self.lod_ratio < 1:
            raise ValueError("TilesetOptions.lod_ratio must be between 0 and 1")


@dataclass
class CityModel:
    """What the tileset is made of, read from the build products. Without terrain and painter the
    tileset holds buildings only (tiles where there are none are left out)."""

    extent: tuple[float, float, float, float]
    resolution: float
    terrain: TerrainSampler | None
    buildings: dict[str, Any]  # geometry, id, height, use, base (+ LoD2 columns; buildings.gpkg)
    painter: GroundPainter | None
    surfaces: dict[str, np.ndarray] | None = None  # building_surfaces.npz (real walls and roofs)
    trees: dict[str, Any] | None = (
        None  # trees.gpkg: points, id, species, height, crown_diameter, base
    )


def load_city(
    build_dir: Path,
    extent: tuple[float, float, float, float],
    resolution: float,
    classes: list[dict[str, Any]],
    seed: int = 0,
) -> CityModel:
    """Read terrain.tif, landcover.tif, streets.gpkg, buildings.gpkg and, where the build has them,
    building_surfaces.npz and trees.gpkg from a build folder."""
    build_dir = Path(build_dir)
    for name in ("terrain.tif", "landcover.tif", "buildings.gpkg"):
        if not (build_dir / name).exists():
            raise DataError(f"{build_dir}: product {name} is missing; run `twin data build` first")
    b = read_buildings(build_dir / "buildings.gpkg")
    surfaces = read_surfaces(build_dir / SURFACES) if (build_dir / SURFACES).exists() else None
    trees = None
    if (build_dir / TREES).exists():
        fields = [*TREE_COLUMNS, "base"]
        trees = read_vector(build_dir / TREES, CRS_PLANAR, fields=fields, what="trees")
    return CityModel(
        extent=tuple(float(v) for v in extent),
        resolution=float(resolution),
        terrain=TerrainSampler.from_geotiff(build_dir / "terrain.tif"),
        buildings=b,
        painter=ground_painter_from_build(build_dir, classes, seed),
        surfaces=surfaces,
        trees=trees,
    )


@dataclass
class KeptContent:
    """One written content as the writer made it (float64 EPSG:25832 + DHHN2016), for read-back tests."""

    uri: str
    level: int
    meshes: dict[str, Mesh]  # "terrain", "walls", "roofs", "trees"
    images: dict[str, np.ndarray]  # "ground", "facade", "roof"
    table: dict[str, list[Any]]  # building property table columns ("id", "height", ...)
    tree_table: dict[str, list[Any]] = field(default_factory=dict)  # tree table columns


@dataclass
class TilesetReport:
    """What was written: counts, sizes and timings."""

    path: Path
    tiles: int = 0
    depth: int = 0
    contents: int = 0
    triangles: int = 0
    triangles_by_level: list[int] = field(default_factory=list)
    buildings_by_level: list[int] = field(default_factory=list)
    trees_by_level: list[int] = field(default_factory=list)
    bytes: int = 0
    texture_sizes: dict[str, list[int]] = field(default_factory=dict)
    textures: str = ""  # how the textures were written (KTX2 codec, or JPEG/PNG and why)
    ktx2_encoded: int = 0  # distinct textures encoded as KTX2
    seconds: float = 0.0
    kept: dict[str, KeptContent] = field(default_factory=dict)

    def summary(self) -> str:
        """One line for logs."""
        return (
            f"{self.tiles} tiles, depth {self.depth}, {self.triangles:,} triangles, "
            f"{self.bytes / 1e6:.1f} MB in {self.seconds:.1f} s; textures: {self.textures}"
        )


@dataclass
class _Node:
    """A tile under construction (what the parent needs from it)."""

    json: dict[str, Any]
    centre: np.ndarray  # ENU of the content centre
    region: np.ndarray  # west, south, east, north, min h, max h
    error: float
    candidates: np.ndarray  # building rows in the subtree
    building_triangles: int
    triangles: int
    ground: np.ndarray | None
    tree_candidates: np.ndarray  # tree rows in the subtree
    tree_triangles: int


class _Writer:
    """One tileset being written: the quadtree walk (children before parents) and the contents."""

    def __init__(
        self, city: CityModel, out: Path, options: TilesetOptions, progress: Callable[[str], None]
    ) -> None:
        self.city, self.out, self.opt, self.progress = city, out, options, progress
        xmin, ymin, xmax, ymax = city.extent
        self.side = max(xmax - xmin, ymax - ymin)
        self.depth = max(0, math.ceil(math.log2(self.side / options.leaf_size_m) - 1e-9))
        self.leaf_side = self.side / 2**self.depth
        self.n_cells = 0
        if city.terrain is not None:
            step = options.terrain_step_m or city.resolution
            self.n_cells = max(1, math.ceil(self.leaf_side / step - 1e-9))
        cx, cy = (xmin + xmax) / 2, (ymin + ymax) / 2
        b = city.buildings
        self.n_b = len(b["geometry"])
        self.height = np.asarray(b["height"], dtype=np.float64)
        self.base = np.asarray(b["base"], dtype=np.float64)
        if city.terrain is not None:
            h0 = float(np.median(city.terrain.z))
        else:
            h0 = float(np.median(self.base)) if self.n_b else 0.0
        self.frame = LocalFrame.from_utm(cx, cy, h0)
        self.ids = np.asarray(b["id"], dtype=object).astype(str)
        self.uses = np.asarray(b["use"], dtype=object).astype(str)
        self.use_idx = use_index(self.uses)
        self.tints = building_tints(self.ids, self.use_idx, options.seed)
        variant = building_hashes(self.ids, options.seed + 1)
        self.bay_offset = (variant % np.uint64(ATLAS_BAYS)).astype(np.float64)
        area = shapely.area(b["geometry"]) if self.n_b else np.zeros(0)
        self.significance = self.height * np.sqrt(np.maximum(area, 1.0))
        self.columns, self.descriptions = _building_columns(b)
        self.facade = facade_atlas(
            options.seed, options.facade_width_px, options.facade_width_px // 4
        )
        self.roof = roof_atlas(options.seed, options.roof_px)
        self.lod2: tuple[ByFeature, ByFeature] | None = None
        self.has_lod2 = np.zeros(self.n_b, dtype=bool)
        if city.surfaces is not None and len(city.surfaces["tris"]):
            check_surfaces(city.surfaces, self.n_b, SURFACES)
            walls, roofs = surface_meshes(
                city.surfaces, self.n_b, self.use_idx, self.bay_offset, self.facade, self.roof
            )
            self.lod2 = (walls, roofs)
            self.has_lod2 = (walls.triangles() + roofs.triangles()) > 0
        self._init_trees(city.trees)
        self._png_cache: dict[tuple[str, int], tuple[bytes, np.ndarray]] = {}
        self.report = TilesetReport(path=out)
        self._ktx2: Ktx2Batch | None = None
        reason = missing_encoder_reason() if options.ktx2 else None
        if options.ktx2 and reason is None:
            self._ktx2 = Ktx2Batch(options.ktx2_codec)
            fallback = "with JPEG/PNG fallback" if options.ktx2_fallback else "no fallback"
            self.report.textures = (
                f"KTX2 (Basis Universal {options.ktx2_codec.upper()}, {fallback})"
            )
        elif options.ktx2:
            self.report.textures = f"JPEG/PNG: {reason}"
            progress(f"tiles: {reason}; the textures are written as JPEG/PNG")
        else:
            self.report.textures = "JPEG/PNG (KTX2 switched off)"
        self.report.triangles_by_level = [0] * (self.depth + 1)
        self.report.buildings_by_level = [0] * (self.depth + 1)
        self.report.trees_by_level = [0] * (self.depth + 1)
        self.report.texture_sizes = {
            "facade": list(self.facade.image.shape[1::-1]),
            "roof": list(self.roof.image.shape[1::-1]),
        }
        if city.painter is not None:
            self.report.texture_sizes["ground"] = [options.ground_px, options.ground_px]
        on_footprint = np.zeros((0, 2))
        if self.n_b:
            on_footprint = shapely.get_coordinates(
                shapely.point_on_surface(self.city.buildings["geometry"])
            )
        self._leaf_buildings = self._assign_leaves(on_footprint)
        self._leaf_trees = self._assign_leaves(self.tree_xy)
        n = 2**self.depth
        counts = np.zeros((n, n), dtype=np.int64)
        for leaves in (self._leaf_buildings, self._leaf_trees):
            for (i, j), rows in leaves.items():
                counts[i, j] += len(rows)
        self._count_sat = np.zeros((n + 1, n + 1), dtype=np.int64)
        self._count_sat[1:, 1:] = counts.cumsum(0).cumsum(1)

    def _init_trees(self, trees: dict[str, Any] | None) -> None:
        """Tree crowns of every tree (made once, taken per tile) and the tree table's columns."""
        self.n_t = 0 if trees is None else len(trees["geometry"])
        self.tree_xy = np.zeros((0, 2))
        self.tree_height = np.zeros(0)
        self.tree_meshes: ByFeature | None = None
        self.tree_columns: dict[str, Any] = {}
        if not self.n_t:
            return
        self.tree_xy = shapely.get_coordinates(trees["geometry"])
        if len(self.tree_xy) != self.n_t:
            raise DataError(f"{TREES}: every tree must be one point")
        self.tree_height = np.asarray(trees["height"], dtype=np.float64)
        ids = np.asarray(trees["id"], dtype=object).astype(str)
        species = np.asarray(trees["species"], dtype=object).astype(str)
        crown = np.asarray(trees["crown_diameter"], dtype=np.float64)
        base = np.asarray(trees["base"], dtype=np.float64)
        colours = tree_colours(species, ids, self.opt.seed)
        mesh = tree_mesh(*self.tree_xy.T, base, self.tree_height, crown, colours)
        self.tree_meshes = ByFeature.of(mesh, self.n_t)
        self.tree_columns = {
            "id": ids,
            "species": species,
            "height": self.tree_height,
            "crown_diameter": crown,
        }

    # -- quadtree ------------------------------------------------------------------------------

    def _assign_leaves(self, pts: np.ndarray) -> dict[tuple[int, int], np.ndarray]:
        """Each point (a building's point on its footprint, a tree) goes to the leaf holding it."""
        if len(pts) == 0:
            return {}
        n = 2**self.depth
        x0, y0, x1, y1 = self.city.extent
        # a building reaching over the extent's edge belongs to the leaf inside, at that edge
        eps = 1e-6 * self.side
        pts = np.column_stack([np.clip(pts[:, 0], x0, x1 - eps), np.clip(pts[:, 1], y0, y1 - eps)])
        ix = np.clip(np.floor((pts[:, 0] - x0) / self.leaf_side), 0, n - 1).astype(np.int64)
        iy = np.clip(np.floor((pts[:, 1] - y0) / self.leaf_side), 0, n - 1).astype(np.int64)
        key = ix * n + iy
        order = np.argsort(key, kind="stable")
        keys, starts = np.unique(key[order], return_index=True)
        groups = np.split(order, starts[1:])
        return {(int(k // n), int(k % n)): np.sort(g) for k, g in zip(keys, groups, strict=True)}

    def rect(self, level: int, ix: int, iy: int) -> tuple[float, float, float, float]:
        s = self.side / 2**level
        x0, y0 = self.city.extent[:2]
        return (x0 + ix * s, y0 + iy * s, x0 + (ix + 1) * s, y0 + (iy + 1) * s)

    def clip(
        self, r: tuple[float, float, float, float]
    ) -> tuple[float, float, float, float] | None:
        xmin, ymin, xmax, ymax = self.city.extent
        c = (max(r[0], xmin), max(r[1], ymin), min(r[2], xmax), min(r[3], ymax))
        if c[2] - c[0] <= 1e-6 * self.side or c[3] - c[1] <= 1e-6 * self.side:
            return None
        return c

    def run(self) -> TilesetReport:
        t0 = time.perf_counter()
        try:
            root = self.node(0, 0, 0)
        finally:
            if self._ktx2 is not None:
                self._ktx2.close()  # the contents still waiting for their textures are written
                self.report.ktx2_encoded = self._ktx2.encoded
        if root is None:
            raise DataError("the tileset extent is empty or holds nothing to draw; nothing to tile")
        m = self.frame.enu_to_ecef_matrix()
        t = np.eye(4)
        t[:3, 3] = root.centre
        root.json["transform"] = [float(v) for v in (m @ t).flatten(order="F")]
        root.json["refine"] = "REPLACE"
        tileset = self._tileset_json(root, "1.1")
        _write_json(self.out / TILESET_JSON, tileset)
        if self.opt.b3dm:
            b3 = json.loads(json.dumps(tileset))
            b3["asset"]["version"] = "1.0"
            _swap_uris(b3["root"], ".glb", ".b3dm")
            _write_json(self.out / TILESET_B3DM_JSON, b3)
        self.report.seconds = time.perf_counter() - t0
        self.report.bytes = sum(p.stat().st_size for p in self.out.rglob("*") if p.is_file())
        return self.report

    def _tileset_json(self, root: _Node, version: str) -> dict[str, Any]:
        lon, lat = self.frame.lon, self.frame.lat
        return {
            "asset": {"version": version, "generator": "krefeld-twin tiles writer"},
            "geometricError": 2.0 * root.error,
            "root": root.json,
            "extras": {
                "crs": CRS_PLANAR,
                "heights": "ellipsoidal = DHHN2016 + GEOID_HEIGHT_M",
                "geoid_height_m": GEOID_HEIGHT_M,
                "anchor": {"lon": lon, "lat": lat, "h": self.frame.h},
                "extent": list(self.city.extent),
                "textures": self.report.textures,
            },
        }

    def node(self, level: int, ix: int, iy: int) -> _Node | None:
        r = self.rect(level, ix, iy)
        clip = self.clip(r)
        if clip is None:
            return None
        if not self._split(level, ix, iy, r):
            return self._leaf(level, ix, iy, r, clip)
        children = {}
        for dx in (0, 1):
            for dy in (0, 1):
                child = self.node(level + 1, 2 * ix + dx, 2 * iy + dy)
                if child is not None:
                    children[(dx, dy)] = child
        if level <= 1:
            self.progress(f"tiles: level {level} tile {ix},{iy} done")
        if not children:
            return None
        return self._parent(level, ix, iy, r, clip, children)

    def _split(self, level: int, ix: int, iy: int, r: tuple) -> bool:
        """Subdivide down to the leaf size where buildings are, to `street_leaf_factor` leaves where
        streets or rails are, and to `open_leaf_factor` leaves over open land."""
        if level >= self.depth:
            return False
        k = 2 ** (self.depth - level)
        c = self._count_sat
        i0, j0 = ix * k, iy * k
        i1, j1 = min(i0 + k, c.shape[0] - 1), min(j0 + k, c.shape[1] - 1)
        if c[i1, j1] - c[i0, j1] - c[i1, j0] + c[i0, j0] > 0:
            return True
        if self.city.terrain is None:  # buildings only: no tiles where there are none
            return False
        side = self.side / 2**level
        if self.city.painter is not None and self.city.painter.has_streets(r):
            return side > self.leaf_side * self.opt.street_leaf_factor * (1 + 1e-9)
        return side > self.leaf_side * self.opt.open_leaf_factor * (1 + 1e-9)

    # -- contents ------------------------------------------------------------------------------

    def _leaf(self, level: int, ix: int, iy: int, r: tuple, clip: tuple) -> _Node | None:
        rows = trows = np.zeros(0, dtype=np.int64)
        if level == self.depth:  # buildings and trees make their tile split down to the leaf size
            rows = self._leaf_buildings.get((ix, iy), rows)
            trows = self._leaf_trees.get((ix, iy), trows)
        walls, roofs = self._building_meshes(rows, 0.0)
        ground = None
        if self.city.painter is not None:
            ground = self.city.painter.render(r, self.opt.ground_px, self.opt.ground_px)
        terrain = self._terrain(level, r, clip)
        trees = self._tree_mesh(trows)
        node = self._content(level, ix, iy, terrain, walls, roofs, rows, ground, trees, trows)
        if node is None:
            return None
        node.error = 0.0
        node.candidates = rows
        node.tree_candidates = trows
        return node

    def _tree_mesh(self, rows: np.ndarray) -> Mesh:
        if len(rows) == 0 or self.tree_meshes is None:
            return Mesh.empty()
        return self.tree_meshes.take(rows)

    def _keep_trees(self, kids: list[_Node]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A parent's tree candidates, the tallest of them within its tree budget, the others."""
        cand = np.sort(np.concatenate([k.tree_candidates for k in kids]))
        if len(cand) == 0 or self.tree_meshes is None:
            return cand, cand, cand
        below = sum(k.tree_triangles for k in kids)
        budget = min(below, max(self.opt.lod_ratio * below, self.opt.parent_tree_triangles))
        order = cand[np.argsort(-self.tree_height[cand], kind="stable")]
        fits = np.cumsum(self.tree_meshes.triangles()[order]) <= budget
        return cand, np.sort(order[fits]), np.sort(order[~fits])

    def _terrain(self, level: int, r: tuple, clip: tuple) -> Mesh:
        if self.city.terrain is None:
            return Mesh.empty(with_feature=False)
        return terrain_mesh(self.city.terrain, r, clip, self.n_cells, self._skirt(level))

    def _parent(
        self,
        level: int,
        ix: int,
        iy: int,
        r: tuple,
        clip: tuple,
        children: dict[tuple[int, int], _Node],
    ) -> _Node:
        kids = list(children.values())
        cand = np.sort(np.concatenate([k.candidates for k in kids]))
        simplify = 0.5 * 2 ** (self.depth - level)
        walls, roofs = self._building_meshes(cand, simplify)
        per_b = triangles_per_building(walls, self.n_b) + triangles_per_building(roofs, self.n_b)
        below = sum(k.building_triangles for k in kids)
        budget = min(below, max(self.opt.lod_ratio * below, self.opt.parent_triangles))
        order = cand[np.argsort(-self.significance[cand], kind="stable")]
        order = order[per_b[order] > 0]
        fits = np.cumsum(per_b[order]) <= budget
        keep = np.sort(order[fits])
        dropped = np.setdiff1d(cand, keep)
        kept_mask = np.zeros(self.n_b, dtype=bool)
        kept_mask[keep] = True
        walls = walls.select(kept_mask[walls.feature])
        roofs = roofs.select(kept_mask[roofs.feature])
        terrain = self._terrain(level, r, clip)
        ground = self._mosaic(children) if self.city.painter is not None else None
        tcand, tkeep, tdropped = self._keep_trees(kids)
        trees = self._tree_mesh(tkeep)
        node = self._content(level, ix, iy, terrain, walls, roofs, keep, ground, trees, tkeep)
        if node is None:  # nothing kept and no terrain: a tile without content
            centre = np.mean([k.centre for k in kids], axis=0)
            empty = np.zeros(0, dtype=np.int64)
            node = _Node({"geometricError": 0.0}, centre, kids[0].region, 0.0, keep, 0, 0, None,
                         empty, 0)  # fmt: skip
            self.report.tiles += 1
        measured = max(
            float(self.height[dropped].max()) if len(dropped) else 0.0,
            float(self.tree_height[tdropped].max()) if len(tdropped) else 0.0,
            simplify,
        )
        if self.city.terrain is not None:
            texel = (r[2] - r[0]) / self.opt.ground_px
            measured = max(
                measured,
                self._terrain_error(r, clip),
                TEXEL_ERROR * texel,  # the ground image is coarser than the children's
            )
        node.error = max(measured, 2.0 * max(k.error for k in kids))
        node.candidates = cand
        node.tree_candidates = tcand
        node.region = _union_regions([node.region] + [k.region for k in kids])
        node.json["boundingVolume"] = {"region": [float(v) for v in node.region]}
        node.json["geometricError"] = node.error
        node.json["children"] = []
        for k in kids:
            k.json["transform"] = _translation(k.centre - node.centre)
            node.json["children"].append(k.json)
        return node

    def _skirt(self, level: int) -> float:
        """Skirt depth: a twentieth of the grid step, 1 to 5 m (Krefeld's terrain is gentle)."""
        if not self.opt.skirt:
            return 0.0
        step = self.leaf_side / self.n_cells * 2 ** (self.depth - level)
        return float(np.clip(0.05 * step, 1.0, 5.0))

    def _building_meshes(self, rows: np.ndarray, simplify: float) -> tuple[Mesh, Mesh]:
        """Walls and roofs of buildings: real surfaces where the building has them (in full, also
        in parents), else extruded from the footprint (simplified by `simplify` m)."""
        lod2 = rows[self.has_lod2[rows]]
        rows = rows[~self.has_lod2[rows]]
        walls, roofs = Mesh.empty(), Mesh.empty()
        if len(rows):
            polys, owner = footprint_polygons(self.city.buildings["geometry"][rows], simplify)
            owner = rows[owner]
            args = (polys, owner, self.height, self.base, self.use_idx)
            walls, roofs = (
                wall_mesh(*args, self.bay_offset, self.facade),
                roof_mesh(*args, self.roof),
            )
        if len(lod2) and self.lod2 is not None:
            walls = concat(walls, self.lod2[0].take(lod2))
            roofs = concat(roofs, self.lod2[1].take(lod2))
        return walls, roofs

    def _terrain_error(self, r: tuple, clip: tuple) -> float:
        """Largest height difference between this tile's terrain grid and its children's."""
        fine = terrain_mesh(self.city.terrain, r, clip, 2 * self.n_cells)
        coarse = terrain_mesh(self.city.terrain, r, clip, self.n_cells)
        xs = np.unique(coarse.xyz[:, 0])
        ys = np.unique(coarse.xyz[:, 1])
        zc = coarse.xyz[:, 2].reshape(len(ys), len(xs))
        fx, fy = fine.xyz[:, 0], fine.xyz[:, 1]
        i = np.clip(np.searchsorted(xs, fx) - 1, 0, len(xs) - 2)
        j = np.clip(np.searchsorted(ys, fy) - 1, 0, len(ys) - 2)
        wx = (fx - xs[i]) / np.maximum(xs[i + 1] - xs[i], 1e-9)
        wy = (fy - ys[j]) / np.maximum(ys[j + 1] - ys[j], 1e-9)
        z = (zc[j, i] * (1 - wx) + zc[j, i + 1] * wx) * (1 - wy) + (
            zc[j + 1, i] * (1 - wx) + zc[j + 1, i + 1] * wx
        ) * wy
        return float(np.abs(z - fine.xyz[:, 2]).max())

    def _mosaic(self, children: dict[tuple[int, int], _Node]) -> np.ndarray:
        g = self.opt.ground_px
        big = np.full((2 * g, 2 * g, 3), 128, dtype=np.uint8)
        for (dx, dy), k in children.items():
            r0 = 0 if dy == 1 else g  # north at the top
            big[r0 : r0 + g, dx * g : dx * g + g] = k.ground
        return downsample(big, 2)

    def _atlas_png(self, kind: str, level: int) -> tuple[bytes, np.ndarray]:
        atlas: FacadeAtlas | RoofAtlas = self.facade if kind == "facade" else self.roof
        width = atlas.image.shape[1]
        factor = min(2 ** (self.depth - level), max(1, width // 64))
        key = (kind, factor)
        if key not in self._png_cache:
            img = atlas.image if factor == 1 else quantize(downsample(atlas.image, factor))
            self._png_cache[key] = (png_bytes(img), img)
        return self._png_cache[key]

    def _content(
        self,
        level: int,
        ix: int,
        iy: int,
        terrain: Mesh,
        walls: Mesh,
        roofs: Mesh,
        rows: np.ndarray,
        ground: np.ndarray | None,
        trees: Mesh,
        tree_rows: np.ndarray,
    ) -> _Node | None:
        """Write one tile's GLB (and b3dm); None when there is nothing to draw in it."""
        parts = {"terrain": terrain, "walls": walls, "roofs": roofs, "trees": trees}
        parts = {k: m for k, m in parts.items() if m.n_triangles}
        if not parts:
            return None
        all_xyz = np.concatenate([m.xyz for m in parts.values()])
        lon, lat = utm_to_wgs84(all_xyz[:, 0], all_xyz[:, 1])
        h = all_xyz[:, 2] + GEOID_HEIGHT_M
        ecef = np.column_stack(wgs84_to_ecef(lon, lat, h))
        enu = self.frame.ecef_to_enu(ecef)
        centre = (enu.min(axis=0) + enu.max(axis=0)) / 2
        region = np.array(
            [
                np.radians(lon.min()) - REGION_PAD_RAD,
                np.radians(lat.min()) - REGION_PAD_RAD,
                np.radians(lon.max()) + REGION_PAD_RAD,
                np.radians(lat.max()) + REGION_PAD_RAD,
                h.min() - REGION_PAD_M,
                h.max() + REGION_PAD_M,
            ]
        )
        local_of = np.full(self.n_b, -1, dtype=np.int64)
        local_of[rows] = np.arange(len(rows))
        tree_local = np.full(self.n_t, -1, dtype=np.int64)
        tree_local[tree_rows] = np.arange(len(tree_rows))
        tables: list[PropertyTable] = []
        if len(rows):
            columns = {k: _take(v, rows) for k, v in self.columns.items()}
            tables.append(
                PropertyTable("building", len(rows), columns, self.descriptions, _no_data(columns))
            )
        tree_table = None
        if len(tree_rows):
            tree_cols = {k: _take(v, tree_rows) for k, v in self.tree_columns.items()}
            tree_table = PropertyTable("tree", len(tree_rows), tree_cols, TREE_COLUMNS)
            tables.append(tree_table)
        materials: list[Material] = []
        images: list[bytes] = []
        pixels: list[tuple[object, np.ndarray]] = []  # (cache key, image) of each, for KTX2
        kept_images: dict[str, np.ndarray] = {}
        prims: list[Primitive] = []
        offset = 0
        for name, mesh in parts.items():
            n = len(mesh.xyz)
            p_enu = enu[offset : offset + n]
            offset += n
            normals = vertex_normals(p_enu, mesh.tris)
            if name == "trees":
                prim = Primitive(
                    positions=enu_to_gltf(p_enu - centre).astype(np.float32),
                    indices=mesh.tris,
                    material=len(materials),
                    normals=enu_to_gltf(normals).astype(np.float32),
                    colors=mesh.color,
                    feature_ids=tree_local[mesh.feature],
                    name=name,
                    property_table=len(tables) - 1,
                )
                materials.append(Material("tree", roughness=0.95))
                prims.append(prim)
                continue
            if name == "terrain":
                img = ground if ground is not None else np.full((8, 8, 3), 128, dtype=np.uint8)
                if self.opt.ground_format == "png":
                    img_bytes = png_bytes(img)
                else:
                    img_bytes = jpeg_bytes(img, self.opt.ground_quality)
                mat = Material("ground", image=len(images))
                kind = "ground"
                key: object = ("ground", img.shape, hashlib.sha1(img.tobytes()).digest())
            else:
                kind = "facade" if name == "walls" else "roof"
                img_bytes, img = self._atlas_png(kind, level)
                key = (kind, img.shape, id(img))  # the atlas cache keeps each image alive
                wrap = REPEAT if name == "walls" else CLAMP_TO_EDGE
                mat = Material(kind, image=len(images), wrap_s=wrap)
            images.append(img_bytes)
            pixels.append((key, img))
            kept_images[kind] = img
            materials.append(mat)
            prim = Primitive(
                positions=enu_to_gltf(p_enu - centre).astype(np.float32),
                indices=mesh.tris,
                material=len(materials) - 1,
                normals=enu_to_gltf(normals).astype(np.float32),
                uv=mesh.uv.astype(np.float32),
                name=name,
            )
            if mesh.feature is not None and name != "terrain":
                prim.feature_ids = local_of[mesh.feature]
                prim.colors = self.tints[mesh.feature]
            prims.append(prim)
        uri = f"{self.opt.content_dir}/{level}/{ix}_{iy}.glb"
        path = self.out / uri
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(ktx2: list[bytes] | None = None) -> None:
            imgs: list[bytes | Ktx2Image] = list(images)
            if ktx2 is not None:
                keep = self.opt.ktx2_fallback
                imgs = [
                    Ktx2Image(k, f if keep else None) for k, f in zip(ktx2, images, strict=True)
                ]
            path.write_bytes(encode_glb(prims, materials, imgs, properties=tables))
            if self.opt.b3dm:  # for older viewers: JPEG/PNG, which every glTF 2.0 viewer reads
                self._write_b3dm(path.with_suffix(".b3dm"), prims, materials, images, tables, rows)

        if self._ktx2 is None or not images:
            write()
        else:
            keys = [self._ktx2.add(k, img, f"{uri}: {k[0]} texture") for k, img in pixels]
            self._ktx2.then(keys, write)
        tri = sum(m.n_triangles for m in parts.values())
        btri = walls.n_triangles + roofs.n_triangles
        self.report.trees_by_level[level] += len(tree_rows)
        self.report.tiles += 1
        self.report.contents += 1
        self.report.triangles += tri
        self.report.triangles_by_level[level] += tri
        self.report.buildings_by_level[level] += len(rows)
        self.report.depth = max(self.report.depth, level)
        if self.opt.keep_contents:
            self.report.kept[uri] = KeptContent(
                uri,
                level,
                parts,
                kept_images,
                {k: list(_take(v, rows)) for k, v in self.columns.items()},
                {k: list(v) for k, v in tree_table.columns.items()} if tree_table else {},
            )
        tile = {
            "boundingVolume": {"region": [float(v) for v in region]},
            "geometricError": 0.0,
            "content": {"uri": uri},
        }
        tree_tri = trees.n_triangles
        return _Node(tile, centre, region, 0.0, rows, btri, tri, ground, tree_rows, tree_tri)

    def _write_b3dm(
        self,
        path: Path,
        prims: list[Primitive],
        materials: list[Material],
        images: list[bytes],
        tables: list[PropertyTable],
        rows: np.ndarray,
    ) -> None:
        """The 3D Tiles 1.0 content: the GLB with _BATCHID and the building table as batch table.
        Trees are left out (a b3dm has one batch table); a tile of trees alone keeps them, without
        feature ids."""
        kept = [p for p in prims if p.name != "trees"]
        if kept:  # the tree material is the last one: the others keep their indices
            materials = [m for m in materials if m.name != "tree"]
        else:
            kept = [replace(p, feature_ids=None) for p in prims]
        buildings = tables[:1] if len(rows) else []
        glb10 = encode_glb(kept, materials, images, properties=buildings, feature_mode="batchid")
        batch = {k: _json_column(v) for k, v in buildings[0].columns.items()} if buildings else {}
        path.write_bytes(encode_b3dm(glb10, batch, len(rows)))


def _building_columns(b: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """The property table's columns (all rows) and their descriptions: id, height, use, base, and
    the LoD2 columns buildings.gpkg has. Numbers become float64 (missing ones NO_DATA), the rest
    strings (missing ones empty)."""
    cols: dict[str, Any] = {
        "id": np.asarray(b["id"], dtype=object).astype(str),
        "height": np.asarray(b["height"], dtype=np.float64),
        "use": np.asarray(b["use"], dtype=object).astype(str),
        "base": np.asarray(b["base"], dtype=np.float64),
    }
    desc = dict(BUILDING_COLUMNS)
    for name, text in LOD2_COLUMNS.items():
        if name not in b:
            continue
        values = np.asarray(b[name])
        if values.dtype.kind in "fiub":
            v = values.astype(np.float64)
            cols[name] = np.where(np.isfinite(v), v, NO_DATA)
        else:
            cols[name] = np.array(["" if x is None else str(x) for x in values], dtype=object)
        desc[name] = text
    return cols, desc


def _take(values: np.ndarray, rows: np.ndarray) -> Any:
    """A column's values for rows: float64 arrays stay arrays, strings become lists."""
    if values.dtype.kind == "f":
        return values[rows]
    return list(values[rows])


def _no_data(columns: dict[str, Any]) -> dict[str, float]:
    """NO_DATA marks missing values of the numeric LoD2 columns."""
    return {
        k: NO_DATA for k, v in columns.items() if k in LOD2_COLUMNS and isinstance(v, np.ndarray)
    }


def _json_column(values: Any) -> list[Any]:
    """A column as JSON values (a b3dm batch table)."""
    if isinstance(values, np.ndarray):
        return [float(v) for v in values]
    return list(values)


def _translation(t: np.ndarray) -> list[float]:
    m = np.eye(4)
    m[:3, 3] = t
    return [float(v) for v in m.flatten(order="F")]


def _union_regions(regions: list[np.ndarray]) -> np.ndarray:
    r = np.array(regions)
    return np.concatenate(
        [r[:, :2].min(axis=0), r[:, 2:4].max(axis=0), [r[:, 4].min(), r[:, 5].max()]]
    )


def _swap_uris(tile: dict[str, Any], old: str, new: str) -> None:
    if "content" in tile:
        tile["content"]["uri"] = tile["content"]["uri"].removesuffix(old) + new
    for c in tile.get("children", []):
        _swap_uris(c, old, new)


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")


def write_city_tileset(
    city: CityModel,
    out_dir: str | Path,
    options: TilesetOptions | None = None,
    progress: Callable[[str], None] = lambda msg: None,
) -> TilesetReport:
    """Write the city as a 3D Tiles 1.1 tileset folder (tileset.json + content/*.glb), atomically.

    The folder is written under a temporary name beside `out_dir` and renamed into place when complete,
    so readers see the old tileset or the new one, never half of one; a failure leaves no trace.
    """
    options = options or TilesetOptions()
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        report = _Writer(city, tmp, options, progress).run()
        old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
        if out_dir.exists():
            os.replace(out_dir, old)
        os.replace(tmp, out_dir)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.path = out_dir
    return report


def write_tileset_from_build(
    pack: Any,
    build_dir: str | Path,
    out_dir: str | Path,
    options: TilesetOptions | None = None,
    progress: Callable[[str], None] = lambda msg: None,
) -> TilesetReport:
    """Read a pack's build products and write its textured tileset to `out_dir`."""
    options = options or TilesetOptions()
    classes = pack.layers["landcover"].options.get("classes", [])
    city = load_city(Path(build_dir), pack.extent, pack.resolution, classes, options.seed)
    return write_city_tileset(city, out_dir, options, progress)


def write_buildings_tileset(
    buildings: dict[str, Any],
    surfaces: dict[str, np.ndarray] | None,
    out_dir: str | Path,
    crs: str,
    options: TilesetOptions | None = None,
    progress: Callable[[str], None] | None = None,
) -> TilesetReport:
    """Write buildings alone (no terrain, no ground images) as a 3D Tiles 1.1 tileset, atomically.

    `buildings` has the columns of buildings.gpkg (read_buildings), `surfaces` those of
    building_surfaces.npz (read_surfaces; None or empty: every building extruded from its footprint).
    The quadtree covers the buildings' bounds; tiles without buildings are left out.
    """
    if crs != CRS_PLANAR:
        raise DataError(f"buildings: CRS {crs}; the tileset writer expects {CRS_PLANAR}")
    geoms = np.asarray(buildings["geometry"], dtype=object)
    if len(geoms) == 0:
        raise DataError("buildings: the table is empty; there is nothing to tile")
    x0, y0, x1, y1 = shapely.total_bounds(geoms)
    if surfaces is not None and len(surfaces["tris"]):
        used = np.asarray(surfaces["xyz"])[np.unique(np.asarray(surfaces["tris"]))]
        x0, y0 = min(x0, used[:, 0].min()), min(y0, used[:, 1].min())
        x1, y1 = max(x1, used[:, 0].max()), max(y1, used[:, 1].max())
    pad = max(1.0, 1e-6 * max(x1 - x0, y1 - y0))  # the edge's buildings lie inside the extent
    city = CityModel(
        extent=(x0 - pad, y0 - pad, x1 + pad, y1 + pad),
        resolution=0.0,
        terrain=None,
        buildings=buildings,
        painter=None,
        surfaces=surfaces,
    )
    return write_city_tileset(city, out_dir, options, progress or (lambda msg: None))


__all__ = [
    "BUILDING_COLUMNS",
    "LOD2_COLUMNS",
    "TILESET_B3DM_JSON",
    "TILESET_JSON",
    "USES",
    "CityModel",
    "KeptContent",
    "TilesetOptions",
    "TilesetReport",
    "load_city",
    "write_buildings_tileset",
    "write_city_tileset",
    "write_tileset_from_build",
]
