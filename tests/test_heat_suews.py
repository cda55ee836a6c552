"""Our energy balance against SUEWS (supy) on SUEWS' own sample site, one cell over three summer days.

``tests/reference/suews_run.py`` runs supy in ``.venv-ref`` (skipped, saying so, where supy is not
there) on the dry heat spell of 22-25 July 2012 at its sample site (London, King's College; 5-min
steps) and writes the forcing, the site's surface fractions, OHM coefficients and conductance
parameters, and SUEWS' fluxes. Our ``energy_balance`` gets the same forcing, fractions and
parameters, SUEWS' own Q*, QF and dQ*/dt (inputs of the balance, computed by SUEWS' radiation and
anthropogenic-heat schemes) and SUEWS' soil-moisture factor as the water availability.

Measures (the issue's thresholds):
* storage heat (storage + ground = SUEWS' QS): relative error sum_t |ours - SUEWS| / sum_t |SUEWS|
  <= 1 % (per step, so stricter than comparing the sums); with dQ*/dt from our ``RadiationTrend``
  instead of SUEWS' own, the three days' stored heat |sum ours - sum SUEWS| / sum |SUEWS| <= 1 %;
* sensible and latent heat: RMSE of the mean diurnal cycles (24 hourly means over the three days)
  <= 15 W m-2 each.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from heat_reference import run_reference

from twin.heat import energy, surface

# SUEWS' surfaces (paved, bldgs, evetr, dectr, grass, bsoil, water) onto ours
SUEWS_INDEX = {"paved": 0, "roof": 1, "grass": 4, "trees": 3, "water": 6, "bare": 5}


def _setup(d) -> tuple[np.ndarray, dict, dict]:
    """Our fractions, parameters and conductance from the SUEWS site's."""
    sfr = d["fractions"]
    f = np.array([sfr[0], sfr[1], sfr[4], sfr[2] + sfr[3], sfr[6], sfr[5]])
    # a dry spell: no rain, no water on the land surfaces (our balance has no rain store)
    assert np.all(d["rain"] == 0) and np.all(d["state_surf"][:, :6] < 1e-3)
    params = {k: dict(v) for k, v in surface.PARAMETERS.items()}
    for cover, i in SUEWS_INDEX.items():
        a1, a2, a3 = d["ohm_used"][i]  # SUEWS' summer coefficients, wet for open water
        params[cover].update(a1=a1, a2=a2, a3=a3)
    lai, lai_max, g_max = d["lai_veg"], d["laimax"], d["maxconductance"]  # evetr, dectr, grass
    assert sfr[2] == 0  # no evergreen trees at the site: our trees are its deciduous ones
    params["grass"].update(lai=lai[2], lai_max=lai_max[2], g_max=g_max[2])
    params["trees"].update(lai=lai[1], lai_max=lai_max[1], g_max=g_max[1])
    cond = dict(surface.CONDUCTANCE, scale=float(d["g_max"]), k=float(d["g_k"]),
                k_max=float(d["kmax"]), q_base=float(d["g_q_base"]),
                q_shape=float(d["g_q_shape"]), t_opt=float(d["g_t"]), t_high=float(d["th"]),
                t_low=float(d["tl"]))  # fmt: skip
    return f, params, cond


def _ours(d, dq_star_dt: np.ndarray) -> dict[str, np.ndarray]:
    """Our balance on one cell, the steps laid out along x (the balance has no memory)."""
    f, params, cond = _setup(d)
    n = len(d["qn"])
    row = {k: np.asarray(d[k], dtype=np.float64)[None] for k in
           ("qn", "qf", "t_air", "rh", "wind", "kdown", "pressure_hpa", "debug_g_smd")}  # fmt: skip
    return energy.energy_balance(
        row["qn"], dq_star_dt[None], row["qf"], np.repeat(f[:, None, None], n, axis=2),
        row["t_air"], row["rh"], row["wind"], row["debug_g_smd"], k_down=row["kdown"],
        pressure_hpa=row["pressure_hpa"], measurement_height=float(d["z"]),
        displacement_height=float(d["zdm"]), roughness_length=float(d["z0m"]),
        parameters=params, conductance=cond,
    )  # fmt: skip


def _diurnal(x: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Mean of each hour of the day (UTC; SUEWS' stamps end their 5-min step)."""
    hour = ((times - 1.0) % 86400.0) // 3600.0
    return np.array([x[hour == h].mean() for h in range(24)])


def test_energy_balance_matches_suews_on_its_sample_site(tmp_path: Path) -> None:
    out = tmp_path / "suews.npz"
    run_reference("suews_run.py", str(out), module="supy", timeout=300)
    d = np.load(out)
    ours = _ours(d, d["debug_dqndt"])
    qs = ours["storage"][0] + ours["ground"][0]
    err_qs = np.abs(qs - d["qs"]).sum() / np.abs(d["qs"]).sum()
    assert err_qs <= 0.01, f"storage heat differs from SUEWS' QS by {err_qs:.2%}"

    rmse = {}
    for ours_key, theirs in (("sensible", "qh"), ("latent", "qe")):
        a = _diurnal(ours[ours_key][0], d["time"])
        b = _diurnal(d[theirs], d["time"])
        rmse[ours_key] = float(np.sqrt(np.mean((a - b) ** 2)))
    print(f"SUEWS sample site 22-25 July 2012: storage error {err_qs:.2e}, diurnal RMSE "
          f"QH {rmse['sensible']:.2f} W m-2, QE {rmse['latent']:.2f} W m-2")  # fmt: skip
    assert rmse["sensible"] <= 15.0 and rmse["latent"] <= 15.0, rmse

    # dQ*/dt from our running mean of the same Q* (the model's own way) in place of SUEWS'
    trend = energy.RadiationTrend()
    dq = np.array([trend.update(q, float(d["tstep"])) for q in d["qn_all"]])[-len(d["qn"]) :]
    own = _ours(d, dq)
    qs_own = own["storage"][0] + own["ground"][0]
    err_sum = abs(qs_own.sum() - d["qs"].sum()) / np.abs(d["qs"]).sum()
    err_step = np.abs(qs_own - d["qs"]).sum() / np.abs(d["qs"]).sum()
    print(f"with our dQ*/dt: stored heat over the days {err_sum:.2%}, per step {err_step:.1%}")
    assert err_sum <= 0.01
    # the vegetated and water covers' conductances: closure holds there too
    total = own["sensible"] + own["latent"] + own["storage"] + own["ground"]
    np.testing.assert_allclose(total[0], d["qn"] + d["qf"], atol=1e-9)
