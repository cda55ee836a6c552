"""The `twin heat` sub-commands: run a heat scenario (with its progress) or check it.

Kept light at import time: the model and numba load only when a sub-command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from twin.app.pack import add_pack_args


def _scenario(args: argparse.Namespace):
    """The scenario (a bad file, variant or --end fails here, in one line) and the pack.toml."""
    from twin.app.pack import pack_path, scenario_file
    from twin.heat.scenario import load_scenario

    args.scenario = scenario_file(args.scenario)
    scenario = load_scenario(args.scenario)
    if args.variant:
        scenario = scenario.with_variant(args.variant)
    scenario.clock(args.end)
    return scenario, pack_path(args.pack)


def cmd_run(args: argparse.Namespace) -> int:
    """Run a scenario's baseline and variants and print where the outputs went."""
    from twin.app.readings import station_feed, station_readings
    from twin.heat.run import run_scenario
    from twin.progress import console_progress

    _, pack = _scenario(args)
    with console_progress("heat", unit="steps") as progress:
        result = run_scenario(args.scenario, variant=args.variant, end=args.end,
                              runs_dir=args.runs_dir, pack=pack, build_dir=args.build_dir,
                              progress=progress, station_feed=station_feed,
                              station_readings=station_readings)  # fmt: skip
    print(f"finished {len(result.variants)} variant(s) in {result.seconds:.1f} s -> "
          f"{result.folder}")  # fmt: skip
    for v in result.variants:
        m = v.metrics
        st = m["stations"]
        print(f"  {v.name}: max air {m['t_air_max_c']:.1f} °C, mean of max UTCI "
              f"{m['utci_max_mean_c']:.1f} °C, tropical nights {m['tropical_nights_mean']:.2f}; "
              f"stations RMSE {st['rmse_before_k']:.2f} K, leave-one-out "
              f"{st['rmse_leave_one_out_k']:.2f} K")  # fmt: skip
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate a scenario as a run would (files, grid, forcing, streets) without stepping."""
    from twin.app.readings import station_readings
    from twin.heat.scenario import build_setup
    from twin.progress import console_progress

    scenario, pack = _scenario(args)
    names = scenario.variants if not args.variant else ["baseline", args.variant]
    with console_progress("heat") as progress:
        for name in dict.fromkeys(names):
            setup = build_setup(scenario.with_variant(name), pack=pack, build_dir=args.build_dir,
                                end=args.end, progress=progress,
                                station_readings=station_readings)  # fmt: skip
    g = setup.grid
    print(f"{scenario.path}: scenario '{scenario.name}' is valid: "
          f"{setup.clock.isoformat(0)} to {setup.clock.isoformat(setup.clock.duration or 0.0)}, "
          f"{setup.steps} steps, {g.shape[0]} x {g.shape[1]} cells of {g.cell:g} m, variants: "
          f"{', '.join(dict.fromkeys(names))}; forcing: {setup.forcing.source}")  # fmt: skip
    return 0


def _options(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="the scenario: a TOML file or a name in simulations/")
    p.add_argument("--variant", metavar="V",
                   help="run the baseline and this variant only (default: every variant)")  # fmt: skip
    p.add_argument("--end", metavar="E",
                   help="end: a duration from the scenario's start (HH:MM, 90s, 30m, 6h, 2d) or "
                   "an ISO 8601 UTC time (default: the scenario's end)")  # fmt: skip
    add_pack_args(p)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `twin heat ...` to the main parser's sub-commands."""
    heat = subparsers.add_parser(
        "heat", help="the urban heat model and its scenarios",
        description="Urban heat in Krefeld: surface energy balance with shading by buildings and "
        "trees, canopy-layer air temperature, mean radiant temperature and UTCI at street level, "
        "climate-station readings merged in; heat-wave scenarios and their variants.",
    )  # fmt: skip
    sub = heat.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("run", help="run a scenario (simulations/heat-*.toml)")
    _options(p)
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="default: runs/")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("check", help="check a scenario as a run would, without stepping")
    _options(p)
    p.set_defaults(func=cmd_check)
