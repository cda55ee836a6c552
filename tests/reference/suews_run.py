"""Run SUEWS (supy) on its sample site over a dry summer spell; write forcing, set-up and fluxes.

Runs in the reference environment (``.venv-ref``), never in the package's: ``python suews_run.py
OUT.npz [--start ISO] [--days N] [--spinup-days N]``. The sample site is supy's own (King's College
London, 5-min steps, forcing of 2012). The default window is the dry heat spell of 22-25 July 2012
(no rain from 21 July), after one spin-up day so that SUEWS' running means of Q* are settled; the
file holds only the compared steps. ``--timing`` prints the process time of ``run_supy`` alone.
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings

import numpy as np

# supy pins scipy < 1.15 while pandas 3 asks for scipy >= 1.16.1 before its scipy-based interpolation
# (which supy's forcing resampling uses and which works with 1.14): relax pandas' check here only.
try:
    import pandas.compat._optional as _pd_optional

    if "scipy" in getattr(_pd_optional, "VERSIONS", {}):
        _pd_optional.VERSIONS["scipy"] = "1.14"
except ImportError:  # pragma: no cover - pandas is a supy dependency
    pass

import pandas as pd  # noqa: E402

warnings.simplefilter("ignore")
import supy  # noqa: E402

# SUEWS' seven surfaces, in its order
SURFACES = ("paved", "bldgs", "evetr", "dectr", "grass", "bsoil", "water")
DEBUG = (
    "dqndt",
    "RB",
    "g_kdown",
    "g_dq",
    "g_ta",
    "g_smd",
    "g_lai",
    "vpd_hPa",
    "avdens",
    "avcp",
    "s_hPa",
    "psyc_hPa",
    "lv_J_kg",
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("out", help="the .npz file to write")
    p.add_argument("--start", default="2012-07-22", help="first compared day (default 2012-07-22)")
    p.add_argument("--days", type=int, default=3, help="compared days (default 3)")
    p.add_argument("--spinup-days", type=int, default=1, help="days run before (default 1)")
    p.add_argument("--timing", action="store_true", help="print the process time of run_supy")
    args = p.parse_args(argv)

    import logging

    logging.getLogger("SuPy").setLevel(logging.WARNING)
    state, forcing = supy.load_SampleData()
    start = pd.Timestamp(args.start)
    t0 = start - pd.Timedelta(days=args.spinup_days) + pd.Timedelta(minutes=5)
    t1 = start + pd.Timedelta(days=args.days)
    f = forcing.loc[t0:t1]
    if f.empty:
        sys.exit(f"suews_run: no sample forcing between {t0} and {t1}")

    c0 = time.process_time()
    out, state_final = supy.run_supy(f, state)
    cpu = time.process_time() - c0
    if args.timing:
        print(f"run_supy_process_s {cpu:.6f} steps {len(f)}")

    o = out["SUEWS"]
    if isinstance(o.index, pd.MultiIndex):
        o = o.xs(o.index.get_level_values(0)[0], level=0)
    dbg = out["debug"]
    if isinstance(dbg.index, pd.MultiIndex):
        dbg = dbg.xs(dbg.index.get_level_values(0)[0], level=0)
    keep = o.index > start  # period-ending stamps: the first compared step ends at start + 5 min
    fk = f.loc[keep]
    ok = o.loc[keep]
    times = (fk.index - pd.Timestamp("1970-01-01")).total_seconds().to_numpy()
    tstep = float(state["tstep"].to_numpy().ravel()[0])
    s = state
    ohm = s["ohm_coef"].to_numpy().reshape(8, 4, 3)
    # The coefficients SUEWS used: summer (5-day mean air temperature above ohm_threshsw), dry
    # (no water on the surfaces, soil stores below ohm_threshwd of capacity), open water wet.
    # Checked here: they give SUEWS' own QS from its Q* and dQ*/dt at every step.
    used = np.array([ohm[i, 0 if name == "water" else 1] for i, name in enumerate(SURFACES)])
    sfr = s["sfr_surf"].to_numpy(float).ravel()
    grid = sfr @ used
    dqndt = dbg.loc[keep, "dqndt"].to_numpy(float)
    qs_check = grid[0] * ok["QN"].to_numpy(float) + grid[1] * dqndt + grid[2]
    misfit = float(np.abs(qs_check - ok["QS"].to_numpy(float)).max())
    if misfit > 1e-6:
        sys.exit(f"suews_run: summer-dry OHM coefficients do not give SUEWS' QS (off by {misfit})")
    np.savez(
        args.out,
        time=times,  # UTC unix seconds at the end of each step
        tstep=tstep,
        kdown=fk["kdown"].to_numpy(float),
        t_air=fk["Tair"].to_numpy(float),
        rh=fk["RH"].to_numpy(float),
        wind=fk["U"].to_numpy(float),
        pressure_hpa=fk["pres"].to_numpy(float),
        rain=fk["rain"].to_numpy(float),
        surfaces=np.array(SURFACES),
        fractions=sfr,
        ohm_coef=ohm,  # [surface(7 + snow), (summer wet, summer dry, winter wet, winter dry), a1 a2 a3]
        ohm_used=used,  # (7 surfaces, a1 a2 a3) that SUEWS used in this window
        state_surf=ok[
            [f"St{n}" for n in ("Paved", "Bldgs", "EveTr", "DecTr", "Grass", "BSoil", "Water")]
        ].to_numpy(float),
        z=float(s["z"].to_numpy().ravel()[0]),
        z0m=float(s["z0m_in"].to_numpy().ravel()[0]),
        zdm=float(s["zdm_in"].to_numpy().ravel()[0]),
        g_max=float(s["g_max"].to_numpy().ravel()[0]),
        g_k=float(s["g_k"].to_numpy().ravel()[0]),
        g_q_base=float(s["g_q_base"].to_numpy().ravel()[0]),
        g_q_shape=float(s["g_q_shape"].to_numpy().ravel()[0]),
        g_t=float(s["g_t"].to_numpy().ravel()[0]),
        th=float(s["th"].to_numpy().ravel()[0]),
        tl=float(s["tl"].to_numpy().ravel()[0]),
        kmax=float(s["kmax"].to_numpy().ravel()[0]),
        maxconductance=s["maxconductance"].to_numpy(float).ravel(),
        laimax=s["laimax"].to_numpy(float).ravel(),
        lai_veg=s["lai_id"].to_numpy(float).ravel(),  # evetr, dectr, grass (constant in this run)
        qn=ok["QN"].to_numpy(float),
        qf=ok["QF"].to_numpy(float),
        qs=ok["QS"].to_numpy(float),
        qh=ok["QH"].to_numpy(float),
        qe=ok["QE"].to_numpy(float),
        ra=ok["RA"].to_numpy(float),
        rs=ok["RS"].to_numpy(float),
        ustar=ok["UStar"].to_numpy(float),
        smd=ok["SMD"].to_numpy(float),
        # SUEWS' own intermediate values (its debug output), for diagnosing a difference
        **{f"debug_{k}": dbg.loc[keep, k].to_numpy(float) for k in DEBUG},
        # every step's Q* from the start of the run: SUEWS' dQ*/dt is a running mean over it
        qn_all=o["QN"].to_numpy(float),
        time_all=(o.index - pd.Timestamp("1970-01-01")).total_seconds().to_numpy(),
        qn_av0=float(s["qn_av"].to_numpy().ravel()[0]),
        dqndt0=float(s["dqndt"].to_numpy().ravel()[0]),
        run_supy_process_s=cpu,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
