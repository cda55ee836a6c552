"""Run SOLWEIG (the `solweig` package, GPL-3.0) on the inputs of an .npz file; write its results.

Runs in the reference environment only, as a separate process:
    python solweig_run.py INPUT.npz OUTPUT.npz [--repeat N] [--anisotropic]
INPUT holds dsm (surface height, m), dem (terrain, m), canopy (crown height above ground, m, may be
all 0), cell (m), lat, lon, and per step: times (UTC unix s), altitude, azimuth (deg), ta (degC),
rh (%), ghi, dni, dhi (W m-2), ws (m/s). The sun positions and the beam/diffuse split are given so
that SOLWEIG works on the same inputs as our kernels. OUTPUT holds per step shadow, tmrt, kdown,
kup, ldown, lup, the sky view factors svf (buildings) and svfbuveg (with crowns), and CPU seconds
(time.process_time, all threads) of: the sky view factor, each bare shadow casting call
(shadow_cpu_s) and each whole Tmrt step (step_cpu_s), the best of ``--repeat`` runs; with
``--anisotropic`` also the last step with SOLWEIG's anisotropic sky (aniso_step_cpu_s; its sky
view factor's shadow matrices come from the same compute_svf).
"""

from __future__ import annotations

import argparse
import os
import time
from datetime import UTC, datetime

import numpy as np

os.environ.setdefault("SOLWEIG_NO_GPU", "1")

import solweig  # noqa: E402
from solweig.api import _calculate_single  # noqa: E402  (one time step, no output files)
from solweig.rustalgos import shadowing  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--anisotropic", action="store_true")
    a = p.parse_args()
    z = np.load(a.input)
    dsm = z["dsm"].astype(np.float32)
    dem = z["dem"].astype(np.float32)
    canopy = z["canopy"].astype(np.float32)
    cell = float(z["cell"])
    has_veg = bool((canopy > 0).any())
    t0 = time.process_time()
    surface = solweig.SurfaceData(
        dsm=dsm,
        dem=dem,
        cdsm=canopy if has_veg else None,
        pixel_size=cell,
        trunk_ratio=float(z["trunk_ratio"]) if "trunk_ratio" in z else 0.25,
        smooth_quantized_dem=False,
    )
    surface.preprocess()
    surface.compute_svf()
    svf_cpu = time.process_time() - t0
    location = solweig.Location(latitude=float(z["lat"]), longitude=float(z["lon"]))
    geom = surface.geometry
    out: dict[str, list] = {k: [] for k in ("shadow", "tmrt", "kdown", "kup", "ldown", "lup")}
    shadow_cpu, step_cpu = [], []
    for n in range(len(z["times"])):
        alt, az = float(z["altitude"][n]), float(z["azimuth"][n])
        best_shadow = best_step = np.inf
        for _ in range(a.repeat):
            veg = (geom.cdsm, geom.tdsm, np.zeros_like(dsm)) if has_veg else (None, None, None)
            c = time.process_time()
            shadowing.calculate_shadows_wall_ht_25(az, alt, cell, float(np.nanmax(geom.dsm)),
                                                   geom.dsm, *veg)  # fmt: skip
            best_shadow = min(best_shadow, time.process_time() - c)
            weather = solweig.Weather(
                datetime=datetime.fromtimestamp(float(z["times"][n]), UTC).replace(tzinfo=None),
                ta=float(z["ta"][n]),
                rh=float(z["rh"][n]),
                global_rad=float(z["ghi"][n]),
                ws=float(z["ws"][n]),
                measured_direct_rad=float(z["dni"][n]),
                measured_diffuse_rad=float(z["dhi"][n]),
                precomputed_sun_altitude=alt,
                precomputed_sun_azimuth=az,
            )
            c = time.process_time()
            res = _calculate_single(surface, location, weather, use_anisotropic_sky=False)
            best_step = min(best_step, time.process_time() - c)
        shadow_cpu.append(best_shadow)
        step_cpu.append(best_step)
        for k in out:
            v = getattr(res, k)
            out[k].append(np.full(dsm.shape, np.nan, np.float32) if v is None else np.asarray(v))
    aniso_cpu = np.inf
    for _ in range(a.repeat if a.anisotropic else 0):  # the last step, anisotropic sky (Perez)
        c = time.process_time()
        _calculate_single(surface, location, weather, use_anisotropic_sky=True)
        aniso_cpu = min(aniso_cpu, time.process_time() - c)
    svf = surface.auxiliary.svf
    np.savez_compressed(
        a.output,
        **{k: np.stack(v) for k, v in out.items()},
        svf=np.asarray(svf.svf),
        svfbuveg=np.asarray(svf.svfbuveg),
        svf_cpu_s=svf_cpu,
        shadow_cpu_s=np.array(shadow_cpu),
        step_cpu_s=np.array(step_cpu),
        aniso_step_cpu_s=aniso_cpu if a.anisotropic else np.nan,
    )


if __name__ == "__main__":
    main()
