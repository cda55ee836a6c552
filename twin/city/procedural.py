"""Procedural building footprints inside city blocks, for places where no official footprints are at hand.

The Krefeld pack ships footprints made here from its block polygons and a fixed seed; a city with LoD2 or
ALKIS footprints uses those instead. All geometry is planar EPSG:25832 metres (shapely).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry import LineString, MultiPoint, Point, Polygon, box
from shapely.geometry.polygon import orient

from twin.errors import DataError

USES = ("residential", "mixed", "commercial", "civic", "industrial", "port")
# Building forms of a block: perimeter buildings round a courtyard, terraced rows, detached houses,
# villas on large lots, or halls and silos. A block without a form gets default_form(use, storeys).
FORMS = ("perimeter", "terraced", "detached", "villa", "halls")

# Half of the gap left between neighbouring footprints and between a footprint and its block edge.
# 0.15 m keeps footprints disjoint after the 1e-7 degree (about 1 cm) rounding of RFC 7946 GeoJSON.
GAP_M = 0.15
MIN_FOOTPRINT_M2 = 35.0  # smaller slivers (corners, odd lots) are dropped rather than built

# Perimeter-block parameters per use: (depth m, lot width min m, lot width max m, empty-lot probability,
# probability of a gabled roof, ground-floor height m). Depths follow the 12-18 m of German inner-city
# perimeter blocks; lot widths the usual 8-25 m parcel fronts; department stores and civic buildings wider.
_PERIMETER = {
    "mixed": (13.0, 9.0, 20.0, 0.04, 0.45, 4.0),
    "commercial": (18.0, 14.0, 32.0, 0.02, 0.10, 4.5),
    "civic": (16.0, 25.0, 55.0, 0.00, 0.20, 4.5),
    "residential": (11.0, 8.0, 16.0, 0.06, 0.80, 3.0),
}
_UPPER_FLOOR_M = 3.1
_SIMPLIFY_M = 0.05  # below the GAP_M margin, so footprints stay disjoint and inside their block
_ROOF_PITCH_DEG = 40.0  # a common pitch of gabled roofs in the Lower Rhine region


def generate_footprints(blocks: Iterable[Mapping[str, Any]], seed: int) -> list[dict[str, Any]]:
    """Footprints for every block: perimeter buildings round courtyards, houses, or halls and silos.

    Each block is a mapping with `id`, `use` (one of USES), `storeys_min`, `storeys_max` and `geometry`
    (a shapely Polygon in EPSG:25832). Each footprint returned is a dict with `id` ("<block id>-<n>"),
    `block`, `use`, `storeys`, `height` (m above ground, to the ridge for gabled roofs), `roof`
    ("flat" | "gabled") and `geometry` (Polygon, EPSG:25832). The random stream of a block is seeded from
    `seed` and the block id, so editing one block does not reshuffle the buildings of all others.
    """
    out: list[dict[str, Any]] = []
    for block in blocks:
        bid, use, form, smin, smax, poly = _check_block(block)
        rng = np.random.default_rng([int(seed), zlib.crc32(bid.encode("utf-8"))])
        if form == "halls":
            parts = _halls(poly, "port" if use == "port" else "industrial", smin, smax, rng)
        elif form == "detached":
            parts = _houses(poly, smin, smax, rng)
        elif form == "villa":
            parts = _houses(
                poly, smin, smax, rng, lots=(20.0, 32.0), empty=0.15, gap=(3.0, 5.0), depth=20.0
            )
        elif form == "terraced":
            parts = _terraced(poly, smin, smax, rng)
        else:
            parts = _perimeter(poly, use if use in _PERIMETER else "mixed", smin, smax, rng)
        for n, part in enumerate(parts, start=1):
            part["id"] = f"{bid}-{n:03d}"
            part["block"] = bid
            part["use"] = use
            out.append(part)
    return out


def default_form(use: str, storeys_max: int) -> str:
    """The form of a block that names none: halls for industry and port, detached houses for low
    residential blocks, perimeter buildings otherwise."""
    if use in ("industrial", "port"):
        return "halls"
    return "detached" if use == "residential" and storeys_max <= 3 else "perimeter"


def _check_block(block: Mapping[str, Any]) -> tuple[str, str, str, int, int, Polygon]:
    """Validate one block mapping; bad input raises DataError naming the block and the field."""
    bid = str(block.get("id", "?"))
    for key in ("id", "use", "storeys_min", "storeys_max", "geometry"):
        if key not in block:
            raise DataError(f"block '{bid}': field '{key}' is missing")
    use = block["use"]
    if use not in USES:
        raise DataError(f"block '{bid}': field 'use' = {use!r}; expected one of {', '.join(USES)}")
    try:
        smin, smax = int(block["storeys_min"]), int(block["storeys_max"])
    except (TypeError, ValueError):
        raise DataError(
            f"block '{bid}': fields 'storeys_min'/'storeys_max' must be integers"
        ) from None
    if not 1 <= smin <= smax:
        raise DataError(
            f"block '{bid}': storeys_min={smin}, storeys_max={smax}; expected 1 <= min <= max"
        )
    poly = block["geometry"]
    if not isinstance(poly, Polygon) or poly.is_empty or not poly.is_valid:
        raise DataError(f"block '{bid}': field 'geometry' must be a valid Polygon in EPSG:25832")
    form = block.get("form") or default_form(use, smax)
    if form not in FORMS:
        raise DataError(
            f"block '{bid}': field 'form' = {form!r}; expected one of {', '.join(FORMS)}"
        )
    return bid, use, form, smin, smax, poly


def _largest(geom: Any) -> Polygon | None:
    """The largest polygon of a (multi)polygon or collection, or None."""
    polys = [g for g in getattr(geom, "geoms", [geom]) if isinstance(g, Polygon) and not g.is_empty]
    return max(polys, key=lambda g: g.area) if polys else None


def _sides(ring: LineString, max_turn_deg: float = 25.0) -> list[LineString]:
    """Split a closed boundary into straight-ish sides at the corners where it turns more than max_turn."""
    pts = np.asarray(ring.coords)[:-1]
    n = len(pts)
    heading = []
    for i in range(n):
        d = pts[(i + 1) % n] - pts[i]
        heading.append(math.atan2(d[1], d[0]))
    corners = []
    for i in range(n):
        turn = abs((heading[i] - heading[i - 1] + math.pi) % (2 * math.pi) - math.pi)
        if math.degrees(turn) > max_turn_deg:
            corners.append(i)
    if not corners:
        corners = [0]
    sides = []
    for k, start in enumerate(corners):
        end = corners[(k + 1) % len(corners)]
        idx = (
            list(range(start, end + 1))
            if end > start
            else list(range(start, n)) + list(range(0, end + 1))
        )
        if len(idx) >= 2:
            sides.append(LineString(pts[idx]))
    return sides


def _lot_points(
    ring: LineString, wmin: float, wmax: float, rng: np.random.Generator
) -> list[Point]:
    """Lot centres along each side, at randomly varied parcel widths between wmin and wmax."""
    points = []
    for side in _sides(ring):
        length = side.length
        n = max(1, round(length / rng.uniform(wmin, wmax)))
        step = length / n
        for i in range(n):
            s = (i + 0.5 + rng.uniform(-0.2, 0.2)) * step
            points.append(side.interpolate(s))
    return points


def _lots(area: Polygon, ring: LineString, wmin: float, wmax: float, rng: np.random.Generator):
    """Cut `area` into lots: Voronoi cells of lot centres on the boundary, so cuts run square to the street.

    Returned in order along the boundary so the random draws that follow do not depend on GEOS's cell order.
    """
    pts = _lot_points(ring, wmin, wmax, rng)
    if len(pts) < 2:
        return [area]
    cells = shapely.voronoi_polygons(MultiPoint(pts), extend_to=area.buffer(50.0))
    lots = []
    for cell in cells.geoms:
        lot = _largest(area.intersection(cell))
        if lot is not None and lot.area > 1.0:
            lots.append(lot)
    lots.sort(key=lambda g: ring.project(g.representative_point()))
    return lots


def _shrink(poly: Polygon, d: float) -> Polygon | None:
    """Inward offset with square corners (mitre joins keep footprints rectilinear)."""
    return _largest(poly.buffer(-d, join_style="mitre"))


def _gabled_extra(poly: Polygon) -> float:
    """Ridge height above the eaves for a gabled roof spanning the footprint's short side."""
    rect = poly.minimum_rotated_rectangle
    c = np.asarray(rect.exterior.coords)
    a, b = np.hypot(*(c[1] - c[0])), np.hypot(*(c[2] - c[1]))
    span = min(a, b, 14.0)  # deeper buildings get a flat top behind the gable: cap the span
    return 0.5 * span * math.tan(math.radians(_ROOF_PITCH_DEG))


def _building(poly: Polygon, storeys: int, ground: float, gabled: bool) -> dict[str, Any]:
    """A footprint record; height = ground floor + upper floors (+ the roof to its ridge when gabled)."""
    # vertices closer than a few cm (slivers of the lot cuts) would fold when GeoJSON rounds them
    poly = poly.simplify(_SIMPLIFY_M)
    height = ground + (storeys - 1) * _UPPER_FLOOR_M
    if gabled:
        height += _gabled_extra(poly)
    return {
        "geometry": orient(poly, 1.0),
        "storeys": int(storeys),
        "height": round(float(height), 2),
        "roof": "gabled" if gabled else "flat",
    }


def _perimeter(
    poly: Polygon, use: str, smin: int, smax: int, rng: np.random.Generator
) -> list[dict]:
    """Perimeter-block buildings along the block edges round an open courtyard (inner-city blocks).

    Lots are cut square to the street; where the block is too narrow for a courtyard the lots meet back to
    back. A few lots stay empty (gateways, gaps from war damage never rebuilt).
    """
    depth, wmin, wmax, p_empty, p_gabled, ground = _PERIMETER[use]
    depth *= rng.uniform(0.9, 1.15)
    inner = poly.buffer(-depth, join_style="mitre")
    band = poly.difference(inner) if not inner.is_empty else poly
    out = []
    for lot in _lots(band, poly.exterior, wmin, wmax, rng):
        fp = _shrink(lot, GAP_M)
        empty = rng.random() < p_empty
        storeys = int(rng.integers(smin, smax + 1))
        gabled = rng.random() < p_gabled
        if fp is None or empty or fp.area < MIN_FOOTPRINT_M2:
            continue
        out.append(_building(fp, storeys, ground, gabled))
    return out


def _houses(
    poly: Polygon,
    smin: int,
    smax: int,
    rng: np.random.Generator,
    lots: tuple[float, float] = (12.0, 20.0),
    empty: float = 0.25,
    gap: tuple[float, float] = (1.0, 2.5),
    depth: float | None = None,
) -> list[dict]:
    """Detached and semi-detached houses set back from the street, with gardens behind and gaps between.

    `lots` is the range of lot fronts (m), `empty` the share of lots left as gardens, `gap` the range of
    half the distance between neighbouring houses, `depth` the depth of the building band behind the
    front garden; villas take wider lots, gaps and a deeper band.
    """
    band_depth, _, _, _, p_gabled, ground = _PERIMETER["residential"]
    depth = band_depth if depth is None else depth
    setback = rng.uniform(3.0, 5.0)
    front = poly.buffer(-setback, join_style="mitre")
    front = _largest(front)
    if front is None:
        return []
    inner = front.buffer(-depth, join_style="mitre")
    band = front.difference(inner) if not inner.is_empty else front
    out = []
    for lot in _lots(band, front.exterior, lots[0], lots[1], rng):
        side_gap = rng.uniform(*gap)  # half the distance between neighbouring houses
        fp = _shrink(lot, side_gap)
        is_empty = rng.random() < empty
        storeys = int(rng.integers(smin, smax + 1))
        gabled = rng.random() < p_gabled
        if fp is None or is_empty or fp.area < MIN_FOOTPRINT_M2:
            continue
        out.append(_building(fp, storeys, ground, gabled))
    return out


_TERRACED_LOT_M = (5.5, 7.5)  # house fronts of German Reihenhäuser
_TERRACED_MAX_M2 = 250.0  # larger (corner) lots of a row stay gardens


def _terraced(poly: Polygon, smin: int, smax: int, rng: np.random.Generator) -> list[dict]:
    """Rows of 4-8 terraced houses set back from the street, one storey count and roof per row, a lot
    left open between rows (a path to the gardens behind)."""
    depth = rng.uniform(9.0, 12.0)
    front = _largest(poly.buffer(-rng.uniform(3.0, 6.0), join_style="mitre"))
    if front is None:
        return []
    inner = front.buffer(-depth, join_style="mitre")
    band = front.difference(inner) if not inner.is_empty else front
    out = []
    left, storeys, gabled = 0, smin, True
    for lot in _lots(band, front.exterior, *_TERRACED_LOT_M, rng):
        if left == 0:  # the gap before a new row
            left = int(rng.integers(4, 9))
            storeys = int(rng.integers(smin, smax + 1))
            gabled = rng.random() < 0.75
            continue
        left -= 1
        fp = _shrink(lot, GAP_M)
        if fp is None or not MIN_FOOTPRINT_M2 <= fp.area <= _TERRACED_MAX_M2:
            continue
        out.append(_building(fp, storeys, 3.0, gabled))
    return out


def _long_axis_deg(poly: Polygon) -> float:
    """Direction (degrees from east) of the long side of the polygon's minimum rotated rectangle."""
    c = np.asarray(poly.minimum_rotated_rectangle.exterior.coords)
    edges = [c[1] - c[0], c[2] - c[1]]
    long_edge = max(edges, key=lambda e: float(np.hypot(*e)))
    return math.degrees(math.atan2(long_edge[1], long_edge[0]))


_HALL_SLICE_M = 350.0  # long yards are packed slice by slice, so rows follow a gently curving quay


def _halls(poly: Polygon, use: str, smin: int, smax: int, rng: np.random.Generator) -> list[dict]:
    """Rows of large halls and warehouses, with silo rows in port blocks, aligned with the yard's long axis.

    A long yard (a quay or a mole that follows a curving river) is cut into slices across its long axis;
    each slice is packed in a frame rotated onto its own minimum rotated rectangle: rows of rectangles
    with yard aisles between them, kept where they lie inside the slice less a yard margin.
    """
    angle = _long_axis_deg(poly)
    origin = poly.centroid
    local = affinity.rotate(poly, -angle, origin=origin)
    x0, y0, x1, y1 = local.bounds
    n = max(1, round((x1 - x0) / _HALL_SLICE_M))
    width = (x1 - x0) / n
    out = []
    for k in range(n):
        slab = box(x0 + k * width, y0 - 1.0, x0 + (k + 1) * width, y1 + 1.0)
        for piece in sorted(
            (p for p in getattr(local.intersection(slab), "geoms", [local.intersection(slab)])),
            key=lambda p: (p.centroid.x, p.centroid.y),
        ):
            if isinstance(piece, Polygon) and piece.area > 500.0:
                piece = affinity.rotate(piece, angle, origin=origin)
                out += _hall_rows(piece, poly, use, smin, smax, rng)
    return out


def _hall_rows(
    piece: Polygon, poly: Polygon, use: str, smin: int, smax: int, rng: np.random.Generator
) -> list[dict]:
    """Pack one yard piece with rows of halls (or silos); `poly` is the whole block they must stay in."""
    angle = _long_axis_deg(piece)
    origin = piece.centroid
    local = affinity.rotate(piece, -angle, origin=origin)
    inner = _largest(local.buffer(-rng.uniform(5.0, 9.0), join_style="mitre"))
    if inner is None:
        return []
    x0, y0, x1, y1 = inner.bounds
    placed: list[tuple[Polygon, str]] = []
    y = y0
    while y < y1:
        silo_row = use == "port" and rng.random() < 0.2
        if silo_row:
            r = rng.uniform(5.0, 8.0)
            depth = 2 * r
            x = x0 + rng.uniform(0.0, 10.0)
            while x + 2 * r <= x1:
                cand = Point(x + r, y + r).buffer(r, quad_segs=6)
                if inner.contains(cand):
                    placed.append((cand, "silo"))
                x += 2 * r + 1.5
        else:
            depth = rng.uniform(25.0, 60.0)
            x = x0 + rng.uniform(0.0, 10.0)
            while x < x1:
                length = rng.uniform(40.0, 140.0)
                cand = box(x, y, x + length, y + depth)
                if not inner.contains(cand):
                    # Clip at the yard edge when little is lost; halls follow odd plot shapes too.
                    clipped = _largest(cand.intersection(inner))
                    cand = (
                        clipped if clipped is not None and clipped.area > 0.8 * cand.area else None
                    )
                if cand is not None and cand.area >= 300.0:
                    placed.append((cand, "hall"))
                x += length + rng.uniform(10.0, 25.0)
        y += depth + rng.uniform(12.0, 25.0)
    out = []
    for geom, kind in placed:
        geom = affinity.rotate(geom, angle, origin=origin)
        fp = _shrink(geom, GAP_M)
        if fp is None or not poly.contains(fp):
            continue
        if kind == "silo":
            height = rng.uniform(25.0, 40.0)
            out.append(
                {
                    "geometry": orient(fp, 1.0),
                    "storeys": smin,  # a silo has no floors; count it as the lowest the block allows
                    "height": round(height, 2),
                    "roof": "flat",
                }
            )
        else:
            storeys = int(rng.integers(smin, smax + 1))
            height = (
                6.0 + 4.5 * storeys + rng.uniform(-1.0, 1.0)
            )  # halls: tall single spans, not floors
            out.append(
                {
                    "geometry": orient(fp, 1.0),
                    "storeys": storeys,
                    "height": round(height, 2),
                    "roof": "flat",
                }
            )
    return out
