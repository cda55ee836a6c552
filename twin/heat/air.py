"""Canopy-layer air temperature: mixing, advection by the wind and relaxation to the background.

The air temperature ``T`` (degC, grid (ny, nx), north-up) obeys

    dT/dt = S + K lap(T) - (u, v).grad(T) - (T - T_bg) / tau

with ``S`` the heating of the layer (K/s, the sensible-heat excess over the rural reference
divided by rho cp h), ``K`` the horizontal eddy diffusivity (m2/s), ``(u, v)`` the wind (m/s, u to
the east, v to the north), ``T_bg`` the background (the weather station's air, the air above the
layer) and ``tau`` the time the layer takes to exchange its air with the air above.

Method: the anomaly ``theta = T - T_bg`` is stepped; a model step ``dt`` is split into ``n``
sub-steps ``h = dt / n``, each

1. advection, flux form, by a flux-form semi-Lagrangian remap (Lin & Rood 1996, dimensionally
   split x then y): the flux through a face is the integral of ``theta`` over the distance the
   wind sweeps through it in ``h``, whole cells plus a donor-cell fraction, read from prefix sums
   in O(1) per face. A cell's new content is then the integral over its departure interval, so
   the scheme is conservative, stable at any Courant number, and positive while the wind
   diverges by less than one cell per sub-step (``c_R - c_L <= 1``). For a uniform wind it is an
   exact shift by whole cells plus an upwind fraction, with numerical diffusion of at most
   ``cell^2 / (8 h)`` (0.02 m2/s at 10 m and 600 s), far below ``K``;
2. source, relaxation and mixing together, in one backward-Euler solve whose coefficients are
   chosen so that relaxation is exact for uniform fields and the steady state is the exact
   discrete steady state of ``K lap(theta) - theta / tau + S = 0``:

       (I - K r lap) theta_new = e theta + tau (1 - e) S,   e = exp(-h / tau), r = tau (1 - e)

   (``r = h`` and ``e = 1`` without relaxation). ``(I - K r lap)`` is factored into an x and a
   y tridiagonal solve (locally one-dimensional splitting, exact for fields uniform in one
   direction), each an inverse M-matrix: unconditionally stable, monotone, no oscillations.

With wind, the heat a source adds during a sub-step is laid along the sub-step's path, not only
at its end: the composite trapezoid rule on ``DEPOSITS`` (4) intervals, the part laid at the
start and at the interior points remapped with the air and relaxed with it; in calm air this is
the plain right-hand side above (same budget, same steady state).

The number of sub-steps keeps the Courant number per sub-step at most ``max_courant`` (default
16; the error of a steady plume falls in proportion to it) and the wind's divergence below one
cell per sub-step. Mixing is second order in space, first order in time.

Boundaries: ``open`` (inflow carries the background, outflow leaves with zero gradient, mixing
against the background one cell beyond the edge), ``closed`` (no flux of heat through the edge:
the wind's normal component is zero on the edge faces) or ``periodic``.

Advection acts on the anomaly, so a field at the background stays there whatever the wind's
divergence; the heat content is conserved exactly (round-off) with closed or periodic edges.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numpy.typing import ArrayLike, NDArray

from twin.errors import ConfigError, DataError

BOUNDARIES = ("open", "closed", "periodic")
_OPEN, _CLOSED, _PERIODIC = 0, 1, 2
# Columns per block of the north-south sweeps (rows of a block stay in cache between passes).
_BLOCK = 64
# Default ceiling of the Courant number per sub-step.
MAX_COURANT = 16.0
# Intervals of the trapezoid rule that lays a sub-step's heating along the wind's path.
DEPOSITS = 4


# ---------------------------------------------------------------- checks and sub-steps
def _boundary_code(boundary: str) -> int:
    if boundary not in BOUNDARIES:
        raise ConfigError(
            f"air boundary: expected one of {', '.join(BOUNDARIES)}, got {boundary!r}"
        )
    return BOUNDARIES.index(boundary)


def _positive(name: str, value: float, allow_zero: bool = False) -> float:
    v = float(value)
    if not (v >= 0.0 if allow_zero else v > 0.0):
        raise ConfigError(
            f"air {name}: expected a number {'>= 0' if allow_zero else '> 0'}, got {value!r}"
        )
    return v


def _field(name: str, value: ArrayLike, shape: tuple[int, int]) -> NDArray[np.float64]:
    """A scalar or (ny, nx) array as a float64 (ny, nx) array (scalars broadcast, no copy)."""
    a = np.asarray(value, dtype=np.float64)
    if a.ndim == 0:
        return np.broadcast_to(a, shape)
    if a.shape != shape:
        raise ConfigError(
            f"air {name}: expected a number or an array of shape {shape}, got {a.shape}"
        )
    return a


def _courant(name: str, value: ArrayLike, shape: tuple[int, int], scale: float):
    """Courant numbers of a wind component: a float for a uniform wind, else an (ny, nx) array."""
    a = np.asarray(value, dtype=np.float64)
    if a.ndim == 0:
        if not math.isfinite(float(a)):
            raise ConfigError(f"air {name}: expected a finite wind speed, got {value!r}")
        return float(a) * scale
    a = _field(name, a, shape)
    if not np.isfinite(a).all():
        raise ConfigError(f"air {name}: expected finite wind speeds, got NaN or inf")
    return a * scale


def _finite(t: NDArray, bg: NDArray, src: NDArray) -> None:
    """NaN or inf would spread along whole rows and columns through the implicit solves."""
    for name, a in (("t_air", t), ("t_background", bg), ("source_k_per_s", src)):
        if not np.isfinite(a[(0, 0)] if a.strides == (0, 0) else a).all():
            raise DataError(f"air {name}: expected finite values everywhere, got NaN or inf")


def _divergence(c: float | NDArray[np.float64], axis: int, bc: int) -> float:
    """Largest growth of the Courant number across one cell (right face minus left) along axis."""
    if isinstance(c, float):  # uniform wind: only closed edges make it diverge
        return abs(c) if bc == _CLOSED else 0.0
    cm = np.moveaxis(c, axis, -1)
    inner = 0.5 * (cm[..., :-1] + cm[..., 1:])
    if bc == _OPEN:
        faces = np.concatenate([cm[..., :1], inner, cm[..., -1:]], axis=-1)
    elif bc == _CLOSED:
        z = np.zeros(cm.shape[:-1] + (1,))
        faces = np.concatenate([z, inner, z], axis=-1)
    else:
        w = 0.5 * (cm[..., :1] + cm[..., -1:])
        faces = np.concatenate([w, inner, w], axis=-1)
    return float(np.max(np.diff(faces, axis=-1), initial=0.0))


def substeps(
    u: ArrayLike,
    v: ArrayLike,
    *,
    shape: tuple[int, int],
    cell: float,
    dt: float,
    boundary: str = "open",
    max_courant: float = MAX_COURANT,
) -> int:
    """Sub-steps of a model step: Courant <= max_courant and divergence < 1 cell per sub-step."""
    bc = _boundary_code(boundary)
    cu = _courant("u", u, shape, dt / cell)
    cv = _courant("v", v, shape, -dt / cell)
    c_max = max(float(np.max(np.abs(cu))), float(np.max(np.abs(cv))))
    div = max(_divergence(cu, 1, bc), _divergence(cv, 0, bc))
    n = max(1, math.ceil(c_max / max_courant - 1e-12), math.ceil(div - 1e-12))
    return int(n)


# ---------------------------------------------------------------- numba kernels: advection
@njit(cache=True, inline="always")
def _prefix_at(p, x, n, gl, gr, periodic):
    """Integral of the piecewise-constant row from 0 to x (cells); ghosts gl/gr beyond the edges."""
    if periodic:
        k = math.floor(x / n)
        x = x - k * n
        base = k * p[n]
        if x >= n:
            x -= n
            base += p[n]
    else:
        base = 0.0
        if x < 0.0:
            return x * gl
        if x > n:
            return p[n] + (x - n) * gr
    j = int(x)
    if j >= n:
        j = n - 1
    return base + p[j] + (x - j) * (p[j + 1] - p[j])


@njit(cache=True, inline="always")
def _face_x(c, i, f, n, bc):
    if 0 < f < n:
        return 0.5 * (c[i, f - 1] + c[i, f])
    if bc == 1:
        return 0.0
    if bc == 2:
        return 0.5 * (c[i, n - 1] + c[i, 0])
    return c[i, 0] if f == 0 else c[i, n - 1]


@njit(cache=True, parallel=True)
def _advect_x(theta, cu, bc, out):
    """One x remap: out = theta + F_west - F_east, F the integral over the swept distance."""
    ny, nx = theta.shape
    periodic = bc == 2
    for i in prange(ny):
        p = np.empty(nx + 1)
        p[0] = 0.0
        for j in range(nx):
            p[j + 1] = p[j] + theta[i, j]
        c0 = _face_x(cu, i, 0, nx, bc)
        cn = _face_x(cu, i, nx, nx, bc)
        gl = theta[i, 0]
        gr = theta[i, nx - 1]
        if bc == 0:
            if c0 >= 0.0:
                gl = 0.0
            if cn <= 0.0:
                gr = 0.0
        f_prev = p[0] - _prefix_at(p, 0.0 - c0, nx, gl, gr, periodic)
        for j in range(nx):
            cf = _face_x(cu, i, j + 1, nx, bc)
            f_next = p[j + 1] - _prefix_at(p, j + 1.0 - cf, nx, gl, gr, periodic)
            out[i, j] = theta[i, j] + f_prev - f_next
            f_prev = f_next


@njit(cache=True, inline="always")
def _face_y(c, f, j, n, bc):
    if 0 < f < n:
        return 0.5 * (c[f - 1, j] + c[f, j])
    if bc == 1:
        return 0.0
    if bc == 2:
        return 0.5 * (c[n - 1, j] + c[0, j])
    return c[0, j] if f == 0 else c[n - 1, j]


@njit(cache=True, parallel=True)
def _advect_y(theta, cv, bc, out):
    """One y remap (rows southward), by blocks of columns kept in cache."""
    ny, nx = theta.shape
    periodic = bc == 2
    nb = (nx + _BLOCK - 1) // _BLOCK
    for b in prange(nb):
        j0 = b * _BLOCK
        w = min(_BLOCK, nx - j0)
        p = np.empty((w, ny + 1))
        for jj in range(w):
            p[jj, 0] = 0.0
        for i in range(ny):
            for jj in range(w):
                p[jj, i + 1] = p[jj, i] + theta[i, j0 + jj]
        gl = np.empty(w)
        gr = np.empty(w)
        f_prev = np.empty(w)
        for jj in range(w):
            j = j0 + jj
            c0 = _face_y(cv, 0, j, ny, bc)
            cn = _face_y(cv, ny, j, ny, bc)
            gl[jj] = theta[0, j]
            gr[jj] = theta[ny - 1, j]
            if bc == 0:
                if c0 >= 0.0:
                    gl[jj] = 0.0
                if cn <= 0.0:
                    gr[jj] = 0.0
            f_prev[jj] = -_prefix_at(p[jj], 0.0 - c0, ny, gl[jj], gr[jj], periodic)
        for i in range(ny):
            for jj in range(w):
                j = j0 + jj
                cf = _face_y(cv, i + 1, j, ny, bc)
                pj = p[jj]
                f_next = pj[i + 1] - _prefix_at(pj, i + 1.0 - cf, ny, gl[jj], gr[jj], periodic)
                out[i, j] = theta[i, j] + f_prev[jj] - f_next
                f_prev[jj] = f_next


@njit(cache=True, inline="always")
def _at(theta, src, beta, i, j, ny, nx, periodic):
    """(theta + beta src)[i, j], wrapped (periodic) or 0 beyond the edges (open: background)."""
    if periodic:
        i %= ny
        j %= nx
    elif not (0 <= i < ny and 0 <= j < nx):
        return 0.0
    return theta[i, j] + beta * src[i, j]


@njit(cache=True, parallel=True)
def _shift(theta, src, beta, alpha, cx, cy, periodic, add, out):
    """out (+)= alpha remap(theta + beta src) by a uniform wind: whole-cell shift, upwind fractions.

    Equal to the x then y flux-form remap for a uniform Courant number (cx east, cy south).
    """
    ny, nx = theta.shape
    bx = math.floor(cx)
    by = math.floor(cy)
    fx = cx - bx
    fy = cy - by
    if periodic:
        bx %= nx
        by %= ny
    w0 = alpha * (1.0 - fy) * (1.0 - fx)
    w1 = alpha * (1.0 - fy) * fx
    w2 = alpha * fy * (1.0 - fx)
    w3 = alpha * fy * fx
    lo = max(0, bx + 1)
    hi = min(nx, bx + nx)
    for i in prange(ny):
        i0 = i - by
        i1 = i0 - 1
        inner = i1 >= 0 and i0 < ny
        for j in range(nx):
            j0 = j - bx
            if inner and lo <= j < hi:
                val = (w0 * (theta[i0, j0] + beta * src[i0, j0])
                       + w1 * (theta[i0, j0 - 1] + beta * src[i0, j0 - 1])
                       + w2 * (theta[i1, j0] + beta * src[i1, j0])
                       + w3 * (theta[i1, j0 - 1] + beta * src[i1, j0 - 1]))  # fmt: skip
            else:
                val = (w0 * _at(theta, src, beta, i0, j0, ny, nx, periodic)
                       + w1 * _at(theta, src, beta, i0, j0 - 1, ny, nx, periodic)
                       + w2 * _at(theta, src, beta, i1, j0, ny, nx, periodic)
                       + w3 * _at(theta, src, beta, i1, j0 - 1, ny, nx, periodic))  # fmt: skip
            if add:
                out[i, j] += val
            else:
                out[i, j] = val


# ---------------------------------------------------------------- numba kernels: implicit solves
def _tridiagonal(n: int, r: float, bc: int) -> tuple[NDArray[np.float64], ...]:
    """Thomas coefficients of (I - r D2) on n cells; for periodic also the Sherman-Morrison terms.

    Returns (cp, inv, z, qz): forward d'_k = (d_k + r d'_{k-1}) inv_k, back
    x_k = d'_k - cp_k x_{k+1}; periodic: x = y - (y_0 + qz_0 y_{n-1}) / qz_1 * z.
    """
    if bc == _PERIODIC and n < 3:
        raise ConfigError(
            f"air boundary periodic: expected at least 3 cells per direction, got {n}"
        )
    return _tridiagonal_terms(n, float(r), bc)


@njit(cache=True)
def _tridiagonal_terms(n, r, bc):
    b = np.full(n, 1.0 + 2.0 * r)
    if bc == 1:
        b[0] -= r
        b[n - 1] -= r
    gamma = -b[0]
    if bc == 2:
        b[0] -= gamma
        b[n - 1] -= r * r / gamma
    cp = np.empty(n)
    inv = np.empty(n)
    prev = 0.0
    for k in range(n):
        inv[k] = 1.0 / (b[k] + r * prev)
        prev = -r * inv[k]
        cp[k] = prev
    z = np.zeros(n)
    qz = np.array([0.0, 1.0])
    if bc == 2:
        z[0] = gamma * inv[0]
        for k in range(1, n):
            u = -r if k == n - 1 else 0.0
            z[k] = (u + r * z[k - 1]) * inv[k]
        for k in range(n - 2, -1, -1):
            z[k] -= cp[k] * z[k + 1]
        qz[0] = -r / gamma
        qz[1] = 1.0 + z[0] + qz[0] * z[n - 1]
    return cp, inv, z, qz


@njit(cache=True, parallel=True)
def _solve_x(theta, src, e, s, r, cp, inv, z, qz, periodic, out):
    """out = (I - r D2x)^-1 (e theta + s src), rows in blocks of 8 (hides recurrence latency)."""
    ny, nx = theta.shape
    nb = (ny + 7) // 8
    for b in prange(nb):
        i0 = b * 8
        i1 = min(ny, i0 + 8)
        for i in range(i0, i1):
            out[i, 0] = (e * theta[i, 0] + s * src[i, 0]) * inv[0]
        for k in range(1, nx):
            for i in range(i0, i1):
                out[i, k] = (e * theta[i, k] + s * src[i, k] + r * out[i, k - 1]) * inv[k]
        for k in range(nx - 2, -1, -1):
            for i in range(i0, i1):
                out[i, k] -= cp[k] * out[i, k + 1]
        if periodic:
            for i in range(i0, i1):
                f = (out[i, 0] + qz[0] * out[i, nx - 1]) / qz[1]
                for k in range(nx):
                    out[i, k] -= f * z[k]


@njit(cache=True, parallel=True)
def _solve_y(x, r, cp, inv, z, qz, periodic):
    """x = (I - r D2y)^-1 x in place, by blocks of columns."""
    ny, nx = x.shape
    nb = (nx + _BLOCK - 1) // _BLOCK
    for b in prange(nb):
        j0 = b * _BLOCK
        j1 = min(nx, j0 + _BLOCK)
        for j in range(j0, j1):
            x[0, j] *= inv[0]
        for k in range(1, ny):
            for j in range(j0, j1):
                x[k, j] = (x[k, j] + r * x[k - 1, j]) * inv[k]
        for k in range(ny - 2, -1, -1):
            for j in range(j0, j1):
                x[k, j] -= cp[k] * x[k + 1, j]
        if periodic:
            for j in range(j0, j1):
                f = (x[0, j] + qz[0] * x[ny - 1, j]) / qz[1]
                for k in range(ny):
                    x[k, j] -= f * z[k]


@njit(cache=True, parallel=True)
def _relax(theta, src, e, s, out):
    """out = e theta + s src (exact relaxation and source over a sub-step, no mixing)."""
    ny, nx = theta.shape
    for i in prange(ny):
        for j in range(nx):
            out[i, j] = e * theta[i, j] + s * src[i, j]


# ---------------------------------------------------------------- public operators
def _coefficients(h: float, tau_s: float | None) -> tuple[float, float, float]:
    """(e, s, r) of one sub-step h: e theta + s S on the right, r the implicit mixing time."""
    if tau_s is None or not math.isfinite(tau_s):
        return 1.0, h, h
    e = math.exp(-h / tau_s)
    s = -tau_s * math.expm1(-h / tau_s)  # tau (1 - e), accurate for h << tau
    return e, s, s


class _Stepper:
    """Everything of a step that does not depend on the field: sub-steps, Courant, solve terms."""

    def __init__(self, shape, u, v, cell, dt, diffusivity, tau_s, boundary, max_courant, n_min):
        self.bc = _boundary_code(boundary)
        cell = _positive("cell", cell)
        dt = _positive("dt", dt, allow_zero=True)
        k = _positive("diffusivity", diffusivity, allow_zero=True)
        if tau_s is not None:
            tau_s = _positive("tau_s", tau_s)
        _positive("max_courant", max_courant)
        ny, nx = shape
        if ny < 1 or nx < 1:
            raise ConfigError(f"air t_air: expected a 2D grid with cells, got shape {shape}")
        if int(n_min) != n_min or n_min < 1:
            raise ConfigError(f"air min_substeps: expected a whole number >= 1, got {n_min!r}")
        self.n = max(
            int(n_min),
            substeps(
                u, v, shape=shape, cell=cell, dt=dt, boundary=boundary, max_courant=max_courant
            ),
        )
        h = dt / self.n
        self.cu = _courant("u", u, shape, h / cell)
        self.cv = _courant("v", v, shape, -h / cell)
        self.uniform = isinstance(self.cu, float) and isinstance(self.cv, float)
        if self.uniform:
            self.advect = h > 0 and (self.cu != 0.0 or self.cv != 0.0)
        else:
            self.cu = np.broadcast_to(self.cu, shape)  # a float broadcasts without a copy
            self.cv = np.broadcast_to(self.cv, shape)
            self.advect = h > 0 and bool(np.any(self.cu != 0.0) or np.any(self.cv != 0.0))
        self.e, self.s, r = _coefficients(h, tau_s)
        # With wind, a sub-step's heating is laid down along its path by the composite trapezoid
        # rule on DEPOSITS intervals: s/(2m) at the start (remapped the whole way with the air),
        # s/m at each interior point l/m of the path (remapped by (1 - l/m) of it), the rest at
        # the end; all but the end relax with the air (e). e (s - s_end) + s_end = s, so calm-air
        # results, the heat budget and the steady state are unchanged.
        m = DEPOSITS
        self.s_start = self.s / (2 * m)
        self.s_mid = self.s / m
        self.s_end = self.s - self.e * (self.s - self.s / (2 * m))
        self.rk = k * r / (cell * cell)
        self.mix = self.rk > 0.0
        if self.mix:
            self.tx = _tridiagonal(nx, self.rk, self.bc)
            self.ty = _tridiagonal(ny, self.rk, self.bc)


def step_air(
    t_air: ArrayLike,
    source_k_per_s: ArrayLike,
    t_background: ArrayLike,
    u: ArrayLike,
    v: ArrayLike,
    *,
    cell: float,
    dt: float,
    diffusivity: float,
    tau_s: float | None,
    boundary: str = "open",
    max_courant: float = MAX_COURANT,
    min_substeps: int = 1,
) -> NDArray[np.float64]:
    """Air temperature (degC, (ny, nx)) after ``dt`` s: mixing, advection, heating, relaxation.

    ``source_k_per_s``, ``t_background``, ``u`` and ``v`` are numbers or (ny, nx) arrays;
    ``tau_s=None`` (or inf) switches relaxation off. Stable for any ``dt``; ``min_substeps``
    asks for at least that many sub-steps (accuracy in time: mixing is first order).
    """
    t = np.asarray(t_air, dtype=np.float64)
    if t.ndim != 2:
        raise ConfigError(f"air t_air: expected a 2D (ny, nx) array, got {t.ndim} dimensions")
    shape = t.shape
    bg = _field("t_background", t_background, shape)
    src = _field("source_k_per_s", source_k_per_s, shape)
    _finite(t, bg, src)
    st = _Stepper(shape, u, v, cell, dt, diffusivity, tau_s, boundary, max_courant, min_substeps)
    theta = t - bg
    tmp = np.empty(shape)
    periodic = st.bc == _PERIODIC
    fast = st.uniform and st.bc != _CLOSED
    if st.advect:
        cu, cv = np.broadcast_to(st.cu, shape), np.broadcast_to(st.cv, shape)
        # heating laid at the interior points of a sub-step's path: the same every sub-step
        q = np.multiply(src, st.s_end)
        for ell in range(1, DEPOSITS):
            f = 1.0 - ell / DEPOSITS
            if fast:
                _shift(src, src, 0.0, st.e * st.s_mid, st.cu * f, st.cv * f, periodic, True, q)
            else:
                part, moved = np.empty(shape), np.empty(shape)
                _advect_x(np.ascontiguousarray(src), np.ascontiguousarray(cu * f), st.bc, part)
                _advect_y(part, np.ascontiguousarray(cv * f), st.bc, moved)
                q += (st.e * st.s_mid) * moved
    for _ in range(st.n):
        rhs, s_rhs = src, st.s
        if st.advect:  # the sub-step's heating rides with the wind (see _Stepper)
            rhs, s_rhs = q, 1.0
            if fast:
                _shift(theta, src, st.s_start, 1.0, st.cu, st.cv, periodic, False, tmp)
            else:
                _relax(theta, src, 1.0, st.s_start, tmp)
                _advect_x(tmp, cu, st.bc, theta)
                _advect_y(theta, cv, st.bc, tmp)
            theta, tmp = tmp, theta
        if st.mix:
            cp, inv, z, qz = st.tx
            _solve_x(theta, rhs, st.e, s_rhs, st.rk, cp, inv, z, qz, periodic, tmp)
            cp, inv, z, qz = st.ty
            _solve_y(tmp, st.rk, cp, inv, z, qz, periodic)
        else:
            _relax(theta, rhs, st.e, s_rhs, tmp)
        theta, tmp = tmp, theta
    return theta + bg


def advect(
    theta: ArrayLike,
    u: ArrayLike,
    v: ArrayLike,
    *,
    cell: float,
    dt: float,
    boundary: str = "open",
    max_courant: float = MAX_COURANT,
) -> NDArray[np.float64]:
    """Advection alone of an anomaly field (background 0) over ``dt``, in the model's sub-steps."""
    return step_air(theta, 0.0, 0.0, u, v, cell=cell, dt=dt, diffusivity=0.0, tau_s=None,
                    boundary=boundary, max_courant=max_courant)  # fmt: skip


def diffuse(
    theta: ArrayLike,
    *,
    cell: float,
    dt: float,
    diffusivity: float,
    boundary: str = "open",
    min_substeps: int = 1,
) -> NDArray[np.float64]:
    """Mixing alone (backward-Euler x/y solves, ``min_substeps`` of them) of an anomaly field."""
    return step_air(theta, 0.0, 0.0, 0.0, 0.0, cell=cell, dt=dt, diffusivity=diffusivity,
                    tau_s=None, boundary=boundary, min_substeps=min_substeps)  # fmt: skip


def relax(
    theta: ArrayLike, source_k_per_s: ArrayLike, *, dt: float, tau_s: float | None
) -> NDArray[np.float64]:
    """Heating and relaxation alone: theta e + S tau (1 - e), e = exp(-dt / tau) (exact)."""
    e, s, _ = _coefficients(_positive("dt", dt, allow_zero=True), tau_s)
    return e * np.asarray(theta, dtype=np.float64) + s * np.asarray(source_k_per_s, dtype=float)


# ---------------------------------------------------------------- NumPy reference
def _prefix_at_ref(p, x, n, gl, gr, periodic):
    """Vectorised prefix integral (rows of p: (m, n+1); x, gl, gr broadcast to (m, ...))."""
    if periodic:
        k = np.floor(x / n)
        xr = x - k * n
        base = k * p[:, n : n + 1]
        wrap = xr >= n
        xr = np.where(wrap, xr - n, xr)
        base = base + np.where(wrap, p[:, n : n + 1], 0.0)
    else:
        xr = np.clip(x, 0.0, n)
        base = np.where(x < 0.0, x * gl, 0.0) + np.where(x > n, (x - n) * gr, 0.0)
    j = np.minimum(xr.astype(np.int64), n - 1)
    pj = np.take_along_axis(p, j, axis=1)
    pj1 = np.take_along_axis(p, j + 1, axis=1)
    return base + pj + (xr - j) * (pj1 - pj)


def _advect_rows_ref(theta: NDArray, c: NDArray, bc: int) -> NDArray:
    """Flux-form remap along axis 1 of theta (m, n) with cell Courant numbers c (m, n)."""
    m, n = theta.shape
    p = np.concatenate([np.zeros((m, 1)), np.cumsum(theta, axis=1)], axis=1)
    faces = np.empty((m, n + 1))
    faces[:, 1:n] = 0.5 * (c[:, :-1] + c[:, 1:])
    if bc == _OPEN:
        faces[:, 0], faces[:, n] = c[:, 0], c[:, -1]
    elif bc == _CLOSED:
        faces[:, 0] = faces[:, n] = 0.0
    else:
        faces[:, 0] = faces[:, n] = 0.5 * (c[:, 0] + c[:, -1])
    gl, gr = theta[:, :1].copy(), theta[:, -1:].copy()
    if bc == _OPEN:
        gl[faces[:, :1] >= 0.0] = 0.0
        gr[faces[:, n:] <= 0.0] = 0.0
    pos = np.arange(n + 1.0)[None, :]
    flux = p - _prefix_at_ref(p, pos - faces, n, gl, gr, bc == _PERIODIC)
    return theta + flux[:, :-1] - flux[:, 1:]


def _implicit_ref(rhs: NDArray, rk: float, bc: int) -> NDArray:
    """(I - rk D2)^-1 along axis 1 with a sparse LU (scipy), for every row."""
    from scipy.sparse import diags
    from scipy.sparse.linalg import splu

    n = rhs.shape[1]
    main = np.full(n, 1.0 + 2.0 * rk)
    if bc == _CLOSED:
        main[0] -= rk
        main[-1] -= rk
    a = diags([main, np.full(n - 1, -rk), np.full(n - 1, -rk)], [0, -1, 1], format="lil")
    if bc == _PERIODIC:
        a[0, n - 1] += -rk
        a[n - 1, 0] += -rk
    lu = splu(a.tocsc())
    return lu.solve(np.ascontiguousarray(rhs.T)).T


def step_air_reference(
    t_air: ArrayLike,
    source_k_per_s: ArrayLike,
    t_background: ArrayLike,
    u: ArrayLike,
    v: ArrayLike,
    *,
    cell: float,
    dt: float,
    diffusivity: float,
    tau_s: float | None,
    boundary: str = "open",
    max_courant: float = MAX_COURANT,
    min_substeps: int = 1,
) -> NDArray[np.float64]:
    """NumPy/SciPy reference of :func:`step_air` (same scheme, vectorised, sparse LU solves)."""
    t = np.asarray(t_air, dtype=np.float64)
    shape = t.shape
    bg = _field("t_background", t_background, shape)
    src = _field("source_k_per_s", source_k_per_s, shape)
    _finite(t, bg, src)
    st = _Stepper(shape, u, v, cell, dt, diffusivity, tau_s, boundary, max_courant, min_substeps)
    theta = t - bg
    cu, cv = np.broadcast_to(st.cu, shape).copy(), np.broadcast_to(st.cv, shape).copy()
    for _ in range(st.n):
        s_after = st.s
        if st.advect:
            moved = _advect_rows_ref(theta + st.s_start * src, cu, st.bc)
            moved = _advect_rows_ref(moved.T, cv.T, st.bc).T
            for ell in range(1, DEPOSITS):
                f = 1.0 - ell / DEPOSITS
                part = _advect_rows_ref(np.array(src), cu * f, st.bc)
                moved += st.s_mid * _advect_rows_ref(part.T, cv.T * f, st.bc).T
            theta = moved
            s_after = st.s_end
        theta = st.e * theta + s_after * src
        if st.mix:
            theta = _implicit_ref(theta, st.rk, st.bc)
            theta = _implicit_ref(theta.T, st.rk, st.bc).T
    return theta + bg
