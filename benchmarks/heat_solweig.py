"""Heat model radiation against SOLWEIG: shadow casting, sky view factor and one Tmrt step.

A block city of 500 x 500 cells of 2 m (300 x 300 in the short mode; flat terrain, blocks 8-30 m,
trees) is given to our kernels and to SOLWEIG (the `solweig` package, run by
tests/reference/solweig_run.py in the reference environment ``.venv-ref`` as a process of its
own, which times itself with time.process_time). Both sides count CPU seconds of all threads,
the best of a few repeats. Rows (rates, higher is better; ratio = ours / SOLWEIG's):

* ``shadow_high_sun`` / ``shadow_low_sun``: one shadow mask at 60 deg / 8 deg altitude, with
  trees (SOLWEIG: its shadow casting call ``calculate_shadows_wall_ht_25``);
* ``tmrt_step``: one time step given the sky view factor: our shadow mask + Tmrt against SOLWEIG's
  whole isotropic step (shadows, ground view, fluxes, Tmrt) at 12:00 UTC;
* ``svf``: the sky view factor once (SOLWEIG: ``SurfaceData.compute_svf``, ours 36 directions).

A shadow row fails when the two masks agree in fewer than 95 % of the cells.
Called by bench_heat.py: ``rows = solweig_rows(short)``.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from common import Row, skipped

from twin.heat import radiation, shadow, sun

BENCH = "heat"
ROOT = Path(__file__).resolve().parents[1]
REF_PYTHON = ROOT / ".venv-ref" / "bin" / "python"
SCRIPT = ROOT / "tests" / "reference" / "solweig_run.py"
LAT, LON, CELL = 51.33, 6.56, 2.0
ANCHOR = "SOLWEIG (solweig {}) on the same inputs, CPU s of all threads"
UNIT = "M cell-steps/CPU-s"


def block_city(n: int, seed: int = 11) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Terrain (flat), DSM with blocks of 8-30 m and tree crowns of 6-14 m on open ground."""
    rng = np.random.default_rng(seed)
    dem = np.full((n, n), 30.0)
    dsm = dem.copy()
    for i in range(4, n - 24, 30):
        for j in range(4, n - 22, 26):
            dsm[i : i + rng.integers(10, 22), j : j + rng.integers(8, 20)] += rng.uniform(8, 30)
    canopy = np.zeros((n, n))
    for i, j in rng.integers(0, n - 5, (n * n // 1500, 2)):
        canopy[i : i + 4, j : j + 4] = rng.uniform(6.0, 14.0)
    canopy[dsm > dem] = 0.0
    return dem, dsm, canopy


def _cpu_best(repeat: int, fn) -> tuple[object, float]:
    best, out = np.inf, None
    for _ in range(max(1, repeat)):
        c = time.process_time()
        out = fn()
        best = min(best, time.process_time() - c)
    return out, best


def _suns() -> dict[str, tuple[float, float, float]]:
    """(unix time, altitude, azimuth) of the high sun (about 60 deg) and a low one (about 8 deg)."""
    t_high = datetime(2025, 6, 21, 11, 36, tzinfo=UTC).timestamp()
    t_low = datetime(2025, 6, 21, 18, 40, tzinfo=UTC).timestamp()
    out = {}
    for name, t in (("high", t_high), ("low", t_low)):
        alt, az = sun.solar_position(t, LAT, LON)
        out[name] = (t, alt, az)
    return out


def _solweig_version() -> str:
    probe = subprocess.run([str(REF_PYTHON), "-c", "import solweig; print(solweig.__version__)"],
                           capture_output=True, text=True, timeout=300,
                           env=dict(os.environ, SOLWEIG_NO_GPU="1"))  # fmt: skip
    return probe.stdout.strip() if probe.returncode == 0 else ""


def solweig_rows(short: bool) -> list[Row]:
    """The four rows (shadow_high_sun, shadow_low_sun, tmrt_step, svf); skipped rows without
    SOLWEIG in the reference environment."""
    measures = ("shadow_high_sun", "shadow_low_sun", "tmrt_step", "svf")
    version = _solweig_version() if REF_PYTHON.exists() else ""
    if not version:
        why = "solweig not importable in .venv-ref (make test installs it)"
        return [skipped(BENCH, m, "SOLWEIG", why) for m in measures]
    anchor = ANCHOR.format(version)
    n = 300 if short else 500
    repeat = 2 if short else 3
    dem, dsm, canopy = block_city(n)
    building = dsm > dem + 0.5
    suns = _suns()
    noon = datetime(2025, 7, 15, 12, tzinfo=UTC).timestamp()
    alt_noon, az_noon = sun.solar_position(noon, LAT, LON)
    times = np.array([suns["high"][0], suns["low"][0], noon])
    alt = np.array([suns["high"][1], suns["low"][1], alt_noon])
    az = np.array([suns["high"][2], suns["low"][2], az_noon])
    ghi = np.array([850.0, 120.0, 820.0])
    dni, dhi = radiation.split_global(ghi, alt, times)
    met = dict(ta=np.array([28.0, 26.0, 29.0]), rh=np.array([45.0, 50.0, 45.0]),
               ws=np.array([1.5, 1.5, 1.5]))  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        inputs, outputs = Path(tmp) / "in.npz", Path(tmp) / "out.npz"
        np.savez(inputs, dsm=dsm, dem=dem, canopy=canopy, cell=CELL, lat=LAT, lon=LON,
                 times=times, altitude=alt, azimuth=az, ghi=ghi, dni=dni, dhi=dhi, **met)  # fmt: skip
        proc = subprocess.run([str(REF_PYTHON), str(SCRIPT), str(inputs), str(outputs),
                               "--repeat", str(repeat), "--anisotropic"], capture_output=True, text=True,
                              timeout=1800, env=dict(os.environ, SOLWEIG_NO_GPU="1"))  # fmt: skip
        if proc.returncode:
            why = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
            return [Row(BENCH, m, UNIT, None, None, anchor, failed=f"SOLWEIG run: {why}")
                    for m in measures]  # fmt: skip
        ref = dict(np.load(outputs))

    # ours: compile first, then the best of `repeat` CPU times
    shadow.shadow_mask(dsm[:20, :20], CELL, 180.0, 30.0, canopy=canopy[:20, :20])
    svf, t_svf = _cpu_best(1, lambda: shadow.sky_view_factor(dsm, CELL, canopy=canopy))
    rows, cells = [], float(n * n)
    for k, name in enumerate(("high", "low")):
        mask, t_ours = _cpu_best(repeat, lambda k=k: shadow.shadow_mask(dsm, CELL, az[k], alt[k],
                                                                      canopy=canopy))  # fmt: skip
        agree = float(np.mean((mask > 0.5) == (ref["shadow"][k] > 0.5)))
        t_ref = float(ref["shadow_cpu_s"][k])
        print(f"shadow {name} sun (alt {alt[k]:.1f} deg): ours {t_ours * 1e3:.1f} ms CPU, SOLWEIG "
              f"{t_ref * 1e3:.1f} ms CPU, {t_ours / cells:.2e} vs {t_ref / cells:.2e} CPU-s per "
              f"cell-step, masks agree in {100 * agree:.2f} % of {n}x{n} cells")  # fmt: skip
        rows.append(Row(BENCH, f"shadow_{name}_sun", UNIT, cells / t_ours / 1e6,
                        cells / t_ref / 1e6, anchor,
                        failed=None if agree >= 0.95 else f"masks agree in {100 * agree:.1f} %"))  # fmt: skip
    t_ground = np.where(
        building, 30.0, 45.0
    )  # any ground temperature: the cost does not depend on it
    l_sky = radiation.sky_longwave(met["ta"][2], met["rh"][2])

    def step():
        sh = shadow.shadow_mask(dsm, CELL, az[2], alt[2], canopy=canopy)
        return radiation.mean_radiant_temperature(dni[2], dhi[2], l_sky, alt[2], sh, svf,
            met["ta"][2], t_ground, 0.15, building=building)  # fmt: skip

    step()
    _, t_step = _cpu_best(repeat, step)
    t_ref_step = float(ref["step_cpu_s"][2])
    print(
        f"Tmrt step: ours {t_step * 1e3:.1f} ms CPU, SOLWEIG {t_ref_step * 1e3:.1f} ms CPU "
        f"({t_step / cells:.2e} vs {t_ref_step / cells:.2e} CPU-s per cell-step)"
    )
    rows.append(Row(BENCH, "tmrt_step", UNIT, cells / t_step / 1e6, cells / t_ref_step / 1e6,
                    anchor))  # fmt: skip
    t_aniso = float(ref["aniso_step_cpu_s"])
    print(f"SOLWEIG's Tmrt step with its anisotropic sky: {t_aniso * 1e3:.1f} ms CPU "
          f"({cells / t_aniso:,.0f} cell-steps per CPU s)")  # fmt: skip
    # not a row of its own (ours has no anisotropic sky): bench_heat sets the whole step beside it
    rows.append(Row(BENCH, "_tmrt_aniso", UNIT, None, cells / t_aniso / 1e6, anchor))
    t_ref_svf = float(ref["svf_cpu_s"])
    print(
        f"SVF: ours {t_svf:.2f} s CPU, SOLWEIG {t_ref_svf:.2f} s CPU (its preprocessing included)"
    )
    rows.append(Row(BENCH, "svf", "M cells/CPU-s", cells / t_svf / 1e6, cells / t_ref_svf / 1e6,
                    anchor))  # fmt: skip
    return rows


if __name__ == "__main__":
    import argparse

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--short", action="store_true")
    for r in solweig_rows(p.parse_args().short):
        print(r)
