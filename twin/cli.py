"""The `twin` command: thin sub-commands that parse, call the library and print.

Errors a user can act on are printed as one line (`twin: error: ...`) with a non-zero exit code; set
TWIN_DEBUG=1 to see the traceback of an unexpected failure.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from twin import runs
from twin.errors import NotYetAvailable, TwinError
from twin.runs import Terminated

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PACK = PROJECT_ROOT / "data" / "krefeld" / "pack.toml"

# Domain sub-commands: each lives in `twin/<package>/commands.py` as `add_commands(subparsers)`. Until a
# domain has that module, its sub-command says in one line that it is not available and exits non-zero.
DOMAINS = {
    "tiles": ("tiles", "read and describe OGC 3D Tiles tilesets"),
    "traffic": (
        "traffic",
        "SUMO traffic scenarios (network, demand, priority controllers, virtual barriers, KPIs)",
    ),
    "groundwater": ("groundwater", "the ground-water flow model and its scenarios"),
    "heat": ("heat", "the urban heat model and its scenarios"),
    "sensors": ("sensors", "LoRaWAN sensor ingest, store, simulation and replay"),
    "scene": ("scenes", "scene composition, export and offscreen rendering"),
    "serve": ("viewer", "the web viewer and its local server"),
    "run": ("core", "coupled scenarios from simulations/*.toml"),
}


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _default_pack() -> Path:
    return Path(os.environ.get("TWIN_PACK", DEFAULT_PACK))


def _add_pack_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--pack", type=Path, default=None, help="data pack (pack.toml or its folder)")
    p.add_argument(
        "--build-dir", type=Path, default=Path("build"), help="where products go (default: build/)"
    )


def _build(args: argparse.Namespace) -> tuple[object, Path, list]:
    from twin.city.build import run_build
    from twin.city.pack import load_pack
    from twin.city.steps import city_steps

    pack = load_pack(args.pack or _default_pack())
    build_dir = args.build_dir / pack.name
    results = run_build(
        pack,
        city_steps(),
        build_dir,
        only=getattr(args, "only", None) or None,
        force=getattr(args, "force", False),
        progress=lambda m: _say(f"  … {m}"),
    )
    return pack, build_dir, results


def cmd_data_build(args: argparse.Namespace) -> int:
    """Build (or bring up to date) the city's data products."""
    _, build_dir, results = _build(args)
    for r in results:
        took = f"{r.seconds:6.1f} s" if r.status == "built" else "       "
        print(f"{r.status:7s} {took}  {r.name:18s} {', '.join(r.outputs)}")
    built = sum(r.status == "built" for r in results)
    print(f"{built} built, {len(results) - built} up to date -> {build_dir}/manifest.json")
    return 0


def cmd_data_info(args: argparse.Namespace) -> int:
    """Summarise the built data products (building them first if needed)."""
    from twin.city.summary import format_summary, summarize

    pack, build_dir, _ = _build(args)
    s = summarize(pack, build_dir)
    print(json.dumps(s, indent=2) if args.json else format_summary(s))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The main job: build the Krefeld data products, then show each part of the twin at work on them."""
    from twin.city.summary import format_summary, summarize

    _say("Building the Krefeld data products …")
    pack, build_dir, results = _build(args)
    built = sum(r.status == "built" for r in results)
    _say(f"  {built} step(s) built, {len(results) - built} up to date")
    print(format_summary(summarize(pack, build_dir)))
    print(f"Products        {build_dir}/ (manifest.json lists what was built from what)")
    if args.data_only:
        return 0
    demo = build_dir / "demo"
    demo.mkdir(parents=True, exist_ok=True)
    runs = str(args.runs_dir)
    data = ["--pack", str(pack.file), "--build-dir", str(args.build_dir)]
    for title, argv in (
        (
            "Rendering the Ostwall view of the textured 3D city",
            ["scene", "render", "--view", "ostwall", "-o", str(demo / "ostwall.png"), *data],
        ),
        (
            "Simulating 30 minutes of LoRaWAN uplinks and ingesting them",
            ["sensors", "simulate", "--out", str(demo / "uplinks.jsonl"), "--minutes", "30",
             "--format", "tts", "--seed", "1"],
        ),
        ("", ["sensors", "ingest", "--file", str(demo / "uplinks.jsonl"),
              "--store", str(demo / "sensors.sqlite")]),
        ("", ["sensors", "status", "--store", str(demo / "sensors.sqlite")]),
        (
            "Traffic: bus and bike priority on the Wälle, 15 simulated minutes, 2 seeds",
            ["traffic", "run", "bus-bike-priority", "--seeds", "2", "--end", "00:15",
             "--runs-dir", runs, *data],
        ),
        (
            "Rendering the Ostwall with the baseline's vehicles 10 minutes after the warm-up",
            ["scene", "render", "--view", "ostwall", "-o", str(demo / "ostwall-traffic.png"),
             "--traffic", str(Path(runs) / "bus-bike-priority"), "--at", "00:25:00", *data],
        ),
        (
            "Ground water today: three months with the loggers' readings assimilated",
            ["groundwater", "run", str(PROJECT_ROOT / "simulations" / "groundwater-today.toml"),
             "--runs-dir", runs, *data],
        ),
    ):  # fmt: skip
        if title:
            _say(f"\n{title} …")
        sub_args = build_parser().parse_args(argv)
        code = sub_args.func(sub_args)
        if code:
            return code
    pictures = f"{demo / 'ostwall.png'}, {demo / 'ostwall-traffic.png'}"
    print(f"\nPictures and reports: {pictures}, and under {runs}/ per scenario")
    return 0


def _planned(name: str, what: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        raise NotYetAvailable(f"twin {name}: {what} are not available in this version yet")

    return run


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `twin` and all its sub-commands."""
    parser = argparse.ArgumentParser(
        prog="twin",
        description="Digital twin of Krefeld: 3D city, traffic, ground water, heat and live sensors.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    data = sub.add_parser("data", help="build and inspect the city's data products")
    dsub = data.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = dsub.add_parser("build", help="build the data products (only what changed)")
    _add_pack_args(p)
    p.add_argument("--force", action="store_true", help="rebuild everything")
    p.add_argument(
        "--only", nargs="+", metavar="STEP", help="build these steps (and what they need)"
    )
    p.set_defaults(func=cmd_data_build)
    p = dsub.add_parser("info", help="summarise the data products")
    _add_pack_args(p)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=cmd_data_info)

    for name, (package, what) in DOMAINS.items():
        module = f"twin.{package}.commands"
        try:
            commands = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if not (module == exc.name or module.startswith(f"{exc.name}.")):
                raise  # a real missing dependency inside the domain, not a missing domain
            p = sub.add_parser(name, help=f"{what} (not in this version yet)", description=what)
            p.set_defaults(func=_planned(name, what))
        else:
            commands.add_commands(sub)

    runs.add_commands(sub)

    p = sub.add_parser(
        "demo", help="build the Krefeld data products and run each part of the twin on them"
    )
    _add_pack_args(p)
    p.add_argument("--data-only", action="store_true", help="only build and summarise the data")
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="default: runs/")
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `twin` command."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except TwinError as exc:
        _say(f"twin: error: {exc}")
        return 1
    except Terminated:
        _say("twin: terminated")
        return 143  # 128 + SIGTERM, as shells report it
    except KeyboardInterrupt:
        _say("twin: interrupted")
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error
        sys.stderr.close()
        return 0
    except Exception as exc:  # one line for the user; the traceback on request
        if os.environ.get("TWIN_DEBUG"):
            traceback.print_exc()
        _say(f"twin: internal error: {type(exc).__name__}: {exc} (set TWIN_DEBUG=1 for details)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
