"""The parts of a coupled run that write a model's outputs, and the coupled run's one report.

Each model's subfolder gets what its stand-alone run writes, through that domain's own writers
(:func:`twin.groundwater.run.write_run`, :meth:`twin.traffic.runs.TrafficModel.write_outputs`
and :func:`twin.traffic.runs.finish`); what is here is the glue from a model adapter's state to
those writers. ``report.html`` links the parts and says where the readings came from.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from twin.core import Clock, Coupler, format_utc
from twin.errors import ConfigError


def _atomic_npz(path: Path, **arrays: np.ndarray) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    with tmp.open("wb") as f:
        np.savez(f, **arrays)
    os.replace(tmp, path)


# -- ground water ---------------------------------------------------------------------------------


@dataclass
class GroundwaterPart:
    """The ground-water model of a coupled run and the history its outputs are written from.

    The history is the model's record (times, heads with and without readings, budgets, solves,
    analyses); it is saved beside each checkpoint so that a resumed run writes the same files as
    an uninterrupted one.
    """

    model: Any
    setup: Any
    folder: Path
    prior: dict[str, Any] | None = None

    @classmethod
    def add(cls, sc: Any, options: Any, clock: Clock, folder: Path, coupler: Coupler,
            pack: Any) -> GroundwaterPart:  # fmt: skip
        """Build the ground-water scenario on the run's clock and add its model to the coupler."""
        from twin.groundwater.run import add_model
        from twin.groundwater.scenario import build_setup, load_scenario

        cfg = sc.models["groundwater"]
        path = sc.resolve(cfg["scenario"])
        if not path.is_file():
            raise ConfigError(f"{sc.path}: 'models.groundwater.scenario': no file {path}")
        scenario = load_scenario(path)
        own = scenario.config["scenario"]
        own["start"], own["end"] = format_utc(clock.start), format_utc(clock.end)
        if cfg.get("time_step_hours"):
            own["time_step_hours"] = float(cfg["time_step_hours"])
        setup = build_setup(scenario, pack=pack.file, build_dir=Path(options.build_dir))
        out = folder / "groundwater"
        out.mkdir(exist_ok=True)
        shutil.copyfile(path, out / "scenario.toml")
        return cls(add_model(coupler, setup, free_run=True), setup, out)

    def history(self) -> dict[str, Any]:
        """The whole run's history: the part before a resume joined with what followed it."""
        h = self.model.history
        new = {k: list(h[k]) for k in ("times", "head", "free", "analyses", "budgets", "solves")}
        if self.prior is not None:
            rec = {k: list(v) for k, v in self.prior.items()}
            if new["analyses"][0] is not None:  # the analysis at the checkpoint, after resuming
                rec["head"][-1], rec["analyses"][-1] = new["head"][0], new["analyses"][0]
            for key in rec:
                rec[key] += new[key][1:]
            new = rec
        return {**new, "initial": h["initial"]}

    def save_history(self, path: Path) -> None:
        """Write the history (bit for bit: arrays as float64) beside a checkpoint."""
        rec = self.history()
        n, wells = len(rec["times"]), len(self.model.wells["id"])
        values, weights = np.full((n, wells), np.nan), np.full((n, wells), np.nan)
        rows, has = np.full((n, 4), np.nan), np.zeros(n, dtype=bool)
        for k, a in enumerate(rec["analyses"]):
            if a is not None:
                values[k], weights[k], has[k] = a[1], a[2], True
                rows[k] = [a[0].n_used, a[0].rmse_before, a[0].rmse_after, a[0].rmse_loo]
        text = json.dumps({"budgets": [asdict(b) for b in rec["budgets"]],
                           "solves": [asdict(s) for s in rec["solves"]]})  # fmt: skip
        _atomic_npz(path, times=np.array(rec["times"]), head=np.array(rec["head"]),
                    free=np.array(rec["free"]), values=values, weights=weights, has=has,
                    rows=rows, meta=np.frombuffer(text.encode(), dtype=np.uint8))  # fmt: skip

    def load_history(self, path: Path) -> None:
        """Read the history saved with a checkpoint; a resumed run continues it."""
        from twin.groundwater.budget import Budget
        from twin.groundwater.model import SolveReport

        if not path.is_file():
            raise ConfigError(f"--resume: the ground-water history {path.name} of the checkpoint "
                              "is missing")  # fmt: skip
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
        meta = json.loads(bytes(a["meta"]).decode())
        analyses = [
            (_Analysis(int(r[0]), *map(float, r[1:])), a["values"][k], a["weights"][k])
            if a["has"][k] else None for k, r in enumerate(a["rows"])
        ]  # fmt: skip
        self.prior = {"times": [float(t) for t in a["times"]], "head": list(a["head"]),
                      "free": list(a["free"]), "analyses": analyses,
                      "budgets": [Budget(**b) for b in meta["budgets"]],
                      "solves": [SolveReport(**s) for s in meta["solves"]]}  # fmt: skip

    def final_analysis(self, coupler: Coupler) -> None:
        """Analyse the readings at the run's end into the last heads (as a stand-alone run)."""
        from twin.groundwater.run import final_analysis

        final_analysis(coupler, self.model)

    def write(self, seconds: float, feed: Any, provenance: str) -> dict[str, Any]:
        """The stand-alone run's files in groundwater/ by the ground-water writer; its metrics."""
        from twin.groundwater.run import run_result, write_run

        source = None
        if feed is not None:
            source = {"model": feed, "kind": "jsonl" if feed.replay_counts() else "store",
                      "provenance": provenance}  # fmt: skip
        result = run_result(self.setup, self.model, source, self.history())
        phases = {"solve": self.model.timings["solve"],
                  "assimilation": self.model.timings["assimilation"]}  # fmt: skip
        return write_run(self.folder, self.setup, result, phases, seconds)


@dataclass
class HeatPart:
    """The heat model of a coupled run (one variant of its heat scenario on the run's clock), with
    its files in heat/: the same as a variant of a stand-alone heat run."""

    model: Any
    setup: Any
    folder: Path

    @classmethod
    def add(cls, sc: Any, options: Any, clock: Clock, folder: Path, coupler: Coupler,
            pack: Any) -> HeatPart:  # fmt: skip
        """Build the heat scenario on the run's clock (its synthetic forcing from the run's start)
        and add its model to the coupler."""
        from twin.heat.model import HeatModel
        from twin.heat.scenario import build_setup, load_scenario

        cfg = sc.models["heat"]
        path = sc.resolve(cfg["scenario"])
        if not path.is_file():
            raise ConfigError(f"{sc.path}: 'models.heat.scenario': no file {path}")
        scenario = load_scenario(path).with_variant(cfg["variant"])
        own = scenario.config["scenario"]
        own["start"], own["end"] = format_utc(clock.start), format_utc(clock.end)
        if cfg.get("time_step_s"):
            own["time_step_s"] = float(cfg["time_step_s"])
        if cfg.get("extent"):
            scenario.config["grid"]["extent"] = list(cfg["extent"])
        from twin.app.readings import station_readings

        setup = build_setup(scenario, pack=pack.file, build_dir=Path(options.build_dir),
                            station_readings=station_readings)  # fmt: skip
        out = folder / "heat"
        out.mkdir(exist_ok=True)
        shutil.copyfile(path, out / "scenario.toml")
        model = HeatModel()
        coupler.add("heat", model, {"setup": setup, "record": True}, step=own["time_step_s"])
        return cls(model, setup, out)

    @property
    def grid(self) -> dict[str, Any]:
        """The heat grid, for a model that delivers a raster onto it (traffic's waste heat)."""
        g = self.setup.grid
        return {"shape": g.shape, "transform": tuple(g.transform)[:6]}

    def write(self) -> dict[str, Any]:
        """The heat model's files in heat/ (rasters, maps, energy balance, hot spots); metrics."""
        from twin.heat.run import write_variant

        readings = {"provenance": "none (the coupled run links no station readings to it)",
                    "steps_with_readings": self.model.steps_with_readings,
                    "steps_without_readings": self.model.steps_without_readings}  # fmt: skip
        result = write_variant(self.setup, self.model, readings, self.folder)
        m = self.model
        inputs = {"traffic_heat_flux": m._traffic_from_input, "depth_to_water": m._depth_from_input}
        return {**result.metrics, "inputs_from_coupler": inputs,
                "traffic_heat_mean_w_m2": float(m._traffic.mean()),
                "traffic_heat_max_w_m2": float(m._traffic.max()),
                "depth_to_water_m": {"min": float(m._depth.min()), "max": float(m._depth.max())}}  # fmt: skip


@dataclass(frozen=True)
class _Analysis:
    """What the ground-water writers read of an analysis saved with a checkpoint."""

    n_used: int
    rmse_before: float
    rmse_after: float
    rmse_loo: float


# -- traffic ---------------------------------------------------------------------------------------


@dataclass
class TrafficPart:
    """The traffic model of a coupled run: one variant and seed on the run's clock, in traffic/."""

    plan: Any
    model: Any  # twin.app.replayed.Replayed around twin.traffic.runs.TrafficModel

    @classmethod
    def add(cls, sc: Any, options: Any, clock: Clock, folder: Path, coupler: Coupler, pack: Any,
            parts: Any) -> TrafficPart:  # fmt: skip
        """Plan the traffic scenario into traffic/ and add its model (held after its window)."""
        from twin.app.pack import SIMULATIONS
        from twin.app.replayed import Replayed
        from twin.app.run import _seconds
        from twin.traffic.runs import TrafficModel, plan_run
        from twin.traffic.scenario import (
            BASELINE,
            find_scenario,
            load_scenario,
            sumocfg_scenario,
        )

        cfg = sc.models["traffic"]
        where = f"{sc.path}: 'models.traffic"
        given = Path(cfg["scenario"])
        local = sc.path.parent if (sc.path.parent / f"{given}.toml").is_file() else SIMULATIONS
        path = sc.resolve(str(given)) if given.suffix else find_scenario(str(given), local)
        seeds = [cfg["seed"]] if cfg.get("seed") is not None else None
        if path.suffix == ".sumocfg":
            scenario = sumocfg_scenario(path, junctions=None, duration_s=None, seeds=seeds or [1])
        else:
            scenario = load_scenario(path)
        variant = cfg["variant"]
        if variant != BASELINE:
            scenario.variant(variant)
            raise ConfigError(f"{where}.variant': a coupled run drives one traffic variant with no "
                              f"baseline beside it; only '{BASELINE}' for now")  # fmt: skip
        if seeds:
            scenario.seeds = seeds
        duration = clock.duration or 0.0
        window = _seconds(cfg["window"], clock.start, f"{where}.window'") if cfg.get("window") \
            else duration  # fmt: skip
        window = min(window, duration)
        if cfg.get("warmup"):
            scenario.warmup_s = _seconds(cfg["warmup"], clock.start, f"{where}.warmup'")
        if window <= scenario.warmup_s:
            raise ConfigError(f"{where}.window': {window:g} s is not longer than the warm-up "
                              f"({scenario.warmup_s:g} s)")  # fmt: skip
        # traffic's time 0 is the run's start; it measures after its warm-up
        from datetime import timedelta

        scenario.start_utc = clock.start + timedelta(seconds=scenario.warmup_s)
        products = None
        if scenario.sumocfg is None:
            from twin.app.steps import build_products
            from twin.traffic.network import NETWORK_STEP

            products, _ = build_products(pack, Path(options.build_dir), only=[NETWORK_STEP])
        target = folder / "traffic"
        shutil.rmtree(target, ignore_errors=True)  # a resumed run simulates traffic again
        plan = plan_run(scenario, folder=target, products=products, variants=[variant], seeds=1,
                        end_s=window - scenario.warmup_s)  # fmt: skip
        step = _seconds(cfg["coupling_step"], clock.start, f"{where}.coupling_step'")
        model = Replayed(TrafficModel(), window=window, step=step, stops=lambda t: parts.stops)
        config = {"plan": plan, "variant": variant, "seed": plan.seeds[0]}
        if parts.heat is not None:  # its waste heat onto the heat model's grid
            config["grid"] = parts.heat.grid
        coupler.add("traffic", model, config, step=step)
        return cls(plan, model)

    def write(self) -> dict[str, Any]:
        """The stand-alone run's files in traffic/ (KPIs, series, kpis.csv, report.html) by the
        traffic writers, once the model is finalized; the metrics of its status.json."""
        from twin.runs import read_status
        from twin.traffic.runs import finish

        return read_status(finish(self.plan, [self.model.inner.write_outputs()])).get("metrics", {})


# -- the run's outputs and report -----------------------------------------------------------------


def finish_outputs(sc: Any, parts: Any, seconds: float, *, gaps: list[dict[str, Any]],
                   readings: dict[str, Any]) -> dict[str, Any]:  # fmt: skip
    """Every model's files in its subfolder, the sensors' summary and report.html; the metrics."""
    metrics: dict[str, Any] = {"seconds": round(seconds, 3), "models": list(sc.models)}
    if parts.feed is not None:
        out = parts.folder / "sensors"
        summary = {"readings": readings, "gaps": gaps}
        (out / "readings.json").write_text(json.dumps(summary, indent=2) + "\n", "utf-8")
        metrics["sensors"] = {"gaps": len(gaps), **{k: v for k, v in readings.items()
                                                    if isinstance(v, int)}}  # fmt: skip
    if parts.groundwater is not None:
        feed = parts.feed
        metrics["groundwater"] = parts.groundwater.write(seconds, feed, readings.get("source", ""))
    if parts.traffic is not None:
        metrics["traffic"] = parts.traffic.write()
    if parts.heat is not None:
        metrics["heat"] = parts.heat.write()
    write_report(sc, parts, metrics, gaps=gaps, readings=readings)
    return metrics


def write_report(sc: Any, parts: Any, metrics: dict[str, Any], *, gaps: list[dict[str, Any]],
                 readings: dict[str, Any]) -> Path:  # fmt: skip
    """report.html of the coupled run: period, models and links, readings, gaps, each part."""
    from twin.report import Report, link, strong

    clock: Clock = parts.clock
    cfg = sc.config["scenario"]
    report = Report(cfg["title"] or sc.name, lead=cfg["description"])
    report.paragraph(["Coupled run ", strong(sc.name), f" from {format_utc(clock.start)} to "
                      f"{format_utc(clock.end)}; {metrics['seconds']:.1f} s of wall time."])  # fmt: skip
    links = {"groundwater": "groundwater/report.html", "traffic": "traffic/report.html",
             "sensors": "sensors/readings.json", "heat": "heat/energy_balance.csv"}  # fmt: skip
    report.section("Models")
    report.facts([[strong(name), f": coupling step {parts.coupler.step_of(name):g} s; ",
                   link(links[name])] for name in sc.models])  # fmt: skip
    report.section("Exchanges")
    report.facts([f"{ln}{' (matched by well id)' if ln.transform is not None else ''}"
                  for ln in parts.coupler.links])  # fmt: skip
    if readings:
        report.section("Readings")
        report.paragraph(f"Source: {readings['source']}.")
        if "messages" in readings:
            report.paragraph(
                f"{readings['messages']} messages: {readings['in_window']} inside the run's "
                f"window, {readings['before_start']} before its start (taken in at the start), "
                f"{readings['after_end']} after its end (not used), {readings['no_time']} "
                "without a readable time."
            )
        ingest = readings.get("ingest") or {}
        if ingest:
            report.paragraph("Ingest: " + ", ".join(f"{k} {v}" for k, v in ingest.items()) + ".")
        report.section("Stretches without readings", level=3)
        if gaps:
            report.table(["start", "end", "quantities", "devices"],
                         [[g["start"], g["end"] or "open at the end", ", ".join(g["quantities"]),
                           g["wells"]] for g in gaps])  # fmt: skip
            report.paragraph("The models went on on their own dynamics through these.")
        else:
            report.paragraph("None.")
    gw = metrics.get("groundwater")
    if gw:
        report.section("Ground water")
        report.paragraph(f"{gw['steps']} steps on {gw['cells']} cells; largest relative budget "
                         f"error {gw['max_relative_budget_error']:.2e}; depth to water median "
                         f"{gw['depth_to_water_m']['median']:.2f} m.")  # fmt: skip
        maps = {"map_head.png": "Head at the end of the run",
                "map_head_change.png": "Head change from the initial steady state"}  # fmt: skip
        for png, caption in maps.items():
            if (parts.folder / "groundwater" / png).is_file():
                report.figure(f"groundwater/{png}", caption, width=600)
        for png in sorted((parts.folder / "groundwater").glob("hydrograph_*.png")):
            well = png.stem.removeprefix("hydrograph_")
            report.figure(f"groundwater/{png.name}", f"Hydrograph {well}", width=400)
    tr = metrics.get("traffic")
    if tr:
        report.section("Traffic")
        report.facts([f"{name} [{values.get('unit', '')}]: "
                      + ", ".join(f"{k} {v:.3g}" for k, v in values.items() if k != "unit")
                      for name, values in (tr.get("kpis") or {}).items()])  # fmt: skip
        report.paragraph([link("traffic/report.html", "The traffic report"), "."])
    ht = metrics.get("heat")
    if ht:
        report.section("Heat")
        report.paragraph(f"{ht['steps']} steps on {ht['cells']} cells of {ht['cell_m']:g} m; "
                         f"maximum air temperature {ht['t_air_max_c']:.1f} °C, mean of the "
                         f"maximum UTCI {ht['utci_max_mean_c']:.1f} °C; waste heat of traffic from "
                         f"the traffic model: {ht['inputs_from_coupler']['traffic_heat_flux']} "
                         f"(mean {ht['traffic_heat_mean_w_m2']:.2f} W m-2 at the last step); "
                         "depth to water from the ground-water model: "
                         f"{ht['inputs_from_coupler']['depth_to_water']} "
                         f"({ht['depth_to_water_m']['min']:.1f}-{ht['depth_to_water_m']['max']:.1f}"
                         " m).")  # fmt: skip
        for png, caption in (("t_air_max.png", "Maximum air temperature"),
                             ("utci_max.png", "Maximum UTCI at street level")):  # fmt: skip
            if (parts.folder / "heat" / png).is_file():
                report.figure(f"heat/{png}", caption, width=600)
    return report.write(parts.folder)
