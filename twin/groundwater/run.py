"""Run a ground-water scenario: steady state, transient steps with assimilation, outputs on disk.

The run folder comes from the run layer (:mod:`twin.runs`): written as ``runs/<scenario>/.<stamp>.partial/``
and renamed ``<stamp>/`` only when everything is written, ``<stamp>.failed/`` or ``<stamp>.interrupted/``
otherwise, with ``status.json`` saying why. Besides the common keys, status.json keeps the ground-water
run's own: ``status`` (= state), ``reason`` (= error), ``started``, ``finished``, ``seconds``, ``start``,
``end`` (the simulated period) and ``file``.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from twin.errors import DataError, TwinError
from twin.groundwater.assimilation import OIConfig, analyse, interpolate, quality_weight
from twin.groundwater.model import FREE, Model
from twin.groundwater.outputs import (
    BUDGET_COLUMNS,
    plot_hydrograph,
    plot_map,
    write_csv,
    write_geotiff,
)
from twin.groundwater.scenario import Setup, build_setup, load_scenario, lognormal_field
from twin.runs import Run, now_utc, read_status, write_status


@dataclass
class Readings:
    """Logger readings per step: values (n_steps+1, n_wells), weights, and the withheld wells."""

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


def _truth_model(setup: Setup) -> Model:
    """The synthetic 'true' aquifer: the same packages, another conductivity field."""
    aq = setup.scenario.config["aquifer"]
    rd = setup.scenario.config["readings"]
    k = lognormal_field(setup.grid, aq["k"], max(aq["k_log10_sd"], 0.15), aq["k_correlation_m"],
                        rd["truth_k_seed"])  # fmt: skip
    return setup.model.copy(k=k)


def _pick_wells(setup: Setup) -> dict[str, np.ndarray]:
    rd = setup.scenario.config["readings"]
    wells = setup.wells
    n = len(wells["id"])
    if rd["wells"] and rd["wells"] < n:
        rng = np.random.default_rng(rd["seed"])
        keep = np.sort(rng.choice(n, rd["wells"], replace=False))
        wells = {k: v[keep] for k, v in wells.items()}
    return wells


def _withheld(n: int, fraction: float, seed: int) -> np.ndarray:
    mask = np.zeros(n, dtype=bool)
    k = int(round(fraction * n))
    if k and n > 1:
        rng = np.random.default_rng(seed + 1)
        mask[rng.choice(n, min(k, n - 1), replace=False)] = True
    return mask


def _csv_readings(setup: Setup, times: np.ndarray) -> Readings:
    """Replay readings from a CSV (time, well_id, head_m, quality): the latest per well and step."""
    import csv

    rd = setup.scenario.config["readings"]
    path = setup.scenario.resolve(rd["path"])
    wells = _pick_wells(setup)
    index = {str(w): n for n, w in enumerate(wells["id"])}
    values = np.full((times.size, len(index)), np.nan)
    weights = np.zeros_like(values)
    clock = setup.clock
    try:
        with path.open(newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
    except OSError as exc:
        raise DataError(f"{path}: cannot read readings: {exc}") from None
    for line, row in enumerate(rows, start=2):
        try:
            t = clock.to_seconds(row["time"])
            well = row["well_id"].strip()
            head = float(row["head_m"])
            weight = quality_weight(row.get("quality") or "good")
        except (KeyError, ValueError, AttributeError, TwinError) as exc:
            raise DataError(
                f"{path}: line {line}: expected time (ISO 8601 UTC), well_id, head_m, quality: "
                f"{exc}"
            ) from None
        if well not in index:
            continue  # a well outside the model grid or not chosen
        k = int(np.searchsorted(times, t - 1e-6))
        if k >= times.size or times[k] - t > (times[1] - times[0] if times.size > 1 else 0):
            continue
        values[k, index[well]] = head
        weights[k, index[well]] = weight
    withheld = _withheld(len(index), rd["withhold_fraction"], rd["seed"])
    return Readings(wells["id"], wells["x"], wells["y"], values, weights, withheld)


def _synthetic_readings(setup: Setup, times: np.ndarray, say: Callable[[str], None]) -> Readings:
    """Readings from a 'true' aquifer run (other K field and recharge) plus noise and bad flags."""
    rd = setup.scenario.config["readings"]
    wells = _pick_wells(setup)
    rng = np.random.default_rng(rd["seed"])
    truth_model = _truth_model(setup)
    factor, offset = rd["truth_recharge_factor"], rd["truth_stage_offset_m"]
    say("synthetic truth: steady state")
    setup.apply(truth_model, 0.0, recharge_factor=factor, stage_offset=offset, steady=True)
    h = truth_model.solve_steady(_start_guess(setup))
    truth = np.zeros((times.size, len(wells["id"])))
    truth[0] = interpolate(setup.grid, h, wells["x"], wells["y"])
    for n in range(1, times.size):
        setup.apply(truth_model, times[n], recharge_factor=factor, stage_offset=offset)
        h = truth_model.step(h, times[n] - times[n - 1], time=times[n])
        truth[n] = interpolate(setup.grid, h, wells["x"], wells["y"])
    values = truth + rng.normal(0.0, rd["noise_m"], truth.shape)
    draw = rng.random(truth.shape)
    weights = np.ones_like(truth)
    suspect = draw < rd["suspect_fraction"]
    bad = draw > 1.0 - rd["bad_fraction"]
    values[suspect] += rng.normal(0.0, 2.0 * rd["noise_m"] + 0.02, suspect.sum())
    weights[suspect] = quality_weight("suspect")
    values[bad] += rng.choice([-1.0, 1.0], bad.sum()) * rng.uniform(0.5, 3.0, bad.sum())
    weights[bad] = quality_weight("bad")
    withheld = _withheld(len(wells["id"]), rd["withhold_fraction"], rd["seed"])
    return Readings(wells["id"], wells["x"], wells["y"], values, weights, withheld, truth)


def _start_guess(setup: Setup) -> np.ndarray:
    """A first guess for steady solves: the river stage, fixed heads and terrain blended."""
    model = setup.model
    fixed = model.kind == 2
    level = []
    if setup.river_name is not None:
        level.append(float(np.mean(setup.stage_values)))
    if fixed.any():
        level.append(float(model.fixed_head[fixed].mean()))
    base = np.mean(level) if level else float(np.mean(model.bottom + 0.75 * model.thickness))
    guess = np.minimum(np.full(setup.grid.shape, base), model.top - 0.1)
    return np.maximum(guess, model.bottom + 0.5 * model.thickness * 0.1)


def _rmse(a: np.ndarray) -> float:
    a = a[np.isfinite(a)]
    return float(np.sqrt(np.mean(a**2))) if a.size else float("nan")


def simulate(
    setup: Setup,
    *,
    progress: Callable[[int, int], None] | None = None,
    say: Callable[[str], None] = lambda m: None,
) -> dict[str, Any]:
    """Steady state, then implicit steps to the end with the readings assimilated at each step.

    Runs the assimilated state and a free (not assimilated) state side by side with the same
    stresses. Returns heads, budgets, hydrograph series and assimilation metrics.
    """
    cfg = setup.scenario.config
    model = setup.model
    duration = setup.clock.duration or 0.0
    dt = cfg["scenario"]["time_step_hours"] * 3600.0
    n_steps = max(1, int(np.ceil(duration / dt - 1e-9)))
    times = np.minimum(np.arange(n_steps + 1) * dt, duration)
    rd, asm = cfg["readings"], cfg["assimilation"]
    readings: Readings | None = None
    if rd["source"] == "synthetic":
        readings = _synthetic_readings(setup, times, say)
    elif rd["source"] == "csv":
        readings = _csv_readings(setup, times)
    oi = OIConfig(asm["sigma_background_m"], asm["length_m"], asm["sigma_observation_m"],
                  asm["kernel"])  # fmt: skip
    assimilate = readings is not None and asm["enabled"] and readings.values.shape[1] > 0
    correctable = model.kind == FREE

    say("steady state")
    setup.apply(model, 0.0, steady=True)
    if cfg["scenario"]["steady_first"]:
        h_steady = model.solve_steady(_start_guess(setup))
    else:
        h_steady = model.initial_head(_start_guess(setup))
    budgets = [model.budget_of(h_steady, time=0.0)]
    solves = [model.last_solve]
    h_free = h_steady.copy()
    h = h_steady.copy()
    metrics_rows: list[list[Any]] = []

    def analyse_at(k: int, heads: np.ndarray, heads_free: np.ndarray) -> np.ndarray:
        assert readings is not None
        use = ~readings.withheld
        values = readings.values[k]
        weights = np.where(use, readings.weights[k], 0.0)
        result = analyse(setup.grid, heads, readings.x, readings.y, values, weights, oi,
                         correctable=correctable)  # fmt: skip
        heads = heads + result.increment
        reference = readings.truth[k] if readings.truth is not None else values
        held = readings.withheld & np.isfinite(reference)
        if readings.truth is None:
            held &= readings.weights[k] > 0
        free_err = reference[held] - interpolate(setup.grid, heads_free, readings.x[held],
                                                 readings.y[held])  # fmt: skip
        asm_err = reference[held] - interpolate(setup.grid, heads, readings.x[held],
                                                readings.y[held])  # fmt: skip
        metrics_rows.append([
            setup.clock.isoformat(times[k]), result.n_used, result.rmse_before,
            result.rmse_after, result.rmse_loo, _rmse(free_err), _rmse(asm_err),
        ])  # fmt: skip
        return heads

    if assimilate:
        h = analyse_at(0, h, h_free)
    series = {"assimilated": [h], "free": [h_free]}
    for k in range(1, n_steps + 1):
        step = times[k] - times[k - 1]
        setup.apply(model, times[k])
        h_free = model.step(h_free, step, time=times[k])
        h = model.step(h, step, time=times[k])
        budgets.append(model.budget)
        solves.append(model.last_solve)
        if assimilate:
            h = analyse_at(k, h, h_free)
        series["assimilated"].append(h)
        series["free"].append(h_free)
        if progress is not None:
            progress(k, n_steps)
    return {
        "times": times,
        "h_steady": h_steady,
        "h_end": h,
        "h_free_end": h_free,
        "budgets": budgets,
        "solves": solves,
        "series": series,
        "readings": readings,
        "metrics": metrics_rows,
    }


def _hydrograph_wells(setup: Setup, readings: Readings | None) -> list[tuple[str, float, float]]:
    out_cfg = setup.scenario.config["output"]
    ids = readings.ids if readings is not None else setup.wells.get("id", np.zeros(0))
    xs = readings.x if readings is not None else setup.wells.get("x", np.zeros(0))
    ys = readings.y if readings is not None else setup.wells.get("y", np.zeros(0))
    chosen: list[tuple[str, float, float]] = []
    wanted = [str(w) for w in out_cfg["hydrograph_wells"]]
    lookup = {str(i): (float(x), float(y)) for i, x, y in zip(ids, xs, ys, strict=True)}
    lookup.update({name: (x, y) for name, x, y, _ in setup.pumping})
    for w in wanted:
        if w not in lookup:
            raise DataError(
                f"{setup.scenario.path}: 'output.hydrograph_wells' names {w!r}, which is neither "
                "a logger well inside the grid nor a pumping well"
            )
        chosen.append((w, *lookup[w]))
    if not wanted and len(ids):
        order = np.argsort(ids.astype(str))
        step = max(1, len(order) // max(out_cfg["hydrographs"], 1))
        for n in order[::step][: out_cfg["hydrographs"]]:
            chosen.append((str(ids[n]), float(xs[n]), float(ys[n])))
    return chosen


def write_outputs(folder: Path, setup: Setup, result: dict[str, Any], seconds: float) -> dict:
    """Rasters, CSVs, plots and the report of a simulated scenario; returns summary metrics."""
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
    wells = _hydrograph_wells(setup, readings)
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
        plot_hydrograph(png, dates, lines, title=f"{name}{withheld}", readings=obs, ground=ground)
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
        metrics["assimilation"] = {n: float(np.nanmean(m[:, i])) for i, n in enumerate(names)}
    _write_report(folder, setup, result, metrics, pngs, seconds)
    return metrics


def _write_report(folder: Path, setup: Setup, result: dict, metrics: dict, pngs: list[str],
                  seconds: float) -> None:  # fmt: skip
    cfg = setup.scenario.config
    grid, clock = setup.grid, setup.clock
    b_last = result["budgets"][-1]
    lines = [
        f"# Ground-water run: {setup.scenario.name}",
        "",
        cfg["scenario"]["title"],
        "",
        f"- Period: {clock.isoformat(0)} to {clock.isoformat(result['times'][-1])}, "
        f"{metrics['steps']} implicit steps of {cfg['scenario']['time_step_hours']:g} h",
        f"- Grid: {grid.ny} x {grid.nx} cells of {grid.cell:g} m, EPSG:25832, origin "
        f"({grid.origin[0]:.0f}, {grid.origin[1]:.0f}); {'confined' if setup.model.confined else 'unconfined'}",
        f"- Wells pumping: {len(setup.pumping)}, total "
        f"{-sum(p[3] for p in setup.pumping) * 86400:.0f} m3/d",
        f"- Run time: {seconds:.1f} s",
        "",
        "## Water budget (m3/s)",
        "",
        "Budget error = inflow - outflow - storage change; relative to the mean of all IN and OUT "
        "terms (MODFLOW's percent discrepancy / 100).",
        "",
        f"- Largest relative budget error over all steps: {metrics['max_relative_budget_error']:.2e}",
        f"- Steps that did not converge: {metrics['unconverged_steps']}",
        "",
        "| package | in | out |",
        "| --- | ---: | ---: |",
    ]
    for p in ("WEL", "RCH", "RIV", "DRN", "CHD"):
        lines.append(f"| {p} | {b_last.inputs.get(p, 0):.4f} | {b_last.outputs.get(p, 0):.4f} |")
    lines += [
        f"| STO | {b_last.storage_in:.4f} | {b_last.storage_out:.4f} |",
        "",
        "## Depth to water table at the end (m)",
        "",
        f"min {metrics['depth_to_water_m']['min']:.2f}, median "
        f"{metrics['depth_to_water_m']['median']:.2f}, max {metrics['depth_to_water_m']['max']:.2f}; "
        f"dry cells: {metrics['dry_cells_end']}",
        "",
    ]
    if "assimilation" in metrics:
        a = metrics["assimilation"]
        oi = cfg["assimilation"]
        lines += [
            "## Assimilation of the readings (mean over steps, m)",
            "",
            f"Optimal interpolation, {oi['kernel']} covariance, sigma_b {oi['sigma_background_m']} m, "
            f"length {oi['length_m']} m, sigma_o {oi['sigma_observation_m']} m / quality weight.",
            "",
            f"- RMSE at assimilated wells before / after analysis: {a['rmse_before_m']:.3f} / "
            f"{a['rmse_after_m']:.3f}",
            f"- Leave-one-out RMSE: {a['rmse_leave_one_out_m']:.3f}",
            f"- RMSE at withheld wells, free run / with assimilation: "
            f"{a['rmse_withheld_free_m']:.3f} / {a['rmse_withheld_assimilated_m']:.3f}",
            "",
        ]
    lines += ["## Files", ""]
    files = sorted(p.name for p in folder.iterdir() if p.is_file())
    lines += [f"- `{f}`" for f in files + ["report.md", "status.json"] if f not in ("report.md",)]
    lines += ["", *[f"![{p}]({p})" for p in ["map_head.png", "map_depth_to_water.png", *pngs]], ""]
    (folder / "report.md").write_text("\n".join(lines), encoding="utf-8")


def run_scenario(
    path: str | Path,
    *,
    end: str | None = None,
    runs_dir: Path | None = None,
    pack: Path | None = None,
    build_dir: Path | None = None,
    progress: Callable[[int, int], None] | None = None,
    say: Callable[[str], None] = lambda m: None,
) -> RunResult:
    """Validate, build, simulate and write a scenario's run folder; return where it went."""
    scenario = load_scenario(path)
    t0 = time.perf_counter()
    legacy = {"file": str(scenario.path), "started": now_utc(), "status": "running"}
    run = Run(runs_dir or Path("runs"), scenario.name, "groundwater",
              inputs={"scenario": scenario.path}, **legacy)  # fmt: skip
    try:
        with run:
            setup = build_setup(scenario, pack=pack, build_dir=build_dir, end=end, progress=say)
            shutil.copyfile(scenario.path, run.path / "scenario.toml")
            result = simulate(setup, progress=progress, say=say)
            seconds = time.perf_counter() - t0
            metrics = write_outputs(run.path, setup, result, seconds)
            final = run.finish(
                metrics=metrics,
                status="finished",
                finished=now_utc(),
                seconds=round(seconds, 3),
                start=setup.clock.isoformat(0),
                end=setup.clock.isoformat(result["times"][-1]),
            )
    finally:
        if run.path is not None and run.state != "finished":  # the older keys follow the new
            status = read_status(run.path)
            write_status(run.path, status=status["state"], reason=status["error"],
                         finished=status["finished_utc"])  # fmt: skip
    return RunResult(final, metrics["steps"], seconds, metrics)
