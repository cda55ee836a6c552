"""The canopy-layer air model (twin.heat.air) against closed forms and its NumPy reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from twin.errors import ConfigError, DataError
from twin.heat import air


def _winds(kind: str, shape: tuple[int, int], rng: np.random.Generator):
    if kind == "calm":
        return 0.0, 0.0
    if kind == "uniform":
        return 1.3, -0.8
    if kind == "uniform-nw":
        return -2.1, 3.3
    return 1.0 + 0.3 * rng.standard_normal(shape), -0.6 + 0.3 * rng.standard_normal(shape)


@pytest.mark.parametrize("boundary", air.BOUNDARIES)
@pytest.mark.parametrize("wind", ["calm", "uniform", "uniform-nw", "varying"])
def test_kernel_matches_reference(boundary: str, wind: str) -> None:
    """numba step_air equals the NumPy/SciPy reference to 1e-11 K (sources, wind, relaxation)."""
    rng = np.random.default_rng(3)
    shape = (37, 53)
    t = 25.0 + rng.standard_normal(shape)
    src = 1e-3 * rng.standard_normal(shape)
    u, v = _winds(wind, shape, rng)
    kw = dict(cell=10.0, dt=240.0, diffusivity=40.0, tau_s=1200.0, boundary=boundary)
    a = air.step_air(t, src, 24.0, u, v, **kw)
    b = air.step_air_reference(t, src, 24.0, u, v, **kw)
    assert np.abs(a - b).max() < 1e-11


@pytest.mark.parametrize("boundary", ["open", "periodic"])
def test_long_shifts_match_reference(boundary: str) -> None:
    """One sub-step sweeping past the whole domain (Courant 75 and -44 on 23 x 31 cells)."""
    rng = np.random.default_rng(4)
    t = 20.0 + rng.standard_normal((23, 31))
    kw = dict(cell=10.0, dt=300.0, diffusivity=0.0, tau_s=None, boundary=boundary)
    a = air.step_air(t, 1e-3, 20.0, 2.5, 1.47, max_courant=100.0, **kw)
    b = air.step_air_reference(t, 1e-3, 20.0, 2.5, 1.47, max_courant=100.0, **kw)
    assert np.abs(a - b).max() < 1e-11
    # a shift by exactly the domain's width and height brings a periodic field back
    back = air.advect(t - 20.0, 31 * 10.0 / 300.0, -23 * 10.0 / 300.0, cell=10.0, dt=300.0,
                      boundary="periodic", max_courant=100.0)  # fmt: skip
    assert np.abs(back - (t - 20.0)).max() < 1e-12


def test_mixing_second_order_in_space() -> None:
    """Gaussian mixing vs the exact 2D solution: the error falls 4x (3.6 to 4.4) per halved cell.

    The O(dt) error of backward Euler is removed by extrapolating two step sizes (2 u(h/2) - u(h)).
    """
    k, s0, t_end, width = 50.0, 60.0, 100.0, 1200.0
    errors = []
    for cell in (20.0, 10.0, 5.0):
        n = int(width / cell)
        x = (np.arange(n) + 0.5) * cell - width / 2
        r2 = x[None, :] ** 2 + x[:, None] ** 2
        theta = np.exp(-r2 / (2 * s0**2))
        s2 = s0**2 + 2 * k * t_end
        exact = s0**2 / s2 * np.exp(-r2 / (2 * s2))
        kw = dict(cell=cell, dt=t_end, diffusivity=k, boundary="periodic")
        coarse = air.diffuse(theta, min_substeps=50, **kw)
        fine = air.diffuse(theta, min_substeps=100, **kw)
        errors.append(np.abs(2 * fine - coarse - exact).max())
    ratios = [errors[0] / errors[1], errors[1] / errors[2]]
    assert all(3.6 < q < 4.4 for q in ratios), (errors, ratios)
    assert errors[-1] < 2e-4  # of a peak of 1


@pytest.mark.parametrize("array_wind", [False, True])  # uniform-shift path and general remap
def test_advection_one_crossing_periodic(array_wind: bool) -> None:
    """A Gaussian blown once across a periodic domain comes back within half a cell, sum kept."""
    ny, nx, cell = 48, 64, 10.0
    u, v = 2.0, 1.5  # one crossing of 640 m and of 480 m both take 320 s
    x = (np.arange(nx) + 0.5) * cell
    y = (np.arange(ny) + 0.5) * cell
    xc, yc = 320.0, 240.0
    theta = np.exp(-((x[None, :] - xc) ** 2 + (y[:, None] - yc) ** 2) / (2 * 40.0**2))
    if array_wind:
        u, v = np.full((ny, nx), u), np.full((ny, nx), v)
    out = theta
    for _ in range(16):  # 16 steps of 20 s, Courant 4 and 3
        out = air.advect(out, u, v, cell=cell, dt=20.0, boundary="periodic")
    w = out / out.sum()
    cx = float((w * x[None, :]).sum())
    cy = float((w * y[:, None]).sum())
    assert abs(cx - xc) < 0.5 * cell and abs(cy - yc) < 0.5 * cell
    assert abs(out.sum() - theta.sum()) < 1e-10 * theta.sum()
    assert out.min() >= -1e-14  # positive


def test_advection_moves_downwind_north_up() -> None:
    """Wind to the north-east moves a warm cell to smaller rows (north) and larger columns."""
    theta = np.zeros((30, 30))
    theta[15, 15] = 1.0
    out = air.advect(theta, 1.0, 1.0, cell=10.0, dt=50.0, boundary="open")
    i, j = np.unravel_index(np.argmax(out), out.shape)
    assert (i, j) == (10, 20)


def test_relaxation_is_exponential() -> None:
    """A uniform field relaxes as T_bg + S tau + (T0 - T_bg - S tau) exp(-t/tau) (to 1e-12 K)."""
    t0, bg, s, tau = 30.0, 20.0, 2e-4, 900.0
    t = np.full((9, 11), t0)
    for step in range(1, 6):
        t = air.step_air(t, s, bg, 3.0, -2.0, cell=10.0, dt=600.0, diffusivity=80.0,
                         tau_s=tau, boundary="periodic")  # fmt: skip
        exact = bg + s * tau + (t0 - bg - s * tau) * math.exp(-600.0 * step / tau)
        assert np.abs(t - exact).max() < 1e-12
    r = air.relax(np.array([1.0]), 0.0, dt=300.0, tau_s=600.0)
    assert abs(r[0] - math.exp(-0.5)) < 1e-15


@pytest.mark.parametrize("steps", [1, 40])  # one huge step (the steady state at once) or many
def test_heated_strip_steady_state(steps: int) -> None:
    """Source q on |x| < a: T - T_bg = q tau [1 - e^(-a/l) cosh(x/l)] inside, q tau sinh(a/l)
    e^(-|x|/l) outside, l = sqrt(K tau); within 0.05 % of q tau."""
    k, tau, q, a, cell = 30.0, 1800.0, 1e-3, 200.0, 10.0
    lam = math.sqrt(k * tau)
    nx = 600  # 6 km periodic: images 26 lambda away
    x = (np.arange(nx) + 0.5) * cell - nx * cell / 2
    src = np.where(np.abs(x) < a, q, 0.0)[None, :].repeat(4, axis=0)
    t = np.full(src.shape, 18.0)
    dt = 1e8 if steps == 1 else 3600.0
    for _ in range(steps):
        t = air.step_air(t, src, 18.0, 0.0, 0.0, cell=cell, dt=dt, diffusivity=k, tau_s=tau,
                         boundary="periodic")  # fmt: skip
    inside = q * tau * (1 - math.exp(-a / lam) * np.cosh(x / lam))
    outside = q * tau * math.sinh(a / lam) * np.exp(-np.abs(x) / lam)
    exact = np.where(np.abs(x) < a, inside, outside)
    assert np.abs(t - 18.0 - exact[None, :]).max() < 5e-4 * q * tau
    assert np.abs(t - t[:1]).max() < 1e-12  # uniform in y


def _plume_exact(x: np.ndarray, k: float, tau: float, q: float, a: float, u: float) -> np.ndarray:
    """Steady K T'' - u T' - T/tau + q [|x| < a] = 0 on a line: the Green's function integrated."""
    root = math.sqrt(u * u + 4 * k / tau)
    mp, mm = (u + root) / (2 * k), (u - root) / (2 * k)

    def part(m: float, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
        return np.where(hi > lo, (np.exp(m * (x - lo)) - np.exp(m * (x - hi))) / m, 0.0)

    left = part(mm, np.full_like(x, -a), np.minimum(x, a))
    right = part(mp, np.maximum(x, -a), np.full_like(x, a))
    return q / (k * (mp - mm)) * (left + right)


def test_heated_strip_in_wind() -> None:
    """Steady plume of a 400 m strip in a 1.03 m/s wind against the exact solution: heat within
    0.1 %, centroid within 2 cells; max error < 12 % of the peak at 600 s steps (2 sub-steps of
    Courant 15.5), < 3.5 % with 8 sub-steps (first order in the sub-step)."""
    k, tau, q, a, cell, u = 30.0, 1800.0, 1e-3, 200.0, 20.0, 1.03
    nx = 1500  # 30 km periodic: the plume (decay length 1.8 km) has died out before it wraps
    x = (np.arange(nx) + 0.5) * cell - nx * cell / 2
    exact = _plume_exact(x, k, tau, q, a, u)
    src = np.where(np.abs(x) < a, q, 0.0)[None, :].repeat(3, axis=0)
    errors = []
    for n in (1, 8):
        t = np.zeros(src.shape)
        for _ in range(60):  # 10 h, 20 tau
            t = air.step_air(t, src, 0.0, u, 0.0, cell=cell, dt=600.0, diffusivity=k, tau_s=tau,
                             boundary="periodic", min_substeps=n)  # fmt: skip
        row = t[0]
        assert abs(row.sum() / exact.sum() - 1.0) < 1e-3
        centroid, centroid_exact = (row * x).sum() / row.sum(), (exact * x).sum() / exact.sum()
        assert abs(centroid - centroid_exact) < 2 * cell
        errors.append(np.abs(row - exact).max() / exact.max())
    assert errors[0] < 0.12 and errors[1] < 0.035 and errors[1] < 0.3 * errors[0], errors


def test_heat_budget_closed() -> None:
    """Closed edges, no relaxation, varying wind: sum of T changes by dt * sum(S) (round-off)."""
    rng = np.random.default_rng(5)
    shape = (41, 57)
    t = 22.0 + rng.standard_normal(shape)
    src = 1e-3 * rng.random(shape)
    u = 2.0 + 0.5 * rng.standard_normal(shape)
    v = -1.0 + 0.5 * rng.standard_normal(shape)
    dt = 300.0
    new = air.step_air(t, src, 20.0, u, v, cell=10.0, dt=dt, diffusivity=60.0, tau_s=None,
                       boundary="closed")  # fmt: skip
    gain = new.sum() - t.sum()
    assert abs(gain - dt * src.sum()) < 1e-11 * abs(t).sum()


def test_stable_and_bounded_for_long_steps_and_strong_wind() -> None:
    """600 s steps at 10 m/s on 10 m cells: no overshoot outside [T_bg, max T0] without sources."""
    rng = np.random.default_rng(7)
    t = 20.0 + 5.0 * rng.random((70, 120))
    out = t
    for _ in range(5):
        out = air.step_air(out, 0.0, 20.0, 10.0 * 0.6, -10.0 * 0.8, cell=10.0, dt=600.0,
                           diffusivity=100.0, tau_s=1800.0, boundary="open")  # fmt: skip
    assert np.isfinite(out).all()
    assert out.min() >= 20.0 - 1e-12 and out.max() <= t.max() + 1e-12


def test_open_inflow_brings_background() -> None:
    """With an open edge the wind blows background air in: far upwind the anomaly is gone."""
    t = np.full((20, 40), 25.0)
    out = air.step_air(t, 0.0, 20.0, 2.0, 0.0, cell=10.0, dt=100.0, diffusivity=0.0,
                       tau_s=None, boundary="open")  # fmt: skip
    assert np.abs(out[:, :20] - 20.0).max() < 1e-12  # 200 m blown in from the west
    assert np.abs(out[:, 21:] - 25.0).max() < 1e-12


def test_substeps_follow_courant_and_divergence() -> None:
    """Sub-steps: Courant <= max_courant; closed edges with wind need Courant <= 1 per sub-step."""
    shape = (10, 10)
    assert air.substeps(1.2, 0.0, shape=shape, cell=10.0, dt=600.0) == 5  # Courant 72 / 16
    assert air.substeps(1.2, 0.0, shape=shape, cell=10.0, dt=600.0, boundary="closed") == 72
    assert air.substeps(0.0, 0.0, shape=shape, cell=10.0, dt=600.0) == 1


def test_bad_input_errors() -> None:
    """Bad settings are ConfigErrors, non-finite fields DataErrors (they would spread in solves)."""
    t = np.zeros((5, 5))
    with pytest.raises(ConfigError, match="boundary"):
        air.step_air(t, 0, 0, 0, 0, cell=10, dt=1, diffusivity=1, tau_s=1, boundary="wall")
    with pytest.raises(ConfigError, match="diffusivity"):
        air.step_air(t, 0, 0, 0, 0, cell=10, dt=1, diffusivity=-1, tau_s=1)
    with pytest.raises(ConfigError, match="source_k_per_s"):
        air.step_air(t, np.zeros((4, 5)), 0, 0, 0, cell=10, dt=1, diffusivity=1, tau_s=1)
    bad = t.copy()
    bad[2, 2] = np.nan
    with pytest.raises(DataError, match="t_air"):
        air.step_air(bad, 0, 0, 0, 0, cell=10, dt=1, diffusivity=1, tau_s=1)
