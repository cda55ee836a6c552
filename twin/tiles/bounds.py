"""3D Tiles bounding volumes (box, region, sphere) as world (ECEF) boxes and spheres, vectorised.

Every volume becomes an oriented box (centre + half-axis columns) and an enclosing sphere, so that
culling and distance tests run on arrays of tiles at once. A region (radians, ellipsoidal heights)
becomes a box in the east-north-up frame at its centre, fitted through the points where its
extremes lie (corners, edge midpoints, centre and equator crossing), as CesiumJS fits one.
"""

from __future__ import annotations

import numpy as np

from twin.errors import DataError
from twin.tiles.binary import require_numbers

KINDS = {"box": 12, "region": 6, "sphere": 4}


def volume_kind(bv: object, name: str, field: str) -> tuple[str, list]:
    """('box'|'region'|'sphere', raw values) of a boundingVolume JSON object; the values are
    checked later, many at once, by `check_volumes`."""
    if not isinstance(bv, dict):
        raise DataError(f"{name}: {field} must be an object with box, region or sphere")
    for kind, n in KINDS.items():
        if kind in bv:
            values = bv[kind]
            if not isinstance(values, list) or len(values) != n:
                raise DataError(
                    f"{name}: {field}.{kind} must be an array of {n} numbers, got {values!r}"[:300]
                )
            return kind, values
    ext = bv.get("extensions") or {}
    if "3DTILES_bounding_volume_S2" in ext:
        raise DataError(f"{name}: {field} uses 3DTILES_bounding_volume_S2, which is not supported")
    raise DataError(f"{name}: {field} must have one of box, region, sphere")


def check_volumes(kind: str, raw: list, fields: list[str], name: str) -> np.ndarray:
    """Raw volume value lists -> (n, k) float64, with a DataError naming the first bad one."""
    try:
        arr = np.array(raw, dtype=np.float64).reshape(len(raw), KINDS[kind])
    except (TypeError, ValueError):
        for values, f in zip(raw, fields, strict=True):
            require_numbers(values, KINDS[kind], name, f"{f}.{kind}")
        raise
    bad = ~np.all(np.isfinite(arr), axis=1)
    if kind == "sphere":
        bad |= arr[:, 3] < 0
    elif kind == "region":
        eps = 1e-9
        w, s, e, n, lo, hi = arr.T
        bad |= (np.abs(w) > np.pi + eps) | (np.abs(e) > np.pi + eps)
        bad |= (s < -np.pi / 2 - eps) | (n > np.pi / 2 + eps) | (s > n) | (lo > hi)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        rule = {
            "box": "12 finite numbers",
            "sphere": "4 finite numbers with radius >= 0",
            "region": "[west, south, east, north] in radians (west/east in [-pi, pi], "
            "-pi/2 <= south <= north <= pi/2) and minimum height <= maximum height",
        }[kind]
        raise DataError(f"{name}: {fields[k]}.{kind} must be {rule}, got {raw[k]!r}"[:400])
    return arr


def parse_volume(bv: object, name: str, field: str) -> tuple[str, np.ndarray]:
    """('box'|'region'|'sphere', values) from one boundingVolume JSON object, checked."""
    kind, raw = volume_kind(bv, name, field)
    return kind, check_volumes(kind, [raw], [field], name)[0]


def boxes_to_world(boxes: np.ndarray, mats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (n, 12) under transforms (n, 4, 4) -> centres (n, 3), half-axis columns (n, 3, 3)."""
    c = boxes[:, :3]
    h = boxes[:, 3:].reshape(-1, 3, 3).transpose(0, 2, 1)  # columns = half axes
    rot = mats[:, :3, :3]
    return np.einsum("nij,nj->ni", rot, c) + mats[:, :3, 3], rot @ h


def spheres_to_world(spheres: np.ndarray, mats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spheres (n, 4) under transforms (n, 4, 4) -> centres (n, 3), radii (n,)."""
    rot = mats[:, :3, :3]
    c = np.einsum("nij,nj->ni", rot, spheres[:, :3]) + mats[:, :3, 3]
    scale = np.linalg.norm(rot, axis=1).max(axis=1)  # largest column norm
    return c, spheres[:, 3] * scale


def _enu_rows(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """(n, 3, 3) rotations whose rows are east, north, up at lon/lat (radians)."""
    sl, cl, sp, cp = np.sin(lon), np.cos(lon), np.sin(lat), np.cos(lat)
    z = np.zeros_like(sl)
    return np.stack(
        [
            np.stack([-sl, cl, z], -1),
            np.stack([-sp * cl, -sp * sl, cp], -1),
            np.stack([cp * cl, cp * sl, sp], -1),
        ],
        axis=1,
    )


def geo_call(fn, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Call a twin.geo conversion on 1-d arrays; a single point is passed twice because pyproj
    takes one-element arrays for scalars (and warns about it)."""
    arrays = tuple(np.atleast_1d(np.asarray(a, dtype=np.float64)) for a in arrays)
    if arrays[0].size == 1:
        out = fn(*(np.repeat(a, 2) for a in arrays))
        return tuple(np.asarray(o)[:1] for o in out)
    return tuple(np.asarray(o) for o in fn(*arrays))


def _geodetic_points(lon: np.ndarray, lat: np.ndarray, h: np.ndarray) -> np.ndarray:
    from twin.geo import wgs84_to_ecef

    x, y, z = geo_call(wgs84_to_ecef, np.degrees(lon), np.degrees(lat), h)
    return np.stack([x, y, z], axis=-1)


def regions_to_obb(regions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Regions (n, 6) [west, south, east, north, minH, maxH] -> ECEF centres (n, 3), half axes (n, 3, 3)."""
    regions = np.asarray(regions, dtype=np.float64).reshape(-1, 6)
    n = len(regions)
    centers = np.zeros((n, 3))
    halves = np.zeros((n, 3, 3))
    if n == 0:
        return centers, halves
    w, s, e, nn, lo, hi = regions.T
    e = np.where(e < w, e + 2 * np.pi, e)  # crosses the antimeridian
    big = ((e - w) > np.pi / 2) | ((nn - s) > np.pi / 2)
    small = ~big
    if small.any():
        ws, ss, es, ns, los, his = w[small], s[small], e[small], nn[small], lo[small], hi[small]
        lons = np.stack([ws, (ws + es) / 2, es], 1)
        lats = np.stack([ss, (ss + ns) / 2, ns, np.clip(0.0, ss, ns)], 1)
        hs = np.stack([los, his], 1)
        m = len(ws)
        lon = np.broadcast_to(lons[:, :, None, None], (m, 3, 4, 2))
        lat = np.broadcast_to(lats[:, None, :, None], (m, 3, 4, 2))
        hh = np.broadcast_to(hs[:, None, None, :], (m, 3, 4, 2))
        pts = _geodetic_points(lon.ravel(), lat.ravel(), hh.ravel()).reshape(m, 24, 3)
        rows = _enu_rows((ws + es) / 2, (ss + ns) / 2)
        origin = pts.mean(axis=1)
        local = np.einsum("nij,nkj->nki", rows, pts - origin[:, None])
        lo_l, hi_l = local.min(axis=1), local.max(axis=1)
        half_len = (hi_l - lo_l) / 2 * (1 + 1e-9) + 1e-6
        mid = (hi_l + lo_l) / 2
        centers[small] = origin + np.einsum("nji,nj->ni", rows, mid)
        halves[small] = rows.transpose(0, 2, 1) * half_len[:, None, :]
    if big.any():
        # Continental or global regions: an ECEF-aligned box around a dense sample, padded by the
        # largest sag of the ellipsoid between samples.
        wb, sb, eb, nb, lob, hib = w[big], s[big], e[big], nn[big], lo[big], hi[big]
        m = len(wb)
        t_lon = np.linspace(0, 1, 33)
        t_lat = np.linspace(0, 1, 17)
        lon = wb[:, None, None, None] + (eb - wb)[:, None, None, None] * t_lon[None, :, None, None]
        lat = sb[:, None, None, None] + (nb - sb)[:, None, None, None] * t_lat[None, None, :, None]
        hh = np.stack([lob, hib], 1)[:, None, None, :]
        lon, lat, hh = np.broadcast_arrays(lon, lat, hh)
        pts = _geodetic_points(lon.ravel(), lat.ravel(), hh.ravel()).reshape(m, -1, 3)
        step = np.maximum((eb - wb) / 32, (nb - sb) / 16)
        pad = 6.4e6 * (1 - np.cos(step / 2)) + 1.0
        lo_p, hi_p = pts.min(axis=1) - pad[:, None], pts.max(axis=1) + pad[:, None]
        centers[big] = (lo_p + hi_p) / 2
        halves[big] = np.eye(3)[None] * ((hi_p - lo_p) / 2)[:, None, :]
    return centers, halves


def obb_sphere_radius(halves: np.ndarray) -> np.ndarray:
    """Radius of the sphere around each box's centre that holds all its corners."""
    h1, h2, h3 = halves[:, :, 0], halves[:, :, 1], halves[:, :, 2]
    diags = [h1 + h2 + h3, h1 + h2 - h3, h1 - h2 + h3, -h1 + h2 + h3]
    return np.max([np.linalg.norm(d, axis=1) for d in diags], axis=0)


def obb_corners(centers: np.ndarray, halves: np.ndarray) -> np.ndarray:
    """The 8 corners (n, 8, 3) of each box."""
    signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)], float)
    return centers[:, None, :] + np.einsum("kj,nij->nki", signs, halves)


def axes_and_lengths(halves: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unit axes (n, 3, 3) (columns) and half lengths (n, 3); a zero axis is replaced by the
    cross product of the other two, so flat boxes still measure distance off their plane."""
    lengths = np.linalg.norm(halves, axis=1)
    safe = np.where(lengths > 0, lengths, 1.0)
    axes = halves / safe[:, None, :]
    zero = lengths <= 0
    if zero.any():
        for i in range(3):
            j, k = (i + 1) % 3, (i + 2) % 3
            rows = zero[:, i]
            if rows.any():
                c = np.cross(axes[rows, :, j], axes[rows, :, k])
                cn = np.linalg.norm(c, axis=1, keepdims=True)
                axes[rows, :, i] = c / np.where(cn > 0, cn, 1.0)
    return axes, lengths


def obb_distance(
    point: np.ndarray, centers: np.ndarray, axes: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    """Distance from `point` (3,) to each box (0 inside), for boxes given by unit axes + lengths."""
    d = point[None, :] - centers
    proj = np.abs((axes * d[:, :, None]).sum(axis=1))
    out = np.maximum(proj - lengths, 0.0)
    return np.sqrt(np.einsum("ni,ni->n", out, out))


def planes_outside(
    planes: np.ndarray,
    centers: np.ndarray,
    halves: np.ndarray,
    radii: np.ndarray,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """True where a box (or its sphere) lies fully outside any plane; planes (p, 4) are n.x + d >= 0 inside.

    Boxes whose sphere is inside every plane or outside one are decided by the sphere alone;
    only the rest get the exact box test. With `rows`, box k's half axes are halves[rows[k]]
    (saves gathering the axes of boxes the spheres already decide).
    """
    normals = planes[:, :3].T  # (3, p)
    s = centers @ normals + planes[None, :, 3]  # (n, p) signed distance of the centres
    out = np.any(s < -radii[:, None], axis=1)
    unsure = np.flatnonzero(~out & np.any(s < radii[:, None], axis=1))
    if len(unsure):
        # projected half size of each box on each normal: sum over its axes of |axis . normal|
        m = len(unsure)
        pick = unsure if rows is None else rows[unsure]
        axes = halves[pick].transpose(0, 2, 1).reshape(m * 3, 3)
        r_box = np.abs(axes @ normals).reshape(m, 3, len(planes)).sum(axis=1)
        out[unsure] = np.any(s[unsure] < -r_box, axis=1)
    return out
