"""Surface covers and the surface energy balance (twin/heat/surface.py, twin/heat/energy.py)."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest

from twin.errors import DataError
from twin.heat import energy, surface
from twin.heat.surface import COVERS, PARAMETERS

ROOT = Path(__file__).resolve().parents[1]


def _random_case(rng: np.random.Generator, shape=(13, 17)):
    f = rng.dirichlet(np.full(6, 0.7), size=shape).transpose(2, 0, 1).copy()
    f[:, 0, 0] = [0, 0, 0, 0, 1, 0]  # pure water, paved, grass cells
    f[:, 0, 1] = [1, 0, 0, 0, 0, 0]
    f[:, 0, 2] = [0, 0, 1, 0, 0, 0]
    return dict(
        q_star=rng.uniform(-120, 650, shape),
        dq_star_dt=rng.uniform(-150, 150, shape),
        qf=rng.uniform(0, 120, shape),
        fractions=f,
        t_air_c=rng.uniform(-5, 38, shape),
        rh_percent=rng.uniform(10, 100, shape),
        wind_speed=rng.uniform(0.0, 12, shape),
        water_availability=rng.uniform(0, 1, shape),
        k_down=rng.uniform(0, 950, shape),
        measurement_height=rng.uniform(5, 40, shape),
        displacement_height=rng.uniform(0, 12, shape),
        roughness_length=rng.uniform(0.01, 2.0, shape),
    )


def _unpack(case):
    keys = ("q_star", "dq_star_dt", "qf", "fractions", "t_air_c", "rh_percent", "wind_speed",
            "water_availability")  # fmt: skip
    return [case[k] for k in keys], {k: v for k, v in case.items() if k not in keys}


def test_balance_closes_in_every_cell_on_random_inputs() -> None:
    """Q* + QF = QH + QE + storage + ground to round-off (1e-9 W m-2) in every cell."""
    for seed in range(3):
        args, kw = _unpack(_random_case(np.random.default_rng(seed)))
        out = energy.energy_balance(*args, **kw)
        total = out["sensible"] + out["latent"] + out["storage"] + out["ground"]
        assert np.all(np.isfinite(total))
        assert np.abs(total - (args[0] + args[2])).max() < 1e-9


def test_kernel_matches_numpy_reference() -> None:
    """The numba kernel and the NumPy reference agree to 1e-9 W m-2 (relative 1e-11)."""
    args, kw = _unpack(_random_case(np.random.default_rng(7), shape=(21, 9)))
    a = energy.energy_balance(*args, **kw)
    b = energy.energy_balance_reference(*args, **kw)
    for k in ("storage", "ground", "sensible", "latent"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-11, atol=1e-9, err_msg=k)
    # scalars broadcast like fields
    a = energy.energy_balance(args[0], 12.0, 30.0, args[3], 25.0, 50.0, 3.0, 0.8)
    b = energy.energy_balance_reference(args[0], 12.0, 30.0, args[3], 25.0, 50.0, 3.0, 0.8)
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-11, atol=1e-9, err_msg=k)


def test_kernel_with_fixed_resistance_terms_matches_the_reference() -> None:
    """The model's form: the resistance's fixed parts precomputed once (resistance_terms) give the
    reference's fluxes to 1e-9 W m-2 (relative 1e-11); misshapen terms are refused by name."""
    case = _random_case(np.random.default_rng(5), shape=(17, 11))
    args, kw = _unpack(case)
    f = case["fractions"]
    terms = energy.resistance_terms(kw["measurement_height"], kw["displacement_height"],
                                    kw["roughness_length"], f[2] + f[3])  # fmt: skip
    a = energy.energy_balance(*args, **kw, resistance=terms)
    b = energy.energy_balance_reference(*args, **kw)
    for k in ("storage", "ground", "sensible", "latent"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-11, atol=1e-9, err_msg=k)
    with pytest.raises(DataError, match="resistance term C"):
        energy.energy_balance(*args, **kw, resistance=(terms[0], terms[1][:3]))


def test_kernel_matches_reference_on_sparse_covers_and_partial_fields() -> None:
    """Cells of one or two covers (shares exactly 0 and 1, as the pack's classes give), fields per
    row, per column or of one value: kernel and reference agree to 1e-9 W m-2 (relative 1e-11)."""
    rng = np.random.default_rng(11)
    case = _random_case(rng, shape=(19, 23))
    f = case["fractions"]
    f[rng.uniform(size=f.shape) < 0.6] = 0.0
    f[2, f.sum(axis=0) == 0.0] = 1.0  # cells left without a cover: grass
    f /= f.sum(axis=0)
    case["t_air_c"] = rng.uniform(-5, 38, (19, 1))
    case["wind_speed"] = rng.uniform(0.0, 12, (1, 23))
    case["roughness_length"] = np.array([[0.4]])
    case["water_availability"] = np.float64(0.7)
    args, kw = _unpack(case)
    kw["pressure_hpa"] = rng.uniform(950, 1030, (19, 23))
    a = energy.energy_balance(*args, **kw)
    b = energy.energy_balance_reference(*args, **kw)
    for k in ("storage", "ground", "sensible", "latent"):
        np.testing.assert_allclose(a[k], b[k], rtol=1e-11, atol=1e-9, err_msg=k)
        assert a[k].shape == (19, 23)
    total = a["sensible"] + a["latent"] + a["storage"] + a["ground"]
    assert np.abs(total - (args[0] + args[2])).max() < 1e-9
    with pytest.raises(DataError, match="wind_speed"):
        energy.energy_balance(*args[:6], np.ones((2, 23)), *args[7:], **kw)


def test_storage_and_ground_follow_the_ohm_formula() -> None:
    """storage = sum over paved, roof of f (a1 Q* + a2 dQ*/dt + a3); ground the same over the rest."""
    rng = np.random.default_rng(3)
    args, kw = _unpack(_random_case(rng, shape=(4, 5)))
    q, dq, _, f = args[:4]
    out = energy.energy_balance(*args, **kw)
    for j in range(4):
        for i in range(5):
            qs = [f[c, j, i] * (PARAMETERS[n]["a1"] * q[j, i] + PARAMETERS[n]["a2"] * dq[j, i]
                                + PARAMETERS[n]["a3"]) for c, n in enumerate(COVERS)]  # fmt: skip
            assert out["storage"][j, i] == pytest.approx(qs[0] + qs[1], abs=1e-10)
            assert out["ground"][j, i] == pytest.approx(sum(qs[2:]), abs=1e-10)


def _one(cover: str, **kw):
    f = np.zeros((6, 1, 1))
    f[COVERS.index(cover)] = 1.0
    base = dict(q_star=np.full((1, 1), 450.0), dq_star_dt=20.0, qf=10.0, fractions=f,
                t_air_c=28.0, rh_percent=40.0, wind_speed=3.0, water_availability=1.0,
                k_down=700.0)  # fmt: skip
    base.update(kw)
    k_down = base.pop("k_down")
    return energy.energy_balance(**base, k_down=k_down)


def test_single_cover_cells() -> None:
    """Paved and roofs do not evaporate; open water evaporates by Penman-Monteith with r_s = 0."""
    for cover in ("paved", "roof"):
        out = _one(cover)
        p = PARAMETERS[cover]
        assert out["latent"][0, 0] == 0.0
        assert out["ground"][0, 0] == 0.0
        assert out["storage"][0, 0] == pytest.approx(p["a1"] * 450 + p["a2"] * 20 + p["a3"])
        assert out["sensible"][0, 0] == pytest.approx(460.0 - out["storage"][0, 0])
    water = _one("water")
    p = PARAMETERS["water"]
    avail = 460.0 - (p["a1"] * 450 + p["a2"] * 20 + p["a3"])
    es = 6.1094 * np.exp(17.625 * 28 / (28 + 243.04))
    s = es * 17.625 * 243.04 / (28 + 243.04) ** 2
    gamma = 1005 * 1013.25 / (0.622 * (2.501 - 0.002361 * 28) * 1e6)
    rho = 101325 / (287.04 * 301.15)
    ra = energy.aerodynamic_resistance(3.0, 10.0, 0.0, 0.5, 0.0)
    pm = (s * avail + rho * 1005 * 0.6 * es / ra) / (s + gamma)
    assert water["latent"][0, 0] == pytest.approx(pm, rel=1e-12)
    assert water["storage"][0, 0] == 0.0
    # moist grass at midday: a large latent heat, but below open water's
    grass = _one("grass")
    assert 100.0 < grass["latent"][0, 0] < water["latent"][0, 0]
    # no sun: the stomata close to the minimum conductance
    night = _one("grass", q_star=np.full((1, 1), -60.0), k_down=0.0)
    assert abs(night["latent"][0, 0]) < 5.0


def test_water_availability_lowers_latent_heat_of_vegetation_only() -> None:
    for cover in ("grass", "trees", "bare"):
        wet, dry = _one(cover, water_availability=1.0), _one(cover, water_availability=0.2)
        assert dry["latent"][0, 0] < 0.6 * wet["latent"][0, 0], cover
        assert dry["sensible"][0, 0] > wet["sensible"][0, 0], cover
    for cover in ("paved", "roof", "water"):
        wet, dry = _one(cover, water_availability=1.0), _one(cover, water_availability=0.0)
        assert dry["latent"][0, 0] == wet["latent"][0, 0], cover


def test_water_availability_shape() -> None:
    d = np.array([0.0, 1.0, 2.0, 3.5, 5.0, 8.0, np.inf])
    np.testing.assert_allclose(energy.water_availability(d), [1, 1, 1, 0.5, 0, 0, 0])
    np.testing.assert_allclose(energy.water_availability(d, minimum=0.3)[[0, 3, 6]], [1, 0.65, 0.3])
    w = energy.water_availability(np.linspace(0, 10, 101), full_depth=1.5, extinction_depth=4.0)
    assert np.all(np.diff(w) <= 0) and w[0] == 1 and w[-1] == 0
    with pytest.raises(DataError, match="extinction_depth"):
        energy.water_availability(1.0, full_depth=6.0, extinction_depth=5.0)


def test_building_heat_profile() -> None:
    """The daily mean is mean_w_m2 per roof share; night below day; roofless cells none."""
    roof = np.array([[0.0, 0.5, 1.0]])
    hours = np.arange(0, 24, 0.25)
    q = np.array([energy.building_heat(roof, h, mean_w_m2=20.0) for h in hours])
    np.testing.assert_allclose(q.mean(axis=0), 20.0 * roof[0][None], rtol=1e-12)
    assert np.all(q[:, 0, 0] == 0)
    assert energy.building_heat(1.0, 3.0) < energy.building_heat(1.0, 12.0)
    assert energy.building_heat(1.0, 24.0) == energy.building_heat(1.0, 0.0)
    f = np.zeros((6, 1, 3))
    f[COVERS.index("roof")] = roof
    np.testing.assert_array_equal(energy.building_heat(f, 9.5), energy.building_heat(roof, 9.5))


def test_surface_temperature_inverts_the_bulk_transfer_law() -> None:
    qh = np.array([[-40.0, 0.0, 150.0]])
    ts = energy.surface_temperature(25.0, qh, 2.0, roughness_length=0.3)
    ra = energy.aerodynamic_resistance(2.0, 10.0, 0.0, 0.3, 0.0)
    rho = 101325.0 / (287.04 * 298.15)
    np.testing.assert_allclose(ts - 25.0, qh * ra / (rho * 1005.0))
    assert ts[0, 0] < 25.0 == ts[0, 1] < ts[0, 2]
    # weaker wind, larger resistance, hotter surface for the same sensible heat
    assert energy.surface_temperature(25.0, 150.0, 0.5) > energy.surface_temperature(25.0, 150.0, 5)
    ra = energy.aerodynamic_resistance(np.array([0.0, 1.0, 50.0]))
    assert np.all((ra >= energy.RA_MIN) & (ra <= energy.RA_MAX))


def test_radiation_trend_follows_a_ramp() -> None:
    """A constant Q* gives a rate of 0, a ramp of b W m-2 h-1 a rate of b once spun up."""
    tr = energy.RadiationTrend()
    for _ in range(60):
        rate = tr.update(np.full((2, 2), 300.0), 300.0)
    np.testing.assert_allclose(rate, 0.0, atol=1e-6)
    tr = energy.RadiationTrend()
    for k in range(200):
        rate = tr.update(np.array([[50.0 * k * 300 / 3600]]), 300.0)
    assert rate[0, 0] == pytest.approx(50.0, rel=1e-3)


def _pack_classes():
    doc = tomllib.loads((ROOT / "data" / "krefeld" / "pack.toml").read_text(encoding="utf-8"))
    return doc["layers"]["landcover"]["classes"]


def test_cover_fractions_from_pack_classes() -> None:
    classes = _pack_classes()
    code = {c["name"]: c["code"] for c in classes}
    lc = np.array([[code["building"], code["road"], code["park"], code["water"]],
                   [code["forest"], code["farmland"], code["floodplain_meadow"], code["railway"]],
                   [code["road"], code["urban_yard"], code["residential_garden"], code["plaza"]]],
                  dtype=np.uint8)  # fmt: skip
    bh = np.zeros(lc.shape)
    bh[2, 1] = 12.0  # a building in a yard cell: all roof
    cc = np.zeros(lc.shape)
    cc[2, 0] = 0.5  # half the road cell under crowns
    cc[0, 3] = 0.5  # crowns over water are left out
    f = surface.cover_fractions(lc, classes, bh, cc)
    assert f.shape == (6, 3, 4) and f.dtype == np.float64
    np.testing.assert_allclose(f.sum(axis=0), 1.0, atol=1e-12)
    i = {n: COVERS.index(n) for n in COVERS}
    assert f[i["roof"], 0, 0] == 1.0 and f[i["roof"], 2, 1] == 1.0
    assert f[i["paved"], 0, 1] == pytest.approx(0.95) and f[i["grass"], 0, 1] == pytest.approx(0.05)
    assert f[i["water"], 0, 3] == 1.0
    assert f[i["trees"], 1, 0] == 1.0
    assert f[i["grass"], 1, 1] == pytest.approx(0.7) and f[i["bare"], 1, 1] == pytest.approx(0.3)
    assert f[i["grass"], 1, 2] == 1.0 and f[i["bare"], 1, 3] == pytest.approx(0.6)
    # crowns replace paved and grass in proportion
    assert f[i["trees"], 2, 0] == pytest.approx(0.5)
    assert f[i["paved"], 2, 0] == pytest.approx(0.475) and f[i["grass"], 2, 0] == pytest.approx(
        0.025
    )
    with pytest.raises(DataError, match="99"):
        surface.cover_fractions(np.full((2, 2), 99, np.uint8), classes, np.zeros((2, 2)),
                                np.zeros((2, 2)))  # fmt: skip
    with pytest.raises(DataError, match="same"):
        surface.cover_fractions(lc, classes, np.zeros((2, 2)), cc)


def test_cell_properties_are_cover_weighted() -> None:
    f = np.zeros((6, 1, 2))
    f[COVERS.index("roof"), 0, 0] = 1.0
    f[COVERS.index("grass"), 0, 1] = 0.5
    f[COVERS.index("water"), 0, 1] = 0.5
    alb, emis = surface.cell_properties(f)
    assert alb[0, 0] == PARAMETERS["roof"]["albedo"]
    assert alb[0, 1] == pytest.approx(0.5 * (PARAMETERS["grass"]["albedo"] + 0.10))
    assert emis[0, 1] == pytest.approx(0.5 * (PARAMETERS["grass"]["emissivity"] + 0.95))
    z0, zd = surface.roughness(f, np.full((1, 2), 20.0), np.zeros((1, 2)))
    assert z0[0, 0] == pytest.approx(2.0) and zd[0, 0] == pytest.approx(14.0)
    assert z0[0, 1] == pytest.approx(0.01) and zd[0, 1] == 0.0


def test_implicit_surface_temperature_kernel_and_its_resistance():
    """The numba kernel equals its reference; the resistance rewritten from resistance_terms equals
    aerodynamic_resistance; where the temperature does not change the result is the explicit
    Ts = Ta + QH r_a / (rho cp) of surface_temperature."""
    rng = np.random.default_rng(5)
    shape = (30, 40)
    z0 = rng.uniform(0.01, 3.0, shape)
    zd = rng.uniform(0.0, 20.0, shape)
    z = zd + 10.0
    veg = rng.uniform(0.0, 1.0, shape)
    terms = energy.resistance_terms(z, zd, z0, veg)
    for u in (0.05, 1.3, 6.0):
        lm, c = terms
        uu = max(u, 0.1)
        ra = np.clip(lm * (lm - 2 + c * uu**0.25) / (energy.KARMAN**2 * uu), 10, 120)
        np.testing.assert_allclose(ra, energy.aerodynamic_resistance(u, z, zd, z0, veg), rtol=1e-12)
        ta = rng.uniform(15, 35, shape)
        qh = rng.uniform(-50, 400, shape)
        ts0 = rng.uniform(15, 60, shape)
        emis = rng.uniform(0.9, 0.98, shape)
        got = energy.surface_temperature_implicit(ta, qh, ts0, emis, terms, u, 1005.0)
        ref = energy.surface_temperature_implicit_reference(ta, qh, ts0, emis, terms, u, 1005.0)
        np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-10)
        explicit = energy.surface_temperature(ta, qh, u, measurement_height=z,
                                              displacement_height=zd, roughness_length=z0,
                                              vegetation_fraction=veg, pressure_hpa=1005.0)  # fmt: skip
        fixed = energy.surface_temperature_implicit(ta, qh, explicit, emis, terms, u, 1005.0)
        np.testing.assert_allclose(fixed, explicit, atol=1e-9)
