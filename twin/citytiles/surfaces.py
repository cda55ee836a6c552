"""Meshes of buildings from their real (LoD2) surfaces: triangles joined into faces, walls with whole
bays and storeys cut at atlas bands, roofs textured along their eaves; all buildings at once."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from twin.city.buildings import SURFACE_KINDS
from twin.citytiles.meshes import Mesh, append_mesh, storeys
from twin.citytiles.textures import (
    ATLAS_BAYS,
    BAND_STOREYS,
    BAY_M,
    STOREY_M,
    FacadeAtlas,
    RoofAtlas,
)
from twin.errors import DataError

WELD_M = 1e-3  # surface vertices closer than this are one vertex when faces are found
FACE_ANGLE_DEG = 10.0  # neighbouring triangles bent less than this belong to one face
FLAT_ROOF_DEG = 5.0  # roof faces flatter than this are textured along their long side


def concat(*meshes: Mesh) -> Mesh:
    """The meshes as one (features kept when all have them)."""
    out = meshes[0]
    for m in meshes[1:]:
        out = append_mesh(out, m)
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
