"""`twin scene ...`: export AR station scenes (GLB, USDZ, previews, manifest), render the textured city
offscreen from named or ad-hoc views (a station before or after its redesign), list the views."""

from __future__ import annotations

import argparse
import functools
import time
from pathlib import Path
from typing import Any

from twin.app.pack import add_pack_args
from twin.errors import ConfigError, DataError
from twin.scenes.render import LAYERS


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"size {text!r}: expected WIDTHxHEIGHT, e.g. 1280x720"
        ) from None
    if not (8 <= w <= 8192 and 8 <= h <= 8192):
        raise argparse.ArgumentTypeError(f"size {text!r}: each side must be 8..8192 pixels")
    return w, h


def _pack_build(args: argparse.Namespace) -> Path:
    """<build-dir>/<pack name> of the pack the one pack rule picks (--pack, $TWIN_PACK, default)."""
    from twin.app.pack import resolve_pack

    return args.build_dir / resolve_pack(args.pack).name


def resolve_tileset(args: argparse.Namespace, tileset: str) -> Path:
    """The tileset to render: --tileset, else <build-dir>/<pack name>/<view's tileset>."""
    if args.tileset is not None:
        return Path(args.tileset)
    return _pack_build(args) / tileset


def _sim_time(text: str) -> float:
    """Simulation time: seconds, or HH:MM[:SS]."""
    try:
        if ":" in text:
            parts = [float(v) for v in text.split(":")]
            if len(parts) not in (2, 3):
                raise ValueError
            return sum(v * f for v, f in zip(parts, (3600.0, 60.0, 1.0), strict=False))
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"time {text!r}: expected seconds or HH:MM[:SS] of simulation time"
        ) from None


def _vehicle_overlays(args: argparse.Namespace, view: Any) -> tuple[list, str]:
    """Boxes for the vehicles of --traffic at --at, in the view's camera frame, and a caption."""
    from twin.city.raster import values_at
    from twin.scenes.vehicles import load_vehicles, onto_boulevards, vehicle_meshes

    if args.at is None:
        raise ConfigError("--traffic needs --at (simulation time, seconds or HH:MM[:SS])")
    terrain = _pack_build(args) / "terrain.tif"
    if not terrain.exists():
        raise DataError(f"{terrain}: no terrain to stand the vehicles on; run `twin data build`")
    t, vehicles = load_vehicles(args.traffic, args.at)
    vehicles = onto_boulevards(vehicles, terrain.parent / "boulevards.gpkg")
    meshes = vehicle_meshes(vehicles, view.camera.frame(), functools.partial(values_at, terrain))
    return meshes, f", {len(vehicles)} vehicles at t={t:g} s"


def cmd_render(args: argparse.Namespace) -> int:
    """Render a view of the textured city to a PNG."""
    from twin.scenes.render import render_tileset
    from twin.scenes.views import parse_view

    view = parse_view(args.view)
    tileset = resolve_tileset(args, view.tileset)
    if tileset.is_dir():
        tileset = tileset / "tileset.json"
    if not tileset.exists():
        raise DataError(f"{tileset}: no tileset there; build it with `twin data build`")
    size = args.size or view.size
    layers = tuple(args.layers) if args.layers else view.layers
    t0 = time.perf_counter()
    overlays, caption = _vehicle_overlays(args, view) if args.traffic else ([], "")
    if view.station is not None:
        overlays += _redesign_overlays(args, view)
        caption += ", before the redesign" if args.before else ", after the redesign"
    elif args.before or args.after:
        raise ConfigError(f"--before/--after: view {view.name!r} is not an AR station")
    img = render_tileset(
        tileset,
        view.camera,
        size,
        max_sse=args.sse if args.sse is not None else view.max_sse,
        show=layers,
        out=args.output,
        overlays=overlays,
    )
    took = time.perf_counter() - t0
    print(
        f"{args.output}: {img.shape[1]}x{img.shape[0]} view {view.name!r}{caption} in {took:.1f} s"
    )
    return 0


def _redesign_overlays(args: argparse.Namespace, view: Any) -> list:
    """The station's redesign meshes in the view's camera frame (none --before)."""
    from twin.scenes.compose import compose, scene_overlays

    if args.before:
        return []
    scene = compose(view.station, _pack_build(args))
    return scene_overlays(scene, view.camera.frame())


def cmd_export(args: argparse.Namespace) -> int:
    """Compose and export AR station scenes: GLB, USDZ, before/after previews and manifest.json."""
    from twin.scenes.compose import export
    from twin.scenes.station import load_station, resolve_station, station_files
    from twin.scenes.views import SCENES_DIR

    if args.all_stations == (args.scene is not None):
        raise ConfigError("twin scene export: give one SCENE or --all-stations")
    if args.all_stations:
        stations = [load_station(p) for p in station_files(SCENES_DIR)]
        if not stations:
            raise ConfigError(f"{SCENES_DIR}: no station files (station-*.toml)")
    else:
        stations = [resolve_station(args.scene, SCENES_DIR)]
    build = _pack_build(args)
    for st in stations:
        t0 = time.perf_counter()
        folder = export(
            st,
            build,
            args.output,
            traffic=args.traffic,
            overlay=args.overlay,
            redesign=not args.no_redesign,
            preview=None if args.no_preview else args.size,
        )
        print(f"{folder}: station {st.name!r} in {time.perf_counter() - t0:.1f} s")
    return 0


def cmd_views(args: argparse.Namespace) -> int:
    """List the named views in scenes/."""
    from twin.scenes.views import list_views

    for v in list_views():
        c = v.camera
        print(
            f"{v.name:16s} lat {c.lat:.5f} lon {c.lon:.5f} h {c.height:6.1f} m "
            f"heading {c.heading:6.1f} pitch {c.pitch:6.1f}  {v.title}"
        )
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `twin scene` and its actions to the main parser."""
    scene = subparsers.add_parser(
        "scene",
        help="scene composition, export and offscreen rendering",
        description="Export AR station scenes and render the textured 3D Tiles city offscreen "
        "from named or ad-hoc views.",
    )
    sub = scene.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("render", help="render a view of the textured city to a PNG")
    p.add_argument(
        "--view",
        required=True,
        help="a view name in scenes/ (e.g. ostwall, or a station: nordwall), a view or station "
        ".toml file, or "
        "'lat,lon,height,heading,pitch' (degrees; height m above sea level)",
    )
    p.add_argument("-o", "--output", type=Path, required=True, help="PNG file to write")
    p.add_argument("--size", type=_size, default=None, help="WIDTHxHEIGHT (default from the view)")
    p.add_argument("--tileset", type=Path, default=None, help="tileset.json (or its folder)")
    add_pack_args(p)
    p.add_argument("--sse", type=float, default=None, help="max screen-space error in px (16)")
    p.add_argument("--layers", nargs="+", choices=LAYERS, help="what to draw (default: all)")
    p.add_argument(
        "--traffic",
        type=Path,
        default=None,
        help="draw the vehicles of a finished traffic run: a (variant, seed) folder with "
        "fcd.xml.gz, a run folder (its baseline's first seed) or runs/<scenario> (the newest "
        "finished run); a run whose status.json does not say finished is refused",
    )
    p.add_argument(
        "--at", type=_sim_time, default=None, help="with --traffic: simulation time (s or HH:MM:SS)"
    )
    when = p.add_mutually_exclusive_group()
    when.add_argument("--before", action="store_true", help="a station view: the city as it is")
    when.add_argument(
        "--after", action="store_true", help="a station view: with its redesign (the default)"
    )
    p.set_defaults(func=cmd_render)
    p = sub.add_parser(
        "export",
        help="export AR station scenes (GLB, USDZ, previews, manifest.json)",
        description="Compose a station's scene (the city clipped around its anchor, the redesign "
        "along the real street axis, optional traffic and overlay) and write <DIR>/<name>/: "
        "<name>.glb, <name>.usdz, <name>-before.png, <name>-after.png and manifest.json.",
    )
    p.add_argument("scene", nargs="?", default=None, help="station name (e.g. nordwall) or file")
    p.add_argument("--all-stations", action="store_true", help="every station-*.toml in scenes/")
    p.add_argument("-o", "--output", type=Path, required=True, help="folder to write into")
    add_pack_args(p)
    p.add_argument(
        "--traffic",
        type=Path,
        default=None,
        help="animate the vehicles of a finished traffic run (as for `scene render`), 60 s at 1 s",
    )
    p.add_argument(
        "--overlay", type=Path, default=None, help="a GeoTIFF (EPSG:25832) to drape on the ground"
    )
    p.add_argument("--no-redesign", action="store_true", help="the city as it is, no redesign")
    p.add_argument("--no-preview", action="store_true", help="skip the before/after PNGs")
    p.add_argument("--size", type=_size, default=(960, 540), help="preview WIDTHxHEIGHT (960x540)")
    p.set_defaults(func=cmd_export)
    p = sub.add_parser("views", help="list the named views in scenes/")
    p.set_defaults(func=cmd_views)
