"""The `twin` command: thin sub-commands that parse, call the library and print.

Each domain's sub-commands live in `twin/<package>/commands.py` as `add_commands(subparsers)` and are
imported only when that sub-command is named, so `twin --help` and `twin data build` load no numba,
SUMO or pyvista. Errors a user can act on are printed as one line (`twin: error: ...`) with a
non-zero exit code; set TWIN_DEBUG=1 to see the traceback of an unexpected failure.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from collections.abc import Sequence

from twin import runs
from twin.errors import TwinError
from twin.runs import Terminated

# Domain sub-commands: name -> (package, what it does); each package has its commands module.
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
}


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _add_domain(sub: argparse._SubParsersAction, package: str) -> None:
    importlib.import_module(f"twin.{package}.commands").add_commands(sub)


def run_command(argv: Sequence[str]) -> int:
    """Run one `twin` command line in this process (errors propagate to the caller)."""
    args = build_parser(_command_of(argv)).parse_args(list(argv))
    return args.func(args)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The argument parser of `twin`: all sub-commands in full, or (given `command`) only that one
    in full and the other domains by name and help, so their modules are not imported."""
    from twin.app import commands as app_commands
    from twin.app import run_commands

    parser = argparse.ArgumentParser(
        prog="twin",
        description="Digital twin of Krefeld: 3D city, traffic, ground water, heat and live sensors.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    app_commands.add_commands(sub, run=run_command)
    run_commands.add_commands(sub)  # `twin run`: coupled scenarios (twin/app/run.py)
    for name, (package, what) in DOMAINS.items():
        if command is None or command == name:
            _add_domain(sub, package)
        else:  # named, not loaded: its commands are parsed only when it is the one chosen
            sub.add_parser(name, help=what, add_help=False)
    runs.add_commands(sub)
    return parser


def _command_of(argv: Sequence[str]) -> str:
    """The sub-command named on a command line ('' for none, e.g. `twin --help`)."""
    return next((a for a in argv if not a.startswith("-")), "")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `twin` command."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command_of(argv)).parse_args(argv)
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
