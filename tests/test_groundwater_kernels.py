"""The numba kernels of the ground-water solver against their NumPy/SciPy references."""

from __future__ import annotations

import numpy as np
import pytest

from twin.groundwater import kernels
from twin.groundwater.reference import (
    apply_reference,
    assemble_csr,
    coarsen_reference,
    gs_reference,
    restrict_reference,
    spsolve_reference,
)
from twin.groundwater.solver import MultigridPCG


def random_operator(ny: int, nx: int, seed: int = 0, fixed_west: bool = True):
    """A heterogeneous 5-point operator (log-normal conductances over 3 decades), fixed west edge."""
    rng = np.random.default_rng(seed)
    t = 10.0 ** rng.uniform(-4, -1, (ny, nx))
    cx = 2 * t[:, :-1] * t[:, 1:] / (t[:, :-1] + t[:, 1:])
    cy = 2 * t[:-1, :] * t[1:, :] / (t[:-1, :] + t[1:, :])
    free = np.ones((ny, nx), dtype=np.uint8)
    if fixed_west:
        free[:, 0] = 0
    d = np.zeros((ny, nx))
    d[:, :-1] += cx
    d[:, 1:] += cx
    d[:-1, :] += cy
    d[1:, :] += cy
    d = np.where(free == 1, d, 1.0)
    fx = (free[:, :-1] == 1) & (free[:, 1:] == 1)
    fy = (free[:-1, :] == 1) & (free[1:, :] == 1)
    return d, cx * fx, cy * fy, free


@pytest.mark.parametrize("shape", [(7, 9), (300, 230)])  # serial and parallel paths
def test_operator_and_residual_match_numpy(shape):
    d, cx, cy, _ = random_operator(*shape)
    rng = np.random.default_rng(1)
    x, b = rng.standard_normal(shape), rng.standard_normal(shape)
    out = np.empty(shape)
    kernels.apply_operator(d, cx, cy, x, out)
    ref = apply_reference(d, cx, cy, x)
    assert np.allclose(out, ref, rtol=1e-13, atol=1e-15)
    assert np.allclose(ref.ravel(), assemble_csr(d, cx, cy) @ x.ravel(), rtol=1e-13, atol=1e-15)
    kernels.residual(d, cx, cy, x, b, out)
    assert np.allclose(out, b - ref, rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("shape", [(8, 11), (270, 251)])
def test_red_black_gauss_seidel_matches_numpy(shape):
    d, cx, cy, _ = random_operator(*shape, seed=2)
    rng = np.random.default_rng(3)
    x, b = rng.standard_normal(shape), rng.standard_normal(shape)
    for color in (0, 1):
        got = x.copy()
        kernels.gs_half_sweep(d, cx, cy, got, b, color)
        assert np.allclose(got, gs_reference(d, cx, cy, x, b, color), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("shape", [(9, 13), (12, 16), (301, 260)])
def test_restriction_and_prolongation_match_numpy(shape):
    rng = np.random.default_rng(4)
    r = rng.standard_normal(shape)
    rc = np.empty(((shape[0] + 1) // 2, (shape[1] + 1) // 2))
    kernels.restrict(r, rc)
    assert np.allclose(rc, restrict_reference(r), rtol=1e-13, atol=1e-14)
    free = (rng.random(shape) > 0.1).astype(np.uint8)
    x = np.zeros(shape)
    kernels.prolong_add(rc, free, x, 1.5)
    expected = 1.5 * np.repeat(np.repeat(rc, 2, 0), 2, 1)[: shape[0], : shape[1]] * free
    assert np.allclose(x, expected, rtol=1e-13, atol=1e-14)


@pytest.mark.parametrize("shape", [(9, 13), (16, 10)])
def test_coarse_operator_is_the_galerkin_product(shape):
    d, cx, cy, free = random_operator(*shape, seed=5)
    free[:4, :2] = 0  # a whole aggregate of fixed cells becomes an identity row
    d[:4, :2] = 1.0
    cx[:4, :2] = 0.0
    cy[:4, :2] = 0.0
    dc, cxc, cyc, freec = kernels.coarsen(d, cx, cy, free)
    got = assemble_csr(dc, cxc, cyc).toarray()
    want = coarsen_reference(d, cx, cy, free).toarray()
    assert np.allclose(got, want, rtol=1e-12, atol=1e-15)
    assert np.array_equal(freec.astype(bool), restrict_reference(free.astype(float)) > 0)


@pytest.mark.parametrize("cycle", ["V", "W"])
def test_multigrid_cycle_is_a_symmetric_positive_definite_preconditioner(cycle):
    d, cx, cy, free = random_operator(40, 50, seed=6)
    solver = MultigridPCG(d, cx, cy, free, cycle=cycle)
    assert solver.levels >= 3
    rng = np.random.default_rng(7)
    u, v = (rng.standard_normal(d.shape) * free for _ in range(2))
    mu, mv = solver.precondition(u), solver.precondition(v)
    # symmetry: (u, M v) = (v, M u) up to rounding; positivity: (u, M u) > 0
    assert abs(np.sum(u * mv) - np.sum(v * mu)) <= 1e-10 * abs(np.sum(u * mu))
    assert np.sum(u * mu) > 0 and np.sum(v * mv) > 0


@pytest.mark.parametrize("shape", [(15, 12), (130, 170)])
@pytest.mark.parametrize("cycle", ["V", "W"])
def test_multigrid_cg_agrees_with_scipy_direct_solve(shape, cycle):
    d, cx, cy, free = random_operator(*shape, seed=8)
    rng = np.random.default_rng(9)
    b = rng.standard_normal(shape) * 1e-3
    b[free == 0] = 30.0  # fixed heads
    x, info = MultigridPCG(d, cx, cy, free, cycle=cycle).solve(b, rtol=1e-13)
    ref = spsolve_reference(d, cx, cy, b)
    assert info.converged
    assert np.abs(x - ref).max() <= 1e-8 * np.abs(ref).max()  # stated: 1e-8 relative


def test_threaded_and_serial_solves_agree():
    """The row-chunked prange kernels give the serial answer (only summation order differs)."""
    d, cx, cy, free = random_operator(260, 270, seed=10)  # above the threading threshold
    rng = np.random.default_rng(11)
    b = np.where(free == 1, rng.standard_normal(d.shape) * 1e-3, 30.0)
    x1, i1 = MultigridPCG(d, cx, cy, free, parallel=False).solve(b, rtol=1e-12)
    x2, i2 = MultigridPCG(d, cx, cy, free, parallel=True).solve(b, rtol=1e-12)
    assert i1.converged and i2.converged
    assert np.abs(x1 - x2).max() <= 1e-9 * np.abs(x1).max()
