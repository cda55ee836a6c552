"""Tile selection: by camera (screen-space error, frustum culling, ADD/REPLACE as CesiumJS's base
traversal does) and by a 2D region (for clipping), one tree level at a time with array operations.

Screen-space error of a tile: sse = geometricError * viewport_height / (2 * distance * tan(fov_y / 2)),
distance being the camera's distance to the tile's bounding volume (0 inside). Only tiles the
traversal reaches are loaded: external tilesets and implicit subtrees are read on the way.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from twin.errors import DataError
from twin.tiles.bounds import geo_call, obb_corners, obb_distance, planes_outside
from twin.tiles.tileset import Tile, Tileset

DEFAULT_FOV_DEG = 60.0  # CesiumJS: the field of view across the wider side of the viewport
EPS_DISTANCE = 1e-7  # CesiumJS clamps the camera distance to EPSILON7 before dividing


@dataclass(frozen=True)
class Camera:
    """A perspective camera in ECEF (EPSG:4978): position, view direction and up vector (metres)."""

    position: np.ndarray
    direction: np.ndarray
    up: np.ndarray

    def __post_init__(self) -> None:
        p = np.asarray(self.position, dtype=np.float64).reshape(3)
        d = np.asarray(self.direction, dtype=np.float64).reshape(3)
        u = np.asarray(self.up, dtype=np.float64).reshape(3)
        if not (np.all(np.isfinite(p)) and np.all(np.isfinite(d)) and np.all(np.isfinite(u))):
            raise DataError("camera: position, direction and up must be finite numbers")
        dn = np.linalg.norm(d)
        if dn == 0:
            raise DataError("camera: direction must not be the zero vector")
        d = d / dn
        u = u - np.dot(u, d) * d  # make up orthogonal to direction
        un = np.linalg.norm(u)
        if un < 1e-12:
            raise DataError("camera: up must not be parallel to the view direction")
        object.__setattr__(self, "position", p)
        object.__setattr__(self, "direction", d)
        object.__setattr__(self, "up", u / un)

    @property
    def right(self) -> np.ndarray:
        """Unit vector to the right of the view (direction x up)."""
        return np.cross(self.direction, self.up)

    @classmethod
    def look_at(
        cls, position: Sequence[float], target: Sequence[float], up: Sequence[float] | None = None
    ) -> Camera:
        """Camera at ECEF `position` looking at ECEF `target`; up defaults to the local vertical."""
        p = np.asarray(position, dtype=np.float64)
        d = np.asarray(target, dtype=np.float64) - p
        if up is None:
            up = _vertical(p)
            if abs(np.dot(up, d) / (np.linalg.norm(d) or 1.0)) > 0.999:
                up = _north(p)
        return cls(p, d, np.asarray(up, dtype=np.float64))

    @classmethod
    def from_lonlat(
        cls,
        lon: float,
        lat: float,
        height: float,
        heading_deg: float = 0.0,
        pitch_deg: float = -90.0,
        roll_deg: float = 0.0,
        *,
        ellipsoidal: bool = False,
    ) -> Camera:
        """Camera at WGS84 lon/lat (degrees) and `height` in m a.s.l. (DHHN2016; ellipsoidal
        height with `ellipsoidal=True`), oriented as in CesiumJS: heading clockwise from north,
        pitch negative looking down (-90 straight down), roll about the view direction."""
        from twin.geo import GEOID_HEIGHT_M, LocalFrame

        h = float(height) if ellipsoidal else float(height) + GEOID_HEIGHT_M
        frame = LocalFrame(lon, lat, h)
        hd, pt, rl = (math.radians(v) for v in (heading_deg, pitch_deg, roll_deg))
        d = np.array([math.sin(hd) * math.cos(pt), math.cos(hd) * math.cos(pt), math.sin(pt)])
        u = np.array([-math.sin(hd) * math.sin(pt), -math.cos(hd) * math.sin(pt), math.cos(pt)])
        r = np.cross(d, u)
        u = u * math.cos(rl) + r * math.sin(rl)
        rot = frame.rotation  # rows: east, north, up in ECEF
        return cls(frame.origin_ecef, d @ rot, u @ rot)

    def frustum_planes(self, fov_y: float, aspect: float, near: float, far: float) -> np.ndarray:
        """Six planes (6, 4) n.x + d >= 0 inside: left, right, bottom, top, near, far."""
        f, u, r, p = self.direction, self.up, self.right, self.position
        ty = math.tan(fov_y / 2)
        tx = ty * aspect
        normals = np.array([f * tx + r, f * tx - r, f * ty + u, f * ty - u, f, -f])
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        d = -normals @ p
        d[4] -= near
        d[5] += far
        return np.concatenate([normals, d[:, None]], axis=1)


def _vertical(p: np.ndarray) -> np.ndarray:
    from twin.geo import ecef_to_wgs84

    if np.linalg.norm(p) < 1.0:
        return np.array([0.0, 0.0, 1.0])
    lon, lat, _ = (float(v) for v in ecef_to_wgs84(*p))
    lam, phi = math.radians(lon), math.radians(lat)
    return np.array([math.cos(phi) * math.cos(lam), math.cos(phi) * math.sin(lam), math.sin(phi)])


def _north(p: np.ndarray) -> np.ndarray:
    up = _vertical(p)
    n = np.array([0.0, 0.0, 1.0]) - up[2] * up
    return n / (np.linalg.norm(n) or 1.0) if np.linalg.norm(n) > 1e-9 else np.array([1.0, 0, 0])


def default_fov_y(viewport: tuple[float, float]) -> float:
    """CesiumJS's default: 60 degrees across the wider side of the viewport, as vertical fov (rad)."""
    w, h = viewport
    half = math.radians(DEFAULT_FOV_DEG) / 2
    return 2 * math.atan(math.tan(half) * h / w) if w > h else 2 * half


@dataclass
class Selection:
    """Tiles chosen by a traversal, with the error measure that chose them."""

    tileset: Tileset
    indices: np.ndarray
    errors: np.ndarray  # screen-space error (camera) or geometric error (region) per tile
    visited: int

    def __len__(self) -> int:
        return len(self.indices)

    def __iter__(self) -> Iterator[Tile]:
        return (Tile(self.tileset, int(i)) for i in self.indices)

    @property
    def tiles(self) -> list[Tile]:
        """The selected tiles as Tile objects."""
        return list(self)


def _empty(tileset: Tileset, visited: int = 0) -> Selection:
    return Selection(tileset, np.zeros(0, np.int64), np.zeros(0), visited)


def _camera_tests(ts: Tileset, idx: np.ndarray, planes: np.ndarray, p: np.ndarray):
    """Frustum visibility, distance and 'camera in request volume' for tiles `idx`."""
    ix = ts.index
    centers, radii = ix.obb_c[idx], ix.sph_r[idx]  # boxes and spheres share their centres
    vis = ~planes_outside(planes, centers, ix.obb_h, radii, idx)
    d_box = obb_distance(p, centers, ix.axes[idx], ix.lengths[idx])
    d_sph = np.maximum(np.sqrt(((centers - p) ** 2).sum(axis=1)) - radii, 0.0)
    dist = np.maximum(d_box, d_sph)
    in_rv = np.ones(len(idx), bool)
    rv = ix.has_rv[idx]
    for k in np.flatnonzero(rv):  # few tiles have one
        sphere, c, axes, lengths, radius = ix.request_volumes[int(idx[k])]
        if sphere:
            in_rv[k] = np.linalg.norm(c - p) <= radius
        else:
            in_rv[k] = obb_distance(p, c[None], axes[None], lengths[None])[0] <= 0
    # An external tileset link is seen as visible only if the root it links to is (CesiumJS).
    links = vis & ix.link[idx]
    if links.any():
        ts.resolve(idx[links], children=True)
        for k in np.flatnonzero(links):
            i = idx[k]
            if ix.n_children[i] > 0:
                c = np.array([ix.first_child[i]])
                vis[k] = not planes_outside(planes, ix.obb_c[c], ix.obb_h, ix.sph_r[c], c)[0]
    return vis, dist, in_rv


def select_by_camera(
    tileset: Tileset,
    camera: Camera,
    max_sse: float = 16.0,
    viewport: tuple[int, int] = (1920, 1080),
    fov_y: float | None = None,
    near: float = 0.1,
    far: float = 1e10,
) -> Selection:
    """Tiles CesiumJS's base traversal would render for this camera (all content assumed loaded).

    max_sse: maximum screen-space error in pixels; viewport: (width, height) in pixels; fov_y:
    vertical field of view in radians (default: 60 degrees across the wider side).
    """
    w, h = viewport
    if w <= 0 or h <= 0:
        raise DataError(f"viewport must be positive (width, height), got {viewport!r}")
    fov_y = default_fov_y((w, h)) if fov_y is None else float(fov_y)
    if not 0 < fov_y < math.pi:
        raise DataError(f"fov_y must be in (0, pi) radians, got {fov_y!r}")
    denom = 2 * math.tan(fov_y / 2)
    planes = camera.frustum_planes(fov_y, w / h, near, far)
    ix = tileset.index
    p = camera.position

    def sse_of(ge: np.ndarray, dist: np.ndarray) -> np.ndarray:
        return ge * h / (np.maximum(dist, EPS_DISTANCE) * denom)

    frontier = np.array([0], dtype=np.int64)
    vis, dist, in_rv = _camera_tests(tileset, frontier, planes, p)
    if not (vis[0] and in_rv[0]):
        return _empty(tileset, 1)
    # the tileset's own geometric error says whether the tree is worth drawing at all
    if sse_of(np.array([tileset.geometric_error]), dist)[0] <= max_sse:
        return _empty(tileset, 1)
    parent_refines = np.array([True])
    selected, errors = [], []
    visited = 0
    while len(frontier):
        visited += len(frontier)
        unknown = frontier[~ix.content_known[frontier]]
        if len(unknown):
            tileset.resolve(unknown, children=False)
        sse = sse_of(ix.ge[frontier], dist)
        link = ix.link[frontier]
        want = (sse > max_sse) | link
        need = frontier[want & ~ix.children_known[frontier]]
        if len(need):
            tileset.resolve(need, children=True)
        can = want & (ix.n_children[frontier] > 0)
        par = frontier[can]
        child, owner = ix.children_of(par)
        cvis, cdist, c_in_rv = _camera_tests(tileset, child, planes, p)
        # CesiumJS meetsScreenSpaceErrorEarly: a child of an ADD tile is skipped when the parent's
        # error seen from the child is already small enough
        par_add = (ix.add[par] & ~ix.link[par])[owner]
        early = par_add & (sse_of(ix.ge[par][owner], cdist) <= max_sse)
        cvisible = cvis & c_in_rv & ~early
        npar = len(par)
        any_visible = np.bincount(owner, weights=cvisible, minlength=npar) > 0
        all_in_rv = np.bincount(owner, weights=~c_in_rv, minlength=npar) == 0
        renderable = (ix.n_contents[frontier] > 0) & ~link
        check = ~ix.add[par] & renderable[can]  # REPLACE tiles with content wait for all children
        refines_par = any_visible & (~check | all_in_rv) & parent_refines[can]
        refines = np.zeros(len(frontier), bool)
        refines[can] = refines_par
        stopped = ~refines & parent_refines
        sel = renderable & (ix.add[frontier] | stopped)
        selected.append(frontier[sel])
        errors.append(sse[sel])
        frontier = child[cvisible]
        dist = cdist[cvisible]
        parent_refines = refines_par[owner[cvisible]]
    return Selection(tileset, np.concatenate(selected), np.concatenate(errors), visited)


# ---------------------------------------------------------------- region selection
def _region_geometry(region, crs: str):
    """The region as a shapely geometry in an east-north plane at its centre, and that frame."""
    import shapely
    from shapely.geometry import Point, Polygon
    from shapely.geometry.base import BaseGeometry

    from twin.geo import CRS_GEOGRAPHIC, CRS_PLANAR, LocalFrame, utm_to_wgs84, wgs84_to_ecef

    if crs not in (CRS_PLANAR, CRS_GEOGRAPHIC):
        raise DataError(
            f"select_by_region: crs must be {CRS_PLANAR} or {CRS_GEOGRAPHIC}, got {crs!r}"
        )

    def to_lonlat(x, y):
        x, y = np.atleast_1d(np.asarray(x, float)), np.atleast_1d(np.asarray(y, float))
        return geo_call(utm_to_wgs84, x, y) if crs == CRS_PLANAR else (x, y)

    circle = (
        isinstance(region, tuple)
        and len(region) == 2
        and np.ndim(region[1]) == 0
        and np.shape(region[0]) == (2,)
    )
    if circle:
        (cx, cy), radius = region
        if not isinstance(radius, int | float | np.number) or not radius > 0:
            raise DataError(f"select_by_region: radius must be > 0 m, got {radius!r}")
        lon, lat = to_lonlat(cx, cy)
        frame = LocalFrame(float(lon[0]), float(lat[0]), 0.0)
        return Point(0.0, 0.0).buffer(float(radius), 64), frame
    try:
        geom = region if isinstance(region, BaseGeometry) else Polygon(np.asarray(region, float))
    except (TypeError, ValueError) as exc:
        raise DataError(
            "select_by_region: region must be a polygon (shapely geometry or (x, y) vertices) or "
            f"((x, y), radius), got {region!r}"[:300]
        ) from exc
    if geom.is_empty or not geom.is_valid:
        raise DataError("select_by_region: the region polygon is empty or invalid")
    geom = geom.segmentize(max(geom.length / 256, 1e-9)) if geom.length > 0 else geom
    c = geom.centroid
    lon0, lat0 = to_lonlat(c.x, c.y)
    frame = LocalFrame(float(lon0[0]), float(lat0[0]), 0.0)

    def project(coords: np.ndarray) -> np.ndarray:
        lon, lat = to_lonlat(coords[:, 0], coords[:, 1])
        ecef = np.stack(geo_call(wgs84_to_ecef, lon, lat, np.zeros_like(lon)), axis=-1)
        return frame.ecef_to_enu(ecef)[:, :2]

    return shapely.transform(geom, project), frame


def select_by_region(
    tileset: Tileset,
    region,
    crs: str = "EPSG:25832",
    max_geometric_error: float = 0.0,
) -> Selection:
    """Tiles whose bounding volumes' footprints meet a region: a polygon (shapely geometry or
    (x, y) vertices) or a circle ((x, y), radius_m), in EPSG:25832 or EPSG:4326 (lon, lat).

    Tiles are refined (REPLACE: replaced by their children, ADD: kept with them) while their
    geometric error exceeds `max_geometric_error` (0: down to the finest tiles).
    """
    import shapely

    geom, frame = _region_geometry(region, crs)
    shapely.prepare(geom)
    reach = math.sqrt(geom.area / math.pi) + geom.length  # generous bound on the region's size
    ix = tileset.index

    def hits(idx: np.ndarray) -> np.ndarray:
        if len(idx) == 0:
            return np.zeros(0, bool)
        corners = obb_corners(ix.obb_c[idx], ix.obb_h[idx]).reshape(-1, 3)
        enu = frame.ecef_to_enu(corners).reshape(len(idx), 8, 3)
        hulls = shapely.convex_hull(shapely.multipoints(enu[:, :, :2]))
        centre = frame.ecef_to_enu(ix.obb_c[idx])
        near_side = centre[:, 2] > -(reach + ix.sph_r[idx] + 1e5)  # not the far side of the earth
        return shapely.intersects(hulls, geom) & near_side

    frontier = np.array([0], dtype=np.int64)
    if not hits(frontier)[0]:
        return _empty(tileset, 1)
    parent_refines = np.array([True])
    selected, errors = [], []
    visited = 0
    while len(frontier):
        visited += len(frontier)
        unknown = frontier[~ix.content_known[frontier]]
        if len(unknown):
            tileset.resolve(unknown, children=False)
        ge = ix.ge[frontier]
        link = ix.link[frontier]
        want = (ge > max_geometric_error) | link
        need = frontier[want & ~ix.children_known[frontier]]
        if len(need):
            tileset.resolve(need, children=True)
        can = want & (ix.n_children[frontier] > 0)
        par = frontier[can]
        child, owner = ix.children_of(par)
        chit = hits(child)
        any_hit = np.bincount(owner, weights=chit, minlength=len(par)) > 0
        refines_par = any_hit & parent_refines[can]
        refines = np.zeros(len(frontier), bool)
        refines[can] = refines_par
        stopped = ~refines & parent_refines
        renderable = (ix.n_contents[frontier] > 0) & ~link
        sel = renderable & (ix.add[frontier] | stopped)
        selected.append(frontier[sel])
        errors.append(ge[sel])
        frontier = child[chit]
        parent_refines = refines_par[owner[chit]]
    return Selection(tileset, np.concatenate(selected), np.concatenate(errors), visited)


def camera_from_lonlat(
    lon: float,
    lat: float,
    height: float,
    heading_deg: float = 0.0,
    pitch_deg: float = -90.0,
    roll_deg: float = 0.0,
    *,
    ellipsoidal: bool = False,
) -> Camera:
    """Shorthand for Camera.from_lonlat."""
    return Camera.from_lonlat(
        lon, lat, height, heading_deg, pitch_deg, roll_deg, ellipsoidal=ellipsoidal
    )
