"""Boulevard cross-sections: per street name, the bands across its street space (sidewalks, carriageways,
tram tracks, promenades, tree rows, ...), read from the pack's `boulevards` layer (TOML) and laid out
along the street's centre line as band polygons (boulevards.gpkg).

Bands are listed in compass order, independent of the direction the OSM ways are drawn in: with
`order = "west_to_east"` (a street running north-south) the first band is at the west edge, with
`order = "south_to_north"` (running east-west) at the south edge. `oriented` turns a centre line so that
its left side is the first band's side; `band_offsets` are signed distances from it, left positive.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyogrio
import shapely
from shapely.geometry import LineString, MultiPolygon, Polygon

from twin.city.build import StepContext
from twin.city.pack import STATUSES
from twin.city.vector import read_vector, write_gpkg
from twin.config import Field, load_toml, positive, validate
from twin.errors import ConfigError, DataError

KINDS = (
    "sidewalk",
    "bike_path",
    "parking",
    "carriageway",
    "tram",
    "promenade",
    "tree_row",
    "median",
)
ORDERS = ("west_to_east", "south_to_north")
TRACK_KINDS = ("tram", "carriageway")  # bands that may hold tram tracks
MIN_WIDTH_M, MAX_WIDTH_M = 10.0, 120.0  # total street space a section may have
MAX_AXIS_DEG = 60.0  # a street's course may differ this much from the axis its order implies
PRODUCT = "boulevards.gpkg"
STEP_VERSION = 2  # bump when the product the `boulevards` step writes changes
LAYER = "boulevards"
TRACKS_LAYER = "tram_tracks"

_BAND = {
    "kind": Field(str, choices=KINDS),
    "width": Field(float, check=positive, doc="metres"),
    "tracks": Field(
        int,
        required=False,
        check=lambda v: None if 0 <= v <= 4 else "a number of tracks from 0 to 4",
    ),
}
_STREET = {
    "order": Field(str, choices=ORDERS),
    "status": Field(str, choices=STATUSES),
    "source": Field(str),
    "note": Field(str, required=False, default=""),
    "bands": Field(items=_BAND),
}


@dataclass(frozen=True)
class Band:
    """One band across a street: its kind, width (m) and tram tracks in it."""

    kind: str
    width: float
    tracks: int = 0


@dataclass(frozen=True)
class Section:
    """The cross-section of one street: bands from the first edge (west or south) to the other."""

    street: str
    order: str
    bands: tuple[Band, ...]
    status: str
    source: str
    note: str = ""

    @property
    def width(self) -> float:
        """Total width of the street space in metres."""
        return float(sum(b.width for b in self.bands))


def read_boulevards(path: str | Path) -> dict[str, Section]:
    """Read and validate a boulevards TOML file: {street name: Section}, in file order.

    Errors are one line naming the file, the street and the key (a ConfigError).
    """
    path = Path(path)
    data = validate(load_toml(path), {"streets": Field(dict)}, file=path)
    out: dict[str, Section] = {}
    for name, spec in data["streets"].items():
        where = f"streets.{name}"
        if not isinstance(spec, dict):
            raise ConfigError(f"{path}: '{where}' must be a table, got {spec!r}"[:200])
        cfg = validate(spec, _STREET, file=path, where=f"{where}.")
        bands = []
        for i, b in enumerate(cfg["bands"]):
            tracks = b["tracks"]
            if tracks is None:
                tracks = (2 if b["width"] >= 5.5 else 1) if b["kind"] == "tram" else 0
            elif tracks and b["kind"] not in TRACK_KINDS:
                raise ConfigError(
                    f"{path}: '{where}.bands[{i}].tracks' is only for a tram or carriageway band, "
                    f"not {b['kind']}"
                )
            bands.append(Band(b["kind"], float(b["width"]), int(tracks)))
        section = Section(
            name, cfg["order"], tuple(bands), cfg["status"], cfg["source"], cfg["note"]
        )
        if not MIN_WIDTH_M <= section.width <= MAX_WIDTH_M:
            raise ConfigError(
                f"{path}: '{where}.bands' must add up to {MIN_WIDTH_M:g}-{MAX_WIDTH_M:g} m, "
                f"got {section.width:g} m"
            )
        out[name] = section
    return out


def band_offsets(section: Section) -> list[tuple[str, float, float]]:
    """(kind, left_m, right_m) per band: signed offsets of its edges from the centre line of the
    oriented street (left positive), left_m > right_m; the bands touch and span the total width."""
    edge = section.width / 2
    out = []
    for b in section.bands:
        out.append((b.kind, edge, edge - b.width))
        edge -= b.width
    return out


def oriented(line: LineString, section: Section) -> LineString:
    """The centre line in the direction whose left side holds the section's first band: northward for
    `west_to_east` (left = west), westward for `south_to_north` (left = south)."""
    (x0, y0), (x1, y1) = line.coords[0], line.coords[-1]
    along = (y1 - y0) if section.order == "west_to_east" else (x0 - x1)
    return shapely.reverse(line) if along < 0 else line


def axis_error_deg(line: LineString, section: Section) -> float:
    """Angle (degrees, 0-90) between the street's end-to-end course and the axis its order implies."""
    (x0, y0), (x1, y1) = line.coords[0], line.coords[-1]
    dx, dy = abs(x1 - x0), abs(y1 - y0)
    if section.order == "west_to_east":
        return math.degrees(math.atan2(dx, dy))
    return math.degrees(math.atan2(dy, dx))


def band_polygons(line: LineString, section: Section) -> list[tuple[str, Polygon | MultiPolygon]]:
    """(kind, polygon) per band along the centre line: the strip between the offset curves of its two
    edges (flat ends at the line's ends, mitred at its bends)."""
    line = oriented(line, section)
    out = []
    for kind, left, right in band_offsets(section):
        a = _offset(line, left)
        b = _offset(line, right)
        ring = np.concatenate([np.asarray(a.coords), np.asarray(b.coords)[::-1]])
        poly = shapely.Polygon(ring)
        if not poly.is_valid:  # an offset wider than a bend's radius folds; keep what is covered
            parts = shapely.get_parts(shapely.make_valid(poly))
            poly = shapely.union_all(parts[shapely.get_type_id(parts) == 3])
        out.append((kind, poly))
    return out


def _offset(line: LineString, d: float) -> LineString:
    """The line offset by d (left positive), one piece in the line's direction: GEOS sometimes splits
    the offset of a nearly straight line at a vertex, so pieces are joined again."""
    if abs(d) < 1e-9:
        return line
    out = shapely.offset_curve(line, d, join_style="mitre", mitre_limit=5.0)
    if out.geom_type != "LineString":
        out = shapely.line_merge(out)
    if out.geom_type != "LineString":  # pieces that do not share end points: join them in order
        out = shapely.LineString(np.concatenate([p.coords for p in shapely.get_parts(out)]))
    return out


def street_centre_lines(streets: dict[str, Any], name: str) -> list[LineString]:
    """The centre lines of the street ways named `name` (highway ways only), joined where they meet."""
    names = np.asarray(streets["name"], dtype=object).astype(str)
    highway = np.asarray(streets["highway"], dtype=object).astype(str)
    sel = (names == name) & (highway != "")
    if not sel.any():
        return []
    merged = shapely.line_merge(shapely.union_all(streets["geometry"][sel]))
    return list(shapely.get_parts(merged))


def track_lines(line: LineString, section: Section) -> list[tuple[int, LineString]]:
    """(band index, centre line) of every tram track: a band's n tracks sit evenly across it."""
    line = oriented(line, section)
    out = []
    for i, (b, (_, left, _)) in enumerate(zip(section.bands, band_offsets(section), strict=True)):
        for k in range(b.tracks):
            out.append((i, _offset(line, left - b.width * (2 * k + 1) / (2 * b.tracks))))
    return out


_BAND_COLUMNS = {
    "street": object,
    "band": np.int64,
    "kind": object,
    "width": float,
    "tracks": np.int64,
}
ROAD_KINDS = ("carriageway", "tram")
JUNCTION_BAND = -1  # `band` of the carriageway box where two boulevards meet at a corner


@dataclass
class _Laid:
    """One centre line of a street (oriented) with its band polygons and track lines."""

    name: str
    section: Section
    line: LineString
    tracks: list[tuple[int, Any]]
    polys: list[Any] = field(default_factory=list)

    @property
    def half(self) -> float:
        return self.section.width / 2

    def reach(self) -> float:
        """Distance from the centre line to the far edge of the outermost road band (0 if none)."""
        road = self.pick("road")
        if not road:
            return 0.0
        offsets = band_offsets(self.section)
        return max(abs(offsets[road[0]][1]), abs(offsets[road[-1]][2]))

    def pick(self, which: str) -> list[int]:
        """Indices of the bands: "all", "road" (carriageways, tracks), "tram", "other" (no road),
        "core" (first to last road band) or "strip" (the bands in the core that are no road)."""
        road = [i for i, b in enumerate(self.section.bands) if b.kind in ROAD_KINDS]
        n = len(self.section.bands)
        if which == "all":
            return list(range(n))
        if which == "road":
            return road
        if which == "tram":
            return [i for i in road if self.section.bands[i].kind == "tram"]
        if which == "other":
            return [i for i in range(n) if i not in road]
        if not road:
            return []
        core = list(range(road[0], road[-1] + 1))
        return core if which == "core" else [i for i in core if i not in road]

    def union(self, which: str) -> Any:
        """The union of the bands `which` picks (see `pick`)."""
        return shapely.union_all([self.polys[i] for i in self.pick(which)])

    def ends_in(self, point: Any) -> bool:
        """True if the point lies in this street's space away from its ends (a T-junction)."""
        along = self.line.project(point)
        return (
            self.line.distance(point) <= self.half
            and self.half < along < self.line.length - self.half
        )

    def clip(self, which: str, shape: Any) -> None:
        """Cut `shape` out of the bands `which` picks (see `pick`)."""
        if shape is None or shape.is_empty:
            return
        for i in self.pick(which):
            if shapely.intersects(self.polys[i], shape):
                self.polys[i] = shapely.difference(self.polys[i], shape)


def _extended(line: LineString, start: float, end: float) -> LineString:
    """The line lengthened straight on by `start` metres before its start and `end` after its end."""
    xy = np.asarray(line.coords, dtype=float)
    for i, j, d in ((0, 1, start), (-1, -2, end)):
        if d > 0:
            step = xy[i] - xy[j]
            xy[i] = xy[i] + step / np.hypot(*step) * d
    return shapely.LineString(xy)


def _meetings(laid: list[_Laid]) -> list[tuple[str, _Laid, _Laid, int]]:
    """Where boulevards meet: ("T", a, b, end) where a's end lies in b's space away from b's ends,
    ("L", a, b, end) where it lies near one of b's ends (a corner)."""
    out = []
    for a in laid:
        for k, xy in enumerate((a.line.coords[0], a.line.coords[-1])):
            pt = shapely.Point(xy)
            for b in laid:
                if b.name != a.name and b.line.distance(pt) <= b.half:
                    out.append(("T" if b.ends_in(pt) else "L", a, b, k))
    return out


def _lay(laid: list[_Laid], meetings: list[tuple[str, _Laid, _Laid, int]]) -> None:
    """Band polygons of every line; at a corner the bands run on across the other street, the
    carriageways and tracks to its outermost road band, the rest to its far edge."""
    for a in laid:
        road, other = [0.0, 0.0], [0.0, 0.0]
        for kind, a2, b, k in meetings:
            if kind == "L" and a2 is a:
                road[k], other[k] = max(road[k], b.reach()), max(other[k], b.half)
        by_road = band_polygons(_extended(a.line, *road), a.section)
        by_other = band_polygons(_extended(a.line, *other), a.section)
        road_bands = set(a.pick("road"))
        a.polys = [
            (r if i in road_bands else o)[1]
            for i, (r, o) in enumerate(zip(by_road, by_other, strict=True))
        ]


def _join_at_junctions(
    laid: list[_Laid], meetings: list[tuple[str, _Laid, _Laid, int]]
) -> list[Any]:
    """Fit the bands of boulevards that meet; returns the carriageway boxes of the corners.

    At a T-junction the side street's carriageways and tracks stop at the other's central strip and
    its footways at the other's edge, and its carriageways cross the other's footways. At a corner
    each street's central strip stops at the other's edge, the footways, strips and tree rows leave
    the core where both streets' carriageways cross, and that core becomes one carriageway box.
    Footways and strips never lie on another street's carriageway.
    """
    for kind, a, b, _ in meetings:
        if kind != "T":
            continue
        strip = b.union("strip")
        a.clip("road", strip)
        if not strip.is_empty:
            a.tracks = [
                (i, part)
                for i, t in a.tracks
                for part in shapely.get_parts(shapely.difference(t, strip))
                if not part.is_empty
            ]
        a.clip("other", b.union("all"))
    boxes, seen = [], set()
    for kind, a, b, _ in meetings:
        pair = frozenset((id(a), id(b)))
        if kind != "L" or pair in seen or not a.pick("road") or not b.pick("road"):
            continue
        seen.add(pair)
        core = shapely.intersection(a.union("core"), b.union("core"))
        space_a, space_b = a.union("all"), b.union("all")
        a.clip("strip", space_b)
        b.clip("strip", space_a)
        for x in (a, b):  # in the crossing the tracks lie in its asphalt
            x.clip("other", core)
            x.clip("tram", core)
        if not core.is_empty:
            boxes.append((a.name, core))
    for _, a, b, _ in meetings:
        a.clip("other", b.union("road"))
        b.clip("other", a.union("road"))
    return boxes


def street_cores(bands: dict[str, Any]) -> dict[str, Any]:
    """Per street, the union of its bands from its first to its last carriageway or tram band, and
    its corner boxes (the part other streets stay out of); streets without such a band have none."""
    street = np.asarray(bands["street"], dtype=object).astype(str)
    kind = np.asarray(bands["kind"], dtype=object).astype(str)
    index = np.asarray(bands["band"], dtype=np.int64)
    geom = np.asarray(bands["geometry"], dtype=object)
    out = {}
    for name in dict.fromkeys(street.tolist()):
        mine = street == name
        road = mine & np.isin(kind, ROAD_KINDS) & (index != JUNCTION_BAND)
        if road.any():
            lo, hi = index[road].min(), index[road].max()
            box = mine & (index == JUNCTION_BAND)
            out[name] = shapely.union_all(geom[(mine & (index >= lo) & (index <= hi)) | box])
    return out


def boulevard_bands(
    sections: dict[str, Section], streets: dict[str, Any], *, file: str | Path
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Band polygons and tram-track lines of every section laid along its street, fitted together
    where boulevards meet.

    Bands: columns geometry, street, band (index from the first edge; JUNCTION_BAND for a corner's
    carriageway box, kind carriageway, width 0), kind, width, tracks. Tracks: geometry (centre line
    of one track), street, band. A street name the streets have no way of, or a street whose course
    does not suit its `order`, is a ConfigError naming the file and the street.
    """
    laid = []
    for name, section in sections.items():
        lines = street_centre_lines(streets, name)
        if not lines:
            raise ConfigError(
                f"{file}: 'streets.{name}': the pack's streets have no way named {name!r}"
            )
        for line in lines:
            err = axis_error_deg(line, section)
            if err > MAX_AXIS_DEG:
                runs = "east-west" if section.order == "west_to_east" else "north-south"
                raise ConfigError(
                    f"{file}: 'streets.{name}.order': {section.order} lists the bands of a street "
                    f"across its course, but {name} runs {runs} ({err:.0f} degrees off)"
                )
            line = oriented(line, section)
            laid.append(_Laid(name, section, line, track_lines(line, section)))
    meetings = _meetings(laid)
    _lay(laid, meetings)
    boxes = _join_at_junctions(laid, meetings)
    bands: dict[str, list[Any]] = {"geometry": [], **{k: [] for k in _BAND_COLUMNS}}
    tracks: dict[str, list[Any]] = {"geometry": [], "street": [], "band": []}
    rows = [
        (poly, a.name, i, b.kind, b.width, b.tracks)
        for a in laid
        for i, (b, poly) in enumerate(zip(a.section.bands, a.polys, strict=True))
    ]
    rows += [(box, name, JUNCTION_BAND, "carriageway", 0.0, 0) for name, box in boxes]
    for row in rows:
        if row[0].is_empty:
            continue
        for key, v in zip(("geometry", *_BAND_COLUMNS), row, strict=True):
            bands[key].append(v)
    for a in laid:
        for i, t in a.tracks:
            tracks["geometry"].append(t)
            tracks["street"].append(a.name)
            tracks["band"].append(i)
    types = {"geometry": object, **_BAND_COLUMNS}
    return (
        {k: np.array(v, dtype=types[k]) for k, v in bands.items()},
        {k: np.array(v, dtype=types[k]) for k, v in tracks.items()},
    )


def build_boulevards(ctx: StepContext) -> None:
    """boulevards.gpkg: layer `boulevards`, the band polygons of the pack's cross-sections (street,
    band, kind, width, tracks), and layer `tram_tracks`, one centre line per track (only where there
    are tracks); an empty `boulevards` layer when the pack has no `boulevards` layer."""
    tracks: dict[str, np.ndarray] = {"geometry": np.empty(0, dtype=object)}
    if "boulevards" in ctx.pack.layers:
        file = ctx.source("boulevards")
        sections = read_boulevards(file)
        streets = read_vector(
            ctx.product("streets.gpkg"), ctx.pack.crs, fields=["name", "highway"], what="streets"
        )
        bands, tracks = boulevard_bands(sections, streets, file=file)
    else:
        bands = {"geometry": np.empty(0, dtype=object)}
        bands.update({k: np.empty(0, dtype=t) for k, t in _BAND_COLUMNS.items()})
    out = ctx.out(PRODUCT)
    write_gpkg(out, LAYER, ctx.pack.crs, bands.pop("geometry"), bands)
    if len(tracks["geometry"]):
        write_gpkg(out, TRACKS_LAYER, ctx.pack.crs, tracks.pop("geometry"), tracks)


def read_boulevard_product(path: str | Path) -> tuple[dict[str, Any], np.ndarray]:
    """The bands (geometry, street, band, kind, width, tracks) and tram-track lines of a
    boulevards.gpkg, as written by the `boulevards` build step."""
    path = Path(path)
    try:
        layers = {str(n) for n, _ in pyogrio.list_layers(path)}
        meta, _, wkb, values = pyogrio.raw.read(path, layer=LAYER)
        bands: dict[str, Any] = {"geometry": shapely.from_wkb(wkb)}
        bands.update(zip(meta["fields"], values, strict=True))
        tracks = np.empty(0, dtype=object)
        if TRACKS_LAYER in layers:
            tracks = shapely.from_wkb(pyogrio.raw.read(path, layer=TRACKS_LAYER)[2])
    except Exception as exc:  # pyogrio raises several types for unreadable files
        raise DataError(f"{path}: cannot read the boulevard bands: {exc}") from None
    missing = [k for k in ("street", "kind") if k not in bands]
    if missing:
        raise DataError(f"{path}: layer '{LAYER}' has no field {', '.join(missing)}")
    unknown = sorted(set(np.asarray(bands["kind"]).astype(str).tolist()) - set(KINDS))
    if unknown:
        raise DataError(
            f"{path}: layer '{LAYER}': unknown band kind {', '.join(unknown)}; "
            f"expected one of {', '.join(KINDS)}"
        )
    return bands, tracks
