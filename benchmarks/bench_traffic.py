"""Benchmark of the SUMO runner: plain `sumo` vs the libsumo runner (controllers off/on) vs TraCI.

Every run is the same scenario, seed and end time, each in its own process (libsumo holds one
simulation per process), repeated and interleaved; the fastest repeat counts. Prints vehicle-steps
per second (wall and CPU) and the ratios against plain `sumo` measured in the same run; the rows for
`benchmarks/run.py` use vehicle-steps per CPU second, which the load of a shared machine disturbs far
less than wall time. Goals: controllers off
within 10 % of plain sumo, controllers on within 25 %, libsumo at least 3x TraCI.

Our controllers read one subscription batch per step, so through TraCI they add little: the
libsumo/TraCI ratio is then bounded by 1 + (socket time / SUMO's own step time). The `poll` modes add
a reader of every vehicle's position and speed (a live 3D view; the workload of SUMO's TraCI
performance page) to show the ratio where the coupling dominates (slow through TraCI: opt in with
``--modes sumo,off,on,traci_off,traci_on,poll,traci_poll``).

    python benchmarks/bench_traffic.py        # Bologna, the Cologne port, the Krefeld corridor
    python benchmarks/bench_traffic.py --sumocfg my.sumocfg --end 1800 --repeat 5
    python benchmarks/bench_traffic.py --instructions --end 300   # valgrind: load-independent
    python benchmarks/bench_traffic.py --short   # what `make bench` runs: Bologna and Krefeld,
                                                 # 600 s, best of 3, modes sumo,off,on,traci_on
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Row, add_arguments, finish, skipped

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
BOLOGNA = SHARED_DATA / "sumo-scenarios" / "bologna-acosta" / "run.sumocfg"
# a few residential edges around node 62 of the Bologna net: a small no-entry zone
BOLOGNA_ZONE = ["m90", "m91", "89[0]", "90"]
# the Cologne Rhine port: lorries, trains and ships (its config names a polygon file not shipped)
COLOGNE = SHARED_DATA / "sumo-scenarios" / "port-cologne" / "osm.sumocfg"
MODES = ("sumo", "off", "on", "traci_off", "traci_on", "poll", "traci_poll")
SHORT_MODES = ("sumo", "off", "on", "traci_on")
BENCH = "traffic"
# (label, ours, anchor, goal, measure suffix, what the anchor is); ours is the libsumo runner
RATIOS = (
    ("libsumo off / plain sumo", "off", "sumo", ">= 0.90", "off", "plain `sumo`, same config"),
    ("libsumo on  / plain sumo", "on", "sumo", ">= 0.75", "on", "plain `sumo`, same config"),
    ("libsumo off / traci off", "off", "traci_off", ">= 3", "off_traci",
     "our runner through TraCI, controllers off"),
    ("libsumo on  / traci on", "on", "traci_on", ">= 3", "on_traci",
     "our runner through TraCI, controllers on"),
    ("libsumo / traci, polling", "poll", "traci_poll", ">= 3", "poll_traci",
     "our runner through TraCI, polling every vehicle"),
)  # fmt: skip


def _poll_every_vehicle() -> object:
    """A controller that reads every vehicle's position and speed each step, as a live 3D view
    would: the per-vehicle workload of SUMO's TraCI performance page, where the coupling dominates."""
    from twin.traffic.controllers import Controller

    class PollEveryVehicle(Controller):
        kind = name = "poll_every_vehicle"

        def attach(self, sim) -> None:
            self.reads = 0

        def step(self, sim, t: float) -> None:
            vehicle = sim.conn.vehicle
            for vid in vehicle.getIDList():
                vehicle.getPosition(vid)
                vehicle.getSpeed(vid)
                self.reads += 2

        def results(self) -> dict[str, tuple[float, str]]:
            return {self._kpi("reads"): (float(self.reads), "1")}

    return PollEveryVehicle()


def _sumo_args(cfg: Path, seed: int, end: float, out: Path) -> list[str]:
    return [
        "-c", str(cfg), "--seed", str(seed), "--end", f"{end:g}", "--no-step-log",
        "--tripinfo-output", str(out / "tripinfo.xml"), "--log", str(out / "sumo.log"),
    ]  # fmt: skip


# the Krefeld variant whose controllers make the "on" column there: conditional transit priority,
# the bike green wave on the Wälle and the safety monitor, as the scenario file resolves them
KREFELD_ON = "bus-and-bike-wave"


def _krefeld_config(tmp: Path, end: float) -> tuple[Path, list[dict]] | None:
    """The Krefeld corridor (bus-bike-priority baseline, its first seed's demand, no warm-up) as a
    SUMO config written the way `twin traffic run` saves each run, and the controller specs of
    KREFELD_ON; None when the net is not built. The wave learns for half the run, then acts."""
    build = REPO / "build" / "krefeld"
    if not (build / "krefeld.net.xml.gz").is_file():
        return None
    from twin.traffic.runs import BASELINE, SUMOCFG, plan_run, sumo_args, write_sumocfg
    from twin.traffic.scenario import load_scenario

    scenario = load_scenario(REPO / "simulations" / "bus-bike-priority.toml")
    scenario.warmup_s = 0.0
    plan = plan_run(scenario, runs_root=tmp / "runs", products=build,
                    variants=[BASELINE, KREFELD_ON], seeds=1, end_s=end)  # fmt: skip
    folder = plan.folder(BASELINE, plan.seeds[0])
    folder.mkdir(parents=True)
    _, info = sumo_args(plan, BASELINE, plan.seeds[0], folder)
    spec = [dict(c) for c in plan.controllers[KREFELD_ON]]
    for c in spec:
        if c.get("type") == "bike_green_wave":
            c["learn_s"] = min(float(c.get("learn_s", end / 2)), end / 2)
    return write_sumocfg(info["replay_args"], folder / SUMOCFG), spec


def _controller_spec(zone: list[str]) -> list[dict]:
    spec: list[dict] = [{"type": "transit_priority"}, {"type": "safety_monitor"}]
    if zone:
        spec.append({"type": "virtual_barrier", "zone_edges": zone, "compliance": 0.8})
    return spec


def _net_file(cfg: Path) -> Path:
    import xml.etree.ElementTree as ET

    root = ET.parse(cfg).getroot()
    for el in root.iter("net-file"):
        return (cfg.parent / el.get("value", "")).resolve()
    raise SystemExit(f"{cfg}: no net-file in the configuration")


def _cpu() -> float:
    """CPU seconds used so far by this process and its waited-for children (SUMO for TraCI)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def worker(
    mode: str,
    cfg: Path,
    seed: int,
    end: float,
    zone: list[str],
    out: Path,
    spec: list | None = None,
) -> dict:
    """One timed run in this process; returns wall and CPU time and counts.

    CPU time (this process plus SUMO's process for TraCI and plain sumo) is reported next to wall
    time because it is far less disturbed by other load on a shared machine.
    """
    args = _sumo_args(cfg, seed, end, out)
    if mode == "sumo":
        from twin.traffic.install import sumo_env, sumo_home

        binary = sumo_home() / "bin" / "sumo"  # the program itself, not a Python launcher
        env = sumo_env()
        c0, t0 = _cpu(), time.perf_counter()
        # stderr passes through: under valgrind it carries the child's instruction count
        subprocess.run([binary, *args], check=True, stdout=subprocess.DEVNULL, env=env)
        return {"wall_s": time.perf_counter() - t0, "cpu_s": _cpu() - c0}
    from twin.traffic.controllers import build_controllers
    from twin.traffic.install import import_sumo_module

    # imported before the clock starts, like the libraries of the sumo binary
    import_sumo_module("libsumo")
    import_sumo_module("traci")
    from twin.traffic.sim import Simulation

    backend = "traci" if mode.startswith("traci") else "libsumo"
    on = mode.endswith(("on", "poll"))
    spec = (spec if spec is not None else _controller_spec(zone)) if on else []
    controllers = build_controllers(spec, net_file=_net_file(cfg))
    if mode.endswith("poll"):
        controllers.append(_poll_every_vehicle())
    c0, t0 = _cpu(), time.perf_counter()
    with Simulation(args, backend=backend) as sim:
        result = sim.run(end, controllers)
        in_sumo = sim.step_wall_s
    wall = time.perf_counter() - t0
    return {
        "wall_s": wall,
        "cpu_s": _cpu() - c0,
        # the runner's own share: loop + controllers, relative to the time inside SUMO's steps
        "overhead": (result.wall_s - in_sumo) / in_sumo if in_sumo > 0 else None,
        "vehicle_steps": result.vehicle_steps,
        "steps": result.steps,
        "kpis": {k: v[0] for k, v in result.controller_results.items()},
    }


_VALGRIND = [
    "valgrind",
    "--tool=callgrind",
    "--callgrind-out-file=/dev/null",
    "--trace-children=yes",
]


def _run_worker(
    mode: str,
    cfg: Path,
    seed: int,
    end: float,
    zone: list[str],
    count: bool = False,
    spec: list | None = None,
) -> dict:
    """One worker process; with ``count`` under valgrind, adding ``instructions``; ``spec``: the
    controllers of the "on" modes (default: transit priority, safety monitor, barrier on ``zone``)."""
    with tempfile.TemporaryDirectory(prefix=f"bench-{mode}-") as tmp:
        cmd = [*(_VALGRIND if count else []), sys.executable, __file__, "--worker", mode]
        cmd += ["--sumocfg", str(cfg)]
        cmd += ["--seed", str(seed), "--end", f"{end:g}", "--out", tmp]
        if zone:
            cmd += ["--zone", ",".join(zone)]
        if spec is not None:
            spec_file = Path(tmp) / "controllers.json"
            spec_file.write_text(json.dumps(spec), encoding="utf-8")
            cmd += ["--spec", str(spec_file)]
        env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            raise SystemExit(f"{mode} run failed:\n{proc.stderr[-3000:]}")
        info = json.loads(proc.stdout.strip().splitlines()[-1])
        if count:
            info["instructions"] = sum(
                int(line.rsplit(":", 1)[1].replace(",", ""))
                for line in proc.stderr.splitlines()
                if "Collected :" in line
            )
        tripinfo = Path(tmp) / "tripinfo.xml"
        text = tripinfo.read_text(encoding="utf-8") if tripinfo.exists() else ""
        info["tripinfo_body"] = text[text.find("<tripinfos") :] if text else ""
        return info


def bench(
    cfg: Path,
    seed: int,
    end: float,
    repeat: int,
    zone: list[str],
    modes: list[str],
    spec: list | None = None,
) -> dict:
    """Run all modes ``repeat`` times, interleaved; return the fastest wall time per mode."""
    walls: dict[str, list[float]] = {m: [] for m in modes}
    cpus: dict[str, list[float]] = {m: [] for m in modes}
    overheads: dict[str, list[float]] = {m: [] for m in modes}
    info: dict[str, dict] = {}
    for r in range(repeat):
        for mode in modes:
            res = _run_worker(mode, cfg, seed, end, zone, spec=spec)
            walls[mode].append(res["wall_s"])
            cpus[mode].append(res["cpu_s"])
            if res.get("overhead") is not None:
                overheads[mode].append(res["overhead"])
            info.setdefault(mode, res)
            extra = f" runner overhead {res['overhead']:6.1%}" if res.get("overhead") else ""
            print(
                f"  repeat {r + 1}/{repeat} {mode:10s} wall {res['wall_s']:7.2f} s "
                f"cpu {res['cpu_s']:7.2f} s{extra}",
                flush=True,
            )
    vsteps_off = info.get("off", {}).get("vehicle_steps")
    same = None
    if "sumo" in info and "off" in info:
        same = info["sumo"]["tripinfo_body"] == info["off"]["tripinfo_body"]
        print(f"  tripinfo of plain sumo and libsumo (controllers off) identical: {same}")
    table: dict = {"same_tripinfo": same} if same is not None else {}
    for mode in modes:
        vsteps = info[mode].get("vehicle_steps", vsteps_off)
        best, cpu = min(walls[mode]), min(cpus[mode])
        table[mode] = {
            "wall_s_min": best,
            "wall_s_median": statistics.median(walls[mode]),
            "cpu_s_min": cpu,
            "vehicle_steps": vsteps,
            "vehicle_steps_per_s": (vsteps / best) if vsteps else None,
            "vehicle_steps_per_cpu_s": (vsteps / cpu) if vsteps else None,
            "runner_overhead": min(overheads[mode]) if overheads[mode] else None,
        }
    return table


def count_instructions(
    cfg: Path, seed: int, end: float, zone: list[str], modes: list[str], spec: list | None = None
) -> dict:
    """Instructions each mode executes for ``end`` simulated seconds (valgrind; load-independent).

    A run to t=0 (start-up, imports, network loading) is subtracted, so what is left is the
    stepping, the controllers and writing the outputs. Slow (about 50x): use a short ``end``.
    """
    out = {}
    for mode in modes:
        zero = _run_worker(mode, cfg, seed, 0.0, zone, count=True, spec=spec)["instructions"]
        res = _run_worker(mode, cfg, seed, end, zone, count=True, spec=spec)
        out[mode] = {
            "instructions": res["instructions"] - zero,
            "vehicle_steps": res.get("vehicle_steps"),
        }
        print(f"  {mode:10s} {out[mode]['instructions'] / 1e9:8.3f} G instructions", flush=True)
    vsteps = out.get("off", {}).get("vehicle_steps")
    for row in out.values():
        row["vehicle_steps"] = row["vehicle_steps"] or vsteps
        row["per_vehicle_step"] = (
            row["instructions"] / row["vehicle_steps"] if row["vehicle_steps"] else None
        )
    print(f"  {'mode':10s} {'instr/veh-step':>15s} {'vs plain sumo':>14s}")
    base = out.get("sumo", {}).get("per_vehicle_step")
    for mode, row in out.items():
        rel = f"{row['per_vehicle_step'] / base:13.3f}x" if base and row["per_vehicle_step"] else ""
        per = row["per_vehicle_step"]
        per_text = f"{per:15.0f}" if per else "-".rjust(15)
        print(f"  {mode:10s} {per_text} {rel:>14s}")
    return out


def report(name: str, table: dict) -> dict:
    """Print the table and the ratios against the goals; return the ratios."""
    print(f"\n{name}")
    print(
        f"  {'mode':10s} {'wall min':>9s} {'median':>8s} {'cpu min':>8s} {'veh-steps':>10s} "
        f"{'veh-steps/s':>12s} {'per cpu-s':>10s} {'runner overhead':>16s}"
    )
    for mode, row in table.items():
        if not isinstance(row, dict):
            continue
        over = row["runner_overhead"]
        print(
            f"  {mode:10s} {row['wall_s_min']:8.2f}s {row['wall_s_median']:7.2f}s "
            f"{row['cpu_s_min']:7.2f}s {row['vehicle_steps'] or 0:10d} "
            f"{row['vehicle_steps_per_s'] or 0:12.0f} {row['vehicle_steps_per_cpu_s'] or 0:10.0f} "
            + (f"{over:15.1%}" if over is not None else f"{'-':>15s}")
        )
    print("  (runner overhead: wall time outside SUMO's simulationStep / time inside it)")
    ratios = {}
    print(f"  {'ratio of vehicle-steps per second':34s} {'wall':>6s} {'cpu':>6s}")
    for label, a, b, goal, _, _ in RATIOS:
        ra, rb = table.get(a), table.get(b)
        if ra and rb and ra["vehicle_steps_per_s"] and rb["vehicle_steps_per_s"]:
            wall = ra["vehicle_steps_per_s"] / rb["vehicle_steps_per_s"]
            cpu = ra["vehicle_steps_per_cpu_s"] / rb["vehicle_steps_per_cpu_s"]
            ratios[label] = {"wall": wall, "cpu": cpu}
            print(f"  {label:34s} {wall:6.2f} {cpu:6.2f}   (goal {goal})")
    return ratios


def rows_of(slug: str, table: dict, modes: list[str]) -> list[Row]:
    """Table rows of one scenario: our runner's vehicle-steps per CPU second against its anchor's.

    CPU time (SUMO's own process included) rather than wall time: on a shared machine it is far
    less disturbed by other load; the wall-time ratios are printed with the scenario's table.
    """
    rows = []
    for _label, a, b, _goal, suffix, anchor in RATIOS:
        if a not in modes or b not in modes:
            continue
        ours, theirs = table[a]["vehicle_steps_per_cpu_s"], table[b]["vehicle_steps_per_cpu_s"]
        row = Row(BENCH, f"{slug}_{suffix}", "veh-steps/cpu-s", ours, theirs, anchor)
        if a == "off" and b == "sumo" and table.get("same_tripinfo") is False:
            row.failed = "tripinfo differs from plain sumo's"
        rows.append(row)
    return rows


def skipped_rows(slug: str, modes: list[str], why: str) -> list[Row]:
    """The rows of a scenario that is not on this machine, each saying why."""
    return [
        skipped(BENCH, f"{slug}_{suffix}", anchor, why)
        for _l, a, b, _g, suffix, anchor in RATIOS
        if a in modes and b in modes
    ]


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark (or, with --worker, one timed run in this process)."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sumocfg", action="append", type=Path, default=[], help="scenario(s) to run")
    ap.add_argument("--end", type=float, help="simulated seconds (default 3600, short 600)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--repeat", type=int, help="repeats, the fastest counts (default 3)")
    ap.add_argument(
        "--modes",
        help=f"subset of {','.join(MODES)} (default: all but the polling modes, which take "
        f"minutes; short: {','.join(SHORT_MODES)})",
    )
    ap.add_argument("--zone", default="", help="comma-separated zone edges for the barrier")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument(
        "--instructions",
        action="store_true",
        help="count instructions under valgrind instead of timing (slow; use e.g. --end 300)",
    )
    ap.add_argument("--worker", choices=MODES, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--spec", type=Path, help=argparse.SUPPRESS)
    add_arguments(ap)
    ns = ap.parse_args(argv)
    zone = [z for z in ns.zone.split(",") if z]
    if ns.end is None:
        ns.end = 600.0 if ns.short else 3600.0
    if ns.worker:
        spec = json.loads(ns.spec.read_text(encoding="utf-8")) if ns.spec else None
        res = worker(ns.worker, ns.sumocfg[0], ns.seed, ns.end, zone, ns.out, spec)
        print(json.dumps(res))
        return 0
    ns.repeat = ns.repeat or 3
    ns.modes = ns.modes or ",".join(SHORT_MODES if ns.short else MODES[:5])
    with tempfile.TemporaryDirectory(prefix="bench-traffic-") as tmp:
        rows = _bench_all(ns, zone, Path(tmp))
    return finish(rows, ns)


def _bench_all(ns: argparse.Namespace, zone: list[str], tmp: Path) -> list[Row]:
    modes = [m for m in ns.modes.split(",") if m]
    unknown = set(modes) - set(MODES)
    if unknown:
        raise SystemExit(f"--modes: unknown {sorted(unknown)}; choose from {MODES}")
    # (name, slug for the table, config, zone, controllers of "on" or None for the default)
    scenarios: list[tuple[str, str, Path, list[str], list | None]] = [
        (Path(c).parent.name, Path(c).parent.name, Path(c).resolve(), zone, None)
        for c in ns.sumocfg
    ]
    rows: list[Row] = []
    if not scenarios:
        if BOLOGNA.is_file():
            copy = tmp / "bologna"  # a copy: the scenario's detectors write beside their file
            shutil.copytree(BOLOGNA.parent, copy)
            scenarios.append(
                ("Bologna (Acosta)", "bologna", copy / BOLOGNA.name, BOLOGNA_ZONE, None)
            )
        else:
            print(f"Bologna scenario not found at {BOLOGNA}: skipped")
            rows += skipped_rows(
                "bologna", modes, "no ../shared/data/sumo-scenarios/bologna-acosta"
            )
        if ns.short:
            pass  # the Cologne port: long mode only (the short mode stays short)
        elif COLOGNE.is_file():
            from twin.traffic.runs import without_missing_files

            port = without_missing_files(COLOGNE, tmp / "port-cologne.sumocfg")
            scenarios.append(("Cologne Rhine port", "cologne", port, [], None))
        else:
            print(f"Cologne port scenario not found at {COLOGNE}: skipped")
            rows += skipped_rows("cologne", modes, "no ../shared/data/sumo-scenarios/port-cologne")
        krefeld = _krefeld_config(tmp, ns.end)
        if krefeld is not None:
            cfg, spec = krefeld
            scenarios.append(("Krefeld corridor (bus-bike-priority)", "krefeld", cfg, [], spec))
        else:
            print("build/krefeld has no SUMO net (run `twin data build`): Krefeld corridor skipped")
            rows += skipped_rows("krefeld", modes, "no SUMO net in build/krefeld (twin data build)")
    out = {}
    for name, slug, cfg, zone_edges, spec in scenarios:
        on = ", ".join(c["type"] for c in spec or _controller_spec(zone_edges))
        if ns.instructions:
            print(f"{name}: {cfg} (seed {ns.seed}, end {ns.end:g} s, instruction counts; on: {on})")
            out[name] = count_instructions(cfg, ns.seed, ns.end, zone_edges, modes, spec)
            continue
        print(f"{name}: {cfg} (seed {ns.seed}, end {ns.end:g} s, {ns.repeat} repeats; on: {on})")
        table = bench(cfg, ns.seed, ns.end, ns.repeat, zone_edges, modes, spec)
        out[name] = {"table": table, "ratios": report(name, table)}
        rows += rows_of(slug, table, modes)
    if ns.json:
        ns.json.write_text(json.dumps(out, indent=2), encoding="utf-8")
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
