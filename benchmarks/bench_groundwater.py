"""Benchmark: the ground-water solver against SciPy on the same discretised system.

A heterogeneous confined aquifer of N x N cells (log-normal K over about two decades, fixed heads
west and east, a river, pumping wells, recharge) is solved

* in steady state by our multigrid-preconditioned CG (numba) and by SciPy: the sparse direct
  solver (``spsolve``, SuperLU), CG with a Jacobi preconditioner, and CG with an incomplete-LU
  preconditioner (``spilu``); the fastest SciPy solve with the same answer is the anchor;
* for 100 implicit daily steps by our model and by SciPy's best for a fixed matrix: one SuperLU
  factorisation (``splu``) reused for every step.

It prints cells/s, iterations, the ratios and the largest head difference. MODFLOW 6 is run
through FloPy when both ``flopy`` and an ``mf6`` executable are installed.

The ``scenario`` row runs ``twin groundwater run simulations/groundwater-today.toml`` as users do
(a process of its own, 92 daily steps of 8 400 cells with the synthetic truth run's readings) and
compares its wall time with the time its flow solver took (every head field it integrates:
assimilated, free and synthetic truth, from status.json): ratio = solver time / wall time, goal
>= 0.5 (wall time at most twice the solver's). It prints the time per phase.

    python benchmarks/bench_groundwater.py            # 1000 x 1000 cells, 100 steps
    python benchmarks/bench_groundwater.py --size 300 --steps 20
    python benchmarks/bench_groundwater.py --short    # what `make bench` runs: 300 x 300, 20 steps
"""

from __future__ import annotations

import os

# SciPy's best on this machine: one BLAS thread. Threaded BLAS on the solvers' short vectors made
# SciPy's CG 40x slower on a busy 2-core machine (measured), which would flatter our ratios.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import scipy.sparse.linalg as spla  # noqa: E402
from common import Row, add_arguments, finish, skipped  # noqa: E402

from twin.groundwater import Grid, Model  # noqa: E402
from twin.groundwater.reference import assemble_csr  # noqa: E402
from twin.groundwater.scenario import lognormal_field  # noqa: E402
from twin.groundwater.solver import MultigridPCG  # noqa: E402

BENCH = "groundwater"


def build(n: int) -> Model:
    """The benchmark aquifer on an n x n grid of 10 m cells."""
    grid = Grid(nx=n, ny=n, cell=10.0, origin=(330000.0, 5687000.0))
    k = lognormal_field(grid, 1e-3, 0.5, 30.0 * grid.cell, seed=1)
    m = Model(grid, k=k, top=25.0, bottom=5.0, ss=1e-4, confined=True)
    edges = np.zeros(grid.shape, dtype=bool)
    edges[:, 0] = True
    m.set_fixed_head(edges, 33.0)
    east = np.zeros(grid.shape, dtype=bool)
    east[:, -1] = True
    m.set_fixed_head(east, 30.0)
    river = np.zeros(grid.shape, dtype=bool)
    river[:, int(0.8 * n)] = True
    m.add_river(river, 29.0, 0.01, 20.0, name="river")
    rng = np.random.default_rng(2)
    x0, y0, x1, y1 = grid.extent
    for w in range(8):
        m.add_well(rng.uniform(x0 + 0.1 * (x1 - x0), x0 + 0.7 * (x1 - x0)),
                   rng.uniform(y0 + 0.1 * (y1 - y0), y0 + 0.9 * (y1 - y0)),
                   -0.002 * n / 100.0, name=f"w{w}")  # fmt: skip
    m.set_recharge(7e-9)
    return m


def timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def linear_system(m: Model, h0: np.ndarray, dt: float | None, h_old: np.ndarray | None = None):
    """The model's linear system in head-change form: A dh = r at h0 (linear when confined)."""
    d, cx, cy = m._matrix(h0, h_old, dt)
    r = m._evaluate(h0, h_old, dt, 0.0).residual
    return d, cx, cy, r


class OutOfTime(Exception):
    """A SciPy iteration ran past its time budget."""


def scipy_steady(d, cx, cy, r, h0, ours, tol, budget, with_ilu: bool = True):
    """The SciPy solvers we try on the steady system; returns rows (name, seconds, iters, diff).

    Iterative solvers stop at ``budget`` seconds (their row then says so and counts as slower).
    """
    a, t_asm = timed(lambda: assemble_csr(d, cx, cy).tocsr())
    print(f"  SciPy CSR assembly                          {t_asm:8.3f} s")
    rows = []
    x, t = timed(spla.spsolve, a.tocsc(), r.ravel())
    rows.append(("spsolve (SuperLU, direct)", t, 1, np.abs(h0 + x.reshape(h0.shape) - ours).max()))
    print(f"    ({rows[-1][0]}: {t:.2f} s)")

    def iterate(name, setup, method):
        count = [0]
        t0 = time.perf_counter()

        def cb(_):
            count[0] += 1
            if time.perf_counter() - t0 > budget:
                raise OutOfTime

        try:
            m = setup()
            x, _ = method(a, r.ravel(), rtol=tol, maxiter=100000, M=m, callback=cb)
            diff = np.abs(h0 + x.reshape(h0.shape) - ours).max()
        except OutOfTime:
            diff = np.inf
        rows.append((name, time.perf_counter() - t0, count[0], diff))
        print(f"    ({name}: {rows[-1][1]:.2f} s)")

    inv_d = 1.0 / a.diagonal()
    iterate("cg + Jacobi", lambda: spla.LinearOperator(a.shape, matvec=lambda v: inv_d * v),
            spla.cg)  # fmt: skip

    def ilu():
        f = spla.spilu(a.tocsc(), drop_tol=1e-4, fill_factor=10)
        return spla.LinearOperator(a.shape, matvec=f.solve)

    if with_ilu:  # the incomplete factors are not symmetric, so BiCGSTAB rather than CG
        iterate("bicgstab + spilu (incl. factor)", ilu, spla.bicgstab)
    return rows


def modflow6_steady(m: Model) -> float | None:
    """Seconds MODFLOW 6 takes for the steady problem through FloPy, or None if unavailable."""
    exe = shutil.which("mf6")
    try:
        import flopy  # noqa: F401
    except ImportError:
        return None
    if exe is None:
        return None
    import flopy

    g = m.grid
    with tempfile.TemporaryDirectory() as ws:
        sim = flopy.mf6.MFSimulation(sim_ws=ws, exe_name=exe)
        flopy.mf6.ModflowTdis(sim)
        flopy.mf6.ModflowIms(sim, inner_dvclose=1e-8, outer_dvclose=1e-8, linear_acceleration="CG")
        gwf = flopy.mf6.ModflowGwf(sim, modelname="bench")
        flopy.mf6.ModflowGwfdis(gwf, nrow=g.ny, ncol=g.nx, delr=g.cell, delc=g.cell,
                                top=m.top[::-1], botm=[m.bottom[::-1]])  # fmt: skip
        flopy.mf6.ModflowGwfnpf(gwf, k=m.k[::-1], icelltype=0)
        flopy.mf6.ModflowGwfic(gwf, strt=30.0)
        fixed = np.argwhere(m.kind[::-1] == 2)
        flopy.mf6.ModflowGwfchd(gwf, stress_period_data=[
            ((0, int(i), int(j)), float(m.fixed_head[::-1][i, j])) for i, j in fixed])  # fmt: skip
        flopy.mf6.ModflowGwfrcha(gwf, recharge=m.recharge[::-1])
        sim.write_simulation(silent=True)
        t0 = time.perf_counter()
        ok, _ = sim.run_simulation(silent=True)
        return time.perf_counter() - t0 if ok else None


def bandwidth(d, cx, cy, reps: int = 10) -> str:
    """Memory bandwidth of the operator kernel (5 arrays read, 1 written), serial and threaded."""
    from twin.groundwater import kernels

    x = np.ones_like(d)
    out = np.empty_like(d)
    nbytes = 8 * (d.size * 4 + cx.size + cy.size)
    parts = []
    for par in (False, True):
        kernels.apply_operator(d, cx, cy, x, out, par)
        t0 = time.perf_counter()
        for _ in range(reps):
            kernels.apply_operator(d, cx, cy, x, out, par)
        dt = (time.perf_counter() - t0) / reps
        parts.append(f"{'threads' if par else '1 thread'} {nbytes / dt / 1e9:.1f} GB/s")
    return ", ".join(parts)


def best_of(repeat: int, fn):
    """The fastest of ``repeat`` calls: (result, seconds)."""
    runs = [timed(fn) for _ in range(max(1, repeat))]
    return min(runs, key=lambda r: r[1])


def scenario_row() -> Row:
    """The stand-alone groundwater-today run: its wall time against its own solver time."""
    import json
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    scenario = repo / "simulations" / "groundwater-today.toml"
    twin = Path(sys.executable).parent / "twin"
    if not (repo / "data" / "krefeld" / "pack.toml").is_file() or not twin.is_file():
        return skipped(BENCH, "scenario", "its own solver time", "no Krefeld pack or twin command")
    with tempfile.TemporaryDirectory() as runs:
        t0 = time.perf_counter()
        done = subprocess.run([str(twin), "groundwater", "run", str(scenario), "--runs-dir", runs],
                              cwd=repo, capture_output=True, text=True, timeout=1800)  # fmt: skip
        wall = time.perf_counter() - t0
        if done.returncode != 0:
            return Row(BENCH, "scenario", "1/s", None, None, "its own solver time",
                       failed=done.stderr.strip().splitlines()[-1][:200])  # fmt: skip
        (status,) = Path(runs).glob("groundwater-today/*/status.json")
        phases = json.loads(status.read_text())["metrics"]["phases_s"]
    solver = phases["solver_total"]
    parts = ", ".join(f"{k} {v:.2f} s" for k, v in phases.items())
    print(f"groundwater-today stand-alone: wall {wall:.2f} s (process start included), "
          f"solver {solver:.2f} s, wall / solver {wall / solver:.2f} (goal <= 2)")  # fmt: skip
    print(f"  phases: {parts}")
    return Row(BENCH, "scenario", "1/s", 1.0 / wall, 1.0 / solver,
               "its own flow-solver time (status.json), ratio = solver / wall")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, help="cells per side (default 1000, short 300)")
    p.add_argument("--steps", type=int, help="transient steps (default 100, short 20)")
    p.add_argument(
        "--repeat", type=int, help="timed repeats, the fastest counts (default 1, short 3)"
    )
    p.add_argument(
        "--scipy-budget",
        type=float,
        default=300.0,
        help="seconds after which a SciPy iterative solve is stopped (default 300)",
    )
    add_arguments(p)
    p.add_argument("--no-scenario", action="store_true", help="leave out the scenario row")
    args = p.parse_args(argv)
    sys.stdout.reconfigure(line_buffering=True)  # progress shows even when piped to a file
    rows = run(args)
    if not args.no_scenario:
        rows.append(scenario_row())
    return finish(rows, args)


def run(args: argparse.Namespace) -> list[Row]:
    """The steady and transient comparisons; prints the details, returns the two rows."""
    import numba

    n = args.size or (300 if args.short else 1000)
    steps = args.steps or (20 if args.short else 100)
    repeat = args.repeat or (3 if args.short else 1)
    print(f"ground-water benchmark: {n} x {n} = {n * n:,} cells, heterogeneous confined aquifer, "
          f"numba threads {numba.get_num_threads()}, BLAS threads "
          f"{os.environ['OPENBLAS_NUM_THREADS']}, {os.cpu_count()} CPUs")  # fmt: skip
    m, t_build = timed(build, n)
    h0 = m.initial_head(30.0)
    # warm-up on a small problem so that compilation (cached) is not timed
    build(40).solve_steady()

    print("steady state")
    h, t_model = timed(m.solve_steady, 30.0)
    d, cx, cy, r = linear_system(m, h0, None)
    free = (m.kind == 1).astype(np.uint8)
    print(f"  ours: model.solve_steady (assembly + solve)  {t_model:8.3f} s")
    print(f"  operator kernel bandwidth: {bandwidth(d, cx, cy)}")
    t_ours, ours = np.inf, None
    for parallel in (False, True):
        solver, t_setup = best_of(
            repeat, lambda p=parallel: MultigridPCG(d, cx, cy, free, parallel=p)
        )
        (dh, info), t = best_of(repeat, lambda s=solver: s.solve(r, rtol=1e-10))
        label = f"{numba.get_num_threads()} threads" if parallel else "1 thread"
        print(f"  ours ({label}): multigrid set-up {t_setup:.3f} s + MG-PCG solve {t:.3f} s, "
              f"{info.iterations} iterations, {solver.levels} levels, "
              f"{n * n / t / 1e6:.2f} M cells/s")  # fmt: skip
        if t_setup + t < t_ours:
            t_ours, ours = t_setup + t, h0 + dh
    # short mode leaves out BiCGSTAB + spilu: always the slowest, by far the longest to run
    rows = scipy_steady(d, cx, cy, r, h0, ours, 1e-10, args.scipy_budget, with_ilu=not args.short)
    best = None
    for name, t, iters, diff in rows:
        note = "  (stopped: over the time budget)" if not np.isfinite(diff) else ""
        print(f"  SciPy {name:34s} {t:8.3f} s  {iters:6d} it  max |dh| vs ours {diff:.2e} m  "
              f"ratio {t / t_ours:6.1f}x{note}")  # fmt: skip
        if diff <= 1e-4 and (best is None or t < best[1]):
            best = (name, t)
    if best is not None:
        print(f"  => ours (set-up + solve) vs SciPy's best with the same answer ({best[0]}): "
              f"{best[1] / t_ours:.1f}x faster (goal >= 5x)")  # fmt: skip
    agree = np.abs(h - ours).max()
    print(f"  model and solver agree: max |h_model - h_solver| = {agree:.2e} m")
    solvers = ", ".join(name.split(" (")[0] for name, *_ in rows)
    steady = Row(
        BENCH, "steady", "M cells/s", n * n / t_ours / 1e6,
        None if best is None else n * n / best[1] / 1e6,
        f"SciPy {best[0].split(' (')[0] if best else '-'}: fastest of {solvers} with the same heads",
        failed="no SciPy solve gave the same heads" if best is None
        else f"model and solver differ by {agree:.1e} m" if agree > 1e-4 else None,
    )  # fmt: skip

    print(f"transient: {steps} implicit daily steps after the wells triple their rates")
    for w in list(m.wells):
        m.set_well_rate(w.name, 3.0 * w.rate)
    times = np.arange(1, steps + 1) * 86400.0

    def ours_run() -> np.ndarray:
        h_t = h
        for _, h_t in m.run(times, h):  # noqa: B007 - the last heads are compared below
            pass
        return h_t

    h_t, t_model = best_of(repeat, ours_run)
    print(f"  ours: model.run                          {t_model:8.3f} s  "
          f"({n * n * steps / t_model / 1e6:.2f} M cell-steps/s)")  # fmt: skip

    def scipy_run() -> np.ndarray:
        # SciPy: the matrix is the same every step (confined, fixed dt): factorise once
        h_prev = h.copy()
        d, cx, cy, _ = linear_system(m, h_prev, 86400.0, h_prev)
        lu = spla.splu(assemble_csr(d, cx, cy).tocsc())
        for _ in range(steps):
            r = m._evaluate(h_prev, h_prev, 86400.0, 0.0).residual
            h_prev = h_prev + lu.solve(r.ravel()).reshape(h.shape)
        return h_prev

    h_prev, t_scipy = best_of(repeat, scipy_run)
    diff = np.abs(h_prev - h_t).max()
    print(
        f"  SciPy splu once + {steps} solves         {t_scipy:8.3f} s  "
        f"max |dh| vs ours {diff:.2e} m  ratio {t_scipy / t_model:.1f}x"
    )
    transient = Row(
        BENCH, "transient", "M cell-steps/s", n * n * steps / t_model / 1e6,
        n * n * steps / t_scipy / 1e6, "SciPy splu once, then one solve per step",
        failed=f"heads differ from SciPy's by {diff:.1e} m" if diff > 1e-4 else None,
    )  # fmt: skip
    mf6 = modflow6_steady(m)
    if mf6 is None:
        print("MODFLOW 6: not available (no mf6 executable; flopy's get-modflow needs GitHub)")
    else:
        print(f"MODFLOW 6 via FloPy steady: {mf6:.3f} s, ratio {mf6 / t_ours:.1f}x")
    print(f"(model set-up {t_build:.2f} s)")
    return [steady, transient]


if __name__ == "__main__":
    sys.exit(main())
