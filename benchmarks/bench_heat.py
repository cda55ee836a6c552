"""Benchmark: the heat model's kernels against their NumPy references, SOLWEIG and SUEWS.

* ``city_day``: the heat model over the pack's whole extent at 10 m (1200 x 700 = 840 000 cells)
  for one simulated day of the heat-wave scenario (the short mode: its six hours around noon)
  with our numba kernels, against the same model stepped with the NumPy references of the same
  equations (a few steps at noon, timed per cell-step). Prints cell-steps/s, the ratio, the
  seconds per phase, and the effective memory bandwidth of the energy-balance kernel (the bytes
  it must read and write per cell / its time) beside a measured copy bandwidth.
* ``step_vs_solweig_tmrt``: that whole step (shading, radiation, energy balance, air layer,
  stations; Tmrt and UTCI hourly) in cell-steps per CPU-second against SOLWEIG's Tmrt step
  (``heat_solweig.py``, same machine, same run), isotropic sky as ours; goal >= 10x.
  ``step_vs_solweig_aniso``: the same against SOLWEIG's step with its anisotropic sky (Perez
  diffuse, per-patch longwave), the step the issue's 120 000-135 000 cell-steps/CPU-s refer to.
* the rows of ``heat_solweig.py`` (shadows at high and low sun, one Tmrt step, the sky view
  factor, 500 x 500 cells at 2 m) and of ``heat_suews.py`` (one cell-day against supy).

    python benchmarks/bench_heat.py            # a whole day
    python benchmarks/bench_heat.py --short    # what `make bench` runs: 6 hours around noon
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from common import Row, add_arguments, finish, skipped
from heat_solweig import solweig_rows
from heat_suews import suews_rows

BENCH = "heat"
ROOT = Path(__file__).resolve().parents[1]


def _setup(hours: float, start: str):
    from twin.heat.scenario import build_setup, load_scenario

    sc = load_scenario(ROOT / "simulations" / "heat-wave.toml")
    sc.config["scenario"]["start"] = start
    sc.config["readings"]["source"] = "none"
    return build_setup(sc, end=f"{hours:g}h")


def _run(setup, hours: float, *, reference: bool = False):
    from twin.heat.model import HeatModel

    m = HeatModel()
    m.initialize({"setup": setup, "record": True, "reference": reference})
    w, c = time.perf_counter(), time.process_time()
    m.update_until(hours * 3600.0)
    return m, time.perf_counter() - w, time.process_time() - c


def copy_bandwidth(n: int = 20_000_000) -> float:
    """GB/s of a large float64 copy (read + write), the best of three."""
    src, dst = np.ones(n), np.empty(n)
    best = np.inf
    for _ in range(3):
        t0 = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - t0)
    return 2 * 8 * n / best / 1e9


def kernel_bandwidth(model) -> tuple[float, float]:
    """GB/s the energy-balance kernel moves on the model's grid, and its seconds per call."""
    from twin.heat.energy import energy_balance

    shape = model.grid.shape
    q, dq, qf = np.full(shape, 400.0), np.full(shape, 50.0), np.full(shape, 20.0)
    args = (q, dq, qf, model.fractions, model.t_air, 40.0, 2.0, model._water)
    kw = {"k_down": np.full(shape, 800.0), "resistance": model._resistance}  # as the model calls it
    energy_balance(*args, **kw)
    best = np.inf
    for _ in range(5):
        t0 = time.perf_counter()
        energy_balance(*args, **kw)
        best = min(best, time.perf_counter() - t0)
    # read: Q*, dQ*/dt, QF, six fractions, Ta, water, K down, the resistance's L and C; write: four
    nbytes = 8 * model.grid.cells * (14 + 4)
    return nbytes / best / 1e9, best


def city_rows(short: bool) -> list[Row]:
    """The city day (or its six noon hours) with the numba kernels and the NumPy references."""
    try:
        hours = 6.0 if short else 24.0
        start = "2026-07-23T07:00:00Z" if short else "2026-07-22T22:00:00Z"
        setup = _setup(hours, start)
    except Exception as exc:  # the Krefeld build is made by `make bench` before this
        return [skipped(BENCH, "city_day", "NumPy reference", f"no Krefeld set-up: {exc}")]
    cells = setup.grid.cells
    model, wall, cpu = _run(setup, hours)
    steps = len(model.energy_rows)
    ours = cells * steps / wall
    print(f"city at 10 m: {setup.grid.shape[0]} x {setup.grid.shape[1]} cells, {steps} steps of "
          f"{model.time_step:g} s in {wall:.1f} s wall ({cpu:.1f} CPU s): {ours / 1e6:.2f} M "
          "cell-steps/s")  # fmt: skip
    print("  phases: " + ", ".join(f"{k} {v:.1f} s" for k, v in model.timings.items()))
    if not short:
        print(f"  goal: a city day in <= 60 s on 2 cores: {'met' if wall <= 60 else 'not met'}")
    # the references, three steps at noon (their cost per cell-step does not depend on the hour)
    ref_setup = _setup(0.5, "2026-07-23T10:00:00Z")
    _, ref_wall, _ = _run(ref_setup, 0.5, reference=True)
    fast, fast_wall, _ = _run(ref_setup, 0.5)
    ref = cells * 3 / ref_wall
    print(f"NumPy reference, 3 noon steps: {ref_wall:.1f} s: {ref / 1e6:.3f} M cell-steps/s "
          f"(numba on the same steps: {fast_wall:.2f} s); ratio {ours / ref:.1f}x (goal >= 10)")  # fmt: skip
    gbs, secs = kernel_bandwidth(fast)
    copy = copy_bandwidth()
    print(f"energy-balance kernel: {secs * 1e3:.1f} ms per call, {gbs:.1f} GB/s effective; "
          f"a float64 copy: {copy:.1f} GB/s")  # fmt: skip
    rows = [
        Row(BENCH, "city_day", "M cell-steps/s", ours / 1e6, ref / 1e6,
            "the same step with the NumPy references of its kernels"),
        Row(BENCH, "energy_kernel_bandwidth", "GB/s", gbs, copy, "a float64 copy (np.copyto)"),
    ]  # fmt: skip
    # the heat step as SOLWEIG's Tmrt step counts it: radiation (shading), Tmrt every step, energy
    # balance, air layer, stations; UTCI, statistics and outputs left out
    tm_setup = _setup(1.0, "2026-07-23T10:00:00Z")
    tm_setup.scenario.config["outputs"]["comfort_every_s"] = 600.0
    tm, _, _ = _run(tm_setup, 1.0)
    step = ("shadow", "radiation", "energy", "air", "stations", "surface", "tmrt")
    cpu_step = sum(tm.cpu_timings.get(k, 0.0) for k in step) / len(tm.energy_rows)
    print("  one step with Tmrt, CPU s by phase: " + ", ".join(
        f"{k} {tm.cpu_timings.get(k, 0.0) / len(tm.energy_rows):.3f}" for k in step))  # fmt: skip
    rows.append(Row(BENCH, "_step_cpu", "M cell-steps/CPU-s", cells / cpu_step / 1e6, None, ""))
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(ap)
    args = ap.parse_args(argv)
    rows = city_rows(args.short)
    step_cpu = next((r for r in rows if r.measure == "_step_cpu"), None)
    rows = [r for r in rows if r.measure != "_step_cpu"]
    solweig = solweig_rows(args.short)
    rows += solweig
    aniso = next((r for r in solweig if r.measure == "_tmrt_aniso"), None)
    rows = [r for r in rows if r.measure != "_tmrt_aniso"]
    tmrt = next((r for r in solweig if r.measure == "tmrt_step" and r.anchor), None)
    for name, ref, sky in (("step_vs_solweig_tmrt", tmrt, "isotropic"),
                           ("step_vs_solweig_aniso", aniso, "anisotropic")):  # fmt: skip
        anchor = f"SOLWEIG's Tmrt step, {sky} sky (heat_solweig.py, 2 m window)"
        if step_cpu is not None and ref is not None and ref.anchor:
            rows.append(Row(BENCH, name, "M cell-steps/CPU-s", step_cpu.ours, ref.anchor, anchor))
        else:
            rows.append(skipped(BENCH, name, anchor, "needs the city day and SOLWEIG's rows"))
    rows += suews_rows(args.short)
    return finish(rows, args)


if __name__ == "__main__":
    sys.exit(main())
