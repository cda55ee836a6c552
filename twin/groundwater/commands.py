"""The `twin groundwater` sub-commands: run a scenario (with its progress) or check it.

Kept light at import time: the model and numba load only when a sub-command runs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from twin.app.pack import add_pack_args


def _inputs(args: argparse.Namespace):
    """The scenario (a bad file fails here, in one line) and the pack.toml by the one pack rule.

    `--end` goes to the scenario as given: its clock reads it by the one `--end` rule
    (`twin.core.clock.parse_end`), so a bad end names the scenario's start it was measured from."""
    from twin.app.pack import pack_path, scenario_file
    from twin.groundwater.scenario import load_scenario

    args.scenario = scenario_file(args.scenario)
    scenario = load_scenario(args.scenario)
    if getattr(args, "readings", None) is not None:
        scenario = scenario.with_readings(args.readings)
    return scenario, pack_path(args.pack)


def cmd_run(args: argparse.Namespace) -> int:
    """Run a scenario and print where its outputs went."""
    from twin.app.readings import sensor_feed
    from twin.groundwater.run import run_scenario
    from twin.progress import console_progress

    scenario, pack = _inputs(args)  # a bad file fails here, before any progress output
    scenario.clock(args.end)  # and so does a bad --end
    with console_progress("ground water", unit="steps") as progress:
        result = run_scenario(
            args.scenario,
            readings=args.readings,
            sensor_feed=sensor_feed,
            end=args.end,
            runs_dir=args.runs_dir,
            pack=pack,
            build_dir=args.build_dir,
            progress=progress,
        )
    m = result.metrics
    print(f"finished {result.steps} steps in {result.seconds:.1f} s -> {result.folder}")
    print(f"largest relative budget error {m['max_relative_budget_error']:.1e}")
    if "assimilation" in m:
        a = m["assimilation"]
        print(
            f"readings RMSE before/after analysis {a['rmse_before_m']:.3f}/{a['rmse_after_m']:.3f}"
            f" m, leave-one-out {a['rmse_leave_one_out_m']:.3f} m, withheld wells free/assimilated"
            f" {a['rmse_withheld_free_m']:.3f}/{a['rmse_withheld_assimilated_m']:.3f} m"
        )
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate a scenario as a run would (files, sizes, wells, aquifer) without solving."""
    from twin.groundwater.scenario import MAX_RUN_BYTES, build_setup
    from twin.progress import console_progress

    sc, pack = _inputs(args)
    with console_progress("ground water") as progress:
        setup = build_setup(
            sc, pack=pack, build_dir=args.build_dir, end=args.end, progress=progress
        )
    c, g = sc.config, setup.grid
    print(
        f"{sc.path}: scenario '{sc.name}' is valid: {setup.clock.isoformat(0)} to "
        f"{setup.clock.isoformat(setup.clock.duration or 0.0)}, {setup.steps} steps of "
        f"{c['scenario']['time_step_hours']:g} h, {g.ny} x {g.nx} cells of {g.cell:g} m, "
        f"pumping wells: {len(setup.pumping)}, readings: {c['readings']['source']}; "
        f"memory about {setup.memory_bytes / 2**20:,.0f} MiB of {MAX_RUN_BYTES / 2**30:g} GiB"
    )
    return 0


def _setup_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("scenario", help="the scenario: a TOML file or a name in simulations/")
    p.add_argument(
        "--end",
        metavar="E",
        help="end: a duration from the scenario's start (HH:MM, 90s, 30m, 6h, 2d) or an ISO 8601 "
        "UTC time (default: the scenario's end)",
    )
    p.add_argument(
        "--readings",
        type=Path,
        metavar="FILE.jsonl",
        help="replay this uplink file as the well readings instead of the scenario's source",
    )
    add_pack_args(p)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `twin groundwater ...` to the main parser's sub-commands."""
    gw = subparsers.add_parser(
        "groundwater",
        help="the ground-water flow model and its scenarios",
        description="Ground-water flow of the Lower Rhine aquifer under Krefeld: steady state, "
        "transient runs with well readings assimilated, drought scenarios.",
    )
    sub = gw.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser("run", help="run a scenario (simulations/groundwater-*.toml)")
    _setup_options(p)
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="default: runs/")
    p.set_defaults(func=cmd_run)
    p = sub.add_parser(
        "check",
        help="check a scenario as a run would (data products are built), without solving",
    )
    _setup_options(p)
    p.set_defaults(func=cmd_check)


if __name__ == "__main__":  # pragma: no cover - convenience for `python -m`
    parser = argparse.ArgumentParser(prog="twin")
    add_commands(parser.add_subparsers(dest="command", required=True))
    ns = parser.parse_args()
    sys.exit(ns.func(ns))
