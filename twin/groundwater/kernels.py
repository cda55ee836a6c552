"""Numba kernels: the 5-point finite-volume operator, red-black Gauss-Seidel, grid transfer, PCG.

The operator is never stored as a sparse matrix. On a grid of ``(ny, nx)`` cells it is three
arrays: ``d`` (ny, nx) the diagonal, ``cx`` (ny, nx-1) the conductance of the face between cells
``(i, j)`` and ``(i, j+1)``, ``cy`` (ny-1, nx) that between ``(i, j)`` and ``(i+1, j)``, so

    (A x)[i, j] = d[i, j] x[i, j] - sum over the four faces of c_face * x[neighbour].

Cells that are not free (fixed head, inactive) are identity rows: ``d = 1`` and every face that
touches them is zero in ``cx``/``cy`` (their pull on free neighbours sits in the neighbours' ``d``
and right-hand side). The matrix is then symmetric positive definite and CG applies.

Every kernel works on a range of rows; the ``*_par`` wrappers split rows into chunks over
``prange``. Explicit row loops rather than ``@stencil``: stencil(parallel=True) is often no faster
than serial (numba issues #6456, #2982), while row-chunked prange loops scale with memory bandwidth.
Small grids (coarse levels) run serially, where starting threads would cost more than it saves.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Below this many cells a level runs on one thread.
PAR_MIN_CELLS = 65536
# Rows per parallel chunk are chosen so that every thread gets a few chunks.
_CHUNKS = 64


@njit(cache=True, inline="always")
def _row_bounds(c: int, nchunks: int, ny: int) -> tuple[int, int]:
    size = (ny + nchunks - 1) // nchunks
    i0 = c * size
    return i0, min(ny, i0 + size)


# -- the operator ----------------------------------------------------------------------------


@njit(cache=True)
def apply_rows(d, cx, cy, x, out, i0, i1):
    """out = A x on rows i0..i1-1."""
    ny, nx = x.shape
    for i in range(i0, i1):
        for j in range(nx):
            v = d[i, j] * x[i, j]
            if j > 0:
                v -= cx[i, j - 1] * x[i, j - 1]
            if j < nx - 1:
                v -= cx[i, j] * x[i, j + 1]
            if i > 0:
                v -= cy[i - 1, j] * x[i - 1, j]
            if i < ny - 1:
                v -= cy[i, j] * x[i + 1, j]
            out[i, j] = v


@njit(cache=True, parallel=True)
def apply_par(d, cx, cy, x, out):
    """out = A x (row chunks in parallel)."""
    ny = x.shape[0]
    n = min(_CHUNKS, ny)
    for c in prange(n):
        i0, i1 = _row_bounds(c, n, ny)
        apply_rows(d, cx, cy, x, out, i0, i1)


@njit(cache=True)
def apply_operator(d, cx, cy, x, out, par=True):
    """out = A x, in parallel on large grids when ``par``."""
    if par and x.size >= PAR_MIN_CELLS:
        apply_par(d, cx, cy, x, out)
    else:
        apply_rows(d, cx, cy, x, out, 0, x.shape[0])


@njit(cache=True)
def residual_rows(d, cx, cy, x, b, out, i0, i1):
    """out = b - A x on rows i0..i1-1."""
    ny, nx = x.shape
    for i in range(i0, i1):
        for j in range(nx):
            v = b[i, j] - d[i, j] * x[i, j]
            if j > 0:
                v += cx[i, j - 1] * x[i, j - 1]
            if j < nx - 1:
                v += cx[i, j] * x[i, j + 1]
            if i > 0:
                v += cy[i - 1, j] * x[i - 1, j]
            if i < ny - 1:
                v += cy[i, j] * x[i + 1, j]
            out[i, j] = v


@njit(cache=True, parallel=True)
def residual_par(d, cx, cy, x, b, out):
    """out = b - A x (row chunks in parallel)."""
    ny = x.shape[0]
    n = min(_CHUNKS, ny)
    for c in prange(n):
        i0, i1 = _row_bounds(c, n, ny)
        residual_rows(d, cx, cy, x, b, out, i0, i1)


@njit(cache=True)
def residual(d, cx, cy, x, b, out, par=True):
    """out = b - A x, in parallel on large grids when ``par``."""
    if par and x.size >= PAR_MIN_CELLS:
        residual_par(d, cx, cy, x, b, out)
    else:
        residual_rows(d, cx, cy, x, b, out, 0, x.shape[0])


# -- red-black Gauss-Seidel ------------------------------------------------------------------


@njit(cache=True)
def gs_rows(d, cx, cy, x, b, color, i0, i1):
    """One half-sweep: update the cells with (i + j) % 2 == color on rows i0..i1-1.

    Cells of one colour only read cells of the other colour, so rows can be done in any order.
    Non-free cells (d = 1, no faces) get x = b.
    """
    ny, nx = x.shape
    for i in range(i0, i1):
        for j in range((i + color) & 1, nx, 2):
            s = b[i, j]
            if j > 0:
                s += cx[i, j - 1] * x[i, j - 1]
            if j < nx - 1:
                s += cx[i, j] * x[i, j + 1]
            if i > 0:
                s += cy[i - 1, j] * x[i - 1, j]
            if i < ny - 1:
                s += cy[i, j] * x[i + 1, j]
            x[i, j] = s / d[i, j]


@njit(cache=True, parallel=True)
def gs_par(d, cx, cy, x, b, color):
    """One red-black half-sweep (row chunks in parallel)."""
    ny = x.shape[0]
    n = min(_CHUNKS, ny)
    for c in prange(n):
        i0, i1 = _row_bounds(c, n, ny)
        gs_rows(d, cx, cy, x, b, color, i0, i1)


@njit(cache=True)
def gs_half_sweep(d, cx, cy, x, b, color, par=True):
    """One red-black half-sweep of colour ``color``, in parallel on large grids when ``par``."""
    if par and x.size >= PAR_MIN_CELLS:
        gs_par(d, cx, cy, x, b, color)
    else:
        gs_rows(d, cx, cy, x, b, color, 0, x.shape[0])


# -- grid transfer (2 x 2 aggregation) -------------------------------------------------------


@njit(cache=True)
def restrict_rows(r, rc, ic0, ic1):
    """rc[I, J] = sum of r over the fine cells of aggregate (I, J), for coarse rows ic0..ic1-1."""
    ny, nx = r.shape
    ncx = rc.shape[1]
    for ic in range(ic0, ic1):
        i = 2 * ic
        two_rows = i + 1 < ny
        for jc in range(ncx):
            j = 2 * jc
            s = r[i, j]
            if j + 1 < nx:
                s += r[i, j + 1]
            if two_rows:
                s += r[i + 1, j]
                if j + 1 < nx:
                    s += r[i + 1, j + 1]
            rc[ic, jc] = s


@njit(cache=True, parallel=True)
def restrict_par(r, rc):
    """Aggregate sums (coarse row chunks in parallel)."""
    ny = rc.shape[0]
    n = min(_CHUNKS, ny)
    for c in prange(n):
        i0, i1 = _row_bounds(c, n, ny)
        restrict_rows(r, rc, i0, i1)


@njit(cache=True)
def restrict(r, rc, par=True):
    """Sum fine values into their 2 x 2 aggregates."""
    if par and r.size >= PAR_MIN_CELLS:
        restrict_par(r, rc)
    else:
        restrict_rows(r, rc, 0, rc.shape[0])


@njit(cache=True)
def prolong_rows(xc, free, x, alpha, i0, i1):
    """x[i, j] += alpha * xc[i // 2, j // 2] on free fine cells of rows i0..i1-1."""
    nx = x.shape[1]
    for i in range(i0, i1):
        ic = i // 2
        for j in range(nx):
            if free[i, j]:
                x[i, j] += alpha * xc[ic, j // 2]


@njit(cache=True, parallel=True)
def prolong_par(xc, free, x, alpha):
    """Piecewise-constant prolongation (row chunks in parallel)."""
    ny = x.shape[0]
    n = min(_CHUNKS, ny)
    for c in prange(n):
        i0, i1 = _row_bounds(c, n, ny)
        prolong_rows(xc, free, x, alpha, i0, i1)


@njit(cache=True)
def prolong_add(xc, free, x, alpha, par=True):
    """Add the coarse correction (scaled by ``alpha``) to the free fine cells."""
    if par and x.size >= PAR_MIN_CELLS:
        prolong_par(xc, free, x, alpha)
    else:
        prolong_rows(xc, free, x, alpha, 0, x.shape[0])


@njit(cache=True)
def coarsen(d, cx, cy, free):
    """Galerkin coarse operator P^T A P for 2 x 2 piecewise-constant aggregation of free cells.

    It is again a 5-point operator: a coarse face's conductance is the sum of the fine faces it
    contains, a coarse diagonal is the sum of the free fine diagonals minus twice the faces
    inside the aggregate. Aggregates without a free cell become identity rows.
    """
    ny, nx = d.shape
    nyc = (ny + 1) // 2
    nxc = (nx + 1) // 2
    dc = np.zeros((nyc, nxc))
    cxc = np.zeros((nyc, max(nxc - 1, 0)))
    cyc = np.zeros((max(nyc - 1, 0), nxc))
    freec = np.zeros((nyc, nxc), dtype=np.uint8)
    for i in range(ny):
        ic = i // 2
        for j in range(nx):
            jc = j // 2
            if free[i, j]:
                dc[ic, jc] += d[i, j]
                freec[ic, jc] = 1
            if j < nx - 1:
                c = cx[i, j]
                if (j + 1) // 2 == jc:
                    dc[ic, jc] -= 2.0 * c
                else:
                    cxc[ic, jc] += c
            if i < ny - 1:
                c = cy[i, j]
                if (i + 1) // 2 == ic:
                    dc[ic, jc] -= 2.0 * c
                else:
                    cyc[ic, jc] += c
    for ic in range(nyc):
        for jc in range(nxc):
            if not freec[ic, jc]:
                dc[ic, jc] = 1.0
    return dc, cxc, cyc, freec


# -- vector helpers --------------------------------------------------------------------------


@njit(cache=True, parallel=True)
def _dot_par(a, b):
    ny = a.shape[0]
    n = min(_CHUNKS, ny)
    total = 0.0
    for c in prange(n):
        i0, i1 = _row_bounds(c, n, ny)
        s = 0.0
        for i in range(i0, i1):
            for j in range(a.shape[1]):
                s += a[i, j] * b[i, j]
        total += s
    return total


@njit(cache=True)
def dot(a, b, par=True):
    """Sum of a * b over all cells."""
    if par and a.size >= PAR_MIN_CELLS:
        return _dot_par(a, b)
    s = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            s += a[i, j] * b[i, j]
    return s


@njit(cache=True, parallel=True)
def _absmax_par(a):
    ny = a.shape[0]
    n = min(_CHUNKS, ny)
    part = np.zeros(n)
    for c in prange(n):
        i0, i1 = _row_bounds(c, n, ny)
        m = 0.0
        for i in range(i0, i1):
            for j in range(a.shape[1]):
                m = max(m, abs(a[i, j]))
        part[c] = m
    return part.max()


@njit(cache=True)
def absmax(a, par=True):
    """Largest absolute value over all cells."""
    if par and a.size >= PAR_MIN_CELLS:
        return _absmax_par(a)
    m = 0.0
    for i in range(a.shape[0]):
        for j in range(a.shape[1]):
            m = max(m, abs(a[i, j]))
    return m


@njit(cache=True, parallel=True)
def _update_xr_par(x, r, p, q, alpha):
    ny = x.shape[0]
    n = min(_CHUNKS, ny)
    total = 0.0
    for c in prange(n):
        i0, i1 = _row_bounds(c, n, ny)
        s = 0.0
        for i in range(i0, i1):
            for j in range(x.shape[1]):
                x[i, j] += alpha * p[i, j]
                v = r[i, j] - alpha * q[i, j]
                r[i, j] = v
                s += v * v
        total += s
    return total


@njit(cache=True)
def update_xr(x, r, p, q, alpha, par=True):
    """x += alpha p; r -= alpha q; return r . r (one pass over memory)."""
    if par and x.size >= PAR_MIN_CELLS:
        return _update_xr_par(x, r, p, q, alpha)
    s = 0.0
    for i in range(x.shape[0]):
        for j in range(x.shape[1]):
            x[i, j] += alpha * p[i, j]
            v = r[i, j] - alpha * q[i, j]
            r[i, j] = v
            s += v * v
    return s


@njit(cache=True, parallel=True)
def _update_p_par(p, z, beta):
    ny = p.shape[0]
    n = min(_CHUNKS, ny)
    for c in prange(n):
        i0, i1 = _row_bounds(c, n, ny)
        for i in range(i0, i1):
            for j in range(p.shape[1]):
                p[i, j] = z[i, j] + beta * p[i, j]


@njit(cache=True)
def update_p(p, z, beta, par=True):
    """p = z + beta p."""
    if par and p.size >= PAR_MIN_CELLS:
        _update_p_par(p, z, beta)
    else:
        for i in range(p.shape[0]):
            for j in range(p.shape[1]):
                p[i, j] = z[i, j] + beta * p[i, j]


# -- the multigrid cycle and PCG -------------------------------------------------------------


@njit(cache=True, inline="always")
def _level(buf, off, level, shape_y, shape_x):
    ny = shape_y[level]
    nx = shape_x[level]
    start = off[level]
    return buf[start : start + ny * nx].reshape((ny, nx))


@njit(cache=True)
def vcycle(
    ny_l, nx_l, off_c, off_x, off_y, d_all, cx_all, cy_all, free_all, coarse_inv,
    x_all, b_all, t_all, r, z, nu1, nu2, alpha, gamma, par,
):  # fmt: skip
    """z = M r: one symmetric multigrid cycle (V for ``gamma`` = 1, W for 2), from z = 0.

    Pre-smoothing sweeps red then black, post-smoothing black then red (the adjoint order), the
    coarsest level is solved exactly, and a coarse problem visited twice (W-cycle) is two steps
    of a symmetric iteration; so M is symmetric and positive definite (a valid CG
    preconditioner). ``alpha`` scales each coarse correction (over-correction, which
    piecewise-constant prolongation needs). Written as a loop with a visit counter per level
    rather than by recursion: numba cannot load cached recursive functions.
    """
    nlev = ny_l.shape[0]
    last = nlev - 1
    left = np.zeros(nlev, dtype=np.int64)
    z[:, :] = 0.0
    lev = 0
    starting = True
    while True:
        ny = ny_l[lev]
        nx = nx_l[lev]
        if lev == 0:
            x = z
            b = r
        else:
            x = _level(x_all, off_c, lev, ny_l, nx_l)
            b = _level(b_all, off_c, lev, ny_l, nx_l)
        if starting:  # begin a cycle at this level
            if lev == last:  # exact solve: x = A^-1 b
                n = ny * nx
                tmp = t_all[off_c[lev] : off_c[lev] + n]
                for k in range(n):
                    s = 0.0
                    for m in range(n):
                        s += coarse_inv[k, m] * b[m // nx, m % nx]
                    tmp[k] = s
                for k in range(n):
                    x[k // nx, k % nx] = tmp[k]
                starting = False
                continue
            d = _level(d_all, off_c, lev, ny_l, nx_l)
            cx = cx_all[off_x[lev] : off_x[lev] + ny * (nx - 1)].reshape((ny, nx - 1))
            cy = cy_all[off_y[lev] : off_y[lev] + (ny - 1) * nx].reshape((ny - 1, nx))
            t = _level(t_all, off_c, lev, ny_l, nx_l)
            for _ in range(nu1):
                gs_half_sweep(d, cx, cy, x, b, 0, par)
                gs_half_sweep(d, cx, cy, x, b, 1, par)
            residual(d, cx, cy, x, b, t, par)
            restrict(t, _level(b_all, off_c, lev + 1, ny_l, nx_l), par)
            _level(x_all, off_c, lev + 1, ny_l, nx_l)[:, :] = 0.0
            left[lev + 1] = 1 if lev + 1 == last else gamma
            lev += 1
            continue
        # a cycle at level `lev` has finished
        if lev == 0:
            return
        left[lev] -= 1
        if left[lev] > 0:
            starting = True
            continue
        parent = lev - 1
        pny = ny_l[parent]
        pnx = nx_l[parent]
        d = _level(d_all, off_c, parent, ny_l, nx_l)
        cx = cx_all[off_x[parent] : off_x[parent] + pny * (pnx - 1)].reshape((pny, pnx - 1))
        cy = cy_all[off_y[parent] : off_y[parent] + (pny - 1) * pnx].reshape((pny - 1, pnx))
        free = free_all[off_c[parent] : off_c[parent] + pny * pnx].reshape((pny, pnx))
        if parent == 0:
            xp = z
            bp = r
        else:
            xp = _level(x_all, off_c, parent, ny_l, nx_l)
            bp = _level(b_all, off_c, parent, ny_l, nx_l)
        prolong_add(x, free, xp, alpha, par)
        for _ in range(nu2):
            gs_half_sweep(d, cx, cy, xp, bp, 1, par)
            gs_half_sweep(d, cx, cy, xp, bp, 0, par)
        lev = parent


@njit(cache=True)
def pcg(
    ny_l, nx_l, off_c, off_x, off_y, d_all, cx_all, cy_all, free_all, coarse_inv,
    x_all, b_all, t_all, b, x, r, z, p, q, rtol, atol, htol, maxiter, nu1, nu2, alpha, gamma,
    par,
):  # fmt: skip
    """Solve A x = b by CG preconditioned with one multigrid cycle; x holds the start and result.

    Stops when ||b - A x||_2 <= max(rtol * ||b - A x0||_2, atol), or when the preconditioned
    residual z = M r, the multigrid estimate of the remaining error A^-1 r, is at most ``htol``
    in every cell (for heads: a tolerance in metres). Returns (iterations, final residual norm,
    initial residual norm, largest |z|). ``r, z, p, q`` are work arrays shaped like ``b``.
    """
    ny = ny_l[0]
    nx = nx_l[0]
    d = d_all[: ny * nx].reshape((ny, nx))
    cx = cx_all[: ny * (nx - 1)].reshape((ny, nx - 1))
    cy = cy_all[: (ny - 1) * nx].reshape((ny - 1, nx))
    residual(d, cx, cy, x, b, r, par)
    rr = dot(r, r, par)
    r0 = np.sqrt(rr)
    target = max(rtol * r0, atol)
    if r0 <= target:
        return 0, r0, r0, 0.0
    vcycle(ny_l, nx_l, off_c, off_x, off_y, d_all, cx_all, cy_all, free_all, coarse_inv,
           x_all, b_all, t_all, r, z, nu1, nu2, alpha, gamma, par)  # fmt: skip
    zmax = absmax(z, par)
    if zmax <= htol:
        return 0, r0, r0, zmax
    p[:, :] = z
    rz = dot(r, z, par)
    it = 0
    res = r0
    zmax = np.inf
    while it < maxiter:
        it += 1
        apply_operator(d, cx, cy, p, q, par)
        pq = dot(p, q, par)
        if pq <= 0.0:
            break  # the operator is not positive definite on p (cannot happen for valid input)
        a = rz / pq
        rr = update_xr(x, r, p, q, a, par)
        res = np.sqrt(rr)
        if res <= target:
            break
        vcycle(ny_l, nx_l, off_c, off_x, off_y, d_all, cx_all, cy_all, free_all, coarse_inv,
               x_all, b_all, t_all, r, z, nu1, nu2, alpha, gamma, par)  # fmt: skip
        zmax = absmax(z, par)
        if zmax <= htol:
            break
        rz_new = dot(r, z, par)
        update_p(p, z, rz_new / rz, par)
        rz = rz_new
    return it, res, r0, zmax
