"""The `twin traffic` sub-commands: run, sweep, check and list scenarios (thin: parse, call, print)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from twin.app.pack import SIMULATIONS, add_pack_args
from twin.errors import ConfigError


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def network_products(args: argparse.Namespace) -> Path:
    """The build folder holding the SUMO net, built (or brought up to date) by the data build."""
    from twin.app.pack import resolve_pack
    from twin.app.steps import build_products
    from twin.progress import console_progress
    from twin.traffic.network import NETWORK_STEP

    pack = resolve_pack(args.pack)
    with console_progress("data", unit="steps") as progress:
        build_dir, _ = build_products(pack, args.build_dir, only=[NETWORK_STEP], progress=progress)
    return build_dir


def end_seconds(end: str | None, scenario) -> float | None:
    """`--end` by the one rule (a duration from the scenario's start or an ISO 8601 UTC time) as
    seconds of measured simulation after the start; None keeps the scenario's duration."""
    from twin.core.clock import parse_end

    if not end:
        return None
    return (parse_end(end, scenario.start_utc) - scenario.start_utc).total_seconds()


def _scenario(args: argparse.Namespace):
    from twin.traffic.scenario import find_scenario, load_scenario, parse_hhmm, sumocfg_scenario

    end = getattr(args, "end", None)
    if getattr(args, "sumocfg", None):
        seeds = list(range(1, (args.seeds or 3) + 1))
        scenario = sumocfg_scenario(
            args.sumocfg, junctions=args.junctions, duration_s=None, seeds=seeds
        )
        end_s = end_seconds(end, scenario)
        if end_s is not None:
            scenario.duration_s = end_s
        return scenario, None, end_s
    if not args.scenario:
        raise ConfigError("name a scenario (e.g. rheinhafen-freight) or give --sumocfg PATH")
    path = find_scenario(args.scenario, args.simulations)
    try:
        scenario = load_scenario(path)
        if getattr(args, "warmup", None):
            scenario.warmup_s = parse_hhmm(args.warmup, what="--warmup")
        end_s = end_seconds(end, scenario)
    except ConfigError as exc:
        if getattr(args, "func", None) in (cmd_run, cmd_sweep):
            from twin.traffic.runs import record_failure

            record_failure(args.runs_dir, path.stem, exc, scenario_file=path)
        raise
    return scenario, network_products(args), end_s


def _plan(args: argparse.Namespace):
    from twin.traffic.runs import plan_run

    scenario, products, end_s = _scenario(args)
    variants = None
    if getattr(args, "variant", None):
        variants = [v for v in args.variant if v]
    return plan_run(
        scenario,
        runs_root=args.runs_dir,
        products=products,
        variants=variants,
        seeds=args.seeds,
        end_s=end_s,
        backend=getattr(args, "backend", "libsumo"),
    )


def _print_summary(run_dir: Path) -> None:
    from twin.traffic.kpis import read_kpis_csv
    from twin.traffic.report import KEY_KPIS, aggregate

    agg = aggregate(read_kpis_csv(run_dir / "kpis.csv"))
    variants: list[str] = []
    for per in agg.values():
        for v in per:
            if v not in variants:
                variants.append(v)
    shown = [k for k in KEY_KPIS if k in agg][:12]
    width = max([len(k) for k in shown] + [10])
    print(f"{'KPI':{width}s}  " + "  ".join(f"{v[:18]:>22s}" for v in variants))
    for k in shown:
        cells = []
        for v in variants:
            c = agg[k].get(v)
            cells.append(f"{c['mean']:12.4g} ± {c['sd']:<7.2g}" if c and c["n"] else f"{'–':>22s}")
        unit = next(iter(agg[k].values()))["unit"]
        print(f"{k:{width}s}  " + "  ".join(cells) + f"  {unit}")
    print(f"report: {run_dir / 'report.html'}")


def cmd_run(args: argparse.Namespace) -> int:
    """Run a scenario's variants over seeds one after the other, showing their progress."""
    from twin.progress import console_progress
    from twin.traffic.runs import execute, plan_summary

    plan = _plan(args)
    _say(plan_summary(plan))
    with console_progress(plan.scenario.name, unit="s simulated") as progress:
        run_dir = execute(plan, progress=progress)
    _print_summary(run_dir)
    return 0


def cmd_sweep(args: argparse.Namespace) -> int:
    """Run variants x seeds on Dask distributed."""
    from twin.progress import console_progress
    from twin.traffic.runs import plan_summary, sweep

    plan = _plan(args)
    _say(
        plan_summary(plan)
        + (f" on {args.scheduler}" if args.scheduler else " on a local Dask cluster")
    )
    with console_progress(plan.scenario.name, unit="runs") as progress:
        run_dir = sweep(plan, scheduler=args.scheduler, workers=args.workers, progress=progress)
    _print_summary(run_dir)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    """Validate a scenario file and its names against the built net, without running SUMO."""
    from twin.traffic.scenario import built_net_index, check_scenario

    scenario, products, _ = _scenario(args)
    resolved = check_scenario(scenario, built_net_index(products)[1])
    print(f"{scenario.file}: valid; variants: {', '.join(scenario.variants)}")
    for name, specs in resolved.items():
        for spec in specs:
            j = spec.get("junctions")
            extra = f", {len(j)} signal(s)" if isinstance(j, list) else ""
            print(f"  {name}: {spec['type']}{extra}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    """List the scenarios in simulations/."""
    from twin.traffic.scenario import load_scenario

    for f in sorted(args.simulations.glob("*.toml")):
        try:
            sc = load_scenario(f)
        except ConfigError:
            continue  # not a traffic scenario (groundwater, heat, coupled)
        print(f"{sc.name:24s} {sc.title}  [{', '.join(sc.variants)}]")
    return 0


def _common(p: argparse.ArgumentParser, *, scenario_required: bool = True) -> None:
    p.add_argument(
        "scenario",
        nargs=None if scenario_required else "?",
        help="scenario name in simulations/ or a TOML path",
    )
    p.add_argument(
        "--seeds", type=int, default=None, help="number of seeds (the scenario's first N)"
    )
    p.add_argument(
        "--end",
        default=None,
        metavar="E",
        help="end: a duration from the scenario's start (HH:MM, 90s, 30m, 6h, 2d) or an ISO 8601 "
        "UTC time (default: the scenario's duration)",
    )
    p.add_argument(
        "--warmup",
        default=None,
        metavar="HH:MM",
        help="warm-up before the start (default: the scenario's)",
    )
    add_pack_args(p)
    p.add_argument(
        "--runs-dir", type=Path, default=Path("runs"), help="where run folders go (default: runs/)"
    )
    p.add_argument("--simulations", type=Path, default=SIMULATIONS, help=argparse.SUPPRESS)


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register `twin traffic ...` on the main parser."""
    traffic = subparsers.add_parser(
        "traffic",
        help="SUMO traffic scenarios (network, demand, priority controllers, virtual barriers, KPIs)",
        description="Run traffic scenarios of simulations/*.toml (or any SUMO config) and compare "
        "variants with their baseline over several seeds.",
    )
    sub = traffic.add_subparsers(dest="action", metavar="ACTION", required=True)
    p = sub.add_parser(
        "run", help="run a scenario's variants over seeds (progress bar, KPIs, report)"
    )
    _common(p, scenario_required=False)
    p.add_argument(
        "--variant",
        action="append",
        metavar="V",
        help="run this variant (repeatable; baseline always runs)",
    )
    p.add_argument(
        "--sumocfg", type=Path, default=None, help="an existing SUMO config instead of a scenario"
    )
    p.add_argument(
        "--junctions",
        nargs="+",
        metavar="ID",
        default=None,
        help="with --sumocfg: treat only these signals",
    )
    p.add_argument(
        "--backend", choices=("libsumo", "traci"), default="libsumo", help=argparse.SUPPRESS
    )
    p.set_defaults(func=cmd_run)
    p = sub.add_parser("sweep", help="run variants x seeds on Dask distributed")
    _common(p)
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="ADDRESS",
        help="Dask scheduler (default: a local cluster)",
    )
    p.add_argument("--workers", type=int, default=None, help="local cluster size (default: CPUs)")
    p.set_defaults(func=cmd_sweep)
    p = sub.add_parser("check", help="validate a scenario against the built network")
    _common(p)
    p.set_defaults(func=cmd_check)
    p = sub.add_parser("list", help="list the traffic scenarios")
    p.add_argument("--simulations", type=Path, default=SIMULATIONS, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_list)
