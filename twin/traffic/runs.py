"""Scenario runs: a run folder per call, every (variant, seed) simulated with its controllers, KPIs and a
report at the end, and `status.json` saying whether the run finished or why it failed.

The run folder comes from the run layer (:mod:`twin.runs`): `runs/<scenario>/.<stamp>.partial/` while
it runs, `<stamp>/` when it finished, `<stamp>.failed/` or `<stamp>.interrupted/` otherwise. It holds
`status.json`, the scenario as given, one folder per variant and
seed with SUMO's outputs (tripinfo, stopinfo, vehicle routes, edge data, gate queues, summary, FCD for the
first seed), the controller logs and `run.sumocfg` (its inputs, for `sumo-gui -c`), then `kpis.csv` and
`report.html` with its PNG plots. `kpis.csv` and the report are written only when every run succeeded, so a
failed run never leaves results that look valid.
Sweeps run variants x seeds on Dask distributed: one process per worker, since libsumo holds one
simulation per process (eclipse-sumo/sumo #7694).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import subprocess
import time
import traceback
import xml.etree.ElementTree as ET
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from twin import runs
from twin.core.model import Model
from twin.core.variables import Grid, VariableSpec, bind
from twin.errors import ConfigError, DataError, TwinError
from twin.progress import Progress, as_progress
from twin.traffic import kpis as K
from twin.traffic.demand import build_demand, demand_key
from twin.traffic.network import (
    FACTS_FILE,
    NET_FILE,
    PTSTOPS_FILE,
    NetworkFacts,
    read_net,
)
from twin.traffic.scenario import (
    BASELINE,
    Scenario,
    built_net_index,
    check_scenario,
    net_index,
)

SUMOCFG = "run.sumocfg"  # in each (variant, seed) folder: `sumo-gui -c run.sumocfg` replays it
PLAN = "plan.json"
FCD_SEEDS = (
    1  # FCD (vehicle positions every step, for 3D scenes) is written for the first seed only
)


class RunError(TwinError):
    """A scenario run failed; the run folder's status.json says why."""


# -- the plan -------------------------------------------------------------------------------------------


@dataclass
class RunPlan:
    """Everything a worker needs to simulate one (variant, seed): picklable, paths absolute."""

    scenario: Scenario
    variants: list[str]
    seeds: list[int]
    end_s: float
    warmup_s: float
    run_dir: Path
    net_file: Path
    facts_file: Path | None
    stops_file: Path | None
    controllers: dict[str, list[dict[str, Any]]]
    treated_edges: list[str] = field(default_factory=list)
    bike_treated_edges: list[str] = field(default_factory=list)
    zone_edges: list[str] = field(default_factory=list)
    permit_classes: list[str] = field(default_factory=list)
    sumocfg: dict[str, Any] | None = None  # inputs of an existing SUMO config (see read_sumocfg)
    backend: str = "libsumo"

    def folder(self, variant: str, seed: int) -> Path:
        """Output folder of one (variant, seed)."""
        return self.run_dir / variant / f"seed-{seed}"


def _approach_edges(
    net: Any, signals: list[str] | None, vclasses: tuple[str, ...] = ("bus", "tram")
) -> list[str]:
    """Incoming edges of the given signals (all with transit links when None) usable by `vclasses`."""
    edges = set()
    for tls in net.getTrafficLights():
        if signals is not None and tls.getID() not in signals:
            continue
        for in_lane, _, _ in tls.getConnections():
            if any(in_lane.allows(v) for v in vclasses) and not in_lane.getEdge().getFunction():
                edges.add(in_lane.getEdge().getID())
    return sorted(edges)


def _treated_signals(
    controllers: Mapping[str, list[dict[str, Any]]], types: tuple[str, ...] = ("transit_priority",)
) -> list[str] | None:
    """Signals that controllers of `types` treat in any variant (None: 'auto', every signal)."""
    found: set[str] = set()
    for specs in controllers.values():
        for spec in specs:
            if spec.get("type") not in types:
                continue
            if spec.get("junctions", "auto") == "auto":
                return None
            found |= set(spec["junctions"])
    return sorted(found)


def plan_run(
    scenario: Scenario,
    *,
    runs_root: Path | None = None,
    products: Path | None,
    variants: list[str] | None = None,
    seeds: int | None = None,
    end_s: float | None = None,
    backend: str = "libsumo",
    folder: Path | None = None,
) -> RunPlan:
    """Check the scenario against the net and create the run folder (status 'running').

    `products` is the build folder with the net and its facts (None for an existing SUMO config).
    The run folder is a new one under `runs_root` (see :mod:`twin.runs`), or `folder` as it is
    named (a coupled run's `traffic/`, whose own run folder records a failure).
    Every check runs before SUMO starts; when one fails (unknown variant, edge, junction, street, stop,
    a missing build) a new run folder is still created, marked failed with the reason, and the error
    raised.
    """
    if (runs_root is None) == (folder is None):
        raise TypeError("plan_run: give either runs_root or folder")
    try:
        return _plan_run(scenario, runs_root=runs_root, products=products, variants=variants,
                         seeds=seeds, end_s=end_s, backend=backend, folder=folder)  # fmt: skip
    except (ConfigError, DataError) as exc:
        if runs_root is not None:
            record_failure(runs_root, scenario.name, exc, scenario_file=scenario.file)
        raise


def record_failure(
    runs_root: Path, name: str, exc: BaseException, *, scenario_file: Path | None = None
) -> Path:
    """A run folder with status 'failed' for a run that could not start (bad scenario, bad names)."""
    inputs = {"scenario": scenario_file} if scenario_file and scenario_file.is_file() else None
    return runs.record_failure(
        runs_root, name, "traffic", exc, inputs=inputs,
        scenario_file=str(scenario_file) if scenario_file else None, created_utc=runs.now_utc(),
    )  # fmt: skip


def _plan_run(
    scenario: Scenario,
    *,
    runs_root: Path | None,
    products: Path | None,
    variants: list[str] | None,
    seeds: int | None,
    end_s: float | None,
    backend: str,
    folder: Path | None,
) -> RunPlan:
    from twin.traffic.controllers import build_controllers

    names = variants or list(scenario.variants)
    for n in names:
        scenario.variant(n)
    if BASELINE not in names:
        names = [BASELINE, *names]  # every comparison needs the baseline of the same seeds
    seed_list = scenario.seeds_for(seeds)
    end = scenario.duration_s if end_s is None else end_s
    if end <= 0:
        raise ConfigError("--end must be later than 00:00")
    sumocfg = None
    if scenario.sumocfg is not None:
        sumocfg = read_sumocfg(scenario.sumocfg)
        net_file = Path(sumocfg["net"])
        facts_file = stops_file = None
        net = read_net(net_file)
        index = net_index(net)  # an existing SUMO config's stops and lines are its own
    else:
        if products is None:
            raise ConfigError("a scenario run needs the built network (twin data build)")
        net_file = products / NET_FILE
        facts_file = products / FACTS_FILE
        stops_file = products / PTSTOPS_FILE
        net, index = built_net_index(products)
    resolved = check_scenario(scenario, index)
    resolved = {k: v for k, v in resolved.items() if k in names}
    for name, specs in resolved.items():
        where = "baseline" if name == BASELINE else f"variants.{name}"
        try:
            build_controllers(specs, net_file=net_file)
        except ConfigError as exc:
            raise ConfigError(f"{scenario.file}: '{where}.controllers': {exc}") from None
    zone_edges: set[str] = set()
    permits: set[str] = set()
    for specs in resolved.values():
        for spec in specs:
            if spec.get("type") == "virtual_barrier":
                zone_edges |= set(spec.get("zone_edges", []))
                permits |= set(
                    spec.get("permit_classes", ["emergency", "bus", "delivery", "resident"])
                )
    for n in names:
        zone = scenario.variants[n].demand.get("zone")
        if zone:
            zone_edges |= {e for s in zone["streets"] for e in index.streets.get(s, [])}
    has_priority = any(s.get("type") == "transit_priority" for v in resolved.values() for s in v)
    treated = _approach_edges(net, _treated_signals(resolved)) if has_priority else []
    bike_types = ("bike_priority", "bike_green_wave")
    bike_treated = (
        _approach_edges(net, _treated_signals(resolved, bike_types), ("bicycle",))
        if any(s.get("type") in bike_types for v in resolved.values() for s in v)
        else []
    )
    inputs = {"scenario": scenario.file} if scenario.file.is_file() else {}
    if sumocfg is None:
        inputs.update(net=net_file, facts=facts_file, stops=stops_file)
    fields = dict(
        title=scenario.title,
        scenario_file=str(scenario.file),
        variants=names,
        seeds=seed_list,
        start_utc=scenario.start_utc.isoformat(),
        end_s=end,
        warmup_s=scenario.warmup_s,
        created_utc=runs.now_utc(),
        runs={v: {str(s): "pending" for s in seed_list} for v in names},
    )
    if folder is None:
        run_dir = runs.create(runs_root, scenario.name, "traffic", inputs=inputs, **fields)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        run_dir = folder.resolve()
        runs.write_status(run_dir, scenario=scenario.name, kind="traffic", state="running",
                          started_utc=runs.now_utc(), finished_utc=None, error=None, metrics={},
                          inputs={k: runs.file_input(p) for k, p in inputs.items()},
                          **fields)  # fmt: skip
    plan = RunPlan(
        scenario=scenario,
        variants=names,
        seeds=seed_list,
        end_s=end,
        warmup_s=scenario.warmup_s,
        run_dir=run_dir,
        net_file=net_file.resolve(),
        facts_file=facts_file.resolve() if facts_file else None,
        stops_file=stops_file.resolve() if stops_file else None,
        controllers=resolved,
        treated_edges=treated,
        bike_treated_edges=bike_treated,
        zone_edges=sorted(zone_edges),
        permit_classes=sorted(permits),
        sumocfg=sumocfg,
        backend=backend,
    )
    if scenario.file.suffix == ".toml":
        shutil.copy2(scenario.file, run_dir / "scenario.toml")
    (run_dir / PLAN).write_text(json.dumps(_plan_json(plan), indent=2, default=str) + "\n", "utf-8")
    return plan


def _plan_json(plan: RunPlan) -> dict[str, Any]:
    sc = plan.scenario
    return {
        "scenario": sc.name,
        "file": str(sc.file),
        "start_utc": sc.start_utc.isoformat(),
        "end_s": plan.end_s,
        "warmup_s": plan.warmup_s,
        "variants": {
            n: {
                "label": sc.variants[n].label,
                "demand": sc.variants[n].demand,
                "controllers": plan.controllers.get(n, []),
            }
            for n in plan.variants
        },  # fmt: skip
        "seeds": plan.seeds,
        "net": str(plan.net_file),
        "treated_edges": plan.treated_edges,
        "bike_treated_edges": plan.bike_treated_edges,
        "zone_edges": plan.zone_edges,
        "permit_classes": plan.permit_classes,
        "emission_model": sc.emission_model,
        "sumocfg": plan.sumocfg,
    }


# -- existing SUMO configurations -------------------------------------------------------------------------


def read_sumocfg(cfg: Path) -> dict[str, Any]:
    """Inputs and processing options of a SUMO config, with paths made absolute (nothing written)."""
    try:
        root = ET.parse(cfg).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ConfigError(f"{cfg}: not a readable SUMO configuration: {exc}") from None
    base = cfg.resolve().parent
    options: dict[str, str] = {}
    for section in root:
        if section.tag in ("output", "report", "gui_only", "traci_server"):
            continue  # outputs go to the run folder; no GUI, no TraCI port
        for opt in section:
            value = opt.get("value")
            if value is not None:
                options[opt.tag] = value

    def files(key: str) -> list[str]:
        out = []
        for part in options.pop(key, "").replace(" ", ",").split(","):
            if part:
                p = Path(part)
                p = p if p.is_absolute() else base / p
                if not p.exists():
                    raise ConfigError(f"{cfg}: '{key}' names {part}, which does not exist ({p})")
                out.append(str(p))
        return out

    net = files("net-file")
    if len(net) != 1:
        raise ConfigError(f"{cfg}: expected one net-file, got {len(net)}")
    routes = files("route-files")
    additionals = files("additional-files")
    for key in ("begin", "end"):
        options.pop(key, None)
    begin = 0.0
    with contextlib.suppress(ValueError, TypeError):
        begin = float(_option(root, "begin") or 0.0)
    vtypes = _vtype_classes([Path(p) for p in routes + additionals])
    return {"cfg": str(cfg.resolve()), "net": net[0], "routes": routes, "additionals": additionals,
            "options": options, "begin": begin, "vtypes": vtypes}  # fmt: skip


def without_missing_files(cfg: Path, out: Path) -> Path:
    """Write a copy of a SUMO config to `out` with absolute input paths, leaving out the input files
    that do not exist (e.g. a shipped scenario's polygon file for the GUI). Returns `out`."""
    root = ET.parse(cfg).getroot()
    for section in root:
        for opt in list(section):
            if not opt.tag.endswith(("-file", "-files")):  # inputs (outputs end in -output, -log)
                continue
            files = [cfg.parent / f.strip() for f in opt.get("value", "").split(",") if f.strip()]
            kept = [str(f.resolve()) for f in files if f.exists()]
            if kept:
                opt.set("value", ",".join(kept))
            else:
                section.remove(opt)
    ET.ElementTree(root).write(out, encoding="utf-8")
    return out


def _option(root: ET.Element, name: str) -> str | None:
    for el in root.iter(name):
        return el.get("value")
    return None


def _vtype_classes(files: list[Path]) -> dict[str, str]:
    """vType id -> vClass of the vTypes defined in route/additional files."""
    out: dict[str, str] = {}
    for f in files:
        with contextlib.suppress(ET.ParseError, OSError):
            for _, el in ET.iterparse(f, events=("end",)):
                if el.tag == "vType" and el.get("id"):
                    out[el.get("id")] = el.get("vClass", "passenger")
    return out


# additional-file elements whose `file` attribute is an output (detectors, mean data, probes)
_OUTPUT_ELEMENTS = frozenset(
    [
        "e1Detector",
        "inductionLoop",
        "instantInductionLoop",
        "e2Detector",
        "laneAreaDetector",
        "e3Detector",
        "entryExitDetector",
        "edgeData",
        "laneData",
        "routeProbe",
        "vTypeProbe",
    ]
)


def _patched_additionals(files: list[str], folder: Path) -> list[str]:
    """Additional files whose elements write outputs (`file=`) are copied with outputs into `folder`."""
    out = []
    for f in files:
        tree = ET.parse(f)
        writes = [el for el in tree.iter() if el.get("file") and el.tag in _OUTPUT_ELEMENTS]
        if not writes:
            out.append(f)
            continue
        for el in writes:  # relative to the copy beside them, so they move with the run folder
            el.set("file", f"{Path(f).stem}.{Path(el.get('file')).name}")
        copy = folder / f"input.{Path(f).name}"
        tree.write(copy, encoding="utf-8", xml_declaration=True)
        out.append(str(copy))
    return out


# -- one (variant, seed) --------------------------------------------------------------------------------


def _demand_for(
    plan: RunPlan, variant: str, seed: int
) -> tuple[list[str], list[str], dict[str, Any]]:
    """Route and additional files of a Krefeld scenario run, generated once per (demand, seed)."""
    sc = plan.scenario
    spec = sc.variants[variant].demand
    total = plan.warmup_s + plan.end_s
    hours = [sc.local_hour(t) for t in range(0, int(total) + 3600, 3600)]
    key = demand_key(spec, seed, 0.0, total, hours)
    target = plan.run_dir / "demand" / f"seed-{seed}-{key}"
    if not (target / "demand.json").exists():
        tmp = target.with_name(f".{target.name}.{os.getpid()}")
        shutil.rmtree(tmp, ignore_errors=True)
        facts = (
            NetworkFacts.from_json(plan.facts_file) if plan.facts_file else NetworkFacts(NET_FILE)
        )
        build_demand(
            spec, seed=seed, net_file=plan.net_file, facts=facts, stops_file=plan.stops_file,
            begin=0.0, end=total, hour_of=sc.local_hour, emission_model=sc.emission_model,
            out_dir=tmp,
        )  # fmt: skip
        try:
            os.replace(tmp, target)
        except OSError:  # another worker made the same demand meanwhile: use theirs
            shutil.rmtree(tmp, ignore_errors=True)
    meta = json.loads((target / "demand.json").read_text(encoding="utf-8"))
    routes = sorted(
        str(p) for p in target.glob("*.xml") if p.name.endswith((".trips.xml", ".rou.xml"))
    )
    order = ["cars", "bikes", "transit", "trucks", "zone"]
    routes.sort(
        key=lambda p: next((i for i, o in enumerate(order) if Path(p).name.startswith(o)), 9)
    )
    return routes, [str(target / "vtypes.add.xml"), str(plan.stops_file)], meta


def sumo_args(
    plan: RunPlan, variant: str, seed: int, folder: Path
) -> tuple[list[str], dict[str, Any]]:
    """The SUMO command line of one run (inputs, timing, outputs into `folder`) and demand info."""
    sc = plan.scenario
    net = read_net(plan.net_file)
    meta: dict[str, Any] = {}
    if plan.sumocfg:
        cfg = plan.sumocfg
        begin = cfg["begin"]
        transit_types = sorted(t for t, c in cfg["vtypes"].items() if c in ("bus", "tram", "coach"))
        bike_types = sorted(t for t, c in cfg["vtypes"].items() if c == "bicycle")
        adds = _patched_additionals(cfg["additionals"], folder)
        args = ["-n", cfg["net"], "-r", ",".join(cfg["routes"])]
        for key, value in cfg["options"].items():
            args += [f"--{key}", value]
    else:
        begin = 0.0
        transit_types = ["bus", "tram"]
        bike_types = ["bike"]
        routes, adds, meta = _demand_for(plan, variant, seed)
        args = ["-n", str(plan.net_file), "-r", ",".join(routes)]
        args += ["--time-to-teleport", f"{sc.teleport_s:g}", "--step-length", f"{sc.step_length:g}"]
    facts = NetworkFacts.from_json(plan.facts_file) if plan.facts_file else None
    gates = (
        [
            {"id": g.id, "name": g.name, "edge": g.inbound_edge, "pos": g.inbound_pos}
            for g in facts.gates
        ]
        if facts and _has_trucks(plan, variant)
        else []
    )
    instruments = K.instruments(
        folder / K.INSTRUMENTS,
        transit_vtypes=transit_types,
        gates=gates,
        net=net,
        bike_vtypes=bike_types if plan.bike_treated_edges else None,
        mode_vtypes=K.mode_vtypes_of(plan.sumocfg["vtypes"]) if plan.sumocfg else None,
    )
    timing = [
        "--begin", f"{begin:g}", "--end", f"{begin + plan.warmup_s + plan.end_s:g}", "--seed", str(seed),
    ]  # fmt: skip
    replay = [*args, *(["-a", ",".join(adds)] if adds else []), *timing]
    args += ["-a", ",".join([*adds, str(instruments)]), *timing]
    args += [
        "--tripinfo-output", str(folder / K.TRIPINFO), "--tripinfo-output.write-unfinished",
        "--stop-output", str(folder / K.STOPINFO),
        "--vehroute-output", str(folder / K.VEHROUTES), "--vehroute-output.exit-times",
        "--vehroute-output.write-unfinished",
        "--statistic-output", str(folder / K.STATISTICS),
        "--summary-output", str(folder / K.SUMMARY),
        "--device.emissions.probability", "1",
        "--error-log", str(folder / "sumo.log"), "--no-warnings",
    ]  # fmt: skip
    if seed in plan.seeds[:FCD_SEEDS]:
        args += ["--fcd-output", str(folder / K.FCD)]
    return args, {"begin": begin, "demand": meta, "replay_args": replay}


def write_sumocfg(args: list[str], path: Path) -> Path:
    """Save a SUMO command line as a configuration file (paths relative to it) for `sumo -c` or
    `sumo-gui -c`. Runs save their inputs and timing this way, without outputs (a replay must not
    overwrite the run's results) and without the Python controllers."""
    from twin.traffic.install import sumo_binary, sumo_env

    cmd = [str(sumo_binary("sumo")), *args, "--save-configuration", str(path)]
    cmd.append("--save-configuration.relative")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=sumo_env(), timeout=120)
    if proc.returncode != 0 or not path.is_file():
        raise RunError(
            f"{path}: SUMO could not save the configuration: {proc.stderr.strip()[-500:]}"
        )
    return path


def _has_trucks(plan: RunPlan, variant: str) -> bool:
    trucks = plan.scenario.variants[variant].demand.get("trucks")
    return bool(trucks and trucks["per_day"] > 0)


class SeedRun:
    """One (variant, seed) of a plan simulated into its folder, and the files it leaves there.

    The one place a (variant, seed) is simulated and written: :func:`run_one` (a run or a sweep)
    and :class:`TrafficModel` (a coupled run) both go through it, so their folders hold the same
    files: ``run.sumocfg`` and ``twin.log`` from the start, SUMO's outputs and the controllers'
    logs once it is closed, then ``vtypes.json``, ``series.json``, ``result.json`` (the KPIs) and
    ``DONE`` (:meth:`write_outputs`). Times given to :meth:`run_to` count from the plan's begin,
    the warm-up included.
    """

    def __init__(self, plan: RunPlan, variant: str, seed: int, *, label: str) -> None:
        from twin.traffic.controllers import build_controllers
        from twin.traffic.sim import Simulation

        self.plan, self.variant, self.seed = plan, variant, seed
        self.folder = plan.folder(variant, seed)
        shutil.rmtree(self.folder, ignore_errors=True)
        self.folder.mkdir(parents=True)
        self._t0 = time.perf_counter()
        # controller messages (warnings on short detection distances, ...) go to the run's log
        self._log = logging.FileHandler(self.folder / "twin.log", encoding="utf-8")
        self._log.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        logging.getLogger("twin.traffic").addHandler(self._log)
        try:
            args, self.info = sumo_args(plan, variant, seed, self.folder)
            write_sumocfg(self.info["replay_args"], self.folder / SUMOCFG)
            self.begin: float = self.info["begin"]
            self.controllers = build_controllers(_controller_specs(plan, variant, seed),
                                                 net_file=plan.net_file)  # fmt: skip
            args = _with_controller_detectors(args, self.controllers, self.folder, plan.net_file)
            self.sim = Simulation(args, backend=plan.backend, label=label)
        except BaseException:
            self._detach_log()
            raise
        self._vtypes: dict[str, dict[str, str]] = {}
        self._controller_results: dict[str, tuple[float, str]] = {}

    def run_to(self, t: float, progress: Callable[[float], None] | None = None,
               stall_timeout_s: float = 120.0) -> None:  # fmt: skip
        """Simulate to ``t`` s after the plan's begin (or until no vehicle is left)."""
        begin = self.begin
        self.sim.run(begin + t, self.controllers,
                     progress=(lambda s: progress(s - begin)) if progress else None,
                     stall_timeout_s=stall_timeout_s)  # fmt: skip

    def close(self) -> None:
        """End SUMO (its outputs are complete then), keeping first what only a running SUMO
        tells (the vehicle types, the controllers' results); the controllers write their logs."""
        try:
            if not self.sim.closed:
                conn = self.sim.conn
                self._vtypes = {t: {"vClass": conn.vehicletype.getVehicleClass(t),
                                    "emissionClass": conn.vehicletype.getEmissionClass(t)}
                                for t in conn.vehicletype.getIDList()}  # fmt: skip
                for ctl in self.controllers:
                    self._controller_results.update(ctl.results())
            self.sim.close()
            for ctl in self.controllers:
                ctl.write_outputs(self.folder / "controllers")
        finally:
            self._detach_log()

    def _detach_log(self) -> None:
        logging.getLogger("twin.traffic").removeHandler(self._log)
        self._log.close()

    def write_outputs(self) -> dict[str, Any]:
        """The KPIs and the stand-alone run's files of a closed simulation; returns its result
        (what :func:`finish` compares and reports)."""
        folder, plan = self.folder, self.plan
        (folder / K.VTYPES_JSON).write_text(
            json.dumps(self._vtypes, indent=2, sort_keys=True) + "\n", "utf-8"
        )
        ctx = kpi_context(plan, self.variant, self.begin)
        rows = K.run_kpis(folder, ctx)
        for name, (value, unit) in sorted(self._controller_results.items()):
            rows.append((name, float(value), unit))
        series = K.time_series(folder, ctx)
        (folder / K.SERIES_JSON).write_text(json.dumps(series) + "\n", encoding="utf-8")
        out = {
            "variant": self.variant,
            "seed": self.seed,
            "rows": rows,
            "wall_s": time.perf_counter() - self._t0,
            "sim_end_s": self.sim.time - self.begin - plan.warmup_s,
            "steps": self.sim.steps,
            "vehicle_steps": self.sim.vehicle_steps,
            "demand": self.info["demand"],
            "emission_classes": {t: v["emissionClass"] for t, v in self._vtypes.items()},
        }
        (folder / "result.json").write_text(json.dumps(out, indent=1, default=str) + "\n", "utf-8")
        (folder / "DONE").write_text(
            datetime.now(UTC).isoformat(timespec="seconds") + "\n", "utf-8"
        )
        return out


def _with_controller_detectors(
    args: list[str], controllers: list[Any], folder: Path, net_file: Path
) -> list[str]:
    """The command line with the detectors of controllers that bring their own (the barrier's
    camera loops, ``detector_file``) added to its additional files."""
    extra = [
        str(ctl.detector_file(folder / f"{ctl.name.replace('#', '_')}.cameras.add.xml", net_file))
        for ctl in controllers
        if hasattr(ctl, "detector_file")
    ]
    if not extra:
        return args
    args = list(args)
    i = args.index("-a")
    args[i + 1] = ",".join([args[i + 1], *extra])
    return args


def _controller_specs(plan: RunPlan, variant: str, seed: int) -> list[dict[str, Any]]:
    """The variant's controllers; a barrier's compliance draws differ between seeds, not variants."""
    specs = []
    for spec in plan.controllers.get(variant, []):
        spec = dict(spec)
        if spec.get("type") == "virtual_barrier":
            spec.setdefault("seed", seed)
        specs.append(spec)
    return specs


def run_one(
    plan: RunPlan,
    variant: str,
    seed: int,
    progress: Callable[[float], None] | None = None,
    stall_timeout_s: float = 120.0,
) -> dict[str, Any]:
    """Simulate one (variant, seed) into its folder and compute its KPIs; returns a result dict.

    The folder gets DONE only after SUMO closed cleanly and the KPIs were computed; a failure leaves
    FAILED (with the reason) and raises.
    """
    from twin.core import Clock, Coupler

    folder = plan.folder(variant, seed)
    try:
        # A stand-alone run is a single-model coupled run: the TrafficModel that `twin run` couples,
        # met by the coupler once at the end (SUMO steps itself; nothing to exchange meanwhile).
        until = plan.warmup_s + plan.end_s
        model = TrafficModel()
        with Coupler(Clock(plan.scenario.origin_utc)) as coupler:
            coupler.add("traffic", model, {"plan": plan, "variant": variant, "seed": seed,
                                           "label": f"{variant}-{seed}", "progress": progress,
                                           "stall_timeout_s": stall_timeout_s}, step=until)  # fmt: skip
            coupler.run(until)
        return model.write_outputs()
    except BaseException as exc:
        reason = f"{type(exc).__name__}: {exc}" if not isinstance(exc, TwinError) else str(exc)
        with contextlib.suppress(OSError):
            (folder / "FAILED").write_text(reason + "\n" + traceback.format_exc(), encoding="utf-8")
        raise


def kpi_context(plan: RunPlan, variant: str, begin: float = 0.0) -> K.KpiContext:
    """What the KPIs of this plan need to know (same for every variant, so they compare)."""
    sc = plan.scenario
    gates = []
    if plan.facts_file and any(_has_trucks(plan, v) for v in plan.variants):
        facts = NetworkFacts.from_json(plan.facts_file)
        gates = [
            {"id": g.id, "name": g.name, "edge": g.inbound_edge, "pos": g.inbound_pos}
            for g in facts.gates
        ]
    return K.KpiContext(
        duration_s=plan.end_s,
        from_s=begin + plan.warmup_s,
        occupancy=sc.occupancy,
        punctual_window_s=sc.punctual_window_s,
        treated_edges=plan.treated_edges,
        bike_treated_edges=plan.bike_treated_edges,
        zone_edges=plan.zone_edges,
        permit_classes=plan.permit_classes,
        gates=gates,
        has_trucks=any(_has_trucks(plan, v) for v in plan.variants),
        net_file=plan.net_file,
    )


def run_task(plan: RunPlan, variant: str, seed: int) -> dict[str, Any]:
    """Worker entry of a sweep (a module-level function so Dask can ship it to processes)."""
    return run_one(plan, variant, seed)


# -- the whole run --------------------------------------------------------------------------------------


def finish(plan: RunPlan, results: list[dict[str, Any]]) -> Path:
    """Cross-variant KPIs, kpis.csv, report; status 'finished'. Returns the run folder."""
    from twin.traffic.report import write_report

    rows: list[tuple[str, int, str, float, str]] = []
    for r in sorted(results, key=lambda r: (plan.variants.index(r["variant"]), r["seed"])):
        rows.extend((r["variant"], r["seed"], k, v, u) for k, v, u in r["rows"])
    for variant in plan.variants:
        if variant == BASELINE:
            continue
        for seed in plan.seeds:
            ctx = kpi_context(plan, variant, plan.sumocfg["begin"] if plan.sumocfg else 0.0)
            for k, v, u in K.versus_baseline(
                plan.folder(BASELINE, seed), plan.folder(variant, seed), ctx
            ):
                rows.append((variant, seed, k, v, u))
    K.write_kpis_csv(rows, plan.run_dir / "kpis.csv.partial")
    meta = {
        "emission_model": plan.scenario.emission_model,
        "emission_classes": results[0]["emission_classes"] if results else {},
        "demand_notes": sorted(
            {n for r in results for n in (r.get("demand") or {}).get("notes", [])}
        ),
        "wall_s": {f"{r['variant']}/{r['seed']}": round(r["wall_s"], 2) for r in results},
    }
    write_report(plan, rows, meta)
    os.replace(plan.run_dir / "kpis.csv.partial", plan.run_dir / "kpis.csv")
    for r in results:  # every simulation whose KPIs are in, however it was run (a coupled run too)
        _mark(plan, r["variant"], r["seed"], "finished")
    plan.run_dir = runs.finish(plan.run_dir, metrics=_metrics(rows, results))
    return plan.run_dir


def _metrics(rows: list[tuple[str, int, str, float, str]], results: list[dict[str, Any]]) -> dict:
    """status.json's metrics of a traffic run: each key KPI's mean over seeds per variant."""
    from twin.traffic.report import KEY_KPIS, aggregate

    agg = aggregate(rows)
    kpis = {
        k: {"unit": next(iter(agg[k].values()))["unit"],
            **{v: c["mean"] for v, c in agg[k].items() if c["n"]}}
        for k in KEY_KPIS if k in agg
    }  # fmt: skip
    return {"simulations": len(results), "kpis": kpis}


def fail(plan: RunPlan, exc: BaseException) -> RunError:
    """Mark the run failed or interrupted (status.json with the reason) and rename its folder;
    returns the error to raise (re-raise an interrupt itself, so the command says 'interrupted')."""
    for name in ("kpis.csv", "kpis.csv.partial", "report.html"):
        (plan.run_dir / name).unlink(missing_ok=True)
    plan.run_dir = runs.end(plan.run_dir, exc)
    return RunError(f"run failed ({plan.run_dir}): {runs.describe(exc)[1]}")


def _marked(plan: RunPlan, work: Callable[[], Path]) -> Path:
    """Do `work` with SIGTERM as an interrupt; when it raises, mark the run failed or interrupted."""
    with runs.signals_interrupt() as interrupts:
        try:
            return work()
        except BaseException as exc:
            interrupts.settle()
            cause = interrupts.cause(exc)
            error = fail(plan, cause)
            if cause is exc and isinstance(exc, KeyboardInterrupt):  # the command: 'interrupted'
                raise
            if cause is not exc:  # an interrupt a library swallowed, then failed on
                raise cause from exc
            raise error from exc


def execute(
    plan: RunPlan,
    *,
    progress: Progress | None = None,
) -> Path:
    """Run every (variant, seed) of the plan one after the other in this process, then finish.

    ``progress`` sees a stage per (variant, seed) and the seconds simulated of all runs."""
    progress = as_progress(progress)
    per_run = plan.warmup_s + plan.end_s
    total = len(plan.variants) * len(plan.seeds) * per_run

    def work() -> Path:
        results: list[dict[str, Any]] = []
        for seed in plan.seeds:
            for variant in plan.variants:
                runs.write_status(plan.run_dir, current=f"{variant}/seed-{seed}")
                progress.stage(f"{variant}/seed-{seed}")
                before = len(results) * per_run

                def advanced(t: float, before: float = before) -> None:
                    progress.advance(before + min(t, per_run), total)

                results.append(run_one(plan, variant, seed, progress=advanced))
                _mark(plan, variant, seed, "finished")
        return finish(plan, results)

    return _marked(plan, work)


def _mark(plan: RunPlan, variant: str, seed: int, state: str) -> None:
    per_seed = runs.read_status(plan.run_dir).get("runs", {})
    per_seed.setdefault(variant, {})[str(seed)] = state
    runs.write_status(plan.run_dir, runs=per_seed)


def sweep(
    plan: RunPlan,
    *,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> Path:
    """Run variants x seeds on Dask distributed (a LocalCluster of processes unless `scheduler`).

    ``progress`` sees a stage per (variant, seed) finished and the simulations finished of all."""
    progress = as_progress(progress)
    try:
        from dask.distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ConfigError(
            "twin traffic sweep needs Dask: pip install 'dask[distributed]'"
        ) from None

    def work() -> Path:
        cluster = None
        if scheduler:
            client = Client(scheduler, timeout="20s")
        else:
            n = workers or max(1, min(len(plan.variants) * len(plan.seeds), (os.cpu_count() or 2)))
            # processes, one thread each: libsumo holds one simulation per process
            cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=40)  # fmt: skip
            client = Client(cluster)
        try:
            futures = {
                client.submit(
                    run_task,
                    plan,
                    v,
                    s,
                    pure=False,
                    key=f"{plan.scenario.name}-{v}-{s}-{runs.stamp_of(plan.run_dir)}",
                ): (v, s)  # fmt: skip
                for s in plan.seeds
                for v in plan.variants
            }
            results = []
            for fut in as_completed(futures):
                v, s = futures[fut]
                results.append(fut.result())
                _mark(plan, v, s, "finished")
                progress.stage(f"{v}/seed-{s} finished")
                progress.advance(len(results), len(futures))
        finally:
            client.close()
            if cluster is not None:
                cluster.close()
        return finish(plan, results)

    return _marked(plan, work)


# -- the coupled-model adapter ----------------------------------------------------------------------------


class TrafficModel(Model):
    """A scenario variant as a twin.core model: vehicles running and their waste heat on a raster.

    config: `plan` (a RunPlan), `variant`, `seed`, optional `label`, `progress` (called with the
    simulated seconds since the plan's begin), `stall_timeout_s`, and `grid` = {"shape": (rows, cols),
    "transform": (a, b, c, d, e, f)} for the heat output. Heat is the fuel burnt per second times
    the lower heating value of petrol/diesel (~43 MJ/kg) on the cell each vehicle is in, taken at
    every update time and averaged over the last `heat_window_s` (600 s).
    SUMO moves in whole steps: `update_until(t)` runs it to the last step at or before t, never
    past. Not resumable from a checkpoint (no save_state): SUMO's saved state leaves out the
    controllers' own state and the outputs SUMO has already written (trip info, FCD).
    """

    LHV_J_PER_MG = 43.0  # 43 MJ/kg = 43 J/mg
    OUTPUTS = (
        VariableSpec("vehicles_running", "1", "road_vehicle__count", "scalar",
                     "vehicles in the network at the model time"),
        VariableSpec("traffic_heat_flux", "W m-2", "road_traffic__waste_heat_energy_flux",
                     "raster", "fuel burnt x 43 MJ/kg per cell area; needs config 'grid'",
                     optional=True),
    )  # fmt: skip

    def _initialize(self, config: Mapping[str, Any]) -> None:
        plan: RunPlan = config["plan"]
        variant, seed = config["variant"], int(config["seed"])
        # a stand-alone run passes its progress (simulated s since the plan's begin) and watchdog
        self._progress = config.get("progress")
        self._stall_timeout_s = float(config.get("stall_timeout_s", 120.0))
        label = config.get("label", f"model-{variant}-{seed}")
        self._run = SeedRun(plan, variant, seed, label=label)
        self._sim, self._begin = self._run.sim, self._run.begin
        self.time_step = plan.scenario.step_length
        g = config.get("grid")
        self._grid = Grid.raster(tuple(g["shape"]), tuple(g["transform"])) if g else None
        self.outputs = bind(self.declared_outputs(config), {"traffic_heat_flux": self._grid})
        # the waste heat a coupled model reads is the mean of the snapshots taken at this
        # model's update times over the last heat_window_s (a model stepping every 10 min would
        # otherwise take one instant's vehicles, a lorry's burst on one cell, for ten minutes)
        self._heat_window_s = float(config.get("heat_window_s", 600.0))
        self._heat_samples: list[tuple[float, np.ndarray]] = []

    def _update_until(self, t: float) -> None:
        step = self.time_step
        steps = int(t / step + 1e-9)  # whole SUMO steps at or before t (t >= 0)
        self._run.run_to(steps * step + 0.5 * step * 1e-3, self._progress, self._stall_timeout_s)
        if self._grid is not None:
            self._heat_samples.append((t, self._heat_snapshot()))
            self._heat_samples = [(ts, h) for ts, h in self._heat_samples
                                  if ts > t - self._heat_window_s + 1e-9]  # fmt: skip

    def _get_value(self, name: str) -> Any:
        conn = self._sim.conn
        if name == "vehicles_running":
            return np.array(float(conn.vehicle.getIDCount()))
        if self._heat_samples:
            return np.mean([h for _, h in self._heat_samples], axis=0)
        return self._heat_snapshot()

    def _heat_snapshot(self) -> np.ndarray:
        """The vehicles' waste heat now: fuel burnt x LHV on the cell each vehicle is in (W m-2)."""
        conn = self._sim.conn
        a, b, c, d, e, f = self._grid.transform
        rows, cols = self._grid.shape
        heat = np.zeros((rows, cols))
        inv = np.linalg.inv(np.array([[a, b], [d, e]]))
        for vid in conn.vehicle.getIDList():
            x, y = conn.vehicle.getPosition(vid)
            col, row = inv @ np.array([x - c, y - f])
            if 0 <= row < rows and 0 <= col < cols:
                heat[int(row), int(col)] += conn.vehicle.getFuelConsumption(vid) * self.LHV_J_PER_MG
        return heat / abs(a * e - b * d)

    def _finalize(self) -> None:
        self._run.close()

    def write_outputs(self) -> dict[str, Any]:
        """After :meth:`finalize`: the (variant, seed)'s KPIs and the files of a stand-alone
        run (:meth:`SeedRun.write_outputs`); returns its result for :func:`finish`."""
        return self._run.write_outputs()


def plan_summary(plan: RunPlan) -> str:
    """One line describing what a plan runs."""
    return (
        f"{plan.scenario.name}: {len(plan.variants)} variant(s) x {len(plan.seeds)} seed(s), "
        f"{timedelta(seconds=plan.end_s)} simulated each -> {plan.run_dir}"
    )
