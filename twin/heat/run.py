"""Run a heat scenario: each variant a coupled run of the heat model and its station readings.

`twin heat run` builds each variant's set-up (:func:`build_setup`), puts :class:`HeatModel` into a
``twin.core.Coupler`` with the sensor feed of the climate stations (a simulated stream driven by
the forcing, a replayed uplink file or a sensor store; the feed is another domain's model, made by
the caller that wires the domains: ``twin.app.readings.station_feed``), links the stations' air
temperatures and weights by station id, and steps to the end. The run folder comes from the run
layer: ``status.json``; per variant the GeoTIFFs ``t_air_max.tif``, ``t_surface_max.tif``,
``tmrt_max.tif``, ``utci_max.tif``, ``tropical_nights.tif``, ``hours_utci_above_<T>.tif``,
``energy_balance.csv``, ``hotspots.csv``, ``stations.csv`` and PNG maps; the differences
variant - baseline as GeoTIFF and PNG; one ``report.html``.
"""

from __future__ import annotations

import csv
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from twin.core import Coupler
from twin.core import Model as CoreModel
from twin.core.transforms import by_id, outages
from twin.heat.forcing import StationReader
from twin.heat.model import HeatModel
from twin.heat.scenario import Scenario, Setup, build_setup, load_scenario
from twin.progress import Progress, as_progress
from twin.runs import Run

QUANTITY = "air_temperature"

# Makes the sensor feed of the climate stations for a set-up and a folder: (the feed model, its
# config, the readings' provenance in the words of the data). None: the run has no readings.
StationFeedFactory = Callable[[Setup, Path], tuple[CoreModel, dict[str, Any], str] | None]

MAPS = {  # output -> (title, units, colour map)
    "t_air_max": ("Maximum air temperature", "°C", "RdYlBu_r"),
    "t_surface_max": ("Maximum surface temperature", "°C", "RdYlBu_r"),
    "tmrt_max": ("Maximum mean radiant temperature (street level)", "°C", "RdYlBu_r"),
    "utci_max": ("Maximum UTCI (street level)", "°C", "RdYlBu_r"),
    "tropical_nights": ("Tropical nights (air minimum ≥ 20 °C)", "nights", "Reds"),
}


@dataclass
class VariantResult:
    """What one variant's run produced: its statistics and where its files went."""

    name: str
    folder: Path
    stats: dict[str, np.ndarray]
    metrics: dict[str, Any]
    files: list[str] = field(default_factory=list)


@dataclass
class RunResult:
    """A finished heat run: its folder, variants and metrics."""

    folder: Path
    variants: list[VariantResult]
    seconds: float
    metrics: dict[str, Any]


def simulate(setup: Setup, folder: Path, *, progress: Progress | None = None,
             station_feed: StationFeedFactory | None = None,
             baseline: HeatModel | None = None) -> tuple[HeatModel, dict[str, Any]]:  # fmt: skip
    """Step one variant (heat model + station readings) to its end; the model with its records
    and what the readings were (provenance, gaps).

    ``baseline``: the baseline's finished model, whose analysis increments a variant replays
    instead of merging the readings itself (the readings correct both alike)."""
    progress = as_progress(progress)
    coupler = Coupler(setup.clock)
    heat = HeatModel()
    readings: dict[str, Any] = {"provenance": "none (a run without station readings)"}
    feed = None
    with coupler:
        progress.stage("heat: shading, sky view and surfaces")
        config: dict[str, Any] = {"setup": setup, "record": True}
        if baseline is not None:
            config["increments"] = baseline.increments
            readings["provenance"] = "the baseline's analysis increments, replayed"
        coupler.add("heat", heat, config, step=setup.scenario.config["scenario"]["time_step_s"])
        made = None
        if station_feed is not None and baseline is None:
            made = station_feed(setup, folder)
        if made is not None and len(heat.stations["id"]):
            feed, config, provenance = made
            coupler.add("sensors", feed, config, step=config["time_step"])
            ids = feed.device_ids(QUANTITY)
            targets = [str(s) for s in heat.stations["id"]]
            coupler.link(("sensors", QUANTITY), ("heat", "observed_air_temperature"),
                         by_id(ids, targets, np.nan))  # fmt: skip
            coupler.link(("sensors", f"{QUANTITY}_weight"), ("heat", "observation_weight"),
                         by_id(ids, targets, 0.0))  # fmt: skip
            readings["provenance"] = provenance
        n = setup.steps

        def advanced(p: Any) -> None:
            if p.model == "heat":
                progress.advance(len(heat.energy_rows), n)

        progress.stage(f"heat: {n} steps of {heat.time_step:g} s")
        coupler.run(progress=advanced)
    if feed is not None:
        gaps = feed.gaps(QUANTITY)
        readings["gaps"] = outages(gaps)
        readings["stations_silent"] = [str(s) for s in feed.silent(QUANTITY)]
    readings["steps_with_readings"] = heat.steps_with_readings
    readings["steps_without_readings"] = heat.steps_without_readings
    return heat, readings


def station_table(heat: HeatModel) -> tuple[list[dict[str, Any]], dict[str, float]]:
    """Per station: readings used, RMSE of the model before and after the merge and the
    leave-one-out error; and the same over all stations."""
    ids = [str(s) for s in heat.stations["id"]]
    rows = heat.station_rows
    out = []
    allb, alla, alll = [], [], []
    for k, sid in enumerate(ids):
        used = np.array([r["used"][k] for r in rows], dtype=bool) if rows else np.zeros(0, bool)
        b = np.array([r["innovations"][k] for r in rows])[used] if rows else np.zeros(0)
        a = np.array([r["residuals_after"][k] for r in rows])[used] if rows else np.zeros(0)
        lo = np.array([r["loo"][k] for r in rows])[used] if rows else np.zeros(0)
        allb.append(b), alla.append(a), alll.append(lo)
        out.append({"station": sid, "x": float(heat.stations["x"][k]),
                    "y": float(heat.stations["y"][k]), "readings_used": int(used.sum()),
                    "rmse_before_k": _rmse(b), "rmse_after_k": _rmse(a),
                    "rmse_leave_one_out_k": _rmse(lo)})  # fmt: skip
    cat = [np.concatenate(v) if v else np.zeros(0) for v in (allb, alla, alll)]
    total = {"rmse_before_k": _rmse(cat[0]), "rmse_after_k": _rmse(cat[1]),
             "rmse_leave_one_out_k": _rmse(cat[2]), "readings_used": int(cat[0].size)}  # fmt: skip
    return out, total


def _rmse(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=float)
    a = a[np.isfinite(a)]
    return float(np.sqrt(np.mean(a**2))) if a.size else float("nan")


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    if not rows:
        path.write_text("", encoding="utf-8")
        return
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for r in rows:
            w.writerow({k: (f"{v:.4g}" if isinstance(v, float) else v) for k, v in r.items()})


def write_variant(setup: Setup, heat: HeatModel, readings: dict[str, Any], folder: Path,
                  progress: Progress | None = None) -> VariantResult:  # fmt: skip
    """A variant's files: rasters, maps, energy balance, hot spots, stations."""
    from twin.heat.outputs import (
        energy_balance_csv,
        hotspots,
        plot_energy_balance,
        plot_heat_map,
        write_hotspots_csv,
        write_raster,
    )

    progress = as_progress(progress)
    folder.mkdir(parents=True, exist_ok=True)
    grid, cfg = setup.grid, setup.scenario.config
    stats = heat.stats.result()
    streets = setup.products / "streets.gpkg"
    files: list[str] = []
    thr = cfg["outputs"]["utci_threshold_c"]
    hours_key = next((k for k in stats if k.startswith("hours_utci_above_")), None)
    names = [*MAPS, *([hours_key] if hours_key else [])]
    for name in names:
        if name not in stats:
            continue
        arr = stats[name].astype(float)
        write_raster(folder / f"{name}.tif", arr, grid.transform)
        files.append(f"{name}.tif")
    spots = hotspots(np.where(heat.building, np.nan, stats["t_surface_max"]), grid.transform,
                     n=cfg["outputs"]["hotspots"], streets=streets,
                     mask=~heat.building)  # fmt: skip
    utci_spots = hotspots(stats["utci_max"], grid.transform, n=cfg["outputs"]["hotspots"],
                          streets=streets, mask=~heat.building)  # fmt: skip
    write_hotspots_csv(folder / "hotspots.csv", utci_spots)
    write_hotspots_csv(folder / "hotspots_surface.csv", spots)
    files += ["hotspots.csv", "hotspots_surface.csv"]
    progress.stage(f"heat: maps of {setup.scenario.variant}")
    for name in names:
        if name not in stats:
            continue
        title, units, cmap = MAPS.get(name, (f"Hours with UTCI above {thr:g} °C", "h", "Reds"))
        counts = {}
        if units in ("nights", "h"):  # counts start at zero, whatever the run saw
            top = float(np.nanmax(stats[name])) if np.isfinite(stats[name]).any() else 0.0
            counts = {"vmin": 0.0, "vmax": max(1.0, top)}
        if name == "tropical_nights":
            title += f", {len(heat.stats.nights_counted)} night(s) covered"
        plot_heat_map(folder / f"{name}.png", stats[name].astype(float), grid.transform,
                      title=f"{title} — {setup.scenario.variant}", units=units, cmap=cmap,
                      **counts,
                      streets=streets, buildings_mask=heat.building,
                      hotspots=utci_spots if name == "utci_max" else None)  # fmt: skip
        files.append(f"{name}.png")
    for hour, snap in sorted(heat.snapshots.items()):
        for key, (title, units) in {"t_air": ("Air temperature", "°C"),
                                    "t_surface": ("Surface temperature", "°C"),
                                    "tmrt": ("Mean radiant temperature", "°C")}.items():  # fmt: skip
            if not np.isfinite(snap[key]).any():
                continue
            name = f"{key}_{hour}h"
            write_raster(folder / f"{name}.tif", snap[key], grid.transform)
            plot_heat_map(folder / f"{name}.png", snap[key], grid.transform,
                          title=f"{title} at {hour}:00 local, {snap['date']} — "
                          f"{setup.scenario.variant}", units=units, cmap="RdYlBu_r",
                          streets=streets, buildings_mask=heat.building)  # fmt: skip
            files += [f"{name}.tif", f"{name}.png"]
    rows = [{**r, "time": datetime.fromtimestamp(r["time"], UTC)} for r in heat.energy_rows]
    energy_balance_csv(folder / "energy_balance.csv", rows)
    plot_energy_balance(folder / "energy_balance.png", rows,
                        title=f"Energy balance, domain mean — {setup.scenario.variant}")  # fmt: skip
    files += ["energy_balance.csv", "energy_balance.png"]
    st_rows, st_total = station_table(heat)
    _write_csv(folder / "stations.csv", st_rows)
    files.append("stations.csv")
    open_cells = ~heat.building
    metrics = {
        "steps": len(heat.energy_rows),
        "cells": grid.cells,
        "cell_m": grid.cell,
        "t_air_max_c": _finite_max(stats["t_air_max"]),
        "t_air_max_mean_c": _finite_mean(stats["t_air_max"]),
        "t_surface_max_mean_c": _finite_mean(stats["t_surface_max"][open_cells]),
        "utci_max_mean_c": _finite_mean(stats["utci_max"]),
        "tmrt_max_mean_c": _finite_mean(stats["tmrt_max"]),
        "tropical_nights_mean": _finite_mean(stats["tropical_nights"].astype(float)),
        "nights_counted": [d.isoformat() for d in heat.stats.nights_counted],
        "max_closure_residual_w_m2": heat.max_residual,
        "stations": st_total,
        "readings": readings,
        "timings_s": {k: round(v, 3) for k, v in heat.timings.items()},
        "hotspots": utci_spots[:5],
    }
    if hours_key:
        metrics[f"{hours_key}_mean"] = _finite_mean(stats[hours_key])
    if setup.changed.any():
        metrics["cells_changed"] = int(setup.changed.sum())
    return VariantResult(setup.scenario.variant, folder, stats, metrics, files)


def _finite_mean(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=float)
    a = a[np.isfinite(a)]
    return float(a.mean()) if a.size else float("nan")


def _finite_max(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=float)
    a = a[np.isfinite(a)]
    return float(a.max()) if a.size else float("nan")


DIFFS = ("t_air_max", "t_surface_max", "utci_max", "tmrt_max")


def write_differences(base: VariantResult, other: VariantResult, setup: Setup,
                      folder: Path) -> dict[str, Any]:  # fmt: skip
    """Difference maps variant - baseline (GeoTIFF and PNG) and their summary where it changed."""
    from twin.heat.outputs import plot_heat_map, write_raster

    out: dict[str, Any] = {}
    changed = setup.changed
    for name in DIFFS:
        d = other.stats[name].astype(float) - base.stats[name].astype(float)
        stem = f"diff_{name}"
        write_raster(folder / f"{stem}.tif", d, setup.grid.transform)
        plot_heat_map(folder / f"{stem}.png", d, setup.grid.transform,
                      title=f"{MAPS[name][0]}: {other.name} − baseline", units="K", diverging=True,
                      streets=setup.products / "streets.gpkg")  # fmt: skip
        other.files += [f"{stem}.tif", f"{stem}.png"]
        fin = d[np.isfinite(d)]
        out[name] = {
            "mean_k": float(fin.mean()) if fin.size else float("nan"),
            "min_k": float(fin.min()) if fin.size else float("nan"),
            "max_k": float(fin.max()) if fin.size else float("nan"),
            "mean_where_changed_k": _finite_mean(d[changed]) if changed.any() else None,
        }
    nights = other.stats["tropical_nights"].astype(float) - base.stats["tropical_nights"]
    out["tropical_nights"] = {"mean": float(nights.mean())}
    return out


def run_scenario(path: str | Path, *, variant: str | None = None, end: str | None = None,
                 runs_dir: Path | None = None, pack: Path | None = None,
                 build_dir: Path | None = None, progress: Progress | None = None,
                 station_feed: StationFeedFactory | None = None,
                 station_readings: StationReader | None = None) -> RunResult:  # fmt: skip
    """Validate, build, simulate and write the run folder of a scenario: the baseline and one
    variant (``variant``) or every variant; return where it went. ``station_feed`` and
    ``station_readings`` come from the caller that wires the domains (the readings' feed, the
    reader of a sensor store for ``[forcing] store``)."""
    progress = as_progress(progress)
    scenario = load_scenario(path)
    names = scenario.variants if variant is None else ["baseline"]
    if variant is not None and variant != "baseline":
        scenario.with_variant(variant)  # an unknown name fails here, in one line
        names.append(variant)
    scenario.clock(end)
    t0 = time.perf_counter()
    run = Run(runs_dir or Path("runs"), scenario.name, "heat", inputs={"scenario": scenario.path})
    with run:
        shutil.copyfile(scenario.path, run.path / "scenario.toml")
        results: list[VariantResult] = []
        setups: dict[str, Setup] = {}
        base_model: HeatModel | None = None
        for name in names:
            progress.stage(f"heat: variant {name}")
            sc: Scenario = scenario.with_variant(name)
            setup = build_setup(sc, pack=pack, build_dir=build_dir, end=end, progress=progress,
                                station_readings=station_readings)  # fmt: skip
            if name == "baseline":
                from twin.heat.forcing import write_forcing_csv

                write_forcing_csv(setup.forcing, run.path / "forcing.csv")
            heat, readings = simulate(setup, run.path / name, progress=progress,
                                      station_feed=station_feed, baseline=base_model)  # fmt: skip
            if name == "baseline":
                base_model = heat
            results.append(write_variant(setup, heat, readings, run.path / name, progress))
            setups[name] = setup
            run.update(variants_done=[r.name for r in results])
        base = results[0]
        diffs = {}
        for r in results[1:]:
            diffs[r.name] = write_differences(base, r, setups[r.name], r.folder)
        metrics = {"variants": {r.name: r.metrics for r in results}, "differences": diffs}
        progress.stage("heat: report")
        from twin.heat.report import write_report

        write_report(run.path, scenario, setups, results, diffs)
        seconds = time.perf_counter() - t0
        metrics["wall_s"] = round(seconds, 3)
        setup0 = setups["baseline"]
        final = run.finish(metrics=metrics, start=setup0.clock.isoformat(0),
                           end=setup0.clock.isoformat(setup0.clock.duration or 0.0),
                           variants=names, forcing=setup0.forcing.source,
                           readings=base.metrics["readings"])  # fmt: skip
    for r in results:
        r.folder = final / r.name
    return RunResult(final, results, seconds, metrics)
