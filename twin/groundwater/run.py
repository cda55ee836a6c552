"""Run a ground-water scenario: a single-model coupled run with its readings source, outputs on disk.

`twin groundwater run` builds the scenario's model (:func:`build_setup`), puts it into a
``twin.core.Coupler`` as :class:`GroundwaterModel` with the model of its readings (the sensor feed
on a replayed uplink file or a sensor store, or the synthetic truth run; see
:mod:`twin.groundwater.readings`), links the readings to ``observed_head`` / ``observation_weight``
and steps to the end: the adapter's loop is the only stepping loop.

The run folder comes from the run layer (:mod:`twin.runs`): written as ``runs/<scenario>/.<stamp>.partial/``
and renamed ``<stamp>/`` only when everything is written, ``<stamp>.failed/`` or ``<stamp>.interrupted/``
otherwise, with ``status.json`` saying why. Besides the common keys, status.json keeps the ground-water
run's own: ``status`` (= state), ``reason`` (= error), ``started``, ``finished``, ``seconds``, ``start``,
``end`` (the simulated period), ``file`` and ``readings`` (where they came from, gaps, counts); its
metrics hold ``phases_s``, the seconds per phase.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twin.core import Coupler
from twin.core import Model as CoreModel
from twin.core.transforms import by_id, outages
from twin.errors import DataError
from twin.groundwater.assimilation import interpolate
from twin.groundwater.coupling import GroundwaterModel
from twin.groundwater.outputs import (
    BUDGET_COLUMNS,
    plot_hydrograph,
    plot_map,
    write_csv,
    write_geotiff,
)
from twin.groundwater.readings import SyntheticReadings, provenance
from twin.groundwater.report import phase_line, write_report
from twin.groundwater.scenario import Setup, build_setup, load_scenario, logger_wells
from twin.progress import Progress, as_progress
from twin.runs import Run, now_utc, read_status, write_status

FEED_QUANTITY = "groundwater_head"


@dataclass
class Readings:
    """Readings as the run used them: values (n_steps+1, n_wells), weights, the withheld wells."""

    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    values: np.ndarray
    weights: np.ndarray
    withheld: np.ndarray
    truth: np.ndarray | None = None


@dataclass
class RunResult:
    """What a finished run produced and measured."""

    folder: Path
    steps: int
    seconds: float
    metrics: dict[str, Any] = field(default_factory=dict)


def withheld_wells(n: int, fraction: float, seed: int) -> np.ndarray:
    """Wells kept out of the analysis to measure it: ``fraction`` of ``n`` (never all), seeded."""
    mask = np.zeros(n, dtype=bool)
    k = int(round(fraction * n))
    if k and n > 1:
        rng = np.random.default_rng(seed + 1)
        mask[rng.choice(n, min(k, n - 1), replace=False)] = True
    return mask


def _rmse(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(np.sqrt(np.mean(a**2))) if a.size else float("nan")


# Makes the sensor feed of a "jsonl" or "store" readings source: (a feed model, the pack's device
# catalogue). The feed is another domain's model, which this model never imports: the caller that
# wires the domains together (twin.app.readings.sensor_feed) passes it in.
SensorFeedFactory = Callable[[Setup], tuple[CoreModel, Any]]


def _add_source(coupler: Coupler, setup: Setup, wells: dict, folder: Path,
                sensor_feed: SensorFeedFactory | None) -> dict[str, Any]:  # fmt: skip
    """Add the scenario's readings model to ``coupler``; returns how to link it and its words."""
    rd = setup.scenario.config["readings"]
    kind = rd["source"]
    if kind == "synthetic":
        source = coupler.add("readings", SyntheticReadings(), {"setup": setup, "wells": wells})
        ids = [str(w) for w in wells["id"]]
        return {"model": source, "name": "readings", "ids": ids, "kind": kind,
                "provenance": provenance(kind)}  # fmt: skip
    path = setup.scenario.resolve(rd["path"])
    if sensor_feed is None:
        raise DataError(
            f"{setup.scenario.path}: 'readings.source' = {kind!r} reads the sensor store through the "
            "sensor feed: run it with `twin groundwater run` or `twin run`, or pass sensor_feed="
        )
    feed, catalogue = sensor_feed(setup)
    step = setup.scenario.config["scenario"]["time_step_hours"] * 3600.0
    config: dict[str, Any] = {
        "quantities": [FEED_QUANTITY],
        "time_step": rd["step_minutes"] * 60.0 if rd.get("step_minutes") else min(step, 3600.0),
        "max_age_s": rd["max_age_hours"] * 3600.0,
        "gap_s": rd["gap_hours"] * 3600.0,
    }
    if kind == "jsonl":
        config.update(replay=path, store=folder / "readings.sqlite", catalogue=catalogue)
    else:
        config["store"] = path
    try:
        coupler.add("sensors", feed, config, step=config["time_step"])
    except Exception as exc:
        raise DataError(f"{setup.scenario.path}: 'readings.path' {path}: {exc}") from None
    return {"model": feed, "name": "sensors", "ids": feed.device_ids(FEED_QUANTITY), "kind": kind,
            "provenance": provenance(kind, str(path), simulated=rd["simulated"])}  # fmt: skip


def _link(coupler: Coupler, source: dict[str, Any], wells: dict) -> None:
    """Readings -> observed_head and weights -> observation_weight, matched by well id."""
    targets = [str(w) for w in wells["id"]]
    coupler.link(
        (source["name"], FEED_QUANTITY),
        ("groundwater", "observed_head"),
        by_id(source["ids"], targets, np.nan),
    )
    coupler.link((source["name"], f"{FEED_QUANTITY}_weight"), ("groundwater", "observation_weight"),
                 by_id(source["ids"], targets, 0.0))  # fmt: skip


def add_model(coupler: Coupler, setup: Setup, *, free_run: bool) -> GroundwaterModel:
    """The scenario's ground-water model, recording its history for the run's files, added to
    ``coupler`` as "groundwater" with the logger wells it reads and those it withholds.

    ``free_run``: step the model without readings beside it (the hydrographs' comparison)."""
    cfg = setup.scenario.config
    rd = cfg["readings"]
    wells = logger_wells(cfg, setup.wells)
    withheld = withheld_wells(len(wells.get("id", ())), rd["withhold_fraction"], rd["seed"])
    gw = GroundwaterModel()
    coupler.add("groundwater", gw, {"setup": setup, "wells": wells, "withheld": withheld,
                                    "free_run": free_run, "record": True})  # fmt: skip
    return gw


def final_analysis(coupler: Coupler, gw: GroundwaterModel) -> None:
    """The readings at the run's end into its last heads (the coupler stepped them to the end).

    The coupler meets a model before its step, so the readings of the last time reach the model
    only through this; a stand-alone and a coupled run both end with it."""
    for link in coupler.links:
        if link.target == "groundwater":
            value = coupler.models[link.source].get_value(link.output)
            gw.set_value(link.input, link.transform(value) if link.transform else value)
    gw.assimilate()


def simulate(
    setup: Setup,
    folder: Path,
    *,
    progress: Progress | None = None,
    sensor_feed: SensorFeedFactory | None = None,
) -> dict[str, Any]:
    """Step the scenario's coupled run (readings source + ground water) to its end.

    The ground-water model also steps a free state (no readings assimilated) beside the
    assimilated one when there are readings. ``progress`` sees the stages and the steps done of
    all. Returns :func:`run_result` with the phase times (``phases``).
    """
    progress = as_progress(progress)
    cfg = setup.scenario.config
    rd, asm = cfg["readings"], cfg["assimilation"]
    t0 = time.perf_counter()
    coupler = Coupler(setup.clock)
    wells = logger_wells(cfg, setup.wells)
    source = None
    with coupler:
        if rd["source"] != "none" and len(wells.get("id", ())):
            progress.stage(f"readings: {rd['source']}")
            source = _add_source(coupler, setup, wells, folder, sensor_feed)
        progress.stage("steady state")
        gw = add_model(coupler, setup, free_run=source is not None and asm["enabled"])
        if source is not None:
            _link(coupler, source, wells)
        n_steps = setup.steps

        def advanced(p: Any) -> None:
            if p.model == "groundwater":
                progress.advance(len(gw.history["times"]) - 1, n_steps)

        progress.stage("stepping")
        coupler.step_to(setup.clock.duration or 0.0, advanced)
        if source is not None:
            final_analysis(coupler, gw)
        result = run_result(setup, gw, source)
    reading_s = source["model"].seconds if source is not None else 0.0
    truth_s = reading_s if source is not None and source["kind"] == "synthetic" else 0.0
    result["phases"] = {
        "set_up": 0.0,  # filled in by run_scenario (the data build and the model)
        "readings": reading_s,
        "assimilation": gw.timings["assimilation"],
        "solve": gw.timings["solve"],
        "coupling": time.perf_counter() - t0 - reading_s - sum(gw.timings.values()),
        "solver_total": gw.timings["solve"] + truth_s,
    }
    return result


def run_result(setup: Setup, gw: GroundwaterModel, source: dict[str, Any] | None,
               history: dict[str, Any] | None = None) -> dict[str, Any]:  # fmt: skip
    """What a finished run's files are written from: heads, budgets, hydrograph series, the
    readings as used, assimilation metrics and where the readings came from.

    ``gw`` is the recording model at the run's end; ``source`` its readings model as
    {"model", "kind", "provenance"} (None: no readings); ``history`` replaces ``gw.history``
    (a resumed coupled run joins the part before its checkpoint with what followed)."""
    h = gw.history if history is None else history
    readings = _readings(h, gw.wells, gw.withheld, source)
    return {
        "times": np.array(h["times"]),
        "h_steady": h["initial"],
        "h_end": gw.head,
        "h_free_end": h["free"][-1],
        "budgets": h["budgets"],
        "solves": h["solves"],
        "series": {"assimilated": h["head"], "free": h["free"]},
        "readings": readings,
        "metrics": _metrics(setup, h, readings),
        "source": _readings_info(source, setup),
    }


def _readings_info(source: dict[str, Any] | None, setup: Setup) -> dict[str, Any]:
    """Where the readings came from, with the gaps the run saw (status.json's ``readings``)."""
    if source is None:
        return {"source": "none", "provenance": provenance("none"), "gaps": [], "outages": []}
    info: dict[str, Any] = {"source": source["kind"], "provenance": source["provenance"]}
    model = source["model"]
    if source["kind"] == "synthetic":
        return {**info, "gaps": [], "outages": []}
    gaps = model.gaps(FEED_QUANTITY)
    info.update(
        gaps=gaps,
        outages=outages(gaps),
        silent_wells=model.silent(FEED_QUANTITY),
        max_age_hours=model.max_age_s / 3600.0,
        gap_hours=model.gap_s / 3600.0,
    )
    counts = model.replay_counts()
    if counts:
        start = setup.clock.start.timestamp()
        end = start + (setup.clock.duration or 0.0)
        t = model.replay_times()
        counts.update(before_window=int(np.sum(t < start - model.max_age_s)),
                      after_window=int(np.sum(t > end)))  # fmt: skip
        info["replay"] = counts
    return info


def _readings(history: dict, wells: dict, withheld: np.ndarray,
              source: dict[str, Any] | None) -> Readings | None:  # fmt: skip
    """The readings each analysis used, one row per time (NaN / weight 0 where none)."""
    if source is None:
        return None
    n = len(wells["id"])
    values = np.full((len(history["times"]), n), np.nan)
    weights = np.zeros_like(values)
    for k, entry in enumerate(history["analyses"]):
        if entry is not None:
            _, values[k], weights[k] = entry
    truth = np.array(source["model"].truth) if source["kind"] == "synthetic" else None
    return Readings(np.asarray(wells["id"]), np.asarray(wells["x"]), np.asarray(wells["y"]),
                    values, weights, withheld, truth)  # fmt: skip


def _metrics(setup: Setup, history: dict, readings: Readings | None) -> list[list[Any]]:
    """One row per analysis: readings used, RMSE before/after/leave-one-out, withheld wells."""
    rows: list[list[Any]] = []
    if readings is None:
        return rows
    grid = setup.grid
    for k, entry in enumerate(history["analyses"]):
        if entry is None:
            continue
        result = entry[0]
        values = readings.values[k]
        reference = readings.truth[k] if readings.truth is not None else values
        held = readings.withheld & np.isfinite(reference)
        if readings.truth is None:
            held &= readings.weights[k] > 0
        x, y = readings.x[held], readings.y[held]
        free_err = reference[held] - interpolate(grid, history["free"][k], x, y)
        asm_err = reference[held] - interpolate(grid, history["head"][k], x, y)
        rows.append([
            setup.clock.isoformat(history["times"][k]), result.n_used, result.rmse_before,
            result.rmse_after, result.rmse_loo, _rmse(free_err), _rmse(asm_err),
        ])  # fmt: skip
    return rows


def write_run(folder: Path, setup: Setup, result: dict[str, Any], phases: dict[str, float],
              seconds: float) -> dict[str, Any]:  # fmt: skip
    """Every file of a ground-water run in ``folder`` (rasters, CSVs, plots, report.html) from its
    :func:`run_result`; returns the metrics for status.json, with the seconds per phase.

    One writer for the stand-alone run and a coupled run's ``groundwater/``, so both hold the
    same files. ``phases``: the seconds per phase so far, ``seconds``: the wall time so far; the
    time spent here is added as the phase ``outputs``."""
    t1 = time.perf_counter()
    metrics = _write_outputs(folder, setup, result)
    phases = {**phases, "outputs": time.perf_counter() - t1}
    write_report(folder, setup, result, metrics, phases, seconds + phases["outputs"])
    phases["outputs"] = time.perf_counter() - t1
    metrics.pop("hydrograph_pngs")
    metrics["phases_s"] = {k: round(v, 3) for k, v in phases.items()}
    return metrics


def _write_outputs(folder: Path, setup: Setup, result: dict[str, Any]) -> dict[str, Any]:
    """Rasters, CSVs and plots of a simulated scenario; returns summary metrics (and the
    hydrographs' PNGs, for the report)."""
    grid, clock = setup.grid, setup.clock
    terrain = setup.terrain
    model = setup.model
    h_steady, h_end = result["h_steady"], result["h_end"]
    dry_end = model.dry(h_end)
    head_map = np.where(dry_end, np.nan, h_end)
    water = np.zeros(grid.shape, dtype=bool)  # river cells: open water, no depth to water table
    for river in model.rivers.values():
        water[river.rows, river.cols] = True
    dtw_end = np.where(water, np.nan, terrain - head_map)
    dtw_steady = np.where(water, np.nan, terrain - np.where(model.dry(h_steady), np.nan, h_steady))
    write_geotiff(folder / "head_steady.tif", grid, np.where(model.dry(h_steady), np.nan, h_steady))
    write_geotiff(folder / "head_end.tif", grid, head_map)
    write_geotiff(folder / "depth_to_water_steady.tif", grid, dtw_steady)
    write_geotiff(folder / "depth_to_water_end.tif", grid, dtw_end)
    write_geotiff(folder / "head_change.tif", grid, head_map - h_steady)

    budgets = result["budgets"]
    times = result["times"]
    write_csv(
        folder / "budget.csv",
        BUDGET_COLUMNS,
        [[clock.isoformat(b.time), f"{b.inflow:.15g}", f"{b.outflow:.15g}",
          f"{b.storage_change:.15g}", f"{b.error:.6e}"] for b in budgets],
    )  # fmt: skip
    rows = [b.row() for b in budgets]
    header = list(rows[0])
    write_csv(
        folder / "budget_packages.csv",
        header,
        [[clock.isoformat(r["time"])] + [f"{r[c]:.9g}" for c in header[1:]] for r in rows],
    )
    if result["metrics"]:
        write_csv(
            folder / "assimilation.csv",
            ["time", "readings_used", "rmse_before_m", "rmse_after_m", "rmse_leave_one_out_m",
             "rmse_withheld_free_m", "rmse_withheld_assimilated_m"],
            [[r[0], r[1]] + [f"{v:.5f}" for v in r[2:]] for r in result["metrics"]],
        )  # fmt: skip

    readings: Readings | None = result["readings"]
    synthetic = readings is not None and readings.truth is not None
    wells = setup.hydrographs
    dates = [clock.to_datetime(t) for t in times]
    series = {k: np.array(v) for k, v in result["series"].items()}
    hyd_rows = []
    pngs = []
    for name, x, y in wells:
        sx, sy = np.array([x]), np.array([y])
        lines = {
            "model with readings" if readings is not None else "model": np.array([interpolate(grid, h, sx, sy)[0]
                                             for h in series["assimilated"]]),
            "model without readings": np.array([interpolate(grid, h, sx, sy)[0]
                                                for h in series["free"]]),
        }  # fmt: skip
        if readings is None:  # a projection: the free run is the same run
            lines.pop("model without readings")
        obs = None
        if readings is not None and name in set(readings.ids.astype(str)):
            n = int(np.flatnonzero(readings.ids.astype(str) == name)[0])
            good = readings.weights[:, n] > 0
            obs = ([d for d, g in zip(dates, good, strict=True) if g], readings.values[good, n])
            if readings.truth is not None:
                lines["synthetic truth"] = readings.truth[:, n]
        ground = float(interpolate(grid, terrain, sx, sy)[0])
        safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)
        png = folder / f"hydrograph_{safe}.png"
        withheld = ""
        if readings is not None and name in set(readings.ids.astype(str)):
            n = int(np.flatnonzero(readings.ids.astype(str) == name)[0])
            withheld = " (withheld from assimilation)" if readings.withheld[n] else ""
        plot_hydrograph(
            png,
            dates,
            lines,
            title=f"{name}{withheld}",
            readings=obs,
            ground=ground,
            readings_label="synthetic readings" if synthetic else "readings",
        )
        pngs.append(png.name)
        for k in range(len(dates)):
            hyd_rows.append([clock.isoformat(times[k]), name]
                            + [f"{v[k]:.4f}" for v in lines.values()])  # fmt: skip
    if wells:
        write_csv(folder / "hydrographs.csv", ["time", "well", *lines.keys()], hyd_rows)

    logger = (readings.x, readings.y) if readings is not None else None
    pump = (np.array([p[1] for p in setup.pumping]), np.array([p[2] for p in setup.pumping]))
    end_text = clock.isoformat(times[-1])
    plot_map(
        folder / "map_head.png",
        grid,
        head_map,
        title=f"Head at {end_text}",
        label="head (m a.s.l.)",
        cmap="viridis",
        wells=logger,
        pumping=pump,
        contours=True,
    )
    plot_map(folder / "map_depth_to_water.png", grid, dtw_end,
             title=f"Depth to water table at {end_text}", label="depth to water (m)",
             cmap="YlGnBu", pumping=pump)  # fmt: skip
    change = head_map - h_steady
    plot_map(folder / "map_head_change.png", grid, change,
             title=f"Head change from the initial steady state to {end_text}",
             label="head change (m)", cmap="RdBu", pumping=pump, contours=True,
             symmetric=True)  # fmt: skip

    rel = np.array([abs(b.relative_error) for b in budgets])
    solves = result["solves"]
    metrics = {
        "steps": len(times) - 1,
        "cells": grid.size,
        "max_relative_budget_error": float(rel.max()),
        "unconverged_steps": int(sum(not s.converged for s in solves)),
        "dry_cells_end": int(dry_end.sum()),
        "depth_to_water_m": {
            "min": float(np.nanmin(dtw_end)),
            "median": float(np.nanmedian(dtw_end)),
            "max": float(np.nanmax(dtw_end)),
        },
    }
    if result["metrics"]:
        m = np.array([r[2:] for r in result["metrics"]], dtype=float)
        names = ["rmse_before_m", "rmse_after_m", "rmse_leave_one_out_m",
                 "rmse_withheld_free_m", "rmse_withheld_assimilated_m"]  # fmt: skip
        with np.errstate(all="ignore"):
            means = [np.nanmean(m[:, i]) if np.isfinite(m[:, i]).any() else np.nan
                     for i in range(len(names))]  # fmt: skip
        metrics["assimilation"] = {n: float(v) for n, v in zip(names, means, strict=True)}
    metrics["readings"] = result["source"]["provenance"]
    metrics["hydrograph_pngs"] = pngs
    return metrics


def run_scenario(
    path: str | Path,
    *,
    end: str | None = None,
    runs_dir: Path | None = None,
    pack: Path | None = None,
    build_dir: Path | None = None,
    readings: Path | None = None,
    progress: Progress | None = None,
    sensor_feed: SensorFeedFactory | None = None,
) -> RunResult:
    """Validate, build, simulate and write a scenario's run folder; return where it went.

    ``progress`` sees the stages (the data build's among them) and the steps done of all.

    ``readings`` (a JSONL file of uplinks) replaces the scenario's readings source;
    ``sensor_feed`` makes the sensor feed for a "jsonl" or "store" source (see SensorFeedFactory).
    """
    progress = as_progress(progress)
    scenario = load_scenario(path)
    if readings is not None:
        scenario = scenario.with_readings(readings)
    t0 = time.perf_counter()
    legacy = {"file": str(scenario.path), "started": now_utc(), "status": "running"}
    inputs = {"scenario": scenario.path}
    rd = scenario.config["readings"]
    if rd["source"] == "jsonl" and scenario.resolve(rd["path"]).is_file():
        inputs["readings"] = scenario.resolve(rd["path"])
    run = Run(runs_dir or Path("runs"), scenario.name, "groundwater", inputs=inputs, **legacy)
    try:
        with run:
            setup = build_setup(
                scenario, pack=pack, build_dir=build_dir, end=end, progress=progress
            )
            shutil.copyfile(scenario.path, run.path / "scenario.toml")
            t_setup = time.perf_counter() - t0
            result = simulate(setup, run.path, progress=progress, sensor_feed=sensor_feed)
            progress.stage("writing outputs")
            phases = {**result["phases"], "set_up": t_setup}
            metrics = write_run(run.path, setup, result, phases, time.perf_counter() - t0)
            seconds = time.perf_counter() - t0
            metrics["wall_s"] = round(seconds, 3)
            metrics["wall_per_solver"] = round(seconds / max(phases["solver_total"], 1e-9), 3)
            progress.stage(
                f"done: {phase_line(metrics['phases_s'])}; solver {phases['solver_total']:.1f} s "
                "in all"
            )
            final = run.finish(
                metrics=metrics,
                status="finished",
                finished=now_utc(),
                seconds=round(seconds, 3),
                start=setup.clock.isoformat(0),
                end=setup.clock.isoformat(result["times"][-1]),
                readings=result["source"],
            )
    finally:
        if run.path is not None and run.state != "finished":  # the older keys follow the new
            status = read_status(run.path)
            write_status(run.path, status=status["state"], reason=status["error"],
                         finished=status["finished_utc"])  # fmt: skip
    return RunResult(final, metrics["steps"], seconds, metrics)
