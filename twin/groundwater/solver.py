"""Multigrid-preconditioned conjugate gradients for the 5-point face-conductance operator.

The hierarchy is built by 2 x 2 aggregation with the Galerkin coarse operator, which keeps every
level a 5-point operator (so one set of numba kernels serves all levels); the coarsest level is
inverted densely. One symmetric W-cycle (by default; V on request) with red-black Gauss-Seidel
smoothing and an over-corrected coarse correction preconditions CG. Piecewise-constant
aggregation alone makes a weak V-cycle whose iteration count grows with the grid (45 CG
iterations on 1000 x 1000 cells of the benchmark); the W-cycle visits each coarse level twice,
costs about twice a V-cycle and needs 13 there, nearly independent of the grid size.
Written here rather than taken from a library because SciPy has no multigrid and the point is a
solver that needs no general sparse matrix in the hot path.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from twin.groundwater import kernels
from twin.groundwater.grid import GroundwaterError


@dataclass(frozen=True)
class SolveInfo:
    """What one linear solve did: CG iterations and residual norms (2-norm, m3/s)."""

    iterations: int
    residual: float
    initial_residual: float
    converged: bool
    error_estimate: float = float("nan")  # largest |M r|: the multigrid estimate of the error


def default_parallel() -> bool:
    """Whether kernels use threads: ``TWIN_GW_PARALLEL=1/0`` decides, else 4 or more CPUs.

    On two shared cores threads that wait for each other at every kernel's end can be many times
    slower than one thread (measured: 20x on a loaded 2-core machine), so small machines run serially.
    """
    flag = os.environ.get("TWIN_GW_PARALLEL", "").strip()
    if flag in ("0", "1"):
        return flag == "1"
    return (os.cpu_count() or 1) >= 4


def dense_matrix(d: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> np.ndarray:
    """The operator as a dense ``(n, n)`` matrix (row-major cell order); for small levels only."""
    ny, nx = d.shape
    n = ny * nx
    a = np.zeros((n, n))
    idx = np.arange(n).reshape(ny, nx)
    a[idx.ravel(), idx.ravel()] = d.ravel()
    if nx > 1:
        left, right = idx[:, :-1].ravel(), idx[:, 1:].ravel()
        a[left, right] = -cx.ravel()
        a[right, left] = -cx.ravel()
    if ny > 1:
        low, up = idx[:-1, :].ravel(), idx[1:, :].ravel()
        a[low, up] = -cy.ravel()
        a[up, low] = -cy.ravel()
    return a


class MultigridPCG:
    """CG with a multigrid preconditioner for one operator ``(d, cx, cy, free)``.

    Build once per matrix (cheap: one pass per level), then :meth:`solve` any number of
    right-hand sides. ``free`` marks the unknown cells; the others are identity rows.
    """

    def __init__(
        self,
        d: np.ndarray,
        cx: np.ndarray,
        cy: np.ndarray,
        free: np.ndarray,
        *,
        coarse_cells: int = 64,
        pre_sweeps: int = 1,
        post_sweeps: int = 1,
        over_correction: float = 1.6,
        cycle: str = "W",
        parallel: bool | None = None,
    ) -> None:
        ny, nx = d.shape
        if cx.shape != (ny, max(nx - 1, 0)) or cy.shape != (max(ny - 1, 0), nx):
            raise GroundwaterError(
                f"operator: face arrays of shape {cx.shape} and {cy.shape} do not fit cells "
                f"{d.shape}; expected ({ny}, {nx - 1}) and ({ny - 1}, {nx})"
            )
        levels = [
            (
                np.ascontiguousarray(d, dtype=np.float64),
                np.ascontiguousarray(cx, dtype=np.float64),
                np.ascontiguousarray(cy, dtype=np.float64),
                np.ascontiguousarray(free, dtype=np.uint8),
            )
        ]
        while levels[-1][0].size > coarse_cells and min(levels[-1][0].shape) > 1:
            levels.append(kernels.coarsen(*levels[-1]))
        self.levels = len(levels)
        self.shapes = [lev[0].shape for lev in levels]
        self._ny = np.array([s[0] for s in self.shapes], dtype=np.int64)
        self._nx = np.array([s[1] for s in self.shapes], dtype=np.int64)
        self._off_c = np.concatenate([[0], np.cumsum([lev[0].size for lev in levels])])
        self._off_x = np.concatenate([[0], np.cumsum([lev[1].size for lev in levels])])
        self._off_y = np.concatenate([[0], np.cumsum([lev[2].size for lev in levels])])
        self._d = np.concatenate([lev[0].ravel() for lev in levels])
        self._cx = np.concatenate([lev[1].ravel() for lev in levels])
        self._cy = np.concatenate([lev[2].ravel() for lev in levels])
        self._free = np.concatenate([lev[3].ravel() for lev in levels])
        total = int(self._off_c[-1])
        self._x_all = np.zeros(total)
        self._b_all = np.zeros(total)
        self._t_all = np.zeros(total)
        coarse = dense_matrix(*levels[-1][:3])
        try:
            self._coarse_inv = np.linalg.inv(coarse)
        except np.linalg.LinAlgError:
            raise GroundwaterError(
                "the coarse flow problem is singular: is every connected part of the aquifer "
                "tied to a fixed head, a river or storage?"
            ) from None
        self._work = [np.zeros((ny, nx)) for _ in range(4)]
        self.pre_sweeps = int(pre_sweeps)
        self.post_sweeps = int(post_sweeps)
        self.over_correction = float(over_correction)
        if cycle not in ("V", "W"):
            raise GroundwaterError(f"multigrid cycle: expected 'V' or 'W', got {cycle!r}")
        self.gamma = 1 if cycle == "V" else 2
        self.parallel = default_parallel() if parallel is None else bool(parallel)

    def solve(
        self,
        b: np.ndarray,
        x0: np.ndarray | None = None,
        *,
        rtol: float = 1e-10,
        atol: float = 0.0,
        htol: float = 0.0,
        maxiter: int = 500,
    ) -> tuple[np.ndarray, SolveInfo]:
        """Solve ``A x = b``; stop at ``||b - A x|| <= max(rtol ||b - A x0||, atol)`` or when
        the multigrid estimate of the remaining error is at most ``htol`` in every cell."""
        b = np.ascontiguousarray(b, dtype=np.float64)
        x = np.zeros_like(b) if x0 is None else np.array(x0, dtype=np.float64, copy=True)
        r, z, p, q = self._work
        it, res, r0, zmax = kernels.pcg(
            self._ny, self._nx, self._off_c, self._off_x, self._off_y, self._d, self._cx,
            self._cy, self._free, self._coarse_inv, self._x_all, self._b_all, self._t_all,
            b, x, r, z, p, q, float(rtol), float(atol), float(htol), int(maxiter),
            self.pre_sweeps, self.post_sweeps, self.over_correction, self.gamma, self.parallel,
        )  # fmt: skip
        converged = bool(res <= max(rtol * r0, atol) or zmax <= htol)
        return x, SolveInfo(int(it), float(res), float(r0), converged, float(zmax))

    def precondition(self, r: np.ndarray) -> np.ndarray:
        """One multigrid cycle applied to ``r`` (z = M r), exposed for tests of its symmetry."""
        r = np.ascontiguousarray(r, dtype=np.float64)
        z = np.zeros_like(r)
        kernels.vcycle(
            self._ny, self._nx, self._off_c, self._off_x, self._off_y, self._d, self._cx,
            self._cy, self._free, self._coarse_inv, self._x_all, self._b_all, self._t_all,
            r, z, self.pre_sweeps, self.post_sweeps, self.over_correction, self.gamma, self.parallel,
        )  # fmt: skip
        return z
