"""Assimilation of well readings: the OI formulas, leave-one-out, and a synthetic-truth run."""

from __future__ import annotations

import numpy as np
import pytest

from twin.core import Clock, Coupler
from twin.groundwater import Grid, GroundwaterModel, Model
from twin.groundwater.assimilation import OIConfig, analyse, interpolate, quality_weight


def test_increment_matches_the_oi_formula_written_out():
    grid = Grid(nx=12, ny=9, cell=100.0, origin=(0.0, 0.0))
    heads = np.full(grid.shape, 30.0)
    rng = np.random.default_rng(0)
    x, y = rng.uniform(50, 1150, 6), rng.uniform(50, 850, 6)
    readings = 30.0 + rng.normal(0, 0.3, 6)
    weights = np.array([1.0, 1.0, 0.25, 1.0, 0.0, 1.0])
    cfg = OIConfig(sigma_background=0.4, length=300.0, sigma_observation=0.05)
    a = analyse(grid, heads, x, y, readings, weights, cfg)
    use = weights > 0
    xo, yo, d = x[use], y[use], readings[use] - 30.0
    b = np.array([[0.16 * np.exp(-np.hypot(xi - xj, yi - yj) / 300.0) for xj, yj in zip(xo, yo, strict=True)]
                  for xi, yi in zip(xo, yo, strict=True)])  # fmt: skip
    r = np.diag(0.05**2 / weights[use])
    gx, gy = grid.centres()
    bgo = 0.16 * np.exp(-np.hypot(gx[..., None] - xo, gy[..., None] - yo) / 300.0)
    want = bgo @ np.linalg.solve(b + r, d)
    assert np.allclose(a.increment, want, rtol=1e-10, atol=1e-12)
    assert a.n_used == 5 and not a.used[4]
    assert a.rmse_after < a.rmse_before


def test_leave_one_out_closed_form_equals_refitting_without_each_reading():
    grid = Grid(nx=10, ny=10, cell=100.0)
    rng = np.random.default_rng(1)
    x, y = rng.uniform(0, 1000, 8), rng.uniform(0, 1000, 8)
    readings = 25.0 + rng.normal(0, 0.2, 8)
    cfg = OIConfig(sigma_background=0.3, length=400.0, sigma_observation=0.03, kernel="gaussian")
    full = analyse(grid, np.full(grid.shape, 25.0), x, y, readings, np.ones(8), cfg)
    d = readings - 25.0
    for k in range(8):
        others = np.arange(8) != k
        dist = np.hypot(x[:, None] - x[None, :], y[:, None] - y[None, :])
        s = 0.09 * cfg.correlation(dist) + np.eye(8) * 0.03**2
        pred = s[k, others] @ np.linalg.solve(s[np.ix_(others, others)], d[others])
        assert full.loo_residuals[k] == pytest.approx(pred - d[k], rel=1e-8, abs=1e-12)


def test_quality_flags_and_gross_errors():
    assert quality_weight("good") == 1.0 and quality_weight("bad") == 0.0
    assert quality_weight(" Suspect ") == 0.25 and quality_weight("0.5") == 0.5
    with pytest.raises(Exception, match="quality"):
        quality_weight("excellent")
    grid = Grid(nx=5, ny=5, cell=100.0)
    a = analyse(grid, np.full(grid.shape, 10.0), [250.0, 260.0], [250.0, 100.0],
                [10.1, 25.0], [1.0, 1.0])  # fmt: skip
    assert a.used.tolist() == [True, False]  # 15 m off is refused as a gross error


def _synthetic(factor: float) -> Model:
    grid = Grid(nx=40, ny=30, cell=100.0, origin=(330000.0, 5689000.0))
    rng = np.random.default_rng(5)
    k = 1e-3 * 10 ** (0.2 * rng.standard_normal(grid.shape))
    m = Model(grid, k=k, top=40.0, bottom=5.0, sy=0.18, confined=False)
    west = np.zeros(grid.shape, dtype=bool)
    west[:, 0] = True
    m.set_fixed_head(west, 32.0)
    river = np.zeros(grid.shape, dtype=bool)
    river[:, -3:-1] = True
    m.add_river(river, 28.5, 0.05, 22.0, name="Rhine")
    m.add_well(331500.0, 5690500.0, -0.05, name="waterworks")
    m.set_recharge(8e-9 * factor)
    return m


def test_assimilation_reduces_error_at_withheld_wells():
    """Truth: 60 % more recharge than the model assumes. Readings at 30 wells are assimilated
    each day; 10 other wells are withheld. After 20 days the assimilated state must be closer
    to the truth at the withheld wells than the free run: RMSE at most half of it."""
    truth, model = _synthetic(1.6), _synthetic(1.0)
    grid = model.grid
    rng = np.random.default_rng(11)
    x = rng.uniform(330100, 333700, 40)
    y = rng.uniform(5689100, 5691900, 40)
    held = np.arange(40) >= 30
    h_true = truth.solve_steady(30.0)
    h_free = model.solve_steady(30.0)
    h = h_free.copy()
    cfg = OIConfig(sigma_background=0.5, length=800.0, sigma_observation=0.02)
    for day in range(1, 21):
        rate = 8e-9 * (1.0 + 0.5 * np.sin(day / 4.0))
        truth.set_recharge(1.6 * rate)
        model.set_recharge(rate)
        h_true = truth.step(h_true, 86400.0)
        h_free = model.step(h_free, 86400.0)
        h = model.step(h, 86400.0)
        obs = interpolate(grid, h_true, x, y) + rng.normal(0, 0.02, 40)
        a = analyse(grid, h, x, y, obs, np.where(held, 0.0, 1.0), cfg)
        h = h + a.increment
        assert a.rmse_after < a.rmse_before
    true_held = interpolate(grid, h_true, x[held], y[held])
    free_err = np.sqrt(np.mean((interpolate(grid, h_free, x[held], y[held]) - true_held) ** 2))
    asm_err = np.sqrt(np.mean((interpolate(grid, h, x[held], y[held]) - true_held) ** 2))
    assert free_err > 0.05  # the free run is visibly wrong
    assert asm_err <= 0.5 * free_err


def test_coupled_model_steps_exchanges_north_up_rasters_and_assimilates():
    model = _synthetic(1.0)
    grid = model.grid
    wells = {"id": np.array(["A", "B"]), "x": np.array([330550.0, 332050.0]),
             "y": np.array([5689550.0, 5691550.0])}  # fmt: skip
    h0 = model.solve_steady(30.0)
    gw = GroundwaterModel()
    coupler = Coupler(Clock("2024-03-01T00:00:00Z", "2024-03-03T00:00:00Z"))
    coupler.add("groundwater", gw, {"model": model, "initial_head": h0, "time_step": 86400.0,
                                    "wells": wells, "terrain": np.full(grid.shape, 38.0)})  # fmt: skip
    assert set(gw.output_names) >= {"head", "depth_to_water", "head_at_wells", "budget_error"}
    coupler.step_to("2024-03-02T00:00:00Z")
    head = gw.get_value("head")
    assert head.shape == grid.shape
    assert np.allclose(head[::-1], gw.head)  # north-up raster out, south-first state inside
    before = gw.get_value("head_at_wells")
    gw.set_value("observed_head", before + 0.5)
    coupler.step_to("2024-03-03T00:00:00Z")
    after = gw.get_value("head_at_wells")
    assert np.all(after > before + 0.3)  # the readings pulled the state up
    assert abs(float(gw.get_value("budget_error"))) <= 1e-6 * model.budget.total
    coupler.close()


def test_coupled_recharge_input_drives_the_model():
    model = _synthetic(1.0)
    h0 = model.solve_steady(30.0)
    gw = GroundwaterModel()
    coupler = Coupler(Clock("2024-03-01T00:00:00Z", "2024-03-11T00:00:00Z"))
    coupler.add("groundwater", gw, {"model": model, "initial_head": h0, "time_step": 86400.0})
    gw.set_value("recharge", np.full(model.grid.shape, 5e-8))  # a wet spell: 6x the recharge
    coupler.run()
    free_cells = model.grid.size - model.grid.ny  # all but the fixed-head west column
    assert model.budget.inputs["RCH"] == pytest.approx(5e-8 * model.grid.area * free_cells)
    assert model.budget.storage_change > 0  # heads rise
    assert np.nanmean(gw.head - h0) > 0.01
