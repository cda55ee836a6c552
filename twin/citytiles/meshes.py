"""Textured triangle meshes of the city for its tileset: terrain grids, extruded buildings and
buildings from their real (LoD2) surfaces.

All geometry is built with array operations over every ring edge, roof triangle and surface triangle at
once (shapely's vectorised functions for rings, constrained Delaunay roofs and oriented envelopes; scipy's
connected components for the faces of real surfaces), never one building at a time. Coordinates stay in
EPSG:25832 with DHHN2016 heights (float64) until the writer moves them into a tile's local frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import rasterio
import shapely

from twin.city.buildings import SURFACE_KINDS
from twin.citytiles.textures import (
    ATLAS_BAYS,
    BAND_STOREYS,
    BAY_M,
    STOREY_M,
    FacadeAtlas,
    RoofAtlas,
)
from twin.errors import DataError


@dataclass
class Mesh:
    """Triangles in EPSG:25832 x, y and DHHN2016 height, with texture coordinates.

    `feature` is the row of the buildings (or trees) table each vertex belongs to (None for terrain);
    `color` an optional per-vertex colour (trees, which have no texture).
    """

    xyz: np.ndarray  # (N, 3) float64
    tris: np.ndarray  # (M, 3) int64
    uv: np.ndarray  # (N, 2) float64
    feature: np.ndarray | None = None  # (N,) int64
    color: np.ndarray | None = None  # (N, 4) uint8

    @property
    def n_triangles(self) -> int:
        """Number of triangles."""
        return len(self.tris)

    def select(self, keep_vertex: np.ndarray) -> Mesh:
        """The triangles whose three vertices are all kept, with vertices re-numbered."""
        keep_tri = keep_vertex[self.tris].all(axis=1)
        tris = self.tris[keep_tri]
        used = np.zeros(len(self.xyz), dtype=bool)
        used[tris.reshape(-1)] = True
        new_index = np.cumsum(used) - 1
        feature = None if self.feature is None else self.feature[used]
        color = None if self.color is None else self.color[used]
        return Mesh(self.xyz[used], new_index[tris], self.uv[used], feature, color)

    @staticmethod
    def empty(with_feature: bool = True) -> Mesh:
        """A mesh without triangles."""
        return Mesh(
            np.zeros((0, 3)),
            np.zeros((0, 3), dtype=np.int64),
            np.zeros((0, 2)),
            np.zeros(0, dtype=np.int64) if with_feature else None,
        )


class TerrainSampler:
    """Bilinear terrain heights at any x, y from a north-up grid of cell-centre values.

    Cells without data take the value of the nearest cell with data.
    """

    def __init__(self, z: np.ndarray, x0: float, y1: float, cell: float, nodata: float | None):
        z = np.asarray(z, dtype=np.float64)
        bad = ~np.isfinite(z)
        if nodata is not None:
            bad |= z == nodata
        if bad.all():
            raise DataError("terrain.tif holds no valid heights")
        if bad.any():
            from scipy.ndimage import distance_transform_edt

            _, (ri, ci) = distance_transform_edt(bad, return_distances=True, return_indices=True)
            z = z[ri, ci]
        self.z, self.x0, self.y1, self.cell = z, float(x0), float(y1), float(cell)

    @classmethod
    def from_geotiff(cls, path: object) -> TerrainSampler:
        """Read a north-up, single-band terrain GeoTIFF."""
        try:
            with rasterio.open(path) as src:
                t = src.transform
                if t.b != 0 or t.d != 0 or t.e >= 0 or abs(t.a + t.e) > 1e-9 * abs(t.a):
                    raise DataError(f"{path}: terrain grid must be north-up with square cells")
                return cls(src.read(1), t.c, t.f, t.a, src.nodata)
        except rasterio.errors.RasterioIOError as exc:
            raise DataError(f"{path}: cannot read terrain: {exc}") from None

    def __call__(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Heights at x, y: bilinear between cell centres, linear over the outer half cells."""
        rows, cols = self.z.shape
        fc = np.clip((np.asarray(x) - self.x0) / self.cell - 0.5, -0.5, cols - 0.5)
        fr = np.clip((self.y1 - np.asarray(y)) / self.cell - 0.5, -0.5, rows - 0.5)
        c0 = np.clip(np.floor(fc).astype(np.int64), 0, max(cols - 2, 0))
        r0 = np.clip(np.floor(fr).astype(np.int64), 0, max(rows - 2, 0))
        c1, r1 = np.minimum(c0 + 1, cols - 1), np.minimum(r0 + 1, rows - 1)
        wc = np.where(c1 > c0, fc - c0, 0.0)
        wr = np.where(r1 > r0, fr - r0, 0.0)
        z = self.z
        top = z[r0, c0] * (1 - wc) + z[r0, c1] * wc
        bottom = z[r1, c0] * (1 - wc) + z[r1, c1] * wc
        return top * (1 - wr) + bottom * wr


def lattice(lo: float, hi: float, n: int, clip_lo: float, clip_hi: float) -> np.ndarray:
    """n + 1 evenly spaced values over [lo, hi], cut to [clip_lo, clip_hi] with the clip ends added.

    Neighbouring tiles of one level share their boundary values exactly (numpy's linspace ends on `hi`).
    """
    full = np.linspace(lo, hi, n + 1)
    eps = 1e-6 * (hi - lo)
    inner = full[(full > clip_lo + eps) & (full < clip_hi - eps)]
    return np.concatenate([[clip_lo], inner, [clip_hi]])


def terrain_mesh(
    sampler: TerrainSampler,
    tile: tuple[float, float, float, float],
    clip: tuple[float, float, float, float],
    n: int,
    skirt_m: float = 0.0,
) -> Mesh:
    """Regular grid of n x n cells over the square `tile`, cut to `clip`, heights from `sampler`.

    Texture coordinates span the whole tile (u east, v south), so the ground image of a tile and the
    mosaic of its children line up. `skirt_m` > 0 hangs a vertical skirt of that depth around the
    edges, hiding cracks where the neighbour is drawn at another level of detail.
    """
    x0, y0, x1, y1 = tile
    xs = lattice(x0, x1, n, clip[0], clip[2])
    ys = lattice(y0, y1, n, clip[1], clip[3])
    X, Y = np.meshgrid(xs, ys)  # rows run south to north
    Z = sampler(X, Y)
    nx, ny = len(xs), len(ys)
    xyz = np.column_stack([X.ravel(), Y.ravel(), Z.ravel()])
    uv = np.column_stack([(X.ravel() - x0) / (x1 - x0), (y1 - Y.ravel()) / (y1 - y0)])
    i, j = np.meshgrid(np.arange(ny - 1), np.arange(nx - 1), indexing="ij")
    sw = (i * nx + j).ravel()
    se, nw = sw + 1, sw + nx
    ne = nw + 1
    tris = np.concatenate([np.column_stack([sw, se, ne]), np.column_stack([sw, ne, nw])])
    mesh = Mesh(xyz, tris, uv)
    if skirt_m > 0:
        grid = np.arange(nx * ny).reshape(ny, nx)
        ring = np.concatenate(  # counter-clockwise from above: outside is on the right
            [grid[0, :-1], grid[:-1, -1], grid[-1, :0:-1], grid[:0:-1, 0], grid[:1, 0]]
        )
        mesh = _append(mesh, _skirt(mesh, ring, skirt_m))
    return mesh


def _skirt(mesh: Mesh, ring: np.ndarray, depth: float) -> Mesh:
    a, b = ring[:-1], ring[1:]
    top_a, top_b = mesh.xyz[a], mesh.xyz[b]
    low_a, low_b = top_a - [0, 0, depth], top_b - [0, 0, depth]
    xyz = np.stack([low_a, low_b, top_b, top_a], axis=1).reshape(-1, 3)
    uv = np.stack([mesh.uv[a], mesh.uv[b], mesh.uv[b], mesh.uv[a]], axis=1).reshape(-1, 2)
    base = np.arange(len(a)) * 4
    tris = np.concatenate(
        [np.column_stack([base, base + 1, base + 2]), np.column_stack([base, base + 2, base + 3])]
    )
    return Mesh(xyz, tris, uv)


def _append(m1: Mesh, m2: Mesh) -> Mesh:
    feature = color = None
    if m1.feature is not None and m2.feature is not None:
        feature = np.concatenate([m1.feature, m2.feature])
    if m1.color is not None and m2.color is not None:
        color = np.concatenate([m1.color, m2.color])
    return Mesh(
        np.concatenate([m1.xyz, m2.xyz]),
        np.concatenate([m1.tris, m2.tris + len(m1.xyz)]),
        np.concatenate([m1.uv, m2.uv]),
        feature,
        color,
    )


def footprint_polygons(
    geoms: np.ndarray, simplify_m: float = 0.0, min_area_m2: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Single polygons of the footprints (multi-polygons split), oriented counter-clockwise with
    clockwise holes, optionally simplified; returns (polygons, index of the footprint each came from)."""
    geoms = np.asarray(geoms, dtype=object)
    if simplify_m > 0:
        geoms = shapely.simplify(geoms, simplify_m, preserve_topology=True)
    parts, owner = shapely.get_parts(geoms, return_index=True)
    poly = shapely.get_type_id(parts) == 3
    parts, owner = parts[poly], owner[poly]
    keep = shapely.area(parts) >= min_area_m2
    parts, owner = parts[keep], owner[keep]
    return shapely.orient_polygons(parts, exterior_cw=False), owner


def storeys(height: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whole storeys of each building (at least one) and the storey height that fits them exactly."""
    n = np.maximum(1, np.round(np.asarray(height) / STOREY_M)).astype(np.int64)
    return n, np.asarray(height) / n


def wall_mesh(
    polys: np.ndarray,
    owner: np.ndarray,
    height: np.ndarray,
    base: np.ndarray,
    use_idx: np.ndarray,
    bay_offset: np.ndarray,
    atlas: FacadeAtlas,
) -> Mesh:
    """Vertical walls of every ring edge, textured with whole bays across and whole storeys up.

    Each wall is split at atlas-band height: the first piece shows the ground floor and up to three
    upper storeys, further pieces repeat upper storeys. Feature = owner building row.
    """
    if len(polys) == 0:
        return Mesh.empty()
    rings, ring_poly = shapely.get_rings(polys, return_index=True)
    pts, ring_of = shapely.get_coordinates(rings, return_index=True)
    same = ring_of[:-1] == ring_of[1:]
    a, b = pts[:-1][same], pts[1:][same]
    bld = owner[ring_poly[ring_of[:-1][same]]]
    length = np.hypot(*(b - a).T)
    ok = length > 0.01
    a, b, bld, length = a[ok], b[ok], bld[ok], length[ok]
    n_st, st_h = storeys(height[bld])
    n_seg = 1 + np.maximum(0, -(-(n_st - BAND_STOREYS) // (BAND_STOREYS - 1)))
    edge = np.repeat(np.arange(len(a)), n_seg)
    first = np.repeat(np.cumsum(n_seg) - n_seg, n_seg)
    seg = np.arange(len(edge)) - first
    n_st, st_h, bld_e = n_st[edge], st_h[edge], bld[edge]
    lo = np.where(seg == 0, 0, BAND_STOREYS + (BAND_STOREYS - 1) * (seg - 1))
    hi = np.minimum(n_st, np.where(seg == 0, BAND_STOREYS, lo + BAND_STOREYS - 1))
    pos_lo = np.where(seg == 0, 0, 1)
    pos_hi = pos_lo + (hi - lo)
    z_lo = base[bld_e] + lo * st_h
    z_hi = base[bld_e] + hi * st_h
    bays = np.maximum(1, np.round(length / BAY_M))[edge]
    u0 = bay_offset[bld_e] / ATLAS_BAYS
    u1 = u0 + bays / ATLAS_BAYS
    use = use_idx[bld_e]
    v_lo, v_hi = atlas.v_of(use, pos_lo), atlas.v_of(use, pos_hi)
    ae, be = a[edge], b[edge]
    xyz = np.stack(
        [
            np.column_stack([ae, z_lo]),
            np.column_stack([be, z_lo]),
            np.column_stack([be, z_hi]),
            np.column_stack([ae, z_hi]),
        ],
        axis=1,
    ).reshape(-1, 3)
    uv = np.stack(
        [
            np.column_stack([u0, v_lo]),
            np.column_stack([u1, v_lo]),
            np.column_stack([u1, v_hi]),
            np.column_stack([u0, v_hi]),
        ],
        axis=1,
    ).reshape(-1, 2)
    q = np.arange(len(edge)) * 4
    tris = np.concatenate([np.column_stack([q, q + 1, q + 2]), np.column_stack([q, q + 2, q + 3])])
    return Mesh(xyz, tris, uv, np.repeat(bld_e, 4))


def roof_mesh(
    polys: np.ndarray,
    owner: np.ndarray,
    height: np.ndarray,
    base: np.ndarray,
    use_idx: np.ndarray,
    atlas: RoofAtlas,
) -> Mesh:
    """Flat roofs: constrained Delaunay triangles of each footprint (holes kept), facing up.

    The roof texture is stretched over the footprint's oriented envelope, its s axis along the long side.
    """
    if len(polys) == 0:
        return Mesh.empty()
    tri_sets = shapely.constrained_delaunay_triangles(polys)
    tri_geoms, tri_poly = shapely.get_parts(tri_sets, return_index=True)
    if len(tri_geoms) == 0:
        return Mesh.empty()
    c = shapely.get_coordinates(tri_geoms).reshape(-1, 4, 2)[:, :3]
    cross = (c[:, 1, 0] - c[:, 0, 0]) * (c[:, 2, 1] - c[:, 0, 1]) - (c[:, 1, 1] - c[:, 0, 1]) * (
        c[:, 2, 0] - c[:, 0, 0]
    )
    flip = cross < 0
    c[flip] = c[flip][:, ::-1]
    c = c[np.abs(cross) > 1e-9]
    tri_poly = tri_poly[np.abs(cross) > 1e-9]
    origin, s_axis, t_axis = _envelope_axes(polys)
    bld = owner[tri_poly]
    xy = c.reshape(-1, 2)
    vp = np.repeat(tri_poly, 3)
    rel = xy - origin[vp]
    s = np.clip(np.einsum("ij,ij->i", rel, s_axis[vp]), 0, 1)
    t = np.clip(np.einsum("ij,ij->i", rel, t_axis[vp]), 0, 1)
    vb = np.repeat(bld, 3)
    z = base[vb] + height[vb]
    xyz = np.column_stack([xy, z])
    uv = atlas.uv_of(use_idx[vb], s, t)
    tris = np.arange(len(xyz)).reshape(-1, 3)
    return Mesh(xyz, tris, uv, vb)


def _envelope_axes(polys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corner and scaled axes of each polygon's minimum rotated rectangle (s along the long side),
    such that (p - corner) . axis runs from 0 to 1 across the rectangle."""
    env = shapely.oriented_envelope(polys)
    is_poly = shapely.get_type_id(env) == 3
    if not is_poly.all():  # degenerate footprints: fall back to the bounding box
        bx = shapely.bounds(polys[~is_poly])
        env[~is_poly] = shapely.box(bx[:, 0], bx[:, 1], bx[:, 2] + 0.01, bx[:, 3] + 0.01)
    ring = shapely.get_coordinates(shapely.get_exterior_ring(env), return_index=True)
    coords, idx = ring
    start = np.searchsorted(idx, np.arange(len(polys)))
    p0, p1, p3 = coords[start], coords[start + 1], coords[start + 3]
    e1, e2 = p1 - p0, p3 - p0
    l1, l2 = np.hypot(*e1.T), np.hypot(*e2.T)
    swap = l1 < l2
    s_vec = np.where(swap[:, None], e2, e1)
    t_vec = np.where(swap[:, None], e1, e2)
    ls = np.maximum(np.where(swap, l2, l1), 1e-6)
    lt = np.maximum(np.where(swap, l1, l2), 1e-6)
    return p0, s_vec / (ls * ls)[:, None], t_vec / (lt * lt)[:, None]


def triangles_per_building(mesh: Mesh, n_buildings: int) -> np.ndarray:
    """Number of triangles of each building row in a building mesh."""
    if mesh.feature is None or mesh.n_triangles == 0:
        return np.zeros(n_buildings, dtype=np.int64)
    return np.bincount(mesh.feature[mesh.tris[:, 0]], minlength=n_buildings)


def vertex_normals(positions: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (unit length; straight up where a vertex has no area)."""
    p = np.asarray(positions, dtype=np.float64)
    face = np.cross(p[tris[:, 1]] - p[tris[:, 0]], p[tris[:, 2]] - p[tris[:, 0]])
    n = np.zeros_like(p)
    for k in range(3):  # three scatter-adds, one per triangle corner
        for axis in range(3):
            n[:, axis] += np.bincount(tris[:, k], weights=face[:, axis], minlength=len(p))
    length = np.linalg.norm(n, axis=1)
    bad = length < 1e-12
    n[bad] = [0.0, 0.0, 1.0]
    length[bad] = 1.0
    return n / length[:, None]


# --- real (LoD2) building surfaces ----------------------------------------------------------------

WELD_M = 1e-3  # surface vertices closer than this are one vertex when faces are found
FACE_ANGLE_DEG = 10.0  # neighbouring triangles bent less than this belong to one face
FLAT_ROOF_DEG = 5.0  # roof faces flatter than this are textured along their long side


def concat(*meshes: Mesh) -> Mesh:
    """The meshes as one (features kept when all have them)."""
    out = meshes[0]
    for m in meshes[1:]:
        out = _append(out, m)
    return out


@dataclass
class ByFeature:
    """A mesh with triangles and vertices sorted by feature row (building or tree), to take the
    triangles of a few features fast."""

    mesh: Mesh
    tri_start: np.ndarray  # (n_features + 1,) first triangle of each row
    vert_start: np.ndarray  # (n_features + 1,) first vertex of each row

    @classmethod
    def of(cls, mesh: Mesh, n_features: int) -> ByFeature:
        """Sort a mesh whose vertices each belong to one feature (every triangle to one)."""
        order = np.argsort(mesh.feature, kind="stable")
        new_index = np.empty(len(order), dtype=np.int64)
        new_index[order] = np.arange(len(order))
        tris = new_index[mesh.tris]
        feature = mesh.feature[order]
        tris = tris[np.argsort(feature[tris[:, 0]], kind="stable")]
        color = None if mesh.color is None else mesh.color[order]
        m = Mesh(mesh.xyz[order], tris, mesh.uv[order], feature, color)
        tri_start = np.searchsorted(feature[tris[:, 0]], np.arange(n_features + 1))
        vert_start = np.searchsorted(feature, np.arange(n_features + 1))
        return cls(m, tri_start, vert_start)

    def triangles(self) -> np.ndarray:
        """Triangles of each row."""
        return np.diff(self.tri_start)

    def take(self, rows: np.ndarray) -> Mesh:
        """The triangles of the given rows, vertices re-numbered."""
        rows = np.asarray(rows, dtype=np.int64)
        tri = _ranges(self.tri_start[rows], self.tri_start[rows + 1])
        vert = _ranges(self.vert_start[rows], self.vert_start[rows + 1])
        if len(tri) == 0:
            return Mesh.empty()
        nv = self.vert_start[rows + 1] - self.vert_start[rows]
        shift = np.cumsum(nv) - nv - self.vert_start[rows]  # old index + shift = new index
        nt = self.tri_start[rows + 1] - self.tri_start[rows]
        m = self.mesh
        tris = m.tris[tri] + np.repeat(shift, nt)[:, None]
        color = None if m.color is None else m.color[vert]
        return Mesh(m.xyz[vert], tris, m.uv[vert], m.feature[vert], color)


def _ranges(start: np.ndarray, stop: np.ndarray) -> np.ndarray:
    """Concatenated aranges [start_i, stop_i)."""
    n = stop - start
    first = np.cumsum(n) - n
    return np.repeat(start - first, n) + np.arange(int(n.sum()))


def check_surfaces(surfaces: dict[str, np.ndarray], n_buildings: int, what: str) -> None:
    """Raise a DataError naming the first bad entry of a surfaces product (see twin.city.buildings)."""
    xyz, tris, bld, kind = (surfaces[k] for k in ("xyz", "tris", "building", "kind"))
    if not (len(tris) == len(bld) == len(kind)):
        raise DataError(f"{what}: tris, building and kind must have one entry per triangle")
    bad = np.flatnonzero((tris < 0).any(axis=1) | (tris >= len(xyz)).any(axis=1))
    if len(bad):
        raise DataError(f"{what}: triangle {bad[0]} names a vertex outside xyz ({len(xyz)})")
    bad = np.flatnonzero((bld < 0) | (bld >= n_buildings))
    if len(bad):
        raise DataError(
            f"{what}: triangle {bad[0]} names building row {bld[bad[0]]}; expected a row of the "
            f"buildings table (0..{n_buildings - 1})"
        )
    bad = np.flatnonzero(kind > max(SURFACE_KINDS.values()))
    if len(bad):
        raise DataError(
            f"{what}: triangle {bad[0]} has kind {kind[bad[0]]}; expected one of {SURFACE_KINDS}"
        )
    if not np.isfinite(xyz).all():
        raise DataError(f"{what}: xyz holds a coordinate that is not a finite number")


def surface_meshes(
    surfaces: dict[str, np.ndarray],
    n_buildings: int,
    use_idx: np.ndarray,
    bay_offset: np.ndarray,
    facade: FacadeAtlas,
    roof: RoofAtlas,
) -> tuple[ByFeature, ByFeature]:
    """Textured walls and roofs of every building from its real surfaces (ground surfaces dropped).

    Triangles are first joined into faces (neighbours sharing an edge, bent less than
    FACE_ANGLE_DEG): a face is what the texture is laid over. Walls (and `other` surfaces) get whole
    bays across each face along its horizontal direction, and storeys up from the building's lowest
    wall point; the storey height fits a whole number of storeys into the height of the eaves (the
    lowest roof point). Walls taller than an atlas band are cut at band heights, as extruded walls are:
    the first piece shows the ground floor and three upper storeys, further pieces repeat upper
    storeys. Roof faces get the roof atlas cell of the building's use: sloped faces with s along the
    eaves and t from the eaves (0) up to the ridge (0.5, the cell's ridge line), flat faces stretched
    over their extent with s along the long side. Roof triangles facing down are turned over.
    """
    xyz, tris = np.asarray(surfaces["xyz"], float), np.asarray(surfaces["tris"], np.int64)
    bld, kind = np.asarray(surfaces["building"], np.int64), np.asarray(surfaces["kind"])
    wall_sel = (kind == SURFACE_KINDS["wall"]) | (kind == SURFACE_KINDS["other"])
    roof_sel = kind == SURFACE_KINDS["roof"]
    weld = _weld(xyz)
    walls = _wall_faces(xyz, tris[wall_sel], weld, bld[wall_sel], use_idx, bay_offset, facade)
    lowest_roof = np.full(n_buildings, np.inf)
    np.minimum.at(lowest_roof, np.repeat(bld[roof_sel], 3), xyz[tris[roof_sel], 2].reshape(-1))
    roofs = _roof_faces(xyz, tris[roof_sel], weld, bld[roof_sel], use_idx, roof)
    walls = _storeys_up(walls, n_buildings, lowest_roof, facade, use_idx)
    return ByFeature.of(walls, n_buildings), ByFeature.of(roofs, n_buildings)


def _weld(xyz: np.ndarray) -> np.ndarray:
    """Index of each vertex among the distinct positions (rounded to WELD_M)."""
    if len(xyz) == 0:
        return np.zeros(0, dtype=np.int64)
    return unique_rows(np.round(xyz / WELD_M).astype(np.int64))[1]


def unique_rows(a: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For the rows of an integer array: the index of the first of each distinct row (in the rows'
    lexicographic order) and the distinct row each row is. np.unique(axis=0) does the same, but
    sorts the rows as opaque bytes, several times slower than numpy's lexsort on the columns."""
    order = np.lexsort(a.T[::-1])
    s = a[order]
    new = np.ones(len(a), dtype=bool)
    new[1:] = (s[1:] != s[:-1]).any(axis=1)
    inverse = np.empty(len(a), dtype=np.int64)
    inverse[order] = np.cumsum(new) - 1
    return order[new], inverse


def _triangle_frames(
    xyz: np.ndarray, tris: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Corners (T, 3, 3), unit normals (T, 3) and areas (T,) of triangles."""
    c = xyz[tris]
    n = np.cross(c[:, 1] - c[:, 0], c[:, 2] - c[:, 0])
    length = np.linalg.norm(n, axis=1)
    return c, n / np.maximum(length, 1e-300)[:, None], 0.5 * length


def _faces(weld_tris: np.ndarray, bld: np.ndarray, normal: np.ndarray) -> np.ndarray:
    """Face label of each triangle: connected through shared edges of one building whose triangles'
    normals differ by less than FACE_ANGLE_DEG (scipy's connected components)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    t = len(weld_tris)
    if t == 0:
        return np.zeros(0, dtype=np.int64)
    e = np.sort(np.stack([weld_tris, np.roll(weld_tris, -1, axis=1)], axis=2), axis=2)
    e = e.reshape(-1, 2)
    owner = np.repeat(np.arange(t), 3)
    order = np.lexsort((e[:, 1], e[:, 0], bld[owner]))
    e, owner = e[order], owner[order]
    same = (e[1:] == e[:-1]).all(axis=1) & (bld[owner[1:]] == bld[owner[:-1]])
    a, b = owner[:-1][same], owner[1:][same]
    flat = (normal[a] * normal[b]).sum(axis=1) > np.cos(np.radians(FACE_ANGLE_DEG))
    a, b = a[flat], b[flat]
    graph = coo_matrix((np.ones(len(a)), (a, b)), shape=(t, t))
    return connected_components(graph, directed=False)[1].astype(np.int64)


def _group_sum(group: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per-group sums of the columns of values (T, k)."""
    return np.column_stack([np.bincount(group, values[:, k], n) for k in range(values.shape[1])])


def _group_range(group: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-group minimum and maximum of values (T, 3) over the corners of each group's triangles."""
    g = np.repeat(group, values.shape[1])
    lo, hi = np.full(n, np.inf), np.full(n, -np.inf)
    np.minimum.at(lo, g, values.reshape(-1))
    np.maximum.at(hi, g, values.reshape(-1))
    return lo, hi


def _horizontal(v: np.ndarray) -> np.ndarray:
    """Unit horizontal part of vectors (T, 3) as (T, 2); east where there is none."""
    h = v[:, :2].copy()
    length = np.hypot(h[:, 0], h[:, 1])
    none = length < 1e-6
    h[none] = [1.0, 0.0]
    length[none] = 1.0
    return h / length[:, None]


@dataclass
class _Walls:
    """Wall triangles: corners (T, 3, 3), texture u at each corner (T, 3), face and building (T,)."""

    corners: np.ndarray
    u: np.ndarray
    face: np.ndarray
    bld: np.ndarray


def _wall_faces(
    xyz: np.ndarray,
    tris: np.ndarray,
    weld: np.ndarray,
    bld: np.ndarray,
    use_idx: np.ndarray,
    bay_offset: np.ndarray,
    facade: FacadeAtlas,
) -> _Walls:
    """Wall triangles with u in whole bays across each face (v follows in _storeys_up)."""
    c, n, area = _triangle_frames(xyz, tris)
    ok = area > 1e-6
    c, n, area, bld, wt = c[ok], n[ok], area[ok], bld[ok], weld[tris[ok]]
    face = _faces(wt, bld, n)
    nf = int(face.max()) + 1 if len(face) else 0
    along = _horizontal(_group_sum(face, n * area[:, None], nf))  # the face's outward direction
    along = np.column_stack([-along[:, 1], along[:, 0]])  # a quarter turn left: rightwards from out
    s = np.einsum("tij,tj->ti", c[:, :, :2], along[face])
    lo, hi = _group_range(face, s, nf)
    width = np.maximum(hi - lo, 1e-6)
    bays = np.maximum(1.0, np.round(width / BAY_M))
    fb = np.zeros(nf, dtype=np.int64)
    fb[face] = bld
    u0 = bay_offset[fb] / ATLAS_BAYS
    u = u0[face, None] + (s - lo[face, None]) / width[face, None] * (bays[face, None] / ATLAS_BAYS)
    return _Walls(c, u, face, bld)


def _storeys_up(
    walls: _Walls,
    n_buildings: int,
    lowest_roof: np.ndarray,
    facade: FacadeAtlas,
    use_idx: np.ndarray,
) -> Mesh:
    """Cut walls at atlas-band heights and give them v by storeys (see surface_meshes)."""
    if len(walls.bld) == 0:
        return Mesh.empty()
    z = walls.corners[:, :, 2]
    foot = np.full(n_buildings, np.inf)
    top = np.full(n_buildings, -np.inf)
    np.minimum.at(foot, np.repeat(walls.bld, 3), z.reshape(-1))
    np.maximum.at(top, np.repeat(walls.bld, 3), z.reshape(-1))
    with np.errstate(invalid="ignore"):  # buildings without walls: inf - inf, not used
        eaves = np.where(np.isfinite(lowest_roof), lowest_roof, top) - foot
        eaves = np.where(eaves >= 1.0, eaves, np.maximum(top - foot, STOREY_M))
    _, storey_h = storeys(np.where(np.isfinite(eaves), eaves, STOREY_M))
    w = (z - foot[walls.bld, None]) / storey_h[walls.bld, None]  # storeys above the wall's foot
    first = _band(w.min(axis=1) + 1e-6)
    last = np.maximum(_band(w.max(axis=1) - 1e-6), first)
    n_pieces = last - first + 1
    tri = np.repeat(np.arange(len(w)), n_pieces)
    band = np.repeat(first, n_pieces) + _ranges(np.zeros_like(n_pieces), n_pieces)
    lo = np.where(band == 0, -np.inf, BAND_STOREYS + (BAND_STOREYS - 1) * (band - 1.0))
    hi = np.where(band == 0, BAND_STOREYS, lo + BAND_STOREYS - 1)
    # corner attributes that vary linearly over a triangle: x, y, z, u, w
    attrs = np.concatenate([walls.corners, walls.u[..., None], w[..., None]], axis=2)[tri]
    cut = n_pieces[tri] > 1
    pieces, piece_of = attrs[~cut], np.flatnonzero(~cut)
    if cut.any():
        poly, count = clip_band(attrs[cut], lo[cut], hi[cut], axis=4)
        fan, fan_of = fan_triangles(poly, count)
        pieces = np.concatenate([pieces, fan])
        piece_of = np.concatenate([piece_of, np.flatnonzero(cut)[fan_of]])
    face, bld, band = walls.face[tri[piece_of]], walls.bld[tri[piece_of]], band[piece_of]
    lo = np.where(band == 0, 0.0, BAND_STOREYS + (BAND_STOREYS - 1) * (band - 1.0))
    pos = np.clip(pieces[:, :, 4] - lo[:, None] + np.where(band == 0, 0, 1)[:, None], 0,
                  BAND_STOREYS)  # fmt: skip
    v = facade.v_of(np.repeat(use_idx[bld], 3).reshape(-1, 3), pos)
    uv = np.stack([pieces[:, :, 3], v], axis=2)
    return _indexed(pieces[:, :, :3], uv, bld, face * 1024 + band)


def _band(w: np.ndarray) -> np.ndarray:
    """Atlas band piece a height in storeys falls in: 0 below BAND_STOREYS, then every
    BAND_STOREYS - 1 storeys one more."""
    above = 1 + np.floor((w - BAND_STOREYS) / (BAND_STOREYS - 1))
    return np.where(w < BAND_STOREYS, 0, above).astype(np.int64)


def clip_band(
    tris: np.ndarray, lo: np.ndarray, hi: np.ndarray, axis: int
) -> tuple[np.ndarray, np.ndarray]:
    """Convex polygons (P, 5, D) and their corner counts: triangles (P, 3, D) of D linear attributes
    cut to lo <= attribute `axis` <= hi (Sutherland-Hodgman against the two planes).

    Own code: trimesh's slice_faces_plane cuts a whole mesh at one plane and returns no map from new
    triangles to old ones; here every triangle has its own heights and keeps its face and building."""
    count = np.full(len(tris), 3)
    with np.errstate(invalid="ignore"):
        poly, count = _clip_half(tris, count, tris[:, :, axis] - lo[:, None])
        poly, count = _clip_half(poly, count, hi[:, None] - poly[:, :, axis])
    return poly, count


def _clip_half(poly: np.ndarray, count: np.ndarray, f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the part of each convex polygon where the linear function f (given at corners) >= 0."""
    p, m, _ = poly.shape
    i = np.arange(m)
    valid = i[None, :] < count[:, None]
    j = (i[None, :] + 1) % np.maximum(count, 1)[:, None]
    nxt = np.take_along_axis(poly, j[..., None], axis=1)
    f = np.where(valid, f, 0.0)
    fn = np.take_along_axis(f, j, axis=1)
    inside, inside_next = f >= 0, fn >= 0
    cross = valid & (inside != inside_next)
    t = np.where(cross, f / np.where(cross, f - fn, 1.0), 0.0)
    meet = poly + t[..., None] * (nxt - poly)
    out = np.stack([poly, meet], axis=2).reshape(p, 2 * m, -1)
    keep = np.stack([valid & inside, cross], axis=2).reshape(p, 2 * m)
    order = np.argsort(~keep, axis=1, kind="stable")[:, : m + 1]
    return np.take_along_axis(out, order[..., None], axis=1), keep.sum(axis=1)


def fan_triangles(poly: np.ndarray, count: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Triangles (T, 3, D) fanned from the first corner of convex polygons, and the polygon of each;
    slivers without area are left out."""
    m = poly.shape[1]
    parts, owners = [], []
    for k in range(1, m - 1):
        sel = np.flatnonzero(count >= k + 2)
        parts.append(poly[sel][:, [0, k, k + 1]])
        owners.append(sel)
    tri, owner = np.concatenate(parts), np.concatenate(owners)
    xyz = tri[:, :, :3]
    area = np.linalg.norm(np.cross(xyz[:, 1] - xyz[:, 0], xyz[:, 2] - xyz[:, 0]), axis=1)
    keep = area > 1e-8
    return tri[keep], owner[keep]


def _roof_faces(
    xyz: np.ndarray,
    tris: np.ndarray,
    weld: np.ndarray,
    bld: np.ndarray,
    use_idx: np.ndarray,
    roof: RoofAtlas,
) -> Mesh:
    """Roof triangles with roof-atlas coordinates from each face's plane (see surface_meshes)."""
    if len(tris) == 0:
        return Mesh.empty()
    c, n, area = _triangle_frames(xyz, tris)
    down = n[:, 2] < 0
    tris = np.where(down[:, None], tris[:, ::-1], tris)
    c, n, area = _triangle_frames(xyz, tris)
    ok = area > 1e-6
    tris, c, n, area, bld = tris[ok], c[ok], n[ok], area[ok], bld[ok]
    face = _faces(weld[tris], bld, n)
    nf = int(face.max()) + 1
    fn = _group_sum(face, n * area[:, None], nf)
    fn /= np.maximum(np.linalg.norm(fn, axis=1), 1e-300)[:, None]
    flat = fn[:, 2] > np.cos(np.radians(FLAT_ROOF_DEG))
    up = -_horizontal(fn)  # up the slope
    s_dir = np.column_stack([-up[:, 1], up[:, 0]])  # along the eaves
    # flat faces: s along the main axis of their corners (the long side), t across
    xy = c[:, :, :2].reshape(-1, 2)
    g = np.repeat(face, 3)
    cnt = np.bincount(g, minlength=nf).astype(float)
    mean = _group_sum(g, xy, nf) / cnt[:, None]
    d = xy - mean[g]
    cov = _group_sum(g, np.column_stack([d[:, 0] ** 2, d[:, 1] ** 2, d[:, 0] * d[:, 1]]), nf)
    angle = 0.5 * np.arctan2(2 * cov[:, 2], cov[:, 0] - cov[:, 1])
    main = np.column_stack([np.cos(angle), np.sin(angle)])
    s_dir = np.where(flat[:, None], main, s_dir)
    t_dir = np.where(flat[:, None], np.column_stack([-main[:, 1], main[:, 0]]), up)
    s = np.einsum("tij,tj->ti", c[:, :, :2], s_dir[face])
    t = np.einsum("tij,tj->ti", c[:, :, :2], t_dir[face])
    s_lo, s_hi = _group_range(face, s, nf)
    t_lo, t_hi = _group_range(face, t, nf)
    s = (s - s_lo[face, None]) / np.maximum(s_hi - s_lo, 1e-6)[face, None]
    t = (t - t_lo[face, None]) / np.maximum(t_hi - t_lo, 1e-6)[face, None]
    t = np.where(flat[face, None], t, 0.5 * t)  # sloped: eaves to ridge is half the cell
    use = np.repeat(use_idx[bld], 3)
    uv = roof.uv_of(use, np.clip(s, 0, 1).reshape(-1), np.clip(t, 0, 1).reshape(-1))
    return _indexed(c, uv.reshape(-1, 3, 2), bld, face)


def _indexed(corners: np.ndarray, uv: np.ndarray, bld: np.ndarray, part: np.ndarray) -> Mesh:
    """An indexed mesh of triangle corners (T, 3, 3) with uv (T, 3, 2): corners of one `part`
    (a face, or a face's band piece) at the same place (to 0.1 mm) share a vertex."""
    xyz = corners.reshape(-1, 3)
    key = np.column_stack([np.repeat(part, 3), np.round(xyz / 1e-4).astype(np.int64)])
    first, inverse = unique_rows(key)
    return Mesh(
        xyz[first], inverse.reshape(-1, 3), uv.reshape(-1, 2)[first], np.repeat(bld, 3)[first]
    )


# --- trees ----------------------------------------------------------------------------------------

CROWN_SHARE = (0.4, 0.7)  # a crown is as tall as it is wide, within these shares of the height
TRUNK_SIDES = 5
TRUNK_RGB = (104, 82, 62)
CROWN_GREENS = np.array(
    [[70, 112, 50], [56, 96, 46], [94, 126, 58], [64, 106, 72], [102, 120, 54], [50, 84, 42],
     [82, 118, 76], [120, 132, 62]],
    dtype=np.float64,
)  # fmt: skip


def _icosahedron() -> tuple[np.ndarray, np.ndarray]:
    """A unit icosahedron standing on a vertex (top at z = 1, rings of five at z = +-1/sqrt 5 with
    radius 1 at the rings), its 20 triangles facing out."""
    h = 1 / np.sqrt(5)
    k = np.arange(5)
    a1, a2 = np.radians(72.0 * k), np.radians(72.0 * k + 36.0)
    ring_r = 2 * h  # of the unit sphere; scaled to 1 below
    v = np.concatenate(
        [
            [[0.0, 0.0, 1.0]],
            np.column_stack([ring_r * np.cos(a1), ring_r * np.sin(a1), np.full(5, h)]),
            np.column_stack([ring_r * np.cos(a2), ring_r * np.sin(a2), np.full(5, -h)]),
            [[0.0, 0.0, -1.0]],
        ]
    )
    r1, r2, n = 1 + k, 6 + k, (k + 1) % 5
    f = np.concatenate(
        [
            np.column_stack([np.zeros(5, int), r1, 1 + n]),
            np.column_stack([r1, r2, 1 + n]),
            np.column_stack([1 + n, r2, 6 + n]),
            np.column_stack([np.full(5, 11), 6 + n, r2]),
        ]
    )
    c = v[f]
    outward = (np.cross(c[:, 1] - c[:, 0], c[:, 2] - c[:, 0]) * c.mean(axis=1)).sum(axis=1) > 0
    f = np.where(outward[:, None], f, f[:, ::-1])
    v[:, :2] /= ring_r
    return v, f


def tree_colours(species: np.ndarray, ids: np.ndarray, seed: int = 0) -> np.ndarray:
    """(N, 4) uint8 crown colours: a green by species (hashed), a few per cent lighter or darker
    per tree."""
    from twin.citytiles.textures import building_hashes

    pick = building_hashes(np.asarray(species, dtype=object).astype(str), seed)
    shade = building_hashes(np.asarray(ids, dtype=object).astype(str), seed + 1)
    f = 0.9 + 0.2 * (shade % np.uint64(1000)).astype(np.float64) / 1000.0
    rgb = CROWN_GREENS[(pick % np.uint64(len(CROWN_GREENS))).astype(np.int64)] * f[:, None]
    out = np.full((len(rgb), 4), 255, dtype=np.uint8)
    out[:, :3] = np.clip(rgb, 0, 255).astype(np.uint8)
    return out


def tree_mesh(
    x: np.ndarray,
    y: np.ndarray,
    base: np.ndarray,
    height: np.ndarray,
    crown_diameter: np.ndarray,
    crown_rgba: np.ndarray,
) -> Mesh:
    """Low-poly trees: a crown (an icosahedron, 20 triangles, as wide as the crown diameter, its top
    at base + height, as tall as it is wide within CROWN_SHARE of the height: narrow tall trees get
    columnar crowns, not lollipops) on a five-sided trunk (10 triangles, from 0.3 m below the ground
    to the crown's middle). Feature = tree row; colours: the crown's given, the trunk brown."""
    n = len(x)
    if n == 0:
        return Mesh.empty()
    unit, faces = _icosahedron()
    radius = np.asarray(crown_diameter, float) / 2
    h = np.asarray(height, float)
    crown_h = np.clip(2 * radius, CROWN_SHARE[0] * h, CROWN_SHARE[1] * h)
    mid = np.asarray(base, float) + h - crown_h / 2
    cx, cy = np.asarray(x, float), np.asarray(y, float)
    crown = np.stack(
        [
            cx[:, None] + radius[:, None] * unit[None, :, 0],
            cy[:, None] + radius[:, None] * unit[None, :, 1],
            mid[:, None] + (crown_h / 2)[:, None] * unit[None, :, 2],
        ],
        axis=2,
    )  # (n, 12, 3)
    a = np.radians(360.0 / TRUNK_SIDES * np.arange(TRUNK_SIDES))
    tr = np.clip(0.06 * radius * 2, 0.1, 0.5)
    ring_x = cx[:, None] + tr[:, None] * np.cos(a)[None]
    ring_y = cy[:, None] + tr[:, None] * np.sin(a)[None]
    z0 = np.repeat((np.asarray(base, float) - 0.3)[:, None], TRUNK_SIDES, axis=1)
    z1 = np.repeat(mid[:, None], TRUNK_SIDES, axis=1)
    trunk = np.concatenate(
        [np.stack([ring_x, ring_y, z0], axis=2), np.stack([ring_x, ring_y, z1], axis=2)], axis=1
    )  # (n, 10, 3): bottom ring, top ring
    k = np.arange(TRUNK_SIDES)
    nk = (k + 1) % TRUNK_SIDES
    trunk_faces = np.concatenate(
        [np.column_stack([k, nk, TRUNK_SIDES + nk]), np.column_stack([k, TRUNK_SIDES + nk,
                                                                      TRUNK_SIDES + k])]
    )  # fmt: skip
    per = len(unit) + 2 * TRUNK_SIDES
    xyz = np.concatenate([crown, trunk], axis=1).reshape(-1, 3)
    local = np.concatenate([faces, trunk_faces + len(unit)])
    tris = (np.arange(n)[:, None, None] * per + local[None]).reshape(-1, 3)
    colour = np.empty((n, per, 4), dtype=np.uint8)
    colour[:, : len(unit)] = np.asarray(crown_rgba, dtype=np.uint8)[:, None]
    colour[:, len(unit) :] = (*TRUNK_RGB, 255)
    feature = np.repeat(np.arange(n), per)
    return Mesh(xyz, tris, np.zeros((len(xyz), 2)), feature, colour.reshape(-1, 4))
