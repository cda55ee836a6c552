"""The report of a scenario run: report.html with PNG plots comparing every variant with the baseline.

Values are means over seeds with their spread (sample standard deviation, and each seed as a dot), never a
single seed, as SUMO's runSeeds.py / attributeStats.py do. The change against the baseline is the mean of
the per-seed differences (variants share each seed's demand, so differences are paired). Every report
states the emission model and the vehicle emission classes used.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from twin.report import Report, code, strong
from twin.runs import stamp_of
from twin.traffic.install import sumo_version
from twin.traffic.scenario import BASELINE

if TYPE_CHECKING:
    from twin.traffic.runs import RunPlan

# KPIs plotted first (when present), in this order; the table lists all of them.
KEY_KPIS = (
    "truck_trips_completed",
    "truck_travel_time_mean",
    "gate_queue_mean",
    "gate_queue_max",
    "gate_wait_mean",
    "gate_throughput",
    "delay_mean_other_traffic",
    "violations_per_hour",
    "detection_completeness",
    "zone_entries_nonpermitted_per_hour",
    "through_traffic_removed",
    "detour_length_mean",
    "transit_delay_treated_junctions",
    "delay_mean_bus",
    "delay_mean_tram",
    "schedule_delay_mean",
    "punctuality",
    "delay_mean_bike",
    "bike_delay_treated_junctions",
    "delay_mean_car",
    "person_delay_mean",
    "stops_per_vehicle",
    "co2_total",
    "nox_total",
)
MAX_PLOTS = 14
# Rows of the per-junction table, in this order ("truck" is SUMO's lorry class).
JUNCTION_MODES = ("person", "bus", "tram", "car", "truck", "bike")
MODE_LABELS = {"person": "person (occupancy-weighted)", "truck": "lorry"}
EMISSION_MODELS = {
    "HBEFA4": "SUMO's HBEFA4 model (HBEFA 4.2 subsegments)",
    "HBEFA3": "SUMO's HBEFA3 model (HBEFA 3.1)",
}


def aggregate(rows: list[tuple[str, int, str, float, str]]) -> dict[str, dict[str, dict[str, Any]]]:
    """kpi -> variant -> {mean, sd, n, unit, values: {seed: value}} (NaN values left out)."""
    out: dict[str, dict[str, dict[str, Any]]] = defaultdict(dict)
    for variant, seed, kpi, value, unit in rows:
        cell = out[kpi].setdefault(variant, {"unit": unit, "values": {}})
        if not math.isnan(value):
            cell["values"][seed] = value
    for per_variant in out.values():
        for cell in per_variant.values():
            v = np.array(list(cell["values"].values()), dtype=float)
            cell["n"] = len(v)
            cell["mean"] = float(v.mean()) if len(v) else math.nan
            cell["sd"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0 if len(v) else math.nan
    return dict(out)


def paired_change(per_variant: dict[str, dict[str, Any]], variant: str) -> tuple[float, float, int]:
    """Mean and sd of per-seed differences variant - baseline (seeds present in both)."""
    base = per_variant.get(BASELINE, {}).get("values", {})
    var = per_variant.get(variant, {}).get("values", {})
    diffs = np.array([var[s] - base[s] for s in var if s in base], dtype=float)
    if not len(diffs):
        return math.nan, math.nan, 0
    return float(diffs.mean()), float(diffs.std(ddof=1)) if len(diffs) > 1 else 0.0, len(diffs)


# The per-junction tables of the report: column of junctions.csv -> (what it is, significant digits).
JUNCTION_METRICS = {
    "delay": ("delay per passage (s)", 3),
    "stops": ("stops per passage", 2),
    "co2": ("CO2 per passage (g)", 3),
}


def junction_table(plan: RunPlan, metric: str = "delay") -> tuple[list[str], list[list[str]]]:
    """Header and rows of one per-junction metric (a column of junctions.csv: delay, stops, co2):
    per treated signal and mode, each variant's mean over seeds (min-max), and the mean of per-seed
    differences against the baseline (min-max). Empty rows when no run wrote a junctions.csv."""
    from twin.traffic.kpis import JUNCTION_COLUMNS, JUNCTIONS_CSV, read_junctions_csv

    col = JUNCTION_COLUMNS.index(metric)
    digits = JUNCTION_METRICS[metric][1]

    cells: dict[tuple[str, str], dict[str, dict[int, float]]] = defaultdict(
        lambda: defaultdict(dict)
    )
    for variant in plan.variants:
        for seed in plan.seeds:
            f = plan.folder(variant, seed) / JUNCTIONS_CSV
            if f.is_file():
                for row in read_junctions_csv(f):
                    cells[(row[0], row[1])][variant][seed] = row[col]
    labels = {n: plan.scenario.variants[n].label for n in plan.variants}
    header = ["junction", "mode", *(labels[v] for v in plan.variants),
              *(f"Δ {labels[v]} vs baseline" for v in plan.variants[1:])]  # fmt: skip
    order = {m: i for i, m in enumerate(JUNCTION_MODES)}
    rows = []
    for junction, mode in sorted(cells, key=lambda k: (_natural(k[0]), order.get(k[1], 99), k[1])):
        per = cells[(junction, mode)]
        row = [junction, MODE_LABELS.get(mode, mode)]
        row += [_spread(list(per[v].values()), digits) for v in plan.variants]
        base = per.get(BASELINE, {})
        for v in plan.variants[1:]:
            row.append(_spread([d - base[s] for s, d in per[v].items() if s in base], digits))
        rows.append(row)
    return header, rows


def _natural(text: str) -> tuple[int, int | str]:
    """Sort key putting numeric signal ids in numeric order ('2' before '10')."""
    return (0, int(text)) if text.isdigit() else (1, text)


def _spread(values: list[float], digits: int = 3) -> str:
    """'mean (min to max)' of per-seed values; the value alone for one seed."""
    if not values:
        return "–"
    mean = sum(values) / len(values)
    if len(values) == 1:
        return _fmt(mean, digits)
    return f"{_fmt(mean, digits)} ({_fmt(min(values), digits)} to {_fmt(max(values), digits)})"


def occupancy_text(occupancy: dict[str, float]) -> str:
    """The occupancies person delays are weighted with, as the report states them."""
    shown = ", ".join(f"{MODE_LABELS.get(k, k) if k != 'person' else k} {v:g}"
                      for k, v in occupancy.items())  # fmt: skip
    return f"Person delay weights each vehicle with its mode's occupancy (persons per vehicle): {shown}"


def _fmt(x: float, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if abs(x) >= 1000 or x == int(x):
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def _plot_kpi(
    path: Path,
    kpi: str,
    per_variant: dict[str, dict[str, Any]],
    variants: list[str],
    labels: dict[str, str],
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    present = [v for v in variants if v in per_variant]
    unit = next(iter(per_variant.values()))["unit"]
    fig, ax = plt.subplots(figsize=(max(4.0, 1.4 * len(present) + 1.5), 3.4), dpi=110)
    xs = np.arange(len(present))
    means = [per_variant[v]["mean"] for v in present]
    sds = [per_variant[v]["sd"] for v in present]
    colors = ["#8c8c8c" if v == BASELINE else "#1f77b4" for v in present]
    ax.bar(
        xs, means, yerr=sds, capsize=5, color=colors, alpha=0.85, edgecolor="black", linewidth=0.6
    )
    for x, v in zip(xs, present, strict=True):
        vals = list(per_variant[v]["values"].values())
        if not vals:
            continue  # no seed of this variant has a value (e.g. no bus finished in a short run)
        jitter = np.linspace(-0.15, 0.15, len(vals)) if len(vals) > 1 else [0.0]
        ax.scatter(x + np.asarray(jitter), vals, color="black", s=12, zorder=3)
    ax.set_xticks(xs, [labels.get(v, v) for v in present], rotation=15, ha="right", fontsize=8)
    ax.set_ylabel(unit)
    n = max(per_variant[v]["n"] for v in present)
    ax.set_title(
        f"{kpi}  (mean ± sd over {n} seed{'s' if n != 1 else ''}; dots: seeds)", fontsize=9
    )
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _plot_series(path: Path, plan: RunPlan, key: str, field: str, ylabel: str, title: str) -> bool:
    """Mean over seeds of one time series per variant (shaded: min..max over seeds)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.0, 3.4), dpi=110)
    drawn = False
    minutes = plan.end_s <= 2 * 3600
    styles = ["-", "--", "-.", ":"]
    for i, variant in enumerate(plan.variants):
        curves = []
        t = None
        for seed in plan.seeds:
            f = plan.folder(variant, seed) / "series.json"
            if not f.exists():
                continue
            s = json.loads(f.read_text(encoding="utf-8")).get(key)
            if not s or not s.get("t"):
                continue
            t = np.asarray(s["t"], dtype=float)
            curves.append(np.asarray(s[field], dtype=float))
        if not curves or t is None:
            continue
        n = min(len(c) for c in curves)
        arr = np.vstack([c[:n] for c in curves])
        x = t[:n] / (60.0 if minutes else 3600.0)
        label = plan.scenario.variants[variant].label
        (line,) = ax.plot(x, arr.mean(axis=0), label=label, lw=1.6, ls=styles[i % len(styles)])
        if len(curves) > 1:
            ax.fill_between(x, arr.min(axis=0), arr.max(axis=0), color=line.get_color(), alpha=0.15)
        drawn = True
    if drawn:
        ax.set_xlabel(f"time since scenario start ({'min' if minutes else 'h'}; warm-up not shown)")
        ax.set_ylabel(ylabel)
        ax.set_title(title, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(path)
    plt.close(fig)
    return drawn


def write_report(
    plan: RunPlan, rows: list[tuple[str, int, str, float, str]], meta: dict[str, Any]
) -> Path:
    """Write report.html (through :mod:`twin.report`) and its PNGs into the run folder."""
    run_dir = plan.run_dir
    sc = plan.scenario
    labels = {n: sc.variants[n].label for n in plan.variants}
    agg = aggregate(rows)
    plots = []
    key = [k for k in KEY_KPIS if k in agg] + sorted(k for k in agg if k.endswith("violations"))
    for kpi in key[:MAX_PLOTS]:
        name = f"kpi_{kpi}.png"
        _plot_kpi(run_dir / name, kpi, agg[kpi], plan.variants, labels)
        plots.append((name, kpi))
    series = [
        (
            "gate_queue",
            "veh",
            "vehicles",
            "Queue at the terminal gates (sum over gates; mean over seeds, band: min-max)",
        ),
        ("gate_checkins", "veh", "check-ins per 15 min", "Gate check-ins (throughput)"),
        ("summary", "running", "vehicles", "Vehicles in the network"),
    ]
    for key_, field, ylabel, title in series:
        name = f"series_{key_}.png"
        if _plot_series(run_dir / name, plan, key_, field, ylabel, title):
            plots.append((name, title))
    model = sc.emission_model
    model_text = EMISSION_MODELS.get(model, model)
    classes = meta.get("emission_classes") or {}
    shown = ", ".join(
        f"{k}: {v}" for k, v in sorted(classes.items()) if not k.startswith("DEFAULT_")
    )
    report = Report(sc.title, lead=sc.description)
    report.facts([
        ["Scenario ", code(sc.name), f" ({sc.file}); run folder ", code(stamp_of(run_dir))],
        f"Start {sc.start_utc.isoformat()} (UTC), {plan.end_s / 3600:.2f} h simulated per run",
        f"Seeds: {', '.join(str(s) for s in plan.seeds)} (values are means over these seeds "
        "± sample sd)",
        f"Variants: {', '.join(labels[v] for v in plan.variants)}",
        [strong(f"Emission model: {model_text}"),
         f" via SUMO's emissions device on every vehicle; classes: {shown}"],
        f"SUMO {_sumo_version()}",
        occupancy_text(sc.occupancy),
    ])  # fmt: skip
    for note in meta.get("demand_notes", []):
        report.paragraph(note, note=True)
    report.section("KPIs")
    header = ["KPI", "unit", *(labels[v] for v in plan.variants),
              *(f"Δ {labels[v]} vs baseline" for v in plan.variants[1:])]  # fmt: skip
    table = []
    for kpi in sorted(
        agg, key=lambda k: (k not in KEY_KPIS, KEY_KPIS.index(k) if k in KEY_KPIS else 0, k)
    ):
        per = agg[kpi]
        row = [kpi, next(iter(per.values()))["unit"]]
        for v in plan.variants:
            c = per.get(v)
            row.append(f"{_fmt(c['mean'])} ± {_fmt(c['sd'], 2)}" if c and c["n"] else "–")
        for v in plan.variants[1:]:
            d, sd, n = paired_change(per, v)
            row.append(f"{_fmt(d)} ± {_fmt(sd, 2)}" if n else "–")
        table.append(row)
    report.table(header, table)
    report.paragraph("Δ: mean of per-seed differences (same demand per seed) ± their sd.")
    tables = [(m, *junction_table(plan, m)) for m in JUNCTION_METRICS]
    if tables[0][2]:
        report.section("Treated junctions")
        for metric, j_header, j_rows in tables:
            report.paragraph(f"{JUNCTION_METRICS[metric][0].capitalize()}:")
            report.table(j_header, j_rows)
        report.paragraph(
            "On all approaches of each signal a transit or bike controller acts on, by mode, per "
            "minute after the warm-up: delay from SUMO's edge data (the time lost after it by the "
            "vehicles that left an approach after it), stops from lane-area detectors on every "
            "approach lane (a halt below 0.1 m/s, as SUMO counts a trip's halts; a bus halting at "
            "a stop on the approach counts too), CO2 from SUMO's emission edge data; "
            "person: the modes weighted with their occupancies (per person passage). Mean over "
            "seeds (min to max; a single value: one seed had passages); Δ: mean of per-seed "
            "differences against the baseline (min to max)."
        )
    report.section("Plots")
    for name, title in plots:
        report.figure(name, title)
    report.section("Files")
    report.paragraph([
        code("kpis.csv"), " (variant, seed, kpi, value, unit); per variant and seed: SUMO outputs "
        "(tripinfo, stopinfo, vehroutes, edgedata, summary, FCD for the first seed), ",
        code("trips.csv"), ", ", code("junctions.csv"), " (delays per treated junction and mode), "
        "controller logs under ", code("controllers/"), ".",
    ])  # fmt: skip
    return report.write(run_dir)


def _sumo_version() -> str:
    return sumo_version()
