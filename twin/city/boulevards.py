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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import LineString, MultiPolygon, Polygon

from twin.city.build import StepContext
from twin.city.pack import STATUSES
from twin.city.vector import read_vector, write_gpkg
from twin.config import Field, load_toml, positive, validate
from twin.errors import ConfigError

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
LAYER = "boulevards"

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


def boulevard_bands(
    sections: dict[str, Section], streets: dict[str, Any], *, file: str | Path
) -> dict[str, np.ndarray]:
    """Band polygons of every section laid along its street: columns geometry, street, kind, width.

    A street name the streets have no way of, or a street whose course does not suit its `order`,
    is a ConfigError naming the file and the street.
    """
    geoms, street, kind, width = [], [], [], []
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
            for (k, poly), b in zip(band_polygons(line, section), section.bands, strict=True):
                geoms.append(poly)
                street.append(name)
                kind.append(k)
                width.append(b.width)
    return {
        "geometry": np.array(geoms, dtype=object),
        "street": np.array(street, dtype=object),
        "kind": np.array(kind, dtype=object),
        "width": np.array(width, dtype=float),
    }


def build_boulevards(ctx: StepContext) -> None:
    """boulevards.gpkg: the band polygons of the pack's boulevard cross-sections (street, kind, width);
    empty when the pack has no `boulevards` layer."""
    if "boulevards" in ctx.pack.layers:
        file = ctx.source("boulevards")
        sections = read_boulevards(file)
        streets = read_vector(
            ctx.product("streets.gpkg"), ctx.pack.crs, fields=["name", "highway"], what="streets"
        )
        cols = boulevard_bands(sections, streets, file=file)
    else:
        cols = {
            "geometry": np.empty(0, dtype=object),
            "street": np.empty(0, dtype=object),
            "kind": np.empty(0, dtype=object),
            "width": np.empty(0, dtype=float),
        }
    geometry = cols.pop("geometry")
    write_gpkg(ctx.out(PRODUCT), LAYER, ctx.pack.crs, geometry, cols)
