"""The report of a heat run: report.html (through :mod:`twin.report`) with the maps beside it.

What a planner reads first: per variant the hottest air and surface temperatures, mean radiant
temperature and UTCI at street level, hours of strong heat stress, tropical nights, the hot spots
by street, and what each variant changes against the baseline; then the forcing and the readings
(their provenance, RMSE at the stations and leave-one-out error, outages) and the energy balance.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from twin.report import Report, code


def _n(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    return f"{value:.{digits}f}"


def write_report(folder: Path, scenario: Any, setups: dict[str, Any], results: list[Any],
                 diffs: dict[str, Any]) -> Path:  # fmt: skip
    """report.html of a heat run: headline table, differences, maps, hot spots, readings."""
    cfg = scenario.config
    base_setup = setups["baseline"]
    grid = base_setup.grid
    clock = base_setup.clock
    thr = cfg["outputs"]["utci_threshold_c"]
    rep = Report(cfg["scenario"]["title"] or scenario.name,
                 lead=cfg["scenario"]["description"] or None)  # fmt: skip
    rep.facts([
        f"Period: {clock.isoformat(0)} to {clock.isoformat(clock.duration or 0.0)} (UTC), "
        f"steps of {cfg['scenario']['time_step_s']:g} s",
        f"Grid: {grid.shape[0]} x {grid.shape[1]} cells of {grid.cell:g} m over "
        f"{[round(v) for v in grid.extent]} (EPSG:25832)",
        f"Forcing: {base_setup.forcing.source}"
        + (f"; it stands for the reference station {st['name']} ({st['id']})"
           if (st := base_setup.forcing.station) else ""),
        f"Data pack: {base_setup.pack.title} ({base_setup.pack.file.name}); its buildings, land "
        "cover and trees are what the pack states (data/README.md says which are synthetic)",
    ])  # fmt: skip

    rep.section("Headline")
    hours_key = next((k for k in results[0].metrics if k.startswith("hours_utci_above_")), None)
    header = ["variant", "max air °C", "mean of max air °C", "mean of max surface °C (open)",
              "mean of max Tmrt °C", "mean of max UTCI °C",
              f"hours UTCI > {thr:g} °C (mean)", "tropical nights (mean)"]  # fmt: skip
    rows = []
    for r in results:
        m = r.metrics
        rows.append([r.name, _n(m["t_air_max_c"]), _n(m["t_air_max_mean_c"], 2),
                     _n(m["t_surface_max_mean_c"], 2), _n(m["tmrt_max_mean_c"], 2),
                     _n(m["utci_max_mean_c"], 2), _n(m.get(hours_key), 2) if hours_key else "–",
                     _n(m["tropical_nights_mean"], 2)])  # fmt: skip
    rep.table(header, rows)
    rep.paragraph("Means are over the grid's open cells (street level) or all cells (air); a "
                  "tropical night is one whose minimum air temperature is at least "
                  f"{cfg['outputs']['tropical_night_c']:g} °C (18:00-06:00 local).")  # fmt: skip

    if diffs:
        rep.section("What the variants change (variant − baseline)")
        header = ["variant", "field", "mean K", "where changed K", "min K", "max K"]
        rows = []
        for name, d in diffs.items():
            for fld, s in d.items():
                if fld == "tropical_nights":
                    continue
                rows.append([name, fld, _n(s["mean_k"], 3), _n(s["mean_where_changed_k"], 3),
                             _n(s["min_k"], 3), _n(s["max_k"], 3)])  # fmt: skip
        rep.table(header, rows)
        for name in diffs:
            label = cfg["variants"][name]["label"] or name
            rep.figure(f"{name}/diff_t_surface_max.png", f"{label}: maximum surface temperature, "
                       "variant − baseline")  # fmt: skip
            rep.figure(f"{name}/diff_utci_max.png", f"{label}: maximum UTCI, variant − baseline")

    for r in results:
        rep.section(f"Maps: {r.name}")
        for png, caption in (("t_air_max.png", "Maximum air temperature"),
                             ("t_surface_max.png", "Maximum surface temperature"),
                             ("utci_max.png", "Maximum UTCI at street level, hot spots numbered"),
                             ("tropical_nights.png", "Tropical nights")):  # fmt: skip
            if (r.folder / png).exists():
                rep.figure(f"{r.name}/{png}", caption)
        for name in sorted(p for p in r.files if p.endswith("h.png") and p.startswith("t_air_")):
            rep.figure(f"{r.name}/{name}", name.removesuffix(".png").replace("_", " "))
        spots = r.metrics["hotspots"]
        if spots:
            rep.paragraph("Hot spots by UTCI (the hottest cells at least 300 m apart):")
            rep.table(["rank", "street", "UTCI °C", "x", "y"],
                      [[s["rank"], s["street"] or "–", _n(s["value"]), _n(s["x"], 0),
                        _n(s["y"], 0)] for s in spots])  # fmt: skip
        rep.figure(f"{r.name}/energy_balance.png", "Energy balance, domain mean (W m-2)")

    rep.section("Readings of the climate stations")
    base = results[0].metrics
    rd = base["readings"]
    rep.paragraph(f"Source: {rd['provenance']}.")
    st = base["stations"]
    rep.facts([
        f"Steps with readings merged: {rd['steps_with_readings']}; without any usable reading "
        f"(the model ran on its forcing): {rd['steps_without_readings']}",
        f"Readings used: {st['readings_used']}; RMSE at the stations before the merge "
        f"{_n(st['rmse_before_k'], 2)} K, after {_n(st['rmse_after_k'], 2)} K, leave-one-out "
        f"{_n(st['rmse_leave_one_out_k'], 2)} K",
        f"Outages (a station silent for {cfg['readings']['gap_s'] / 3600:g} h): "
        f"{len(rd.get('gaps', []))}",
    ])  # fmt: skip
    rep.paragraph("Method: optimal interpolation of the stations' innovations into the model's "
                  "air field each step, with quality weights from the readings' flags; the "
                  "leave-one-out error is what the other stations predict at a station. See "
                  f"{code('twin/heat/README.md')}.", note=True)  # fmt: skip

    rep.section("Files")
    items = [(f"{r.name}/{f}", f"{r.name}/{f}") for r in results for f in r.files
             if f.endswith((".tif", ".csv"))]  # fmt: skip
    rep.links(items + [("forcing.csv", "forcing.csv"), ("status.json", "status.json")])
    return rep.write(folder)
