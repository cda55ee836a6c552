"""The ground-water flow model: 2D finite volumes on a regular grid, confined or unconfined.

Discretisation (one aquifer layer, MODFLOW's cell-centred finite volumes): the flow across a face
between two cells is ``C (h_i - h_j)`` with the conductance ``C`` the harmonic mean of the two
cells' transmissivities (square cells, so width / length = 1). Each free cell balances

    sum_faces C (h_n - h) + Q_WEL + R A + C_riv (stage - max(h, r_bot))
        - C_drn max(h - z_drn, 0) = (V(h) - V(h_old)) / dt

(implicit Euler; no storage term in steady state). Fixed-head cells (CHD) and inactive cells
(no-flow) are not unknowns; grid edges are no-flow unless fixed.

Unconfined aquifers (``confined=False``) follow the MODFLOW-NWT / MODFLOW 6 Newton approach to
drying and rewetting without its non-symmetric Jacobian:

* a face's conductance is its saturated conductance times the saturation of the *upstream* cell
  (the one with the higher head), so water can always flow into a dry cell from a wet one;
* saturation ``s = (h - bottom) / (top - bottom)`` is clipped to ``[min_saturation, 1]``, so a
  dry cell keeps a tiny conductance and stays in the equations (no cell is ever removed, and it
  rewets as soon as water arrives: no wetting thresholds to tune);
* storage is ``V(h) = A (Sy * thickness_saturated(h) + Ss * b * max(h - top, 0))``: a dry cell
  holds no water, so its head may fall below the bottom without creating or losing any;
* pumping from a cell whose water table falls into its lowest 10 % is reduced linearly to zero
  (like MODFLOW 6's AUTO_FLOW_REDUCE), so a dry cell is not pumped.

The non-linear equations are solved by Picard iterations in residual form: the symmetric matrix
with the current (lagged) conductances, the river and well derivatives and the storage *chord
slope* (V(h) - V(h_old)) / (h - h_old) is solved for a head change by multigrid-preconditioned
CG. The chord slope, not the derivative, because the derivative jumps from Sy to 0 where a cell
falls dry and the iteration would swing across that kink. Cells whose change flips sign between
iterations are under-relaxed (MODFLOW's delta-bar-delta idea) and the whole step is halved while
it makes the residual grow (backtracking). Unconfined iterations stop when the summed absolute
residual is below ``rclose`` of the total flow and the head change below ``hclose``. A confined
model is linear: CG runs until the multigrid estimate of the remaining head error is below
``hclose / 1000`` in every cell, and the solve is repeated more tightly while the water budget
error exceeds ``rclose`` of the total flow. The budget is evaluated with the final heads, so its
error is the true remaining imbalance.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from twin.groundwater.budget import Budget
from twin.groundwater.grid import Grid, GroundwaterError
from twin.groundwater.solver import MultigridPCG, SolveInfo

FREE, FIXED, INACTIVE = 1, 2, 0
# Share of the cell thickness over which pumping is reduced to zero as the cell falls dry.
WELL_REDUCTION_SHARE = 0.1


@dataclass(frozen=True)
class Well:
    """A pumping or injection well: position (EPSG:25832 m), cell and rate (m3/s, < 0 pumps)."""

    name: str
    x: float
    y: float
    row: int
    col: int
    rate: float


@dataclass
class _River:
    """The cells of one river (RIV package entry)."""

    rows: np.ndarray
    cols: np.ndarray
    conductance: np.ndarray
    stage: np.ndarray
    bottom: np.ndarray


@dataclass
class _Drain:
    """The cells of one drain (DRN package entry): outflow C (h - elevation) when h > elevation."""

    rows: np.ndarray
    cols: np.ndarray
    conductance: np.ndarray
    elevation: np.ndarray


@dataclass(frozen=True)
class SolveReport:
    """How a steady solve or a time step converged."""

    outer_iterations: int
    inner_iterations: int
    converged: bool
    residual: float
    max_change: float


@dataclass
class _State:
    """Everything evaluated at one head field: the residual and the package flows."""

    residual: np.ndarray
    budget: Budget


def _harmonic(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    s = a + b
    out = np.zeros_like(s)
    np.divide(2.0 * a * b, s, out=out, where=s > 0)
    return out


class Model:
    """A single-layer ground-water flow model on a :class:`Grid` (arrays ``(ny, nx)``, row 0 south).

    ``k`` hydraulic conductivity (m/s), ``top`` and ``bottom`` of the aquifer (m a.s.l.), ``ss``
    specific storage (1/m), ``sy`` specific yield (-): scalars or ``(ny, nx)`` arrays. With
    ``confined=True`` the transmissivity is ``k * (top - bottom)`` and the storativity
    ``ss * (top - bottom)``; otherwise heads set the saturated thickness (see the module doc).
    """

    def __init__(
        self,
        grid: Grid,
        *,
        k: float | np.ndarray,
        top: float | np.ndarray,
        bottom: float | np.ndarray,
        ss: float | np.ndarray = 1e-5,
        sy: float | np.ndarray = 0.15,
        confined: bool = True,
        min_saturation: float = 1e-3,
        hclose: float = 1e-5,
        rclose: float = 1e-7,
        max_outer: int = 200,
        max_backtracks: int = 12,
    ) -> None:
        if not isinstance(grid, Grid):
            raise GroundwaterError(f"Model grid: expected a twin.groundwater.Grid, got {grid!r}")
        self.grid = grid
        self.k = grid.field(k, "k")
        self.top = grid.field(top, "top")
        self.bottom = grid.field(bottom, "bottom")
        self.ss = grid.field(ss, "ss")
        self.sy = grid.field(sy, "sy")
        if (self.k < 0).any():
            raise GroundwaterError("k: hydraulic conductivity must be >= 0 m/s everywhere")
        if (self.ss < 0).any() or (self.sy < 0).any() or (self.sy > 1).any():
            raise GroundwaterError("ss must be >= 0 (1/m) and sy between 0 and 1 everywhere")
        thick = self.top - self.bottom
        if (thick <= 0).any():
            i, j = np.argwhere(thick <= 0)[0]
            raise GroundwaterError(
                f"top/bottom: the aquifer top must lie above its bottom; at row {i}, column {j} "
                f"top = {self.top[i, j]:.2f} m, bottom = {self.bottom[i, j]:.2f} m"
            )
        self.thickness = thick
        self.confined = bool(confined)
        if not 0 < min_saturation < 0.5:
            raise GroundwaterError(
                f"min_saturation: expected 0 < value < 0.5, got {min_saturation}"
            )
        self.min_saturation = float(min_saturation)
        self.hclose = float(hclose)
        self.rclose = float(rclose)
        self.max_outer = int(max_outer)
        self.max_backtracks = int(max_backtracks)
        self.kind = np.full(grid.shape, FREE, dtype=np.int8)
        self.fixed_head = np.zeros(grid.shape)
        self.recharge = np.zeros(grid.shape)
        self.wells: list[Well] = []
        self.rivers: dict[str, _River] = {}
        self.drains: dict[str, _Drain] = {}
        self._masks: tuple[np.ndarray, ...] | None = None
        self.budget: Budget | None = None
        self.last_solve: SolveReport | None = None
        self._solver: MultigridPCG | None = None
        self._solver_key: tuple | None = None
        self._update_faces()

    # -- packages --------------------------------------------------------------------------

    def add_well(self, x: float, y: float, rate: float, name: str | None = None) -> Well:
        """Add a well at ``(x, y)`` (EPSG:25832 m) pumping ``rate`` m3/s (negative = pumping)."""
        rate = float(rate)
        if not math.isfinite(rate):
            raise GroundwaterError(f"well rate: expected a finite number of m3/s, got {rate!r}")
        i, j = self.grid.cell_of(x, y)
        well = Well(name or f"well-{len(self.wells) + 1}", float(x), float(y), int(i[0]),
                    int(j[0]), rate)  # fmt: skip
        self.wells.append(well)
        return well

    def set_well_rate(self, name: str, rate: float) -> None:
        """Change the rate (m3/s) of the well called ``name``."""
        for n, w in enumerate(self.wells):
            if w.name == name:
                self.wells[n] = Well(w.name, w.x, w.y, w.row, w.col, float(rate))
                return
        known = ", ".join(w.name for w in self.wells) or "none"
        raise GroundwaterError(f"no well named {name!r}; wells are: {known}")

    def set_fixed_head(self, mask: np.ndarray, head: float | np.ndarray) -> None:
        """Hold the head of the cells in the boolean ``(ny, nx)`` mask at ``head`` (m) (CHD)."""
        mask = self._mask(mask, "fixed-head mask")
        head = self.grid.field(head, "fixed head")
        self.kind[mask] = FIXED
        self.fixed_head[mask] = head[mask]
        self._changed()

    def set_inactive(self, mask: np.ndarray) -> None:
        """Take the cells in the boolean mask out of the model (no flow; heads are NaN)."""
        mask = self._mask(mask, "inactive mask")
        self.kind[mask] = INACTIVE
        self._changed()

    def set_recharge(self, rate: float | np.ndarray) -> None:
        """Recharge in m/s (scalar or ``(ny, nx)``), applied to free cells (RCH)."""
        self.recharge = self.grid.field(rate, "recharge")

    def add_river(
        self,
        mask: np.ndarray,
        stage: float | np.ndarray,
        conductance: float | np.ndarray,
        bottom: float | np.ndarray,
        name: str = "river",
    ) -> None:
        """Make the cells in ``mask`` river cells (RIV): leakage ``C (stage - max(h, bottom))``.

        ``conductance`` (m2/s per cell), ``stage`` and ``bottom`` (m) are scalars or ``(ny, nx)``
        arrays (only the masked cells are read).
        """
        mask = self._mask(mask, "river mask")
        stage_a = self.grid.field(stage, "river stage")
        cond_a = self.grid.field(conductance, "river conductance")
        bot_a = self.grid.field(bottom, "river bottom")
        if (cond_a[mask] < 0).any():
            raise GroundwaterError("river conductance: expected values >= 0 m2/s")
        if (bot_a[mask] > stage_a[mask]).any():
            raise GroundwaterError("river bottom: expected the river bed below the stage")
        rows, cols = np.nonzero(mask)
        self.rivers[name] = _River(
            rows, cols, cond_a[mask].copy(), stage_a[mask].copy(), bot_a[mask].copy()
        )

    def add_drain(
        self,
        mask: np.ndarray,
        elevation: float | np.ndarray,
        conductance: float | np.ndarray,
        name: str = "drain",
    ) -> None:
        """Make the cells in ``mask`` drain cells (DRN): outflow ``C (h - elevation)`` above it.

        A drain at the ground surface lets water seep out where the water table reaches the
        ground, instead of heads rising above it. ``conductance`` in m2/s per cell.
        """
        mask = self._mask(mask, "drain mask")
        elev = self.grid.field(elevation, "drain elevation")
        cond = self.grid.field(conductance, "drain conductance")
        if (cond[mask] < 0).any():
            raise GroundwaterError("drain conductance: expected values >= 0 m2/s")
        rows, cols = np.nonzero(mask)
        self.drains[name] = _Drain(rows, cols, cond[mask].copy(), elev[mask].copy())

    def set_river_stage(self, stage: float | np.ndarray, name: str = "river") -> None:
        """Set the stage (m) of river ``name``: a scalar or one value per river cell."""
        if name not in self.rivers:
            raise GroundwaterError(
                f"no river named {name!r}; rivers are: {', '.join(self.rivers) or 'none'}"
            )
        river = self.rivers[name]
        values = np.broadcast_to(np.asarray(stage, dtype=float), river.stage.shape)
        if not np.all(np.isfinite(values)):
            raise GroundwaterError(f"river {name!r} stage: expected finite numbers")
        river.stage = np.array(values)

    # -- solving ---------------------------------------------------------------------------

    def initial_head(self, h0: float | np.ndarray | None = None) -> np.ndarray:
        """A head array to start from: ``h0`` or mid-aquifer, with fixed heads put in place."""
        if h0 is None:
            h = self.bottom + (0.5 if self.confined else 0.75) * self.thickness
        else:
            h = self.grid.field(h0, "initial head")
        fixed = self.kind == FIXED
        h[fixed] = self.fixed_head[fixed]
        return h

    def solve_steady(self, h0: float | np.ndarray | None = None) -> np.ndarray:
        """The steady-state heads ``(ny, nx)`` in m; inactive cells are NaN."""
        h = self._solve(self.initial_head(h0), None, None, time=0.0)
        return self._output(h)

    def step(self, h: np.ndarray, dt: float, *, time: float | None = None) -> np.ndarray:
        """Advance heads ``h`` by one implicit Euler step of ``dt`` seconds; return new heads."""
        dt = float(dt)
        if not (math.isfinite(dt) and dt > 0):
            raise GroundwaterError(f"time step: expected a positive number of seconds, got {dt}")
        h_old = self.initial_head(np.where(np.isnan(h), self.bottom, h))
        h_new = self._solve(h_old.copy(), h_old, dt, time=dt if time is None else time)
        return self._output(h_new)

    def run(
        self, times: np.ndarray, h0: float | np.ndarray, *, start: float = 0.0
    ) -> Iterator[tuple[float, np.ndarray]]:
        """Yield ``(t, heads)`` at each time in ``times`` (s), stepping implicitly from ``h0``.

        ``h0`` holds at ``start`` (default 0); a time equal to ``start`` yields ``h0`` itself.
        Packages changed between two yields apply from the next step on; ``self.budget`` is
        the budget of the step just taken.
        """
        times = np.asarray(times, dtype=float).ravel()
        if not np.all(np.isfinite(times)) or (np.diff(times) <= 0).any():
            raise GroundwaterError("times: expected strictly increasing finite seconds")
        if times.size and times[0] < start:
            raise GroundwaterError(f"times: the first time {times[0]} s is before start {start}")
        h = self._output(self.initial_head(h0))
        t = float(start)
        for tk in times:
            if tk == t:
                yield t, h.copy()
                continue
            h = self.step(h, tk - t, time=float(tk))
            t = float(tk)
            yield t, h.copy()

    def budget_of(
        self,
        h: np.ndarray,
        h_old: np.ndarray | None = None,
        dt: float | None = None,
        *,
        time: float = 0.0,
    ) -> Budget:
        """The water budget (m3/s per package) of heads ``h`` (after a step from ``h_old``)."""
        h = np.where(np.isnan(h), self.bottom, h)
        if h_old is not None:
            h_old = np.where(np.isnan(h_old), self.bottom, h_old)
        return self._evaluate(h, h_old, dt, time).budget

    def cell_flows(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Flows across the faces (m3/s): east faces ``(ny, nx-1)`` (+ = eastward), north faces
        ``(ny-1, nx)`` (+ = northward)."""
        h = np.where(np.isnan(h), self.bottom, h)
        cx, cy = self._face_conductances(h)
        return cx * (h[:, :-1] - h[:, 1:]), cy * (h[:-1, :] - h[1:, :])

    def dry(self, h: np.ndarray) -> np.ndarray:
        """Boolean mask of cells whose water table is at or below the aquifer bottom."""
        if self.confined:
            return np.zeros(self.grid.shape, dtype=bool)
        return (h - self.bottom) <= self.min_saturation * self.thickness

    def copy(self, *, k: float | np.ndarray | None = None) -> Model:
        """An independent copy with all packages, optionally with another conductivity field."""
        other = copy.deepcopy(self)
        other._changed()
        if k is not None:
            other.k = self.grid.field(k, "k")
            if (other.k < 0).any():
                raise GroundwaterError("k: hydraulic conductivity must be >= 0 m/s everywhere")
            other._update_faces()
        return other

    # -- internals -------------------------------------------------------------------------

    def _mask(self, mask: np.ndarray, what: str) -> np.ndarray:
        mask = np.asarray(mask)
        if mask.shape != self.grid.shape or mask.dtype != bool:
            raise GroundwaterError(
                f"{what}: expected a boolean array of shape (ny, nx) = {self.grid.shape}, "
                f"got {mask.dtype} {mask.shape}"
            )
        return mask

    def _update_faces(self) -> None:
        t = self.k * self.thickness
        self._cx_sat = _harmonic(t[:, :-1], t[:, 1:])
        self._cy_sat = _harmonic(t[:-1, :], t[1:, :])

    def _output(self, h: np.ndarray) -> np.ndarray:
        out = np.array(h, dtype=float, copy=True)
        out[self.kind == INACTIVE] = np.nan
        return out

    def _saturation(self, h: np.ndarray) -> np.ndarray:
        s = (h - self.bottom) / self.thickness
        return np.clip(s, self.min_saturation, 1.0)

    def _face_conductances(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Face conductances at heads h; zero on faces with an inactive cell or two non-free."""
        _, _, mx, my, _, _ = self._face_masks()
        if self.confined:
            return self._cx_sat * mx, self._cy_sat * my
        s = self._saturation(h)
        sx = np.where(h[:, :-1] >= h[:, 1:], s[:, :-1], s[:, 1:])
        sy = np.where(h[:-1, :] >= h[1:, :], s[:-1, :], s[1:, :])
        return self._cx_sat * sx * mx, self._cy_sat * sy * my

    def _storage(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Stored volume V(h) (m3, up to a constant) and dV/dh (m2) per cell."""
        a = self.grid.area
        if self.confined:
            s = self.ss * self.thickness
            return a * s * h, a * s
        above = h > self.top
        sat = np.clip(h - self.bottom, 0.0, self.thickness)
        ss_b = self.ss * self.thickness
        v = self.sy * sat + ss_b * np.maximum(h - self.top, 0.0)
        dv = np.where(h < self.bottom, 0.0, np.where(above, ss_b, self.sy))
        return a * v, a * dv

    def _well_terms(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per-cell well flow (m3/s), its -dQ/dh (m2/s, >= 0) and the per-well flows."""
        q = np.zeros(self.grid.shape)
        dq = np.zeros(self.grid.shape)
        per_well = np.zeros(len(self.wells))
        for n, w in enumerate(self.wells):
            if self.kind[w.row, w.col] != FREE:
                continue
            rate = w.rate
            deriv = 0.0
            if not self.confined and rate < 0:
                span = WELL_REDUCTION_SHARE * self.thickness[w.row, w.col]
                f = (h[w.row, w.col] - self.bottom[w.row, w.col]) / span
                if f <= 0.0:
                    rate, deriv = 0.0, 0.0
                elif f < 1.0:
                    deriv = -w.rate / span
                    rate = w.rate * f
            q[w.row, w.col] += rate
            dq[w.row, w.col] += deriv
            per_well[n] = rate
        return q, dq, per_well

    def _river_terms(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-cell river leakage into the aquifer (m3/s) and its -dQ/dh (m2/s)."""
        q = np.zeros(self.grid.shape)
        dq = np.zeros(self.grid.shape)
        for river in self.rivers.values():
            hr = h[river.rows, river.cols]
            wet = hr > river.bottom
            flow = river.conductance * (river.stage - np.where(wet, hr, river.bottom))
            np.add.at(q, (river.rows, river.cols), flow)
            np.add.at(dq, (river.rows, river.cols), np.where(wet, river.conductance, 0.0))
        return q, dq

    def _drain_terms(self, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Per-cell drain flow into the aquifer (m3/s, <= 0) and its -dQ/dh (m2/s)."""
        q = np.zeros(self.grid.shape)
        dq = np.zeros(self.grid.shape)
        for drain in self.drains.values():
            hd = h[drain.rows, drain.cols]
            on = hd > drain.elevation
            np.add.at(q, (drain.rows, drain.cols),
                      np.where(on, -drain.conductance * (hd - drain.elevation), 0.0))  # fmt: skip
            np.add.at(dq, (drain.rows, drain.cols), np.where(on, drain.conductance, 0.0))
        return q, dq

    def _evaluate(
        self, h: np.ndarray, h_old: np.ndarray | None, dt: float | None, time: float
    ) -> _State:
        """Residual (net inflow minus storage gain, m3/s per free cell) and budget at ``h``."""
        free, fixed = self._face_masks()[:2]
        cx, cy = self._face_conductances(h)
        qx = cx * (h[:, :-1] - h[:, 1:])
        qy = cy * (h[:-1, :] - h[1:, :])
        net = np.zeros(self.grid.shape)  # net inflow across faces
        net[:, 1:] += qx
        net[:, :-1] -= qx
        net[1:, :] += qy
        net[:-1, :] -= qy
        wel, _, _ = self._well_terms(h)
        riv, _ = self._river_terms(h)
        drn, _ = self._drain_terms(h)
        rch = self.recharge * self.grid.area
        if dt is not None and h_old is not None:
            v, _ = self._storage(h)
            v_old, _ = self._storage(h_old)
            sto = (v - v_old) / dt
        else:
            sto = np.zeros(self.grid.shape)
        wel, riv, drn, rch, sto = (np.where(free, a, 0.0) for a in (wel, riv, drn, rch, sto))
        residual = np.where(free, net + wel + riv + drn + rch - sto, 0.0)
        chd = np.where(fixed, -net, 0.0)  # what the fixed cells give to their neighbours

        def split(a: np.ndarray) -> tuple[float, float]:
            return float(a[a > 0].sum()), abs(float(a[a < 0].sum()))

        inputs, outputs = {}, {}
        for name, a in (("WEL", wel), ("RCH", rch), ("RIV", riv), ("DRN", drn), ("CHD", chd)):
            inputs[name], outputs[name] = split(a)
        sto_out, sto_in = split(sto)
        budget = Budget(time, inputs, outputs, storage_in=sto_in, storage_out=sto_out)
        return _State(residual, budget)

    def _matrix(
        self, h: np.ndarray, h_old: np.ndarray | None, dt: float | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The symmetric Picard matrix at ``h``: face conductances and the diagonal.

        Storage enters with its chord slope (V(h) - V(h_old)) / (h - h_old) rather than its
        derivative: at a kink (a cell falling dry) the derivative jumps by orders of magnitude
        and the iteration would swing across the kink, while the chord slope is what the
        lagged-coefficient (h-form) Picard iteration uses and converges monotonically.
        """
        free = self.kind == FREE
        cx, cy = self._face_conductances(h)
        d = np.zeros(self.grid.shape)
        d[:, :-1] += cx
        d[:, 1:] += cx
        d[:-1, :] += cy
        d[1:, :] += cy
        _, dq_wel, _ = self._well_terms(h)
        _, dq_riv = self._river_terms(h)
        _, dq_drn = self._drain_terms(h)
        d += dq_wel + dq_riv + dq_drn
        if dt is not None and h_old is not None:
            if not self.confined:  # a dry cell holds no water: V is flat below the bottom
                h_old = np.maximum(h_old, self.bottom)
            v, dv = self._storage(h)
            v_old, _ = self._storage(h_old)
            dh = h - h_old
            moved = np.abs(dh) > 1e-9
            chord = np.divide(v - v_old, dh, out=dv.copy(), where=moved)
            if not self.confined:  # keeps dry cells' rows well conditioned; not in the residual
                chord = np.maximum(chord, self.min_saturation * self.sy * self.grid.area)
            d += chord / dt
        d = np.where(free, d, 1.0)
        _, _, _, _, both_x, both_y = self._face_masks()
        return d, np.where(both_x, cx, 0.0), np.where(both_y, cy, 0.0)

    def _changed(self) -> None:
        """Forget the cached solver and masks: cells, faces or packages changed."""
        self._solver = None
        self._solver_key = None
        self._masks = None

    def _face_masks(self) -> tuple[np.ndarray, ...]:
        """free, fixed, and the faces that carry flow (between active cells, one of them free)."""
        if getattr(self, "_masks", None) is None:
            active = self.kind != INACTIVE
            free = self.kind == FREE
            mx = active[:, :-1] & active[:, 1:] & (free[:, :-1] | free[:, 1:])
            my = active[:-1, :] & active[1:, :] & (free[:-1, :] | free[1:, :])
            both_x = free[:, :-1] & free[:, 1:]
            both_y = free[:-1, :] & free[1:, :]
            self._masks = (free, self.kind == FIXED, mx, my, both_x, both_y)
        return self._masks

    def _matrix_key(self, h: np.ndarray, dt: float | None) -> tuple | None:
        """What the matrix depends on, when that is cheap to say (confined models), else None.

        A confined model's matrix changes only with dt and the on/off state of its river and
        drain cells, so one multigrid hierarchy serves every step of a run.
        """
        if not self.confined:
            return None
        parts: list = [dt]
        for river in self.rivers.values():
            parts.append((h[river.rows, river.cols] > river.bottom).tobytes())
        for drain in self.drains.values():
            parts.append((h[drain.rows, drain.cols] > drain.elevation).tobytes())
        return tuple(parts)

    def _linear_solver(
        self, h: np.ndarray, h_old: np.ndarray | None, dt: float | None
    ) -> MultigridPCG:
        key = self._matrix_key(h, dt)
        if self._solver is None or key is None or key != self._solver_key:
            d, cx, cy = self._matrix(h, h_old, dt)
            free = (self.kind == FREE).astype(np.uint8)
            self._solver = MultigridPCG(d, cx, cy, free)
            self._solver_key = key
        return self._solver

    def _solve(
        self, h: np.ndarray, h_old: np.ndarray | None, dt: float | None, *, time: float
    ) -> np.ndarray:
        """Picard iterations in residual form until the budget closes (see the module doc)."""
        free = self.kind == FREE
        nfree = int(free.sum())
        if nfree == 0:
            self.budget = self._evaluate(h, h_old, dt, time).budget
            self.last_solve = SolveReport(0, 0, True, 0.0, 0.0)
            return h
        if (
            not self.confined
            and dt is None
            and self.rivers == {}
            and not (self.kind == FIXED).any()
        ):
            raise GroundwaterError(
                "steady state needs a fixed head or a river: otherwise the heads are not defined"
            )
        change = math.inf
        inner = 0
        converged = False
        state = self._evaluate(h, h_old, dt, time)
        outer = 0
        relax = np.ones(self.grid.shape)
        previous_delta = np.zeros(self.grid.shape)
        # confined: CG stops when the multigrid error estimate is below htol in every cell (or at
        # atol); the Picard iterations of unconfined models need the residual itself reduced
        htol = 0.001 * self.hclose if self.confined else 0.0
        solved = False
        while True:
            res = float(np.abs(state.residual).sum())
            scale = state.budget.total
            small = res <= self.rclose * scale or res == 0.0
            if self.confined and solved:
                # linear: done when the last CG met its tolerance and the water budget closes
                if abs(state.budget.error) <= self.rclose * scale:
                    converged = True
                    break
                htol *= 0.1  # the budget asks for more: solve the remainder more tightly
            elif small and (self.confined or outer == 0 or change <= self.hclose):
                converged = True
                break
            if outer == self.max_outer:
                break
            outer += 1
            solver = self._linear_solver(h, h_old, dt)
            # a 2-norm target under which the summed residual (1-norm <= sqrt(n) 2-norm) meets
            # rclose even where the error estimate would allow more
            atol = 0.1 * self.rclose * scale / math.sqrt(nfree)
            rtol = 1e-12 if self.confined else 1e-6
            delta, info = solver.solve(
                state.residual, rtol=rtol, atol=atol, htol=htol, maxiter=1000
            )
            solved = info.converged
            inner += info.iterations
            if not np.all(np.isfinite(delta)):
                raise GroundwaterError("the linear solve gave non-finite heads")
            if self.confined:
                h = h + delta
                change = float(np.abs(delta).max())
                state = self._evaluate(h, h_old, dt, time)
                continue
            # Per-cell under-relaxation (as MODFLOW's delta-bar-delta): a cell whose change
            # flips sign between iterations is damped, which breaks the two-cycles of cells at a
            # drying front; then backtracking halves the whole step while the residual grows.
            flip = delta * previous_delta < 0
            relax = np.where(flip, np.maximum(0.5 * relax, 0.05), np.minimum(relax + 0.1, 1.0))
            previous_delta = delta
            delta = relax * delta
            norm = float(np.abs(state.residual).sum())
            omega = 1.0
            for _ in range(self.max_backtracks):
                trial = h + omega * delta
                trial_state = self._evaluate(trial, h_old, dt, time)
                if float(np.abs(trial_state.residual).sum()) < 2.0 * norm:
                    break
                omega *= 0.5
            change = float(np.abs(omega * delta).max())
            h = trial
            state = trial_state
        self.budget = state.budget
        self.last_solve = SolveReport(outer, inner, converged, res, change)
        return h


__all__ = ["FIXED", "FREE", "INACTIVE", "Model", "SolveInfo", "SolveReport", "Well"]
