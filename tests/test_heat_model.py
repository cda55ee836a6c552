"""The heat model as a whole, on a window of the Krefeld build around the Ostwall: energy closure
in every cell and step, greening, coupling to traffic and ground water, station outages."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from twin.heat.model import HeatModel
from twin.heat.scenario import build_setup, load_scenario
from twin.heat.surface import COVERS

REPO = Path(__file__).resolve().parents[1]
# 1.6 km x 1.2 km around the Ostwall (the eastern Wall of the old town), 10 m cells
WINDOW = [330000.0, 5688800.0, 331600.0, 5690000.0]


def write_scenario(folder: Path, *, start: str = "2026-07-22T06:00:00Z", end: str = "3h",
                   extra: str = "", readings: str = "none", extent=WINDOW) -> Path:  # fmt: skip
    """A heat-wave scenario on the test window (the shipped one's variants), in ``folder``."""
    shipped = (REPO / "simulations" / "heat-wave.toml").read_text(encoding="utf-8")
    variants = shipped[shipped.index("[variants.greening-ostwall]") :]
    text = f"""
[scenario]
name = "heat-test"
pack = "{REPO / "data" / "krefeld" / "pack.toml"}"
build_dir = "{REPO / "build"}"
start = "{start}"
end = "{end}"
[grid]
extent = {list(extent)}
[readings]
source = "{readings}"
{extra}
{variants}
"""
    path = folder / "heat-test.toml"
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def window_setup(krefeld_build, tmp_path_factory):
    """The set-up of the test window (baseline), built once."""
    path = write_scenario(tmp_path_factory.mktemp("heat"))
    return build_setup(load_scenario(path))


def _run(setup, hours: float, *, inputs: dict | None = None) -> HeatModel:
    m = HeatModel()
    m.initialize({"setup": setup, "record": True})
    for name, value in (inputs or {}).items():
        m.set_value(name, value)
    m.update_until(hours * 3600.0)
    return m


def test_energy_closes_in_every_cell_and_step(window_setup):
    """Q* + QF = QH + QE + storage + ground in every cell at every step, to round-off."""
    m = _run(window_setup, 2.0)
    assert len(m.energy_rows) == 12
    assert m.max_residual < 1e-6  # W m-2, the largest |residual| of any cell in any step
    rows = m.energy_rows
    assert max(abs(r["residual"]) for r in rows) < 1e-9
    # a summer morning: the sun heats the city, the fabric stores heat, the air takes some
    last = rows[-1]
    assert last["net_radiation"] > 200.0 and last["storage"] > 0.0 and last["sensible"] > 0.0
    assert np.isfinite(m.t_air).all() and np.isfinite(m.t_surface).all()


def test_city_is_warmer_than_the_rural_background(window_setup):
    """By midday the sealed city's air is warmer than the forcing's rural air (the urban heat
    island of the air layer); grass and trees are cooler at the surface than roads."""
    m = _run(window_setup, 6.0)
    t_bg = window_setup.forcing.at(window_setup.clock.start.timestamp() + 6 * 3600.0)["t_air_c"]
    assert float(np.mean(m.t_air)) > t_bg + 0.3
    f = m.fractions
    paved = (f[COVERS.index("paved")] > 0.9) & (m.svf > 0.9)
    green = (f[COVERS.index("grass")] + f[COVERS.index("trees")]) > 0.9
    assert paved.sum() > 20 and green.sum() > 20
    assert np.mean(m.t_surface[paved]) > np.mean(m.t_surface[green]) + 2.0


def test_greening_cools_where_applied_and_warms_nowhere(krefeld_build, tmp_path):
    """Trees and unsealing along the Ostwall lower the daytime surface temperature where they are
    planted (mean at least 1 K) and raise it nowhere (tolerances below)."""
    path = write_scenario(tmp_path, start="2026-07-22T08:00:00Z", end="4h")
    sc = load_scenario(path)
    base = _run(build_setup(sc), 4.0)
    green_setup = build_setup(sc.with_variant("greening-ostwall"))
    green = _run(green_setup, 4.0)
    changed = green_setup.changed
    assert changed.sum() > 100
    d = green.t_surface - base.t_surface
    assert float(d[changed].mean()) < -1.0
    # warmer nowhere: 0.05 K in 99.9 % of cells, 0.5 K in any (OHM's hysteresis after a
    # passing crown shadow, see tests/test_heat_run.py)
    assert float(d.max()) <= 0.5 and float(np.mean(d <= 0.05)) >= 0.999
    da = green.t_air - base.t_air
    assert float(da.max()) <= 0.05 and float(da[changed].mean()) < 0.0


def test_more_traffic_on_one_street_warms_only_beside_it(window_setup):
    """Extra waste heat on one street (coupled traffic) warms the air over it and its neighbours,
    and barely the air 500 m away (beyond the mixing length)."""
    base_flux = np.zeros(window_setup.grid.shape)
    extra = base_flux.copy()
    rows = slice(55, 58)  # an east-west band of cells: one street
    extra[rows, 40:120] = 150.0
    a = _run(window_setup, 2.0, inputs={"traffic_heat_flux": base_flux})
    b = _run(window_setup, 2.0, inputs={"traffic_heat_flux": extra})
    d = b.t_air - a.t_air
    # a 30 m strip under mixing over lambda = sqrt(K tau) ~ 230 m warms by ~ q tau a / lambda /
    # (rho cp h) ~ 0.3 K without wind; the easterly carries part of it away
    near = float(d[rows, 40:120].mean())
    assert near > 0.05
    # 500-600 m north of it: less than a tenth of that (e^(-550/230) ~ 0.09 of the strip's)
    assert float(np.abs(d[:5, :]).max()) < 0.1 * near
    assert float(d.min()) > -1e-9  # heat only warms


def test_deeper_water_table_lowers_latent_heat_of_vegetation_only(window_setup):
    """With the water table at 8 m instead of 1 m, vegetated cells evaporate less; fully sealed
    cells do not change their latent heat."""
    shape = window_setup.grid.shape
    wet = _run(window_setup, 3.0, inputs={"depth_to_water": np.full(shape, 1.0)})
    dry = _run(window_setup, 3.0, inputs={"depth_to_water": np.full(shape, 8.0)})
    f = wet.fractions
    veg = (f[COVERS.index("grass")] + f[COVERS.index("trees")]) > 0.8
    sealed = (f[COVERS.index("paved")] + f[COVERS.index("roof")]) > 0.999
    assert veg.sum() > 50 and sealed.sum() > 50
    qe_wet, qe_dry = wet.fluxes["latent"], dry.fluxes["latent"]
    assert float(qe_dry[veg].mean()) < 0.7 * float(qe_wet[veg].mean())
    np.testing.assert_allclose(qe_dry[sealed], qe_wet[sealed], atol=1e-9)


def test_station_readings_pull_the_air_and_an_outage_leaves_the_forcing(window_setup):
    """Readings 2 K above the model at the stations raise the air near them; when every station
    falls silent (NaN) the model goes on on its forcing and counts the step without readings."""
    m = HeatModel()
    m.initialize({"setup": window_setup, "record": True})
    n = len(m.stations["id"])
    assert n >= 2, "the Ostwall window holds climate stations of the pack"
    free = HeatModel()
    free.initialize({"setup": window_setup, "record": True})
    free.update_until(600.0)
    m.set_value("observed_air_temperature", free.get_value("air_temperature_at_stations") + 2.0)
    m.set_value("observation_weight", np.ones(n))
    m.update_until(600.0)
    r, c = m._station_rc
    assert np.all(m.t_air[r, c] - free.t_air[r, c] > 1.0)
    assert m.steps_with_readings == 1
    m.set_value("observed_air_temperature", np.full(n, np.nan))
    m.update_until(1200.0)
    assert m.steps_without_readings == 1 and np.isfinite(m.t_air).all()


def test_numba_kernels_step_the_model_as_their_numpy_references(tmp_path):
    """A small synthetic city (the contract case) stepped four hours around noon with the numba
    kernels and with their NumPy references: the same fields to 1e-6 K."""
    from test_model_contract import _heat

    from twin.core import Clock

    out = []
    for reference in (False, True):
        model, config = _heat(tmp_path)
        model.clock = Clock("2024-06-01T00:00:00Z")
        model.initialize({**config, "reference": reference})
        model.update_until(9 * 3600.0)  # a night, then the morning
        model.update_until(13 * 3600.0)
        out.append(model)
    a, b = out
    assert np.isfinite(a.t_air).all() and float(np.ptp(a.t_surface)) > 5.0
    np.testing.assert_allclose(a.t_air, b.t_air, atol=1e-6)
    np.testing.assert_allclose(a.t_surface, b.t_surface, atol=1e-6)
    np.testing.assert_allclose(a.tmrt, b.tmrt, atol=1e-6, equal_nan=True)
