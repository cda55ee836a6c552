"""Benchmark the coupling: the coupled short scenario against its models stepped alone.

Usage: .venv/bin/python benchmarks/bench_coupled.py [--end 3h] [--repeat R] [--short]

`simulations/krefeld-coupled.toml` (sensors -> ground water hourly, traffic on the Wälle for its
window) is set up twice per repeat, the same way `twin run` sets it up (twin.app.run.build: the
same models, configs and links), and stepped over the same window:

1. by the Coupler (`step_to(end)`): the coupled run, ours;
2. alone, in this process, with no Coupler: the traffic model straight to the end of its window in
   one call, then the feed and the ground-water model hour by hour with the feed's readings handed
   over by the same link transforms: the anchor.

Set-up (building the data, the models and SUMO's start) is not timed; only the stepping, in CPU
time of this process (libsumo and the solver run in it; CPU time moves less than wall time on a
shared machine). Each repeat runs both, one after the other; the row is the repeat with the best
paired ratio, the anchor's time over the coupled time (rates: higher is better, 1 = no overhead);
the coupling overhead, coupled over alone, is printed too (goal: at most 1.05). `--short`, what
`make bench` runs: --end 3h, 2 repeats (the whole city's net makes each run take about 25 s).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from common import Row, add_arguments, finish, skipped

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "simulations" / "krefeld-coupled.toml"
BENCH = "coupled"


def _parts(folder: Path, end: str):
    from twin.app import run as coupled

    options = coupled.Options(end=end, pack=str(REPO / "data" / "krefeld" / "pack.toml"),
                              build_dir=str(REPO / "build"))  # fmt: skip
    folder.mkdir(parents=True)
    return coupled.build(coupled.load(SCENARIO), options, folder)


def coupled_once(folder: Path, end: str) -> float:
    """CPU seconds (this process: libsumo runs in it) the Coupler takes to step every model."""
    parts = _parts(folder, end)
    try:
        t0 = time.process_time()
        parts.coupler.step_to(parts.clock.duration)
        return time.process_time() - t0
    finally:
        parts.coupler.close()


def alone_once(folder: Path, end: str) -> float:
    """CPU seconds the same models take stepped one by one, the readings passed by hand."""
    parts = _parts(folder, end)
    coupler = parts.coupler
    models = coupler.models
    duration = parts.clock.duration
    try:
        t0 = time.process_time()
        if "traffic" in models:
            models["traffic"].update_until(duration)
        feed, gw = models["sensors"], models["groundwater"]
        links = [link for link in coupler.links if link.target == "groundwater"]
        step = gw.time_step
        t = 0.0
        while t < duration:
            for link in links:
                value = feed.get_value(link.output)
                gw.set_value(link.input, link.transform(value) if link.transform else value)
            t_next = min(t + step, duration)
            sub = t
            while sub < t_next:  # the feed refreshes its store at its own step
                sub = min(sub + feed.time_step, t_next)
                feed.update_until(sub)
            gw.update_until(t_next)
            t = t_next
        return time.process_time() - t0
    finally:
        coupler.close()


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark and print the table row."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--end", help="the run's end (default 3h, the demo's short form)")
    ap.add_argument("--repeat", type=int, help="repeats; the best paired ratio counts (default 3)")
    add_arguments(ap)
    ns = ap.parse_args(argv)
    end = ns.end or "3h"
    repeat = ns.repeat or (2 if ns.short else 3)
    if not (REPO / "build" / "krefeld" / "krefeld.net.xml.gz").is_file():
        rows = [skipped(BENCH, "overhead", "models alone", "build/krefeld not built "
                        "(twin data build)")]  # fmt: skip
        return finish(rows, ns)
    coupled_s, alone_s = [], []
    with tempfile.TemporaryDirectory(prefix="bench-coupled-") as tmp:
        for i in range(repeat):  # in turns, so the machine's load falls on both alike
            first, second = (alone_once, coupled_once) if i % 2 == 0 else (coupled_once, alone_once)
            times = {f: f(Path(tmp) / f"{f.__name__}-{i}", end) for f in (first, second)}
            alone_s.append(times[alone_once])
            coupled_s.append(times[coupled_once])
            print(f"repeat {i + 1}: coupled {coupled_s[-1]:.2f} s, alone {alone_s[-1]:.2f} s CPU, "
                  f"overhead {coupled_s[-1] / alone_s[-1]:.3f}", flush=True)  # fmt: skip
    best = min(range(repeat), key=lambda i: coupled_s[i] / alone_s[i])
    best_c, best_a = coupled_s[best], alone_s[best]
    print(f"coupled short scenario (--end {end}): coupled {best_c:.2f} s, models alone "
          f"{best_a:.2f} s CPU; coupling overhead {best_c / best_a:.3f} (goal <= 1.05)")  # fmt: skip
    rows = [Row(BENCH, "overhead", "runs/s", 1.0 / best_c, 1.0 / best_a,
                "the same models stepped alone, readings passed by hand")]  # fmt: skip
    return finish(rows, ns)


if __name__ == "__main__":
    sys.exit(main())
