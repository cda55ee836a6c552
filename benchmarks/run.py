"""Run every benchmark (short mode by default), print one table of ratios, check the floors.

Usage: .venv/bin/python benchmarks/run.py [--full] [--only NAME ...] [--json FILE]

Each bench_*.py runs in its own process, one after the other (its detailed output streams
through), and hands back its rows; the table shows each ratio against its anchor and the floor
from benchmarks/floors.toml. Exit status 1 when a ratio is below its floor, a result was wrong or a
benchmark crashed; a row whose anchor or input is missing on this machine is skipped, and says why.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from common import FLOORS, FloorsError, Row, load_floors, problems, read_rows, table, to_json

HERE = Path(__file__).resolve().parent
BENCHES = (
    "citygml",
    "coupled",
    "groundwater",
    "heat",
    "rasterize",
    "scenes",
    "sensors",
    "tiles",
    "traffic",
)


def run_one(name: str, full: bool, timeout: float) -> tuple[list[Row], float]:
    """Run bench_<name>.py in its own process group; its rows (or one failed row) and seconds."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
        out = Path(tmp) / "rows.json"
        cmd = [sys.executable, str(HERE / f"bench_{name}.py"), "--rows", str(out)]
        if not full:
            cmd.append("--short")
        print(f"== {name}: {' '.join(cmd[1:])}", flush=True)
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, start_new_session=True)
        try:
            rc = proc.wait(timeout)
        except subprocess.TimeoutExpired:
            rc = None
        finally:  # the benchmark's brokers and simulators go with it, also on Ctrl-C
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL if rc is None else signal.SIGTERM)
            proc.wait()
        seconds = time.perf_counter() - t0
        if rc is None:
            why = f"did not finish within {timeout:g} s"
        elif out.exists():
            return read_rows(out), seconds
        else:
            why = f"exited with status {rc} before writing its results"
        return [Row(name, "run", "", None, None, "-", failed=why)], seconds


def main(argv: list[str] | None = None) -> int:
    """Run the benchmarks, print the table, write results.json; 1 if a check fails."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="the long modes (each script's defaults)")
    ap.add_argument("--only", nargs="+", choices=BENCHES, help="run only these benchmarks")
    ap.add_argument("--json", type=Path, default=Path("build/bench/results.json"),
                    help="where to write the table as JSON (default build/bench/results.json)")  # fmt: skip
    ap.add_argument("--timeout", type=float, default=None,
                    help="seconds per benchmark before it is stopped (default 600, full 7200)")  # fmt: skip
    ap.add_argument(
        "--floors", type=Path, default=FLOORS, help="floors file (default: floors.toml)"
    )
    args = ap.parse_args(argv)
    try:
        floors = load_floors(args.floors)
    except FloorsError as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return 2
    timeout = args.timeout or (7200.0 if args.full else 600.0)
    started = datetime.now(UTC)
    load = os.getloadavg()
    rows: list[Row] = []
    seconds: dict[str, float] = {}
    for name in args.only or BENCHES:
        got, seconds[name] = run_one(name, args.full, timeout)
        rows += got
    total = sum(seconds.values())
    mode = "full" if args.full else "short"
    print(f"\n== benchmarks ({mode} mode, {total:.0f} s: "
          + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ")")  # fmt: skip
    print(table(rows, floors, args.floors))
    failing = problems(rows, floors)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({
        "mode": mode, "started": started.isoformat(timespec="seconds"),
        "seconds": seconds, "cpus": os.cpu_count(), "load_average_at_start": load,
        "rows": to_json(rows, floors), "problems": failing,
    }, indent=1), encoding="utf-8")  # fmt: skip
    print(f"results written to {args.json}")
    for line in failing:
        print(f"bench: {line}", file=sys.stderr)
    return 1 if failing else 0


if __name__ == "__main__":
    sys.exit(main())
