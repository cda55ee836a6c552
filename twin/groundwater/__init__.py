"""Ground-water flow of the Lower Rhine aquifer: a numba finite-volume model with assimilation.

Python API (arrays are ``(ny, nx)`` with **row 0 the southern row** and column 0 the western
column, because ``origin`` is the grid's lower-left corner; GeoTIFF outputs are flipped to
north-up)::

    from twin.groundwater import Grid, Model
    grid = Grid(nx=200, ny=200, cell=10.0, origin=(x0, y0))   # metres in EPSG:25832
    m = Model(grid, k=K, top=top, bottom=bottom, ss=Ss, sy=Sy, confined=True)  # scalars or arrays
    m.add_well(x, y, rate)            # m3/s, negative = pumping (WEL)
    m.set_fixed_head(mask, head)      # boolean (ny, nx) mask, scalar or array head (CHD)
    m.set_recharge(r)                 # m/s, scalar or (ny, nx) (RCH)
    m.add_river(mask, stage, conductance, bottom, name="Rhine")   # RIV
    h = m.solve_steady()              # (ny, nx) heads in m
    for t, h in m.run(times, h0): ... # implicit Euler; times in s; yields heads at each time
    m.budget                          # water budget of the last solve (m3/s per package)

Units are SI (m, s, m3/s). Scenarios (``simulations/groundwater-*.toml``) run with
``twin groundwater run <scenario>`` or :func:`twin.groundwater.run.run_scenario`; the coupler
uses :class:`GroundwaterModel`, the ``twin.core.Model`` adapter. Readings are assimilated with
:func:`twin.groundwater.assimilation.analyse` (optimal interpolation).
"""

from __future__ import annotations

from typing import Any

__all__ = ["Budget", "Grid", "GroundwaterError", "GroundwaterModel", "Model", "SolveReport", "Well"]

# The names load on first use, so `twin groundwater --help` and the light modules of the package
# (its commands, its scenario checks) do not compile the numba kernels.
_WHERE = {
    "Budget": "twin.groundwater.budget",
    "Grid": "twin.groundwater.grid",
    "GroundwaterError": "twin.groundwater.grid",
    "Model": "twin.groundwater.model",
    "SolveReport": "twin.groundwater.model",
    "Well": "twin.groundwater.model",
    "GroundwaterModel": "twin.groundwater.coupling",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'twin.groundwater' has no attribute {name!r}")
