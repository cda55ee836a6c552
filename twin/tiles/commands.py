"""`twin tiles …`: describe 3D Tiles tilesets, rasterize them to surface models."""

from __future__ import annotations

import argparse
import json
import sys

MIB = 1024**2


def cmd_info(args: argparse.Namespace) -> int:
    """Describe a 3D Tiles tileset; exit 1 when a problem of error severity was found (0 with
    --lenient, the problems still listed)."""
    from twin.tiles.info import format_info, tileset_info

    cap = None if args.max_file_mb is None else int(args.max_file_mb * MIB)
    info = tileset_info(args.tileset, max_file_bytes=cap)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    if info["errors"] and not args.lenient:
        print(
            f"twin: error: {info['path']}: {len(info['errors'])} problem(s) of error severity "
            "(listed above); --lenient lists them and exits 0",
            file=sys.stderr,
        )
        return 1
    return 0


def _positive_mb(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of MiB, got {text!r}")
    return value


def cmd_rasterize(args: argparse.Namespace) -> int:
    """Rasterize a tileset to a DSM GeoTIFF (and the optional lowest/count/feature-id rasters)."""
    from twin.progress import console_progress
    from twin.tiles.rasterize import rasterize_tileset, write_rasters

    with console_progress("rasterize", unit="tiles") as progress:
        result = rasterize_tileset(
            args.tileset,
            args.resolution,
            extent=args.extent,
            crs=args.crs,
            max_error=args.max_error,
            features=args.feature_ids is not None,
            progress=progress,
        )
    written = write_rasters(result, args.output, lowest=args.lowest, count=args.count,
                            feature_ids=args.feature_ids)  # fmt: skip
    g = result.grid
    covered = float((result.count > 0).mean())
    print(
        f"{g.width} x {g.height} cells of {g.resolution:g} m ({g.crs}), {covered:.1%} covered; "
        f"{len(result.tiles)} tiles (geometric error <= {result.max_error:g} m), "
        f"{result.triangles:,} triangles, {result.points:,} points"
    )
    for path in written:
        print(f"wrote {path}")
    return 0


def _number(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `twin tiles` and its actions."""
    from twin.tiles.source import MAX_FILE_BYTES

    tiles = subparsers.add_parser("tiles", help="read and describe OGC 3D Tiles tilesets")
    tsub = tiles.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = tsub.add_parser("info", help="tiles, depth, contents, triangles, textures, region")
    p.add_argument("tileset", help="tileset.json (or its folder), a .3tz or .3dtiles file, a URL")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument(
        "--lenient",
        action="store_true",
        help="exit 0 even when problems of error severity are found (they are still listed)",
    )
    p.add_argument(
        "--max-file-mb",
        type=_positive_mb,
        default=None,
        metavar="MIB",
        help=f"largest file read or inflated from gzip (default {MAX_FILE_BYTES // MIB} MiB)",
    )
    p.set_defaults(func=cmd_info)

    r = tsub.add_parser(
        "rasterize",
        help="digital surface model (highest surface per cell) of a tileset, as GeoTIFF",
        description="Rasterize a tileset: the highest surface per cell (m DHHN2016), the level of "
        "detail chosen by the cell size (tiles refined while their geometric error exceeds it).",
    )
    r.add_argument("tileset", help="tileset.json (or its folder), a .3tz or .3dtiles file, a URL")
    r.add_argument("-o", "--output", required=True, help="the DSM GeoTIFF to write")
    r.add_argument("--resolution", type=_number, default=1.0, metavar="M",
                   help="cell size in metres (default 1)")  # fmt: skip
    r.add_argument("--extent", type=_number, nargs=4, metavar=("W", "S", "E", "N"),
                   help="grid extent in --crs (default: the root tile's footprint)")  # fmt: skip
    r.add_argument("--crs", default="EPSG:25832", help="grid CRS (default EPSG:25832)")
    r.add_argument("--max-error", type=_number, default=None, metavar="M",
                   help="refine tiles while their geometric error exceeds this (default: the cell "
                        "size; 0: the finest tiles)")  # fmt: skip
    r.add_argument("--lowest", metavar="TIF", help="also write the lowest surface per cell")
    r.add_argument("--count", metavar="TIF", help="also write the number of surfaces per cell")
    r.add_argument("--feature-ids", metavar="TIF",
                   help="also write the top surface's feature id per cell (and TIF's .json: "
                        "each value's property table and id)")  # fmt: skip
    r.set_defaults(func=cmd_rasterize)
