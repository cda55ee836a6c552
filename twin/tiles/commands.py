"""`twin tiles …`: describe 3D Tiles tilesets."""

from __future__ import annotations

import argparse
import json


def cmd_info(args: argparse.Namespace) -> int:
    """Describe a 3D Tiles tileset."""
    from twin.tiles.info import format_info, tileset_info

    info = tileset_info(args.tileset)
    print(json.dumps(info, indent=2) if args.json else format_info(info))
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `twin tiles` and its actions."""
    tiles = subparsers.add_parser("tiles", help="read and describe OGC 3D Tiles tilesets")
    tsub = tiles.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = tsub.add_parser("info", help="tiles, depth, contents, triangles, textures, region")
    p.add_argument("tileset", help="tileset.json (or its folder)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_info)
