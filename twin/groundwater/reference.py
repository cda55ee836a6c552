"""Plain NumPy/SciPy references of the numba kernels: the tests and the benchmark compare with these.

They are written for clarity, not speed: a SciPy sparse matrix of the same 5-point operator, a
masked NumPy red-black Gauss-Seidel, aggregation by reshaping, the Galerkin product P^T A P.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla


def assemble_csr(d: np.ndarray, cx: np.ndarray, cy: np.ndarray) -> sp.csr_matrix:
    """The operator ``(d, cx, cy)`` as a SciPy CSR matrix in row-major cell order."""
    ny, nx = d.shape
    idx = np.arange(ny * nx).reshape(ny, nx)
    rows = [idx.ravel()]
    cols = [idx.ravel()]
    vals = [d.ravel()]
    if nx > 1:
        a, b = idx[:, :-1].ravel(), idx[:, 1:].ravel()
        rows += [a, b]
        cols += [b, a]
        vals += [-cx.ravel(), -cx.ravel()]
    if ny > 1:
        a, b = idx[:-1, :].ravel(), idx[1:, :].ravel()
        rows += [a, b]
        cols += [b, a]
        vals += [-cy.ravel(), -cy.ravel()]
    n = ny * nx
    m = sp.coo_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    return m.tocsr()


def apply_reference(d: np.ndarray, cx: np.ndarray, cy: np.ndarray, x: np.ndarray) -> np.ndarray:
    """A x with NumPy slicing."""
    out = d * x
    out[:, :-1] -= cx * x[:, 1:]
    out[:, 1:] -= cx * x[:, :-1]
    out[:-1, :] -= cy * x[1:, :]
    out[1:, :] -= cy * x[:-1, :]
    return out


def gs_reference(
    d: np.ndarray, cx: np.ndarray, cy: np.ndarray, x: np.ndarray, b: np.ndarray, color: int
) -> np.ndarray:
    """One red-black half-sweep with NumPy masks; returns the updated copy of ``x``."""
    x = x.copy()
    ny, nx = x.shape
    ii, jj = np.indices((ny, nx))
    mask = (ii + jj) % 2 == color
    s = b.copy()
    s[:, :-1] += cx * x[:, 1:]
    s[:, 1:] += cx * x[:, :-1]
    s[:-1, :] += cy * x[1:, :]
    s[1:, :] += cy * x[:-1, :]
    x[mask] = s[mask] / d[mask]
    return x


def aggregation(shape: tuple[int, int], free: np.ndarray) -> sp.csr_matrix:
    """The prolongation P of 2 x 2 aggregation: fine free cell -> its aggregate (1), else 0."""
    ny, nx = shape
    nyc, nxc = (ny + 1) // 2, (nx + 1) // 2
    ii, jj = np.indices((ny, nx))
    coarse = (ii // 2) * nxc + (jj // 2)
    keep = free.ravel().astype(bool)
    rows = np.arange(ny * nx)[keep]
    return sp.csr_matrix(
        (np.ones(rows.size), (rows, coarse.ravel()[keep])), shape=(ny * nx, nyc * nxc)
    )


def coarsen_reference(
    d: np.ndarray, cx: np.ndarray, cy: np.ndarray, free: np.ndarray
) -> sp.csr_matrix:
    """The Galerkin coarse matrix P^T A P (aggregates without free cells get a unit diagonal)."""
    p = aggregation(d.shape, free)
    a = assemble_csr(d, cx, cy)
    ac = (p.T @ a @ p).tolil()
    empty = np.asarray(p.sum(axis=0)).ravel() == 0
    for k in np.flatnonzero(empty):
        ac[k, k] = 1.0
    return ac.tocsr()


def restrict_reference(r: np.ndarray) -> np.ndarray:
    """Sums over 2 x 2 aggregates (odd sizes padded with zeros)."""
    ny, nx = r.shape
    padded = np.zeros((ny + ny % 2, nx + nx % 2))
    padded[:ny, :nx] = r
    return padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2).sum(axis=(1, 3))


def spsolve_reference(d: np.ndarray, cx: np.ndarray, cy: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve A x = b with SciPy's sparse direct solver (SuperLU)."""
    a = assemble_csr(d, cx, cy).tocsc()
    return spla.spsolve(a, b.ravel()).reshape(b.shape)
