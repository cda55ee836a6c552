"""`twin tiles …`: describe 3D Tiles tilesets."""

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
