"""`twin data build|info|citygml` and `twin demo`: the commands of what the app wires together (thin)."""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from pathlib import Path

from twin.app.pack import add_pack_args

RunCommand = Callable[[Sequence[str]], int]


def build(args: argparse.Namespace):
    """Resolve the command's pack and bring its products up to date; (pack, build folder, results)."""
    from twin.app.pack import resolve_pack
    from twin.app.steps import build_products
    from twin.progress import console_progress

    pack = resolve_pack(args.pack)
    with console_progress("data", unit="steps") as progress:
        build_dir, results = build_products(
            pack,
            args.build_dir,
            only=getattr(args, "only", None),
            force=getattr(args, "force", False),
            progress=progress,
        )
    return pack, build_dir, results


def cmd_data_build(args: argparse.Namespace) -> int:
    """Build (or bring up to date) the city's data products."""
    _, build_dir, results = build(args)
    for r in results:
        took = f"{r.seconds:6.1f} s" if r.status == "built" else "       "
        print(f"{r.status:7s} {took}  {r.name:18s} {', '.join(r.outputs)}")
    built = sum(r.status == "built" for r in results)
    print(f"{built} built, {len(results) - built} up to date -> {build_dir}/manifest.json")
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    """Summarise the built data products (building them first if needed)."""
    from twin.city.summary import format_summary, summarize

    pack, build_dir, _ = build(args)
    s = summarize(pack, build_dir)
    print(json.dumps(s, indent=2) if args.json else format_summary(s))
    return 0


def cmd_data_citygml(args: argparse.Namespace) -> int:
    """Convert LoD2 CityGML tiles to buildings.gpkg and a 3D Tiles tileset."""
    from twin.app.citygml import convert_citygml
    from twin.progress import console_progress

    with console_progress("citygml", unit="files") as progress:
        c = convert_citygml(args.files, args.out, args.crs, progress=progress)
    for line in c.problems:
        print(f"problem: {line}")
    print(
        f"{c.buildings:,} buildings from {c.files} file(s), {c.triangles:,} triangles "
        f"({len(c.problems)} problems) -> {c.gpkg}, {c.tileset_json} ({c.tileset.summary()})"
    )
    return 0


def add_commands(subparsers: argparse._SubParsersAction, run: RunCommand) -> None:
    """Add `twin data ...` and `twin demo`; `run` runs another `twin` command line (for the demo)."""
    data = subparsers.add_parser("data", help="build and inspect the city's data products")
    dsub = data.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = dsub.add_parser("build", help="build the data products (only what changed)")
    add_pack_args(p)
    p.add_argument("--force", action="store_true", help="rebuild everything")
    p.add_argument(
        "--only", nargs="+", metavar="STEP", help="build these steps (and what they need)"
    )
    p.set_defaults(func=cmd_data_build)
    p = dsub.add_parser("info", help="summarise the data products")
    add_pack_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_data_info)
    p = dsub.add_parser(
        "citygml", help="convert LoD2 CityGML tiles to buildings.gpkg and a 3D Tiles tileset"
    )
    p.add_argument("files", nargs="+", help="CityGML files, folders of them or globs")
    p.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    p.add_argument("--crs", default="EPSG:25832", choices=("EPSG:25832",),
                   help="CRS of the tiles and the outputs (default EPSG:25832)")  # fmt: skip
    p.set_defaults(func=cmd_data_citygml)

    def cmd_demo(args: argparse.Namespace) -> int:
        """Build the data products, then show each part of the twin at work on them."""
        from twin.app.demo import run_demo

        return run_demo(args, run)

    p = subparsers.add_parser(
        "demo", help="build the Krefeld data products and run each part of the twin on them"
    )
    add_pack_args(p)
    p.add_argument("--data-only", action="store_true", help="only build and summarise the data")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="default: runs/")
    p.set_defaults(func=cmd_demo)
