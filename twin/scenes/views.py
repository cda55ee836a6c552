"""Named camera views (`scenes/<name>.toml`) and ad-hoc views given as `lat,lon,height,heading,pitch`.

A view file says where the camera is and what to show:

    [view]
    title = "Ostwall from the Hauptbahnhof"
    lat = 51.3262           # WGS84 degrees
    lon = 6.5690
    height = 75.0           # m above sea level (DHHN2016)
    heading = 0.0           # degrees clockwise from north
    pitch = -20.0           # degrees, negative looks down
    fov = 60.0              # vertical field of view, degrees (optional)

    [show]                  # optional
    tileset = "tiles/tileset.json"       # in the pack's build folder (the pack: --pack, $TWIN_PACK, default)
    layers = ["ground", "buildings"]
    max_screen_space_error = 16.0
    size = [1280, 720]

An AR station file (a [station] table, see twin.scenes.station) is a view too: its camera is derived
from the station's anchor and heading, and `View.station` holds the station.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twin.config import Field, load_toml, validate
from twin.errors import ConfigError
from twin.scenes.render import LAYERS, Camera
from twin.scenes.station import (
    STATION_PREFIX,
    Station,
    is_station_file,
    station_camera,
    station_from_dict,
)

SCENES_DIR = Path("scenes")  # named views, in the working directory like simulations/ and build/


def _between(lo: float, hi: float):
    return lambda v: None if lo <= v <= hi else f"a number from {lo:g} to {hi:g}"


def _size(v: Any) -> str | None:
    ok = (
        isinstance(v, list)
        and len(v) == 2
        and all(isinstance(n, int) and 8 <= n <= 8192 for n in v)
    )
    return None if ok else "[width, height] in pixels (8..8192)"


def _layers(v: Any) -> str | None:
    ok = isinstance(v, list) and v and all(x in LAYERS for x in v)
    return None if ok else f"a list of layers from {list(LAYERS)}"


_SCHEMA = {
    "view": Field(
        schema={
            "title": Field(str, required=False, default=""),
            "lat": Field(float, check=_between(-90, 90), doc="camera latitude, WGS84 degrees"),
            "lon": Field(float, check=_between(-180, 180), doc="camera longitude, WGS84 degrees"),
            "height": Field(float, check=_between(-500, 20000), doc="m above sea level"),
            "heading": Field(float, check=_between(-360, 360), doc="degrees from north"),
            "pitch": Field(float, check=_between(-90, 90), doc="degrees, negative looks down"),
            "fov": Field(float, required=False, default=60.0, check=_between(1, 170)),
        }
    ),
    "show": Field(
        required=False,
        default=None,
        schema={
            "tileset": Field(str, required=False, default="tiles/tileset.json"),
            "layers": Field(list, required=False, default=list(LAYERS), check=_layers),
            "max_screen_space_error": Field(
                float, required=False, default=16.0, check=_between(0.1, 1000)
            ),
            "size": Field(list, required=False, default=[1280, 720], check=_size),
        },
    ),
}


@dataclass(frozen=True)
class View:
    """A camera plus what to show and where it comes from."""

    name: str
    camera: Camera
    title: str = ""
    tileset: str = "tiles/tileset.json"
    layers: tuple[str, ...] = LAYERS
    max_sse: float = 16.0
    size: tuple[int, int] = (1280, 720)
    station: Station | None = None


def _station_view(data: dict[str, Any], path: Path) -> View:
    """The view of a station file: the camera derived from its anchor and heading."""
    st = station_from_dict(data, path)
    layers = tuple(x for x in st.layers if x in LAYERS) or LAYERS
    return View(
        name=path.stem, camera=station_camera(st), title=st.title, layers=layers, station=st
    )


def load_view(path: str | Path) -> View:
    """Read and validate a view file (or a station file, whose camera is derived)."""
    path = Path(path)
    data = load_toml(path)
    if is_station_file(data):
        return _station_view(data, path)
    cfg = validate(data, _SCHEMA, file=path)
    v = cfg["view"]
    show = cfg["show"] or validate({}, _SCHEMA["show"].schema, file=path, where="show.")
    return View(
        name=path.stem,
        camera=Camera(v["lon"], v["lat"], v["height"], v["heading"], v["pitch"], v["fov"]),
        title=v["title"],
        tileset=show["tileset"],
        layers=tuple(show["layers"]),
        max_sse=show["max_screen_space_error"],
        size=(int(show["size"][0]), int(show["size"][1])),
    )


def parse_view(spec: str, scenes_dir: Path = SCENES_DIR) -> View:
    """A view from a name in scenes/, a path to a .toml file, or `lat,lon,height,heading,pitch`."""
    parts = [p.strip() for p in spec.split(",")]
    if len(parts) in (5, 6):
        try:
            nums = [float(p) for p in parts]
        except ValueError:
            nums = None
        if nums is not None:
            lat, lon, height, heading, pitch = nums[:5]
            fov = nums[5] if len(nums) == 6 else 60.0
            if not (-90 <= lat <= 90 and -180 <= lon <= 180 and -90 <= pitch <= 90):
                raise ConfigError(
                    f"view {spec!r}: expected lat (-90..90), lon (-180..180), height, heading, "
                    f"pitch (-90..90)"
                )
            return View("custom", Camera(lon, lat, height, heading, pitch, fov))
    path = Path(spec)
    if path.suffix == ".toml" or path.exists():
        return load_view(path)
    for named in (scenes_dir / f"{spec}.toml", scenes_dir / f"{STATION_PREFIX}{spec}.toml"):
        if named.exists():
            return load_view(named)
    known = ", ".join(sorted(p.stem for p in scenes_dir.glob("*.toml"))) or "none"
    raise ConfigError(
        f"view {spec!r}: not a view in {scenes_dir} (known: {known}), not a .toml file, and not "
        f"'lat,lon,height,heading,pitch'"
    )


def list_views(scenes_dir: Path = SCENES_DIR) -> list[View]:
    """Every valid view file in scenes/ (files that are not views are skipped)."""
    views = []
    for p in sorted(scenes_dir.glob("*.toml")):
        try:
            views.append(load_view(p))
        except ConfigError:
            continue
    return views
