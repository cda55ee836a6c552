"""`twin run SCENARIO.toml`: run a coupled scenario (thin: parse, call twin.app.run, print)."""

from __future__ import annotations

import argparse
from pathlib import Path

from twin.errors import ConfigError


def cmd_run(args: argparse.Namespace) -> int:
    """Run a coupled scenario, resume one, or list the models' variables."""
    from twin.app import run as coupled
    from twin.progress import console_progress

    if args.list_variables:
        print(coupled.list_variables_text())
        return 0
    if (args.scenario is None) == (args.resume is None):
        raise ConfigError("twin run: give a SCENARIO.toml or --resume RUN (one of them)")
    if args.resume is not None and any(
        v is not None for v in (args.end, args.readings, args.checkpoint_every)
    ):
        raise ConfigError("--resume continues a run as it was started: no --end, --readings "
                          "or --checkpoint-every with it")  # fmt: skip
    show = coupled.describe_duration
    with console_progress("run", unit="simulated", show=show) as progress:
        if args.resume is not None:
            folder = coupled.resume(args.resume, progress=progress)
        else:
            options = coupled.Options(
                end=args.end,
                readings=str(args.readings) if args.readings else None,
                checkpoint_every=args.checkpoint_every,
                pack=str(args.pack) if args.pack else None,
                build_dir=str(args.build_dir),
            )
            folder = coupled.run(args.scenario, options=options, runs_dir=args.runs_dir,
                                 progress=progress)  # fmt: skip
    from twin.runs import read_status

    status = read_status(folder)
    readings = status.get("readings") or {}
    if readings:
        print(f"readings: {readings.get('source')}")
        if "messages" in readings:
            print(f"  {readings['in_window']} messages in the window, {readings['before_start']} "
                  f"before its start, {readings['after_end']} after its end")  # fmt: skip
    for gap in status.get("gaps") or []:
        print(f"gap: {gap['start']} to {gap['end'] or 'the end'} ({', '.join(gap['quantities'])}, "
              f"{gap['wells']} device(s))")  # fmt: skip
    print(f"finished -> {folder} (report.html)")
    return 0


def add_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add `twin run` to the main parser's sub-commands."""
    from twin.app.pack import add_pack_args

    p = subparsers.add_parser(
        "run",
        help="run a coupled scenario (simulations/*.toml): sensors, ground water, traffic",
        description="Run a coupled scenario: its models on one clock, exchanging fields, into "
        "one run folder runs/<scenario>/<stamp>/ with a subfolder per model.",
    )
    p.add_argument("scenario", nargs="?", type=Path, help="a coupled scenario TOML")
    p.add_argument("--end", help="a duration from the start (HH:MM, 90s, 30m, 6h, 2d) or an "
                   "ISO 8601 UTC time (default: the scenario's end)")  # fmt: skip
    p.add_argument("--readings", type=Path, metavar="FILE.jsonl",
                   help="replay this uplink file instead of the scenario's sensor source")  # fmt: skip
    p.add_argument("--checkpoint-every", metavar="D",
                   help="save the coupled state every D (e.g. 1h) into checkpoints/")  # fmt: skip
    p.add_argument("--resume", type=Path, metavar="RUN",
                   help="continue an interrupted or failed run from its last checkpoint")  # fmt: skip
    p.add_argument("--list-variables", action="store_true",
                   help="list every model kind's inputs and outputs (units, standard names)")  # fmt: skip
    p.add_argument("--runs-dir", type=Path, default=Path("runs"), help="default: runs/")
    add_pack_args(p)
    p.set_defaults(func=cmd_run)
