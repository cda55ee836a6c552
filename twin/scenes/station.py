"""AR station files (`scenes/station-<name>.toml`): where a station stands on a Wall, how far its scene
reaches, what it shows, and the redesigned cross-section of its street.

    [station]
    title = "Nordwall"
    street = "Nordwall"        # the street (streets.gpkg `name`) whose axis the redesign follows
    lat = 51.33684             # anchor, WGS84 degrees
    lon = 6.56187
    height = 39.3              # anchor at ground level, m above sea level (DHHN2016)
    heading = 82.0             # degrees clockwise from north, along the Wall's axis
    radius = 120.0             # m around the anchor
    layers = ["buildings", "ground", "trees", "redesign"]

    [redesign]                 # optional; without `bands` the pack's boulevards.toml section is used
    title = "..."
    bands = [{ kind = "sidewalk", width = 4.0 }, ...]   # compass order, as in boulevards.toml
    bench_spacing = 20.0       # m between benches on sidewalk and promenade bands (0: none)
    tree_spacing = 10.0        # m between trees on tree_row bands

A station file is also a view (`twin scene render --view station-nordwall`): its camera stands behind
the anchor, looking along the heading over the station (`station_camera`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twin.city.boulevards import KINDS, MAX_WIDTH_M, MIN_WIDTH_M
from twin.config import Field, load_toml, non_negative, positive, validate
from twin.errors import ConfigError
from twin.scenes.render import Camera

STATION_PREFIX = "station-"
STATION_LAYERS = ("buildings", "ground", "trees", "redesign")
# derived camera: this far behind the anchor (in radii) and this high above it, looking down
CAMERA_BACK_RADII = 0.9
CAMERA_UP_M = 55.0
CAMERA_PITCH_DEG = -25.0


def _between(lo: float, hi: float):
    return lambda v: None if lo <= v <= hi else f"a number from {lo:g} to {hi:g}"


def _layers(v: Any) -> str | None:
    ok = isinstance(v, list) and v and all(x in STATION_LAYERS for x in v)
    return None if ok else f"a list of layers from {list(STATION_LAYERS)}"


_BAND = {
    "kind": Field(str, choices=KINDS),
    "width": Field(float, check=positive, doc="band width in metres"),
}

STATION_SCHEMA = {
    "station": Field(
        schema={
            "title": Field(str, required=False, default=""),
            "street": Field(str, doc="street name of the Wall in streets.gpkg"),
            "lat": Field(float, check=_between(-90, 90), doc="anchor latitude, WGS84 degrees"),
            "lon": Field(float, check=_between(-180, 180), doc="anchor longitude, WGS84 degrees"),
            "height": Field(float, check=_between(-500, 9000), doc="anchor, m above sea level"),
            "heading": Field(float, check=_between(-360, 360), doc="degrees from north"),
            "radius": Field(float, check=_between(10, 1000), doc="scene radius in metres"),
            "layers": Field(list, required=False, default=list(STATION_LAYERS), check=_layers),
        }
    ),
    "redesign": Field(
        required=False,
        default=None,
        schema={
            "title": Field(str, required=False, default=""),
            "source": Field(str, required=False, default=""),
            "bands": Field(items=_BAND, required=False, default=None),
            "bench_spacing": Field(float, required=False, default=20.0, check=non_negative),
            "tree_spacing": Field(float, required=False, default=10.0, check=positive),
        },
    ),
}


@dataclass(frozen=True)
class Station:
    """One AR station: anchor (WGS84, m a.s.l. at ground level), heading, radius, layers, redesign."""

    name: str
    title: str
    street: str
    lat: float
    lon: float
    height: float
    heading: float
    radius: float
    layers: tuple[str, ...]
    bands: tuple[tuple[str, float], ...] | None  # (kind, width) in compass order; None: the pack's
    redesign_title: str = ""
    redesign_source: str = ""
    bench_spacing: float = 20.0
    tree_spacing: float = 10.0
    path: str = ""


def station_name(path: Path) -> str:
    """`station-nordwall.toml` -> `nordwall`."""
    stem = Path(path).stem
    return stem[len(STATION_PREFIX) :] if stem.startswith(STATION_PREFIX) else stem


def is_station_file(data: dict[str, Any]) -> bool:
    """Whether a loaded scene file describes a station (it has a [station] table)."""
    return isinstance(data.get("station"), dict)


def station_from_dict(data: dict[str, Any], path: Path) -> Station:
    """Validate a loaded station file."""
    cfg = validate(data, STATION_SCHEMA, file=path)
    s, r = cfg["station"], cfg["redesign"] or {}
    bands = None
    if r.get("bands") is not None:
        bands = tuple((b["kind"], float(b["width"])) for b in r["bands"])
        total = sum(w for _, w in bands)
        if not bands or not MIN_WIDTH_M <= total <= MAX_WIDTH_M:
            raise ConfigError(
                f"{path}: 'redesign.bands' must add up to {MIN_WIDTH_M:g}-{MAX_WIDTH_M:g} m, "
                f"got {total:g} m"
            )
    return Station(
        name=station_name(path),
        title=s["title"],
        street=s["street"],
        lat=s["lat"],
        lon=s["lon"],
        height=s["height"],
        heading=s["heading"] % 360.0,
        radius=s["radius"],
        layers=tuple(s["layers"]),
        bands=bands,
        redesign_title=r.get("title", ""),
        redesign_source=r.get("source", ""),
        bench_spacing=float(r.get("bench_spacing", 20.0)),
        tree_spacing=float(r.get("tree_spacing", 10.0)),
        path=str(path),
    )


def load_station(path: str | Path) -> Station:
    """Read and validate a station file."""
    path = Path(path)
    data = load_toml(path)
    if not is_station_file(data):
        raise ConfigError(f"{path}: missing table '[station]': not a station file")
    return station_from_dict(data, path)


def station_files(scenes_dir: Path) -> list[Path]:
    """The station files in scenes/, sorted by name."""
    return sorted(Path(scenes_dir).glob(f"{STATION_PREFIX}*.toml"))


def resolve_station(spec: str | Path, scenes_dir: Path) -> Station:
    """A station by name (`nordwall` -> scenes/station-nordwall.toml) or by path to its file."""
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        return load_station(path)
    for candidate in (scenes_dir / f"{STATION_PREFIX}{spec}.toml", scenes_dir / f"{spec}.toml"):
        if candidate.is_file() and is_station_file(load_toml(candidate)):
            return load_station(candidate)
    known = ", ".join(station_name(p) for p in station_files(scenes_dir)) or "none"
    raise ConfigError(f"station {spec!r}: not a station in {scenes_dir} (known: {known})")


def station_camera(st: Station, fov: float = 60.0) -> Camera:
    """A camera behind the anchor (against the heading) and above it, looking along the heading."""
    from twin.geo import utm_to_wgs84, wgs84_to_utm

    x, y = (float(v) for v in wgs84_to_utm(st.lon, st.lat))
    back = CAMERA_BACK_RADII * st.radius
    a = math.radians(st.heading)
    lon, lat = utm_to_wgs84(x - back * math.sin(a), y - back * math.cos(a))
    return Camera(
        float(lon), float(lat), st.height + CAMERA_UP_M, st.heading, CAMERA_PITCH_DEG, fov
    )
