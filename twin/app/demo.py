"""`twin demo`: build the data products, then show each part of the twin at work on them."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from twin.app.pack import SIMULATIONS


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def demo_commands(
    pack_file: Path, build_root: Path, demo: Path, runs: Path
) -> list[tuple[str, list[str]]]:
    """The demo's `twin` command lines, each with the title shown before it ('' for none)."""
    data = ["--pack", str(pack_file), "--build-dir", str(build_root)]
    return [
        (
            "Rendering the Ostwall view of the textured 3D city",
            ["scene", "render", "--view", "ostwall", "-o", str(demo / "ostwall.png"), *data],
        ),
        (
            "Simulating 30 minutes of LoRaWAN uplinks and ingesting them",
            ["sensors", "simulate", "--out", str(demo / "uplinks.jsonl"), "--minutes", "30",
             "--format", "tts", "--seed", "1", "--pack", str(pack_file)],
        ),
        ("", ["sensors", "ingest", "--file", str(demo / "uplinks.jsonl"),
              "--store", str(demo / "sensors.sqlite"), "--pack", str(pack_file)]),
        ("", ["sensors", "status", "--store", str(demo / "sensors.sqlite")]),
        (
            "Traffic: bus and bike priority on the Wälle, 15 simulated minutes, 2 seeds",
            ["traffic", "run", "bus-bike-priority", "--seeds", "2", "--end", "00:15",
             "--runs-dir", str(runs), *data],
        ),
        (
            "Rendering the Ostwall with the baseline's vehicles 10 minutes after the warm-up",
            ["scene", "render", "--view", "ostwall", "-o", str(demo / "ostwall-traffic.png"),
             "--traffic", str(runs / "bus-bike-priority"), "--at", "00:25:00", *data],
        ),
        (
            "Ground water today: three months with the loggers' readings assimilated",
            ["groundwater", "run", str(SIMULATIONS / "groundwater-today.toml"),
             "--runs-dir", str(runs), *data],
        ),
        (
            "Coupled, 3 h: a simulated uplink stream -> ground water hourly; traffic on the Wälle",
            ["run", str(SIMULATIONS / "krefeld-coupled.toml"), "--end", "3h", "--runs-dir", str(runs),
             *data],
        ),
        (
            "Heat, coupled, 1 h: noon of the synthetic heat wave on the old town, with the "
            "traffic's waste heat and the water table",
            ["run", str(SIMULATIONS / "krefeld-heat-coupled.toml"), "--end", "1h",
             "--runs-dir", str(runs), *data],
        ),
    ]  # fmt: skip


def run_demo(args: argparse.Namespace, run: Callable[[Sequence[str]], int]) -> int:
    """Build and summarise the products of the command's pack; unless `--data-only`, run each demo
    command line through `run` and stop at the first that fails."""
    from twin.app.pack import resolve_pack
    from twin.app.steps import build_products
    from twin.city.summary import format_summary, summarize
    from twin.progress import console_progress

    pack = resolve_pack(args.pack)
    _say(f"Building the data products of the {pack.title or pack.name} …")
    with console_progress(unit="steps") as progress:
        build_dir, results = build_products(pack, args.build_dir, progress=progress)
    built = sum(r.status == "built" for r in results)
    _say(f"  {built} step(s) built, {len(results) - built} up to date")
    print(format_summary(summarize(pack, build_dir)))
    print(f"Products        {build_dir}/ (manifest.json lists what was built from what)")
    if args.data_only:
        return 0
    demo = build_dir / "demo"
    demo.mkdir(parents=True, exist_ok=True)
    for title, argv in demo_commands(pack.file, args.build_dir, demo, Path(args.runs_dir)):
        if title:
            _say(f"\n{title} …")
        code = run(argv)
        if code:
            return code
    pictures = f"{demo / 'ostwall.png'}, {demo / 'ostwall-traffic.png'}"
    print(f"\nPictures and reports: {pictures}, and under {args.runs_dir}/ per scenario")
    return 0
