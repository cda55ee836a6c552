"""The ground-water model against closed-form solutions, SciPy, and its own water budget."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import exp1

from twin.groundwater import Grid, GroundwaterError, Model
from twin.groundwater.reference import spsolve_reference


def centred_grid(n: int, cell: float) -> Grid:
    return Grid(nx=n, ny=n, cell=cell, origin=(-n * cell / 2, -n * cell / 2))


def test_thiem_steady_radial_flow_to_a_well():
    """Drawdown s(r) = Q / (2 pi T) ln(R / r) inside a fixed-head circle of radius R."""
    grid = centred_grid(121, 10.0)
    x, y = grid.centres()
    r = np.hypot(x, y)
    k, b, q, big_r, h0 = 1e-3, 10.0, -0.01, 550.0, 20.0
    m = Model(grid, k=k, top=b, bottom=0.0, confined=True)
    m.set_fixed_head(r >= big_r, h0)
    m.add_well(0.0, 0.0, q)
    h = m.solve_steady()
    i = grid.ny // 2
    for radius in (30.0, 60.0, 100.0, 200.0, 300.0):
        j = grid.nx // 2 + int(radius / grid.cell)
        exact = -q / (2 * np.pi * k * b) * np.log(big_r / r[i, j])
        assert h0 - h[i, j] == pytest.approx(exact, rel=0.015)  # 1.5 % (a staircase circle)


def test_one_dimensional_recharge_between_fixed_heads_is_exact():
    """h(x) = h0 + (h1 - h0) x / L + R x (L - x) / (2 T): the 3-point stencil is exact."""
    n, length = 81, 800.0
    grid = Grid(nx=n, ny=3, cell=length / (n - 1))
    m = Model(grid, k=2e-3, top=15.0, bottom=0.0, confined=True)
    ends = np.zeros(grid.shape, dtype=bool)
    ends[:, [0, -1]] = True
    heads = np.where(np.arange(n) == 0, 10.0, 12.0)[None, :].repeat(3, 0)
    m.set_fixed_head(ends, heads)
    m.set_recharge(5e-9)
    h = m.solve_steady()
    x = np.arange(n) * grid.cell
    exact = 10.0 + 2.0 * x / length + 5e-9 * x * (length - x) / (2 * 2e-3 * 15.0)
    assert np.abs(h - exact).max() <= 1e-8 * 12.0  # 1e-8 relative to the heads


def test_one_dimensional_unconfined_recharge_follows_dupuit():
    """Unconfined: h^2 = h0^2 + (h1^2 - h0^2) x / L + R x (L - x) / K (Dupuit, base at 0 m)."""
    n, length, k, rate = 101, 1000.0, 1e-3, 5e-9
    grid = Grid(nx=n, ny=2, cell=length / (n - 1))
    m = Model(grid, k=k, top=30.0, bottom=0.0, confined=False)
    ends = np.zeros(grid.shape, dtype=bool)
    ends[:, [0, -1]] = True
    m.set_fixed_head(ends, np.where(np.arange(n) == 0, 10.0, 12.0)[None, :].repeat(2, 0))
    m.set_recharge(rate)
    h = m.solve_steady(h0=11.0)
    x = np.arange(n) * grid.cell
    exact = np.sqrt(100.0 + 44.0 * x / length + rate * x * (length - x) / k)
    rise = exact.max() - 10.0
    assert np.abs(h[0] - exact).max() <= 1e-3 * rise  # upstream weighting: O(dx) error < 0.1 %


def test_theis_transient_drawdown():
    """Confined transient drawdown s = Q / (4 pi T) E1(r^2 S / (4 T t)) at several r and t."""
    grid = centred_grid(151, 10.0)
    k, b, ss, q = 1e-3, 10.0, 1e-3, -0.01
    t_, s_ = k * b, ss * b
    m = Model(grid, k=k, top=b, bottom=0.0, ss=ss, confined=True)
    m.add_well(0.0, 0.0, q)
    times = np.concatenate([[0.0], np.geomspace(10.0, 43200.0, 60)])
    heads = dict(m.run(times, 20.0))
    x, y = grid.centres()
    r = np.hypot(x, y)
    i = grid.ny // 2
    for t in times[[30, 45, 60]]:
        for radius in (30.0, 60.0, 100.0, 150.0):
            j = grid.nx // 2 + int(radius / grid.cell)
            exact = -q / (4 * np.pi * t_) * exp1(r[i, j] ** 2 * s_ / (4 * t_ * t))
            # implicit Euler and 10 m cells: within 3 % of the drawdown plus 2 mm
            assert abs((20.0 - heads[t][i, j]) - exact) <= 0.03 * exact + 0.002


def test_steady_system_matches_scipy_sparse_direct_solve():
    """The model's own matrix and right-hand side, solved by SuperLU: 1e-8 relative agreement."""
    grid = Grid(nx=60, ny=45, cell=25.0, origin=(330000.0, 5689000.0))
    rng = np.random.default_rng(3)
    k = 1e-3 * 10 ** rng.normal(0.0, 0.4, grid.shape)
    m = Model(grid, k=k, top=20.0, bottom=-5.0, confined=True)
    west = np.zeros(grid.shape, dtype=bool)
    west[:, 0] = True
    m.set_fixed_head(west, 31.0)
    river = np.zeros(grid.shape, dtype=bool)
    river[:, -3] = True
    m.add_river(river, 28.5, 0.05, 22.0, name="Rhine")
    m.add_well(330700.0, 5689500.0, -0.02)
    m.set_recharge(6e-9)
    # start above the river bed: the system is then linear (the river cells stay connected)
    h = m.solve_steady(h0=30.0)
    h0 = m.initial_head(30.0)
    d, cx, cy = m._matrix(h0, None, None)
    rhs = m._evaluate(h0, None, None, 0.0).residual
    ref = h0 + spsolve_reference(d, cx, cy, rhs)
    assert np.abs(h - ref).max() <= 1e-8 * np.abs(ref).max()


def test_budget_closes_every_step_and_balances_the_packages():
    grid = Grid(nx=40, ny=30, cell=50.0)
    m = Model(grid, k=1e-3, top=30.0, bottom=0.0, ss=1e-4, confined=True)
    west = np.zeros(grid.shape, dtype=bool)
    west[:, 0] = True
    m.set_fixed_head(west, 25.0)
    river = np.zeros(grid.shape, dtype=bool)
    river[:, -2] = True
    m.add_river(river, 24.0, 0.02, 20.0, name="Rhine")
    m.add_well(1000.0, 750.0, -0.03)
    m.set_recharge(8e-9)
    h = m.solve_steady()
    steady = m.budget
    assert abs(steady.error) <= 1e-6 * steady.total
    assert steady.inputs["RCH"] == pytest.approx(8e-9 * grid.area * (grid.size - grid.ny))
    assert steady.outputs["WEL"] == pytest.approx(0.03)
    stages = 24.0 + 0.5 * np.sin(np.arange(1, 31) / 5.0)
    for n, _ in enumerate(m.run(np.arange(1, 31) * 86400.0, h)):
        m.set_river_stage(stages[n], "Rhine")
        b = m.budget
        assert abs(b.error) <= 1e-6 * b.total  # stated: 1e-6 of the total flow, every step
        if n > 0:  # the stage moves from the second step on
            assert b.storage_in + b.storage_out > 0


def test_unconfined_cells_dry_and_rewet_stably():
    """A hillslope whose base rises above the outlet head: a drought dries the upper cells, the
    return of recharge rewets them; heads stay finite and the budget closes every step."""
    grid = Grid(nx=40, ny=6, cell=25.0)
    x, _ = grid.centres()
    bottom = 16.0 * x / x.max()
    m = Model(grid, k=2e-3, top=25.0, bottom=bottom, sy=0.2, confined=False)
    west = np.zeros(grid.shape, dtype=bool)
    west[:, 0] = True
    m.set_fixed_head(west, 10.0)
    m.set_recharge(1e-7)
    h = m.solve_steady(h0=20.0)
    assert not m.dry(h).any()
    m.set_recharge(0.0)
    dry_seen = 0
    for step in range(50):
        if step == 30:
            m.set_recharge(1e-7)
        h = m.step(h, 5 * 86400.0)
        assert np.all(np.isfinite(h))
        assert m.last_solve.converged
        assert abs(m.budget.error) <= 1e-6 * m.budget.total
        if step == 29:
            dry_seen = int(m.dry(h).sum())
    assert dry_seen >= 6  # the upper end fell dry in the drought
    assert not m.dry(h).any()  # and every cell rewet when recharge returned


def test_row_zero_is_south_and_errors_are_clear():
    grid = Grid(nx=20, ny=30, cell=10.0, origin=(1000.0, 2000.0))
    m = Model(grid, k=1e-4, top=10.0, bottom=0.0)
    south = np.zeros(grid.shape, dtype=bool)
    south[0, :] = True
    m.set_fixed_head(south, 5.0)
    m.add_well(1100.0, 2280.0, -1e-4)  # in the north
    h = m.solve_steady()
    i, j = grid.cell_of(1100.0, 2280.0)
    assert i[0] == 28 and h[28, 10] < h[2, 10] < 5.0 + 1e-12
    with pytest.raises(GroundwaterError, match="outside the model grid"):
        m.add_well(0.0, 0.0, -1.0)
    with pytest.raises(GroundwaterError, match="shape"):
        m.set_recharge(np.zeros((3, 3)))
    with pytest.raises(GroundwaterError, match="top must lie above"):
        Model(grid, k=1e-4, top=0.0, bottom=1.0)
