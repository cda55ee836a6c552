"""Heat model surface energy balance against SUEWS (supy): the cost of one cell-day.

SUEWS runs its own sample site for one day of 5-min steps (288) in the reference environment
``.venv-ref`` (tests/reference/suews_run.py, a process of its own that times ``supy.run_supy``
alone with time.process_time: no import, no sample loading). Ours: ``energy.energy_balance`` with
the same kind of inputs. Both count CPU seconds of all threads, the best of a few repeats. Rows
(cell-days per CPU second, higher is better; ratio = ours / SUEWS', goal >= 1000):

* ``suews_cell_day``: one cell-day, our balance called once over the day's 288 steps of that cell
  (the balance has no memory between steps, so a day of one cell is one call over 288 values; the
  CPU time includes the idle spinning of the thread pool's workers, which dominates so short a call);
* ``suews_grid``: our balance over a grid of cells, one call per 5-min step, as the model runs it
  (the short mode 300 x 300 cells, else 1200 x 700, the Krefeld grid), per cell-day.

SUEWS does more per step than our balance (radiation, water balance, snow, roughness, stability
iteration): the ratio is the cost of the heat model's surface scheme against running SUEWS per cell.
Called by bench_heat.py: ``rows = suews_rows(short)``.
"""

from __future__ import annotations

import re
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from common import Row, skipped

from twin.heat import energy, surface

BENCH = "heat"
ROOT = Path(__file__).resolve().parents[1]
REF_PYTHON = ROOT / ".venv-ref" / "bin" / "python"
SCRIPT = ROOT / "tests" / "reference" / "suews_run.py"
UNIT = "cell-days/CPU-s"
STEPS = 288  # 5-min steps in a day


def _suews_cell_day(repeat: int) -> tuple[float | None, str]:
    """The fewest CPU seconds of supy.run_supy for one day of its sample site, or why none."""
    if not REF_PYTHON.exists():
        return None, "no reference environment .venv-ref (make test installs supy there)"
    best = np.inf
    with tempfile.TemporaryDirectory(prefix="bench-suews-") as tmp:
        for _ in range(max(1, repeat)):
            proc = subprocess.run(
                [str(REF_PYTHON), str(SCRIPT), str(Path(tmp) / "day.npz"), "--days", "1",
                 "--spinup-days", "0", "--timing"],
                capture_output=True, text=True, timeout=600, cwd=tmp,  # supy's log goes there
            )  # fmt: skip
            m = re.search(r"run_supy_process_s ([0-9.eE+-]+) steps (\d+)", proc.stdout)
            if proc.returncode or not m:
                return None, f"suews_run.py failed: {(proc.stderr or proc.stdout).strip()[-160:]}"
            if int(m.group(2)) != STEPS:
                return None, f"suews_run.py ran {m.group(2)} steps, expected {STEPS}"
            best = min(best, float(m.group(1)))
    return best, ""


def _cpu_best(repeat: int, fn) -> float:
    best = np.inf
    for _ in range(max(1, repeat)):
        c = time.process_time()
        fn()
        best = min(best, time.process_time() - c)
    return best


def _forcing(n: int, seed: int = 5) -> dict[str, np.ndarray]:
    """A summer day of 5-min weather as (n, 1) fields: n steps of one cell (a clear-sky cycle)."""
    rng = np.random.default_rng(seed)
    hour = np.arange(n) * 24.0 / max(n, 1)
    sun = np.clip(np.sin((hour - 6.0) / 12.0 * np.pi), 0.0, None)
    return {
        "q_star": (-60.0 + 600.0 * sun)[:, None] + rng.normal(0, 5, (n, 1)),
        "dq_star_dt": (120.0 * np.cos((hour - 6.0) / 12.0 * np.pi))[:, None],
        "qf": np.full((n, 1), 30.0),
        "t_air_c": (22.0 + 8.0 * sun)[:, None],
        "rh_percent": (70.0 - 30.0 * sun)[:, None],
        "wind_speed": np.full((n, 1), 3.0),
        "k_down": (850.0 * sun)[:, None],
    }


def _fractions(shape: tuple[int, int], seed: int = 6) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(len(surface.COVERS), 0.8), size=shape).transpose(2, 0, 1).copy()


def suews_rows(short: bool) -> list[Row]:
    """The two rows (one cell-day, a grid per cell-day) against SUEWS' one cell-day."""
    repeat = 3
    theirs, why = _suews_cell_day(repeat)
    anchor = "SUEWS (supy run_supy) on its sample site, one cell-day of 288 steps, CPU s"
    # one cell-day: the day's steps along y
    w = _forcing(STEPS)
    f = np.repeat(_fractions((1, 1)), STEPS, axis=1)

    def one_day() -> dict[str, np.ndarray]:
        return energy.energy_balance(w["q_star"], w["dq_star_dt"], w["qf"], f, w["t_air_c"],
                                     w["rh_percent"], w["wind_speed"], 0.8, k_down=w["k_down"],
                                     measurement_height=20.0, displacement_height=7.0,
                                     roughness_length=1.0)  # fmt: skip

    out = one_day()  # compile (cached) outside the timing
    closure = np.abs(sum(out[k] for k in out) - w["q_star"] - w["qf"]).max()
    t_day = _cpu_best(20, one_day)
    # a grid, one call per step
    ny, nx = (300, 300) if short else (700, 1200)
    fg = _fractions((ny, nx))
    rng = np.random.default_rng(8)
    q = rng.uniform(300, 500, (ny, nx))
    steps = 3

    def grid_steps() -> None:
        for k in range(steps):
            energy.energy_balance(q, 40.0, 30.0, fg, 28.0 + k, 45.0, 3.0, 0.8, k_down=700.0,
                                  measurement_height=20.0, displacement_height=7.0,
                                  roughness_length=1.0)  # fmt: skip

    grid_steps()
    t_grid = _cpu_best(repeat, grid_steps) / steps  # CPU s per step of the grid
    grid_cell_day = t_grid * STEPS / (ny * nx)
    print(f"heat energy balance: one cell-day (288 steps) {t_day * 1e6:.0f} CPU-us; grid {ny} x {nx}: "
          f"{t_grid * 1e3:.1f} CPU-ms per step = {grid_cell_day * 1e6:.2f} CPU-us per cell-day; "
          f"closure {closure:.1e} W m-2")  # fmt: skip
    failed = f"balance does not close ({closure:.1e} W m-2)" if closure > 1e-9 else None
    if theirs is None:
        return [skipped(BENCH, "suews_cell_day", anchor, why),
                skipped(BENCH, "suews_grid", anchor, why)]  # fmt: skip
    print(
        f"SUEWS run_supy one cell-day: {theirs:.3f} CPU-s; ratio one cell-day "
        f"{theirs / t_day:,.0f}x, on the grid {theirs / grid_cell_day:,.0f}x (goal >= 1000x)"
    )
    return [
        Row(BENCH, "suews_cell_day", UNIT, 1.0 / t_day, 1.0 / theirs, anchor, failed=failed),
        Row(BENCH, "suews_grid", UNIT, 1.0 / grid_cell_day, 1.0 / theirs,
            anchor + f"; ours per cell-day over {ny} x {nx} cells", failed=failed),
    ]  # fmt: skip


if __name__ == "__main__":
    import sys

    from common import table

    sys.stdout.reconfigure(line_buffering=True)
    print(table(suews_rows("--short" in sys.argv), {}))
