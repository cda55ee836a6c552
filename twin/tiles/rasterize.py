"""Digital surface models from any tileset the reader reads: highest and lowest surface, surface
count and top feature id per cell of a north-up grid.

Level of detail: tiles are refined while their geometric error exceeds `max_error` (default: the
cell size), i.e. a tile is used once what it leaves out is no larger than a cell (ADD children are
drawn with their parents, REPLACE children instead of them; `select_by_region` does the walk).
Tiles are read one at a time and drawn by one thread beside the reading one, so memory holds the
rasters and the geometry of at most three contents.

Sampling rule (the numba kernel `raster_triangles` and its NumPy reference `raster_triangles_numpy`):
a triangle covers the cells whose centres lie inside it in plan (a centre on an edge belongs to one
of the two triangles sharing it, as in GPU fill rules), at the height interpolated barycentrically
there; each cell keeps the max, the min, the count and the feature id of the max. A triangle that
covers no cell centre (smaller or narrower than a cell) is not lost: it counts once, at its
centroid, in the cell holding the centroid. Steep triangles (normal within acos(MIN_UP), about 3
degrees, of horizontal: walls, terrain skirts) are left out: they are not surfaces seen from above,
and their top edges belong to roofs or terrain that are sampled. Where tiles meet along a line of
cell centres, their border vertices lie a float32 rounding apart and a centre can fall in the crack
between them: a cell no triangle holds takes the triangles passing within NEAR_M of its centre.
Points (pnts, glTF POINTS) count in the cell holding them.

Heights are DHHN2016 normal heights: the tileset's ellipsoidal heights less twin.geo's quasigeoid
height (through `twin.geo.ecef_to_utm` on the pack CRS), as every height of the twin.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache, partial
from pathlib import Path
from typing import Any

import numpy as np
from numba import njit

from twin.errors import DataError
from twin.geo import CRS_GEOGRAPHIC, CRS_PLANAR, GEOID_HEIGHT_M, ecef_to_utm, ecef_to_wgs84
from twin.progress import Progress, as_progress
from twin.tiles.tileset import Tile, Tileset, open_tileset
from twin.tiles.traverse import select_by_region

NODATA = -9999.0  # height rasters' nodata: cells no surface covers
MIN_UP = 0.05  # |normal_z| below which a triangle counts as a wall (steeper than 87 degrees)
NEAR_M = 1e-3  # a centre this close to a triangle fills a crack no triangle holds it in
MAX_CELLS = 100_000_000  # 32 bytes a cell while drawing (3.2 GB); beyond, a smaller grid is asked


# ---------------------------------------------------------------- the grid
@dataclass(frozen=True)
class Grid:
    """A north-up grid: west and north edges, cell size, columns and rows, CRS."""

    west: float
    north: float
    resolution: float
    width: int
    height: int
    crs: str = CRS_PLANAR

    @property
    def extent(self) -> tuple[float, float, float, float]:
        """(west, south, east, north) of the grid's cells."""
        r = self.resolution
        return (self.west, self.north - self.height * r, self.west + self.width * r, self.north)

    @property
    def transform(self):
        """The rasterio Affine of the grid."""
        from rasterio.transform import from_origin

        return from_origin(self.west, self.north, self.resolution, self.resolution)

    @classmethod
    def over(cls, extent: Sequence[float], resolution: float, crs: str = CRS_PLANAR) -> Grid:
        """The grid of `resolution` cells from the extent's west and north edges, covering it."""
        res = _check_resolution(resolution)
        w, s, e, n = (float(v) for v in extent)
        if not all(math.isfinite(v) for v in (w, s, e, n)) or not (e > w and n > s):
            raise DataError(f"extent must be W S E N with E > W and N > S, got {list(extent)}")
        cols = max(1, math.ceil((e - w) / res - 1e-9))
        rows = max(1, math.ceil((n - s) / res - 1e-9))
        if cols * rows > MAX_CELLS:
            raise DataError(
                f"{cols} x {rows} cells of {res:g} m over the extent are more than {MAX_CELLS:,}; "
                "choose a coarser --resolution or a smaller --extent"
            )
        return cls(w, n, res, cols, rows, crs)


def _check_resolution(resolution: float) -> float:
    try:
        res = float(resolution)
    except (TypeError, ValueError):
        res = float("nan")
    if not (math.isfinite(res) and res > 0):
        raise DataError(f"resolution must be a positive number of metres, got {resolution!r}")
    return res


# ---------------------------------------------------------------- coordinates
@cache
def _transformer(src: str, dst: str):
    from pyproj import Transformer

    try:
        return Transformer.from_crs(src, dst, always_xy=True)
    except Exception as exc:  # pyproj's CRSError and friends
        raise DataError(f"{dst!r} is not a coordinate reference system: {exc}") from exc


def ecef_to_grid_crs(xyz: np.ndarray, crs: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ECEF points (n, 3) to x, y in `crs` and DHHN2016 normal heights (m)."""
    from twin.tiles.bounds import geo_call

    X, Y, Z = xyz[:, 0], xyz[:, 1], xyz[:, 2]
    if crs == CRS_PLANAR:
        return geo_call(ecef_to_utm, X, Y, Z)
    lon, lat, h = geo_call(ecef_to_wgs84, X, Y, Z)
    x, y = _transformer(CRS_GEOGRAPHIC, crs).transform(lon, lat)
    return np.asarray(x), np.asarray(y), h - GEOID_HEIGHT_M


FIT_MIN_VERTICES = 4096  # a content this large is mapped through a fitted cubic (below)
FIT_TOLERANCE_M = 1e-3  # the fit is checked against pyproj; beyond this pyproj maps all
FIT_REACH = 1.01  # points this far out of the fitted box (in half-widths) are still mapped by it


def _basis(enu: np.ndarray, mid: np.ndarray, half: np.ndarray) -> np.ndarray:
    """Polynomial terms in the scaled local coordinates: total degree <= 3 in east and north, with
    the height (nearly linear: up to u * (e, n) and u^2)."""
    e, n, u = ((enu - mid) / half).T
    one = np.ones_like(e)
    return np.stack([one, e, n, u, e * e, e * n, n * n, e * u, n * u, u * u,
                     e * e * e, e * e * n, e * n * n, n * n * n], axis=1)  # fmt: skip


@dataclass(frozen=True)
class CubicMap:
    """`ecef_to_grid_crs` over one box as a cubic in an east-north-up frame: exact through pyproj
    at a 5 x 5 x 3 lattice over the box, checked against pyproj elsewhere in it. Map projections
    are smooth: over the 12 km of the Krefeld extent the fit is good to a tenth of a millimetre.

    pyproj takes ~0.5 us a vertex twice (ECEF -> lon/lat/h -> x/y) and ~0.15 ms a call, more than
    the reader and the kernel together; the cubic takes a few hundredths of that. A rasterize
    fits one over the selected tiles' boxes, so most contents need no pyproj call at all."""

    origin: np.ndarray  # ECEF point of the frame
    rot: np.ndarray  # ECEF -> east, north, up (rows)
    mid: np.ndarray  # box centre in the frame
    half: np.ndarray  # box half sizes in the frame (>= 1 m)
    coef: np.ndarray  # (14, 3) terms -> x, y, height

    @classmethod
    def fit(cls, box: np.ndarray, crs: str, check: np.ndarray | None = None) -> CubicMap | None:
        """The cubic over the frame box of the ECEF points `box`, checked at the ECEF points
        `check` (default: 64 random points in the box); None where off there by over
        FIT_TOLERANCE_M (too large a box for a cubic)."""
        origin = box[len(box) // 2].astype(np.float64)
        # a frame near east-north-up (geocentric latitude: any orthonormal frame with the box's
        # axes near level serves the fit, and this one needs no pyproj call)
        lam, phi = math.atan2(origin[1], origin[0]), math.atan2(origin[2], math.hypot(*origin[:2]))
        sl, cl, sp, cp = math.sin(lam), math.cos(lam), math.sin(phi), math.cos(phi)
        rot = np.array([[-sl, cl, 0.0], [-sp * cl, -sp * sl, cp], [cp * cl, cp * sl, sp]])
        enu = (box - origin) @ rot.T
        lo, hi = enu.min(axis=0), enu.max(axis=0)
        mid, half = (lo + hi) / 2.0, np.maximum((hi - lo) / 2.0, 1.0)
        axes = [np.linspace(-1.0, 1.0, k) for k in (5, 5, 3)]
        lattice = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3) * half + mid
        if check is None:
            rng = np.random.default_rng(len(box))
            check = (rng.uniform(-1.0, 1.0, (64, 3)) * half + mid) @ rot + origin
        exact = np.stack(ecef_to_grid_crs(np.concatenate([lattice @ rot + origin, check]), crs), 1)
        exact, want = exact[: len(lattice)], exact[len(lattice) :]  # one pyproj call for both
        coef, *_ = np.linalg.lstsq(_basis(lattice, mid, half), exact, rcond=None)
        got = _basis((check - origin) @ rot.T, mid, half) @ coef
        if not np.abs(got - want).max() <= FIT_TOLERANCE_M:
            return None
        return cls(origin, rot, mid, half, coef)

    def __call__(self, xyz: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """x, y and height of the ECEF points (n, 3), or None where one lies out of the box."""
        x, y, h, inside = _eval_fit(xyz, self.origin, self.rot, self.mid, self.half, self.coef,
                                    FIT_REACH)  # fmt: skip
        return (x, y, h) if inside else None


def fast_ecef_to_grid_crs(xyz: np.ndarray, crs: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`ecef_to_grid_crs` for many vertices of one content: a CubicMap over their box, checked on
    64 of them (pyproj maps them all where it is off by over 1 mm)."""
    n = len(xyz)
    if n < FIT_MIN_VERTICES:
        return ecef_to_grid_crs(xyz, crs)
    sample = xyz[np.random.default_rng(n).integers(0, n, 64)]
    fitted = CubicMap.fit(xyz, crs, check=sample)
    mapped = None if fitted is None else fitted(xyz)
    return ecef_to_grid_crs(xyz, crs) if mapped is None else mapped


@njit(cache=True)
def _eval_fit(xyz, origin, rot, mid, half, coef, reach):
    """`_basis(enu) @ coef` for every vertex in one pass (ECEF -> local frame -> the cubic), and
    whether every vertex lies within `reach` half-widths of the box centre."""
    n = xyz.shape[0]
    out = np.empty((3, n))
    inside = True
    for i in range(n):
        dx, dy, dz = xyz[i, 0] - origin[0], xyz[i, 1] - origin[1], xyz[i, 2] - origin[2]
        e = ((rot[0, 0] * dx + rot[0, 1] * dy + rot[0, 2] * dz) - mid[0]) / half[0]
        m = ((rot[1, 0] * dx + rot[1, 1] * dy + rot[1, 2] * dz) - mid[1]) / half[1]
        u = ((rot[2, 0] * dx + rot[2, 1] * dy + rot[2, 2] * dz) - mid[2]) / half[2]
        if abs(e) > reach or abs(m) > reach or abs(u) > reach:
            inside = False
        terms = (1.0, e, m, u, e * e, e * m, m * m, e * u, m * u, u * u,
                 e * e * e, e * e * m, e * m * m, m * m * m)  # fmt: skip
        for k in range(3):
            acc = 0.0
            for t in range(14):
                acc += terms[t] * coef[t, k]
            out[k, i] = acc
    return out[0], out[1], out[2], inside


def tiles_map(tiles: Sequence[Tile], crs: str) -> CubicMap | None:
    """One CubicMap over the boxes of the tiles (None where a cubic does not hold over them)."""
    from twin.tiles.bounds import obb_corners

    if not tiles:
        return None
    c = np.stack([t.obb[0] for t in tiles])
    h = np.stack([t.obb[1] for t in tiles])
    return CubicMap.fit(obb_corners(c, h).reshape(-1, 3), crs)


def _to_lonlat(x: np.ndarray, y: np.ndarray, crs: str) -> tuple[np.ndarray, np.ndarray]:
    lon, lat = _transformer(crs, CRS_GEOGRAPHIC).transform(x, y)
    return np.asarray(lon), np.asarray(lat)


def tile_footprint(tile: Tile, crs: str = CRS_PLANAR) -> tuple[float, float, float, float]:
    """(W, S, E, N) in `crs` of a tile's bounding box (its 8 corners and edge midpoints)."""
    from twin.tiles.bounds import obb_corners

    c, h = tile.obb
    pts = obb_corners(c[None], h[None]).reshape(-1, 3)
    mids = (pts[:, None, :] + pts[None, :, :]).reshape(-1, 3) / 2.0  # bulges of a curved region
    x, y, _ = ecef_to_grid_crs(np.concatenate([pts, mids]), crs)
    return float(x.min()), float(y.min()), float(x.max()), float(y.max())


# ---------------------------------------------------------------- kernels
@njit(cache=True, inline="always")
def _owns(du: float, dv: float) -> bool:
    """Whether an edge of direction (du, dv) owns the centres on it (exactly one of d, -d does)."""
    return dv > 0.0 or (dv == 0.0 and du > 0.0)


@njit(cache=True, inline="always")
def _put(r, c, zz, fid_value, top, bottom, count, fid):
    if zz > top[r, c]:
        top[r, c] = zz
        fid[r, c] = fid_value
    if zz < bottom[r, c]:
        bottom[r, c] = zz
    count[r, c] += 1


@njit(cache=True, nogil=True)
def raster_triangles(u, v, z, faces, face_ids, resolution, top, bottom, count, fid,
                     ntop, nbottom, ncount, nfid) -> int:  # fmt: skip
    """Draw triangles into the rasters (see the module's sampling rule); returns cells written.

    u, v: vertex positions in cells (column to the east, row to the south: a cell (r, c) has its
    centre at (c + 0.5, r + 0.5)); z: heights; faces (m, 3); face_ids (m,) int32 (0 none). The
    n* rasters take centres within NEAR_M of a triangle (`finish_rasters` uses them in cracks).
    """
    rows, cols = top.shape
    tol = NEAR_M / resolution
    written = 0
    for t in range(faces.shape[0]):
        ia, ib, ic = faces[t, 0], faces[t, 1], faces[t, 2]
        ua, va, za = u[ia], v[ia], z[ia]
        ub, vb, zb = u[ib], v[ib], z[ib]
        uc, vc, zc = u[ic], v[ic], z[ic]
        area2 = (ub - ua) * (vc - va) - (vb - va) * (uc - ua)
        if area2 < 0.0:  # one orientation: swap b and c
            ub, vb, zb, uc, vc, zc = uc, vc, zc, ub, vb, zb
            area2 = -area2
        # steep (a wall, a skirt) or degenerate: not a surface seen from above
        ex, ey, ez = (ub - ua) * resolution, (vb - va) * resolution, zb - za
        fx, fy, fz = (uc - ua) * resolution, (vc - va) * resolution, zc - za
        nx, ny = ey * fz - ez * fy, ez * fx - ex * fz
        nz = area2 * resolution * resolution
        if not nz > 0.0 or nz < MIN_UP * math.sqrt(nx * nx + ny * ny + nz * nz):
            continue
        cmin = max(int(math.ceil(min(ua, ub, uc) - 0.5 - tol)), 0)
        cmax = min(int(math.floor(max(ua, ub, uc) - 0.5 + tol)), cols - 1)
        rmin = max(int(math.ceil(min(va, vb, vc) - 0.5 - tol)), 0)
        rmax = min(int(math.floor(max(va, vb, vc) - 0.5 + tol)), rows - 1)
        own_bc = _owns(uc - ub, vc - vb)
        own_ca = _owns(ua - uc, va - vc)
        own_ab = _owns(ub - ua, vb - va)
        near_a = -tol * math.sqrt((uc - ub) ** 2 + (vc - vb) ** 2)
        near_b = -tol * math.sqrt((ua - uc) ** 2 + (va - vc) ** 2)
        near_c = -tol * math.sqrt((ub - ua) ** 2 + (vb - va) ** 2)
        hit = False
        fv = face_ids[t]
        for r in range(rmin, rmax + 1):
            pv = r + 0.5
            for c in range(cmin, cmax + 1):
                pu = c + 0.5
                w_a = (uc - ub) * (pv - vb) - (vc - vb) * (pu - ub)
                w_b = (ua - uc) * (pv - vc) - (va - vc) * (pu - uc)
                w_c = (ub - ua) * (pv - va) - (vb - va) * (pu - ua)
                if w_a < near_a or w_b < near_b or w_c < near_c:
                    continue
                zz = (w_a * za + w_b * zb + w_c * zc) / area2
                inside = (
                    (w_a > 0.0 or (w_a == 0.0 and own_bc))
                    and (w_b > 0.0 or (w_b == 0.0 and own_ca))
                    and (w_c > 0.0 or (w_c == 0.0 and own_ab))
                )
                if inside:
                    _put(r, c, zz, fv, top, bottom, count, fid)
                    written += 1
                    hit = True
                else:
                    _put(r, c, zz, fv, ntop, nbottom, ncount, nfid)
        if hit:
            continue
        # small or thin: once at the centroid, in the cell holding it
        gu, gv = (ua + ub + uc) / 3.0, (va + vb + vc) / 3.0
        c, r = int(math.floor(gu)), int(math.floor(gv))
        if 0 <= r < rows and 0 <= c < cols:
            _put(r, c, (za + zb + zc) / 3.0, fv, top, bottom, count, fid)
            written += 1
    return written


@njit(cache=True, nogil=True)
def raster_points(u, v, z, ids, top, bottom, count, fid) -> int:
    """Draw points into the rasters: each counts in the cell holding it; returns cells written."""
    rows, cols = top.shape
    written = 0
    for k in range(u.shape[0]):
        c, r = int(math.floor(u[k])), int(math.floor(v[k]))
        if 0 <= r < rows and 0 <= c < cols:
            _put(r, c, z[k], ids[k], top, bottom, count, fid)
            written += 1
    return written


def raster_triangles_numpy(u, v, z, faces, face_ids, resolution, top, bottom, count, fid,
                           ntop, nbottom, ncount, nfid) -> int:  # fmt: skip
    """The same as `raster_triangles` in plain NumPy (one triangle at a time, its cells as arrays):
    the reference the numba kernel is tested against."""
    rows, cols = top.shape
    tol = NEAR_M / resolution
    written = 0

    def owns(du, dv):
        return dv > 0 or (dv == 0 and du > 0)

    for t in range(len(faces)):
        (ua, ub, uc), (va, vb, vc), (za, zb, zc) = u[faces[t]], v[faces[t]], z[faces[t]]
        area2 = (ub - ua) * (vc - va) - (vb - va) * (uc - ua)
        if area2 < 0:
            ub, vb, zb, uc, vc, zc = uc, vc, zc, ub, vb, zb
            area2 = -area2
        e = np.array([(ub - ua) * resolution, (vb - va) * resolution, zb - za])
        f = np.array([(uc - ua) * resolution, (vc - va) * resolution, zc - za])
        n = np.cross(e, f)
        nz = area2 * resolution * resolution
        if not nz > 0 or nz < MIN_UP * math.sqrt(n[0] ** 2 + n[1] ** 2 + nz**2):
            continue
        cs = np.arange(max(math.ceil(min(ua, ub, uc) - 0.5 - tol), 0),
                       min(math.floor(max(ua, ub, uc) - 0.5 + tol), cols - 1) + 1)  # fmt: skip
        rs = np.arange(max(math.ceil(min(va, vb, vc) - 0.5 - tol), 0),
                       min(math.floor(max(va, vb, vc) - 0.5 + tol), rows - 1) + 1)  # fmt: skip
        rr, cc = np.meshgrid(rs, cs, indexing="ij")
        rr, cc = rr.ravel(), cc.ravel()
        pv, pu = rr + 0.5, cc + 0.5
        w_a = (uc - ub) * (pv - vb) - (vc - vb) * (pu - ub)
        w_b = (ua - uc) * (pv - vc) - (va - vc) * (pu - uc)
        w_c = (ub - ua) * (pv - va) - (vb - va) * (pu - ua)
        near = (
            (w_a >= -tol * math.hypot(uc - ub, vc - vb))
            & (w_b >= -tol * math.hypot(ua - uc, va - vc))
            & (w_c >= -tol * math.hypot(ub - ua, vb - va))
        )
        inside = (
            ((w_a > 0) | ((w_a == 0) & owns(uc - ub, vc - vb)))
            & ((w_b > 0) | ((w_b == 0) & owns(ua - uc, va - vc)))
            & ((w_c > 0) | ((w_c == 0) & owns(ub - ua, vb - va)))
        ) & near
        zz = (w_a * za + w_b * zb + w_c * zc) / area2
        for k in np.nonzero(near)[0]:  # in order: the max's id is the first's
            target = (top, bottom, count, fid) if inside[k] else (ntop, nbottom, ncount, nfid)
            _put_numpy(rr[k], cc[k], zz[k], face_ids[t], *target)
        if inside.any():
            written += int(inside.sum())
            continue
        c, r = math.floor((ua + ub + uc) / 3.0), math.floor((va + vb + vc) / 3.0)
        if 0 <= r < rows and 0 <= c < cols:
            _put_numpy(r, c, (za + zb + zc) / 3.0, face_ids[t], top, bottom, count, fid)
            written += 1
    return written


def _put_numpy(r, c, zz, fv, top, bottom, count, fid) -> None:
    if zz > top[r, c]:
        top[r, c] = zz
        fid[r, c] = fv
    bottom[r, c] = min(bottom[r, c], zz)
    count[r, c] += 1


def empty_rasters(shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    """top (-inf), bottom (+inf), count (0) and feature id (0) arrays the kernels draw into, twice:
    the cells' own and those of centres near a triangle (see `finish_rasters`). Heights are
    float32 (a 2e-5 m step at 200 m): 32 bytes a cell while drawing."""
    one = (np.full(shape, -np.inf, np.float32), np.full(shape, np.inf, np.float32),
           np.zeros(shape, np.int32), np.zeros(shape, np.int32))  # fmt: skip
    return one + tuple(a.copy() for a in one)


@njit(cache=True)
def finish_rasters(top, bottom, count, fid, ntop, nbottom, ncount, nfid) -> None:
    """In place, one pass: where no triangle holds a cell's centre but one passes within NEAR_M
    of it (a crack between two tiles whose border runs through the centre, their vertices a
    float32 rounding apart), the near triangles' values; cells with no surface at all NODATA."""
    rows, cols = top.shape
    for r in range(rows):
        for c in range(cols):
            if count[r, c] == 0:
                if ncount[r, c] > 0:
                    top[r, c], bottom[r, c] = ntop[r, c], nbottom[r, c]
                    count[r, c], fid[r, c] = ncount[r, c], nfid[r, c]
                else:
                    top[r, c] = bottom[r, c] = NODATA


# ---------------------------------------------------------------- the tileset walk
@dataclass
class SurfaceRasters:
    """What `rasterize_tileset` drew: the rasters (NODATA / 0 where nothing), grid and counts."""

    grid: Grid
    top: np.ndarray  # float32, highest surface (m DHHN2016), NODATA where none
    bottom: np.ndarray  # float32, lowest surface
    count: np.ndarray  # int32, surfaces (triangle samples and points) per cell
    feature: np.ndarray | None  # int32, 1-based index into `features` of the top surface, 0 none
    features: list[dict[str, Any]] = field(default_factory=list)  # value, table, id
    tiles: list[str] = field(default_factory=list)  # addresses of the tiles read
    geometric_errors: list[float] = field(default_factory=list)
    triangles: int = 0
    points: int = 0
    max_error: float = 0.0


class _FeatureKeys:
    """Global 1-based values for the tileset's features: one per (property table, id property),
    so that a building drawn by several tiles (levels of detail) keeps one value; features
    without an id property get one value per content and local id."""

    def __init__(self) -> None:
        self.value_of: dict[tuple, int] = {}
        self.rows: list[dict[str, Any]] = []

    def values(self, uri: str, table: int, props: dict, local: np.ndarray) -> np.ndarray:
        ids = props.get("id") if isinstance(props, dict) else None
        out = np.zeros(len(local), np.int32)
        uniq, inv = np.unique(local, return_inverse=True)
        vals = np.zeros(len(uniq), np.int32)
        for k, loc in enumerate(uniq):
            if loc < 0:
                continue
            if ids is not None and loc < len(ids):
                key, ident = (table, str(ids[loc])), str(ids[loc])
            else:
                key, ident = (uri, table, int(loc)), None
            val = self.value_of.get(key)
            if val is None:
                val = len(self.rows) + 1
                self.value_of[key] = val
                self.rows.append({"value": val, "table": table, "id": ident,
                                  "content": uri, "feature": int(loc)})  # fmt: skip
            vals[k] = val
        out[:] = vals[inv]
        return out


def _region(grid: Grid) -> tuple[list[tuple[float, float]], str]:
    """The grid's extent as a polygon for select_by_region (its own CRS or lon/lat)."""
    w, s, e, n = grid.extent
    if grid.crs == CRS_PLANAR:
        return [(w, s), (e, s), (e, n), (w, n)], CRS_PLANAR
    t = np.linspace(0.0, 1.0, 17)
    xs = np.concatenate([w + (e - w) * t, np.full(17, e), e - (e - w) * t, np.full(17, w)])
    ys = np.concatenate([np.full(17, s), s + (n - s) * t, np.full(17, n), n - (n - s) * t])
    lon, lat = _to_lonlat(xs, ys, grid.crs)
    return list(zip(lon.tolist(), lat.tolist(), strict=True)), CRS_GEOGRAPHIC


def rasterize_tileset(
    tileset: Tileset | str | Path,
    resolution: float,
    *,
    extent: Sequence[float] | None = None,
    crs: str = CRS_PLANAR,
    max_error: float | None = None,
    features: bool = True,
    progress: Progress | Callable[[str], None] | None = None,
) -> SurfaceRasters:
    """Rasterize a tileset onto a `resolution` grid over `extent` (W, S, E, N in `crs`; default:
    the root tile's footprint), refining tiles while their geometric error exceeds `max_error`
    (default: the cell size). DataError names what is wrong with the input."""
    progress = as_progress(progress)
    res = _check_resolution(resolution)
    _transformer(CRS_GEOGRAPHIC, crs)  # a bad CRS fails here, before any tile is read
    ts = tileset if isinstance(tileset, Tileset) else _open(tileset)
    bounds = tile_footprint(ts.root, crs)
    if not (bounds[2] - bounds[0] > 1e-3 and bounds[3] - bounds[1] > 1e-3):
        raise DataError(
            f"{ts.name}: the root tile's bounding volume has no extent in {crs} (a tileset that is "
            "not placed on the earth cannot be rasterized)"
        )
    if extent is None:
        extent = bounds
    elif len(extent) != 4:
        raise DataError(f"extent must be four numbers W S E N, got {list(extent)}")
    grid = Grid.over(extent, res, crs)
    w, s, e, n = grid.extent
    if e <= bounds[0] or w >= bounds[2] or n <= bounds[1] or s >= bounds[3]:
        shown = ", ".join(f"{v:.1f}" for v in bounds)
        raise DataError(
            f"extent [{w:.1f}, {s:.1f}, {e:.1f}, {n:.1f}] ({crs}) lies outside the tileset's "
            f"bounds [{shown}]"
        )
    limit = res if max_error is None else float(max_error)
    if not (math.isfinite(limit) and limit >= 0):
        raise DataError(f"max_error must be a number of metres >= 0, got {max_error!r}")
    progress.stage("selecting tiles")
    region, region_crs = _region(grid)
    sel = select_by_region(ts, region, crs=region_crs, max_geometric_error=limit)
    if len(sel) == 0:
        raise DataError(f"no tile with content meets the extent {list(grid.extent)} ({crs})")
    rasters = empty_rasters((grid.height, grid.width))
    keys = _FeatureKeys() if features else None
    out = SurfaceRasters(grid, rasters[0], rasters[1], rasters[2], None, max_error=limit)
    tiles = sel.tiles
    mapping = tiles_map(tiles, crs)
    progress.stage(f"drawing {len(tiles)} tiles")
    # The kernels (nogil) draw in a thread of their own while this one reads the next contents
    # (Python, holding the GIL): reading and drawing overlap. One drawing thread keeps the order
    # of the draws (of equal heights the first keeps its feature id); at most two contents wait.
    with ThreadPoolExecutor(1, thread_name_prefix="rasterize") as drawer:
        waiting: deque[Future] = deque()
        for k, tile in enumerate(tiles):
            for draw in _draws(ts, tile, grid, mapping, rasters, keys, out):
                waiting.append(drawer.submit(draw))
                if len(waiting) > 2:
                    waiting.popleft().result()
            out.tiles.append(tile.address)
            out.geometric_errors.append(tile.geometric_error)
            progress.advance(k + 1, len(tiles))
        while waiting:
            waiting.popleft().result()
    finish_rasters(*rasters)
    out.top, out.bottom, out.count = rasters[0], rasters[1], rasters[2]
    if keys is not None:
        out.feature, out.features = rasters[3], keys.rows
    return out


def _open(location: str | Path) -> Tileset:
    p = Path(location)
    if "://" not in str(location) and not p.exists():
        raise DataError(f"{location}: no tileset there (expected tileset.json, its folder or .3tz)")
    return open_tileset(location)


def _draws(ts: Tileset, tile: Tile, grid: Grid, mapping: CubicMap | None, rasters: tuple,
           keys, out) -> Iterator[Callable[[], None]]:  # fmt: skip
    """Per content of one tile: read, mapped onto the grid and its feature ids found here, then a
    function that draws it (run by the drawing thread; the geometry is dropped afterwards)."""
    for ref in tile.contents:
        content = ts.read_content(ref)
        tables = None
        geoms = [g for g in content.geometry(tile.transform, attributes=False) if len(g.positions)]
        if not geoms:
            continue
        # one mapping for the whole content: the tiles' cubic, else one of its own (or pyproj)
        xyz = np.concatenate([g.positions for g in geoms])
        mapped = None if mapping is None else mapping(xyz)
        x_all, y_all, h_all = fast_ecef_to_grid_crs(xyz, grid.crs) if mapped is None else mapped
        u_all = (x_all - grid.west) / grid.resolution
        v_all = (grid.north - y_all) / grid.resolution
        starts = np.cumsum([0] + [len(g.positions) for g in geoms])
        points, faces, face_ids = [], [], []
        for k, g in enumerate(geoms):
            lo, hi = starts[k], starts[k + 1]
            ids = np.zeros(hi - lo, np.int32)
            if keys is not None and g.feature_ids is not None:
                if tables is None:
                    tables = _tables(content)
                props = tables[g.property_table] if g.property_table < len(tables) else {}
                ids = keys.values(ref.uri, g.property_table, props, g.feature_ids)
            if g.kind == "points":
                points.append((u_all[lo:hi], v_all[lo:hi], h_all[lo:hi], ids))
                out.points += hi - lo
            else:
                f = np.asarray(g.faces, dtype=np.int64)
                faces.append(f + lo)  # into the content's vertices
                face_ids.append(ids[f[:, 0]])
                out.triangles += len(f)
        # one kernel call for all of the content's triangles: the drawing thread needs the GIL
        # back after each call, and waits up to the interpreter's switch interval for it
        tris = None
        if faces:
            tris = (u_all, v_all, h_all, np.concatenate(faces), np.concatenate(face_ids))
        yield partial(_draw, tris, points, grid.resolution, rasters)


def _draw(tris: tuple | None, points: list[tuple], resolution: float, rasters: tuple) -> None:
    """Draw one content: its triangles (u, v, h, faces, face ids) and point parts (u, v, h, ids)."""
    if tris is not None:
        raster_triangles(*tris, resolution, *rasters)
    for u, v, h, ids in points:
        raster_points(u, v, h, ids, *rasters[:4])


def _tables(content) -> list[dict]:
    """The content's feature property tables: EXT_structural_metadata's, else its batch table."""
    from twin.tiles.binary import malformed

    with malformed(content.name, "feature properties"):
        if content.gltf is not None and content.batch_table is None:
            tables = content.gltf.property_tables()
            if tables:
                return tables
    return [content.properties()]


# ---------------------------------------------------------------- GeoTIFFs
def write_band(path: Path, array: np.ndarray, transform, crs: str, nodata) -> None:
    """One tiled, deflate-compressed GeoTIFF band (the pack's rasters are written alike)."""
    import rasterio

    profile = {"driver": "GTiff", "width": array.shape[1], "height": array.shape[0], "count": 1,
               "dtype": array.dtype.name, "crs": crs, "transform": transform, "nodata": nodata,
               "compress": "deflate", "tiled": True, "blockxsize": 256, "blockysize": 256}  # fmt: skip
    if array.dtype.kind == "f":
        profile["predictor"] = 3
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(array, 1)


def surface_on_grid(
    location: str | Path,
    extent: Sequence[float],
    resolution: float,
    crs: str = CRS_PLANAR,
    *,
    max_error: float | None = None,
    progress: Callable[[str], None] | None = None,
) -> np.ndarray:
    """The highest surface of a tileset on a grid (rows from the north), NaN where no tile covers
    a cell: what a data build reads a pack's surface layer with."""
    r = rasterize_tileset(location, resolution, extent=extent, crs=crs, max_error=max_error,
                          features=False)  # fmt: skip
    if progress is not None:
        covered = float((r.count > 0).mean())
        progress(f"surface: {len(r.tiles)} tiles, {r.triangles:,} triangles, {covered:.1%} covered")
    return np.where(r.count > 0, r.top.astype(np.float64), np.nan)


def write_rasters(
    result: SurfaceRasters,
    surface: str | Path,
    *,
    lowest: str | Path | None = None,
    count: str | Path | None = None,
    feature_ids: str | Path | None = None,
) -> list[Path]:
    """Write the DSM (and the optional rasters) as GeoTIFFs; the feature-id raster gets a JSON
    beside it (same name, .json) listing each value's property table and id."""
    import json

    g = result.grid
    written = []
    for path, array, nodata in (
        (surface, result.top, NODATA),
        (lowest, result.bottom, NODATA),
        (count, result.count, None),
        (feature_ids, result.feature, 0),
    ):
        if path is None:
            continue
        if array is None:
            raise DataError(f"{path}: no feature ids were drawn (features=False)")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_band(path, array, g.transform, g.crs, nodata)
        written.append(path)
    if feature_ids is not None:
        side = Path(feature_ids).with_suffix(".json")
        side.write_text(json.dumps({"features": result.features}, indent=0) + "\n", "utf-8")
        written.append(side)
    return written
