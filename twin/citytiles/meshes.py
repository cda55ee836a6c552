"""Textured triangle meshes of the city for its tileset: terrain grids and extruded buildings (the
meshes of real LoD2 surfaces are in `surfaces.py`, the trees' in `tree_meshes.py`).

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
        mesh = append_mesh(mesh, _skirt(mesh, ring, skirt_m))
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


def append_mesh(m1: Mesh, m2: Mesh) -> Mesh:
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
