"""The report of a ground-water run: report.html (through :mod:`twin.report`) with its maps and
hydrographs beside it: period, grid, water budget, depth to water, where the readings came from and
what was missing, the assimilation's skill and the run's files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from twin.report import REPORT, Report, code

if TYPE_CHECKING:
    from twin.groundwater.scenario import Setup

PHASES = ("set_up", "readings", "assimilation", "solve", "coupling", "outputs")
FIGURES = {"map_head.png": "Head at the end of the run",
           "map_depth_to_water.png": "Depth to water table at the end of the run"}  # fmt: skip


def phase_line(phases: dict[str, float]) -> str:
    """The seconds per phase in one line: 'set-up 1.2 s, readings 0.1 s, ...'."""
    return ", ".join(f"{n.replace('_', '-')} {phases[n]:.1f} s" for n in PHASES if n in phases)


def _readings(report: Report, info: dict[str, Any]) -> None:
    """Where the readings came from and what was missing."""
    report.section("Readings")
    report.paragraph(f"Source: {info['provenance']}.")
    if info["source"] == "synthetic":
        report.paragraph("No logger readings: the dots are samples of a synthetic truth run "
                         "(another conductivity field, more recharge) with noise and quality "
                         "flags.")  # fmt: skip
    facts: list[Any] = []
    replay = info.get("replay")
    if replay:
        facts += [
            f"Messages in the file: {replay['messages']}, taken in by the run: "
            f"{replay['taken_in']} (stored {replay['stored']}, duplicates {replay['duplicates']}, "
            f"quarantined {replay['quarantined']}), readings {replay['readings']}",
            f"Messages outside the run's window: {replay['before_window']} before its start "
            f"(older than the feed's {info['max_age_hours']:g} h), {replay['after_window']} "
            "after its end",
        ]
    if "gap_hours" in info:
        facts.append(f"Wells that gave no reading at all: {len(info['silent_wells'])}")
        outs = info["outages"]
        items = []
        for o in outs:
            shown = ", ".join(o["wells"][:10]) + (" …" if len(o["wells"]) > 10 else "")
            items.append(f"{o['start']} to {o['end'] or 'the end of the run'}: "
                         f"{len(o['wells'])} well(s): {shown}")  # fmt: skip
        text = f"Outages (no reading fresher than {info['gap_hours']:g} h): {len(outs)}"
        facts.append((text, items) if items else text)
    if facts:
        report.facts(facts)


def write_report(folder: Path, setup: Setup, result: dict, metrics: dict,
                 phases: dict[str, float], seconds: float) -> Path:  # fmt: skip
    """report.html: period, grid, budget, depth to water, readings and their source, files."""
    pngs = metrics["hydrograph_pngs"]
    cfg = setup.scenario.config
    grid, clock = setup.grid, setup.clock
    b_last = result["budgets"][-1]
    report = Report(f"Ground-water run: {setup.scenario.name}", lead=cfg["scenario"]["title"])
    report.facts([
        f"Period: {clock.isoformat(0)} to {clock.isoformat(result['times'][-1])}, "
        f"{metrics['steps']} implicit steps of {cfg['scenario']['time_step_hours']:g} h",
        f"Grid: {grid.ny} x {grid.nx} cells of {grid.cell:g} m, EPSG:25832, origin "
        f"({grid.origin[0]:.0f}, {grid.origin[1]:.0f}); "
        f"{'confined' if setup.model.confined else 'unconfined'}",
        f"Wells pumping: {len(setup.pumping)}, total "
        f"{-sum(p[3] for p in setup.pumping) * 86400:.0f} m3/d",
        f"Run time: {seconds:.1f} s ({phase_line(phases)})",
        f"Readings: {result['source']['provenance']}",
    ])  # fmt: skip
    report.section("Water budget (m3/s)")
    report.paragraph("Budget error = inflow - outflow - storage change; relative to the mean of "
                     "all IN and OUT terms (MODFLOW's percent discrepancy / 100).")  # fmt: skip
    report.facts([
        f"Largest relative budget error over all steps: {metrics['max_relative_budget_error']:.2e}",
        f"Steps that did not converge: {metrics['unconverged_steps']}",
    ])  # fmt: skip
    rows = [[p, f"{b_last.inputs.get(p, 0):.4f}", f"{b_last.outputs.get(p, 0):.4f}"]
            for p in ("WEL", "RCH", "RIV", "DRN", "CHD")]  # fmt: skip
    rows.append(["STO", f"{b_last.storage_in:.4f}", f"{b_last.storage_out:.4f}"])
    report.table(["package", "in", "out"], rows)
    dtw = metrics["depth_to_water_m"]
    report.section("Depth to water table at the end (m)")
    report.paragraph(f"min {dtw['min']:.2f}, median {dtw['median']:.2f}, max {dtw['max']:.2f}; "
                     f"dry cells: {metrics['dry_cells_end']}")  # fmt: skip
    _readings(report, result["source"])
    if "assimilation" in metrics:
        a = metrics["assimilation"]
        oi = cfg["assimilation"]
        report.section("Assimilation of the readings (mean over steps, m)")
        report.paragraph(
            f"Optimal interpolation, {oi['kernel']} covariance, sigma_b {oi['sigma_background_m']} "
            f"m, length {oi['length_m']} m, sigma_o {oi['sigma_observation_m']} m / quality weight."
        )
        report.facts([
            f"RMSE at assimilated wells before / after analysis: {a['rmse_before_m']:.3f} / "
            f"{a['rmse_after_m']:.3f}",
            f"Leave-one-out RMSE: {a['rmse_leave_one_out_m']:.3f}",
            f"RMSE at withheld wells, free run / with assimilation: "
            f"{a['rmse_withheld_free_m']:.3f} / {a['rmse_withheld_assimilated_m']:.3f}",
        ])  # fmt: skip
    report.section("Files")
    files = {p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")}
    report.facts([code(f) for f in sorted(files | {REPORT, "status.json"})])
    for name, caption in FIGURES.items():
        report.figure(name, caption)
    for png in pngs:
        report.figure(png, f"Hydrograph {png.removeprefix('hydrograph_').removesuffix('.png')}")
    return report.write(folder)
