"""The ground-water model behind the twin's model interface (``twin.core.Model``): its one stepping loop.

Every ground-water run steps here, stand-alone (``twin groundwater run``: a single-model coupled run
with its readings source, see :mod:`twin.groundwater.run`) or coupled with other models.

Rasters exchanged here are north-up (row 0 = north), as ``twin.core`` rasters are; the flow model
itself keeps row 0 in the south. Inputs: ``recharge`` (m s-1, raster), ``river_stage`` (m),
``observed_head`` (m, at the logger wells, NaN = no reading) and ``observation_weight`` (1, an
assimilation weight, never a quality flag: the coupler refuses to link a flag here). Outputs:
``head`` and ``depth_to_water`` (m, rasters), ``head_at_wells`` (m, points), ``budget_error`` and
``storage_change`` (m3 s-1).

The assimilation cycle: the readings the coupler delivers before a step from ``t`` are the readings
at ``t``; they are analysed into the heads at ``t`` (optimal interpolation), then the heads are
stepped to the next time. :meth:`GroundwaterModel.assimilate` analyses readings set at the current
time without stepping (the run's end).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from twin.core import Grid as CoreGrid
from twin.core import Model as CoreModel
from twin.core import ModelError, VariableSpec, bind
from twin.groundwater.assimilation import Analysis, OIConfig, analyse, interpolate
from twin.groundwater.budget import Budget
from twin.groundwater.model import FREE, Model, SolveReport

HEAD = "groundwater__hydraulic_head"
WEIGHT = "observation__assimilation_weight"


def start_guess(setup: Any) -> np.ndarray:
    """A first guess for steady solves: the river stage, fixed heads and terrain blended."""
    model = setup.model
    fixed = model.kind == 2
    level = []
    if setup.river_name is not None:
        level.append(float(np.mean(setup.stage_values)))
    if fixed.any():
        level.append(float(model.fixed_head[fixed].mean()))
    base = np.mean(level) if level else float(np.mean(model.bottom + 0.75 * model.thickness))
    guess = np.minimum(np.full(setup.grid.shape, base), model.top - 0.1)
    return np.maximum(guess, model.bottom + 0.5 * model.thickness * 0.1)


class GroundwaterModel(CoreModel):
    """Adapter: a :class:`twin.groundwater.Model` stepped by the coupler, readings assimilated.

    ``initialize`` takes one of

    - ``{"setup": Setup}``: a scenario already checked and built by
      :func:`twin.groundwater.scenario.build_setup` (how ``twin groundwater run`` starts it);
    - ``{"scenario": path}`` (optionally ``pack``, ``build_dir``, ``end``): the same, built here;
    - ``{"model": Model, "initial_head": array, "time_step": seconds, "wells": {"id", "x", "y"},
      "terrain": array, "assimilation": OIConfig}`` for a model built in code.

    A scenario starts from its steady state (``steady_first``). Further keys: ``wells`` (the
    logger wells read, default the scenario's), ``withheld`` (a boolean per well: readings kept
    out of the analysis, to measure it), ``free_run`` (also step a state that assimilates nothing,
    with the same stresses: the "model without readings"), ``record`` (keep every time's heads,
    budgets and analyses in :attr:`history` for a run's outputs).
    """

    INPUTS = (
        VariableSpec("recharge", "m s-1", "groundwater__recharge_volume_flux", "raster",
                     "recharge at the water table; replaces the scenario's own"),
        VariableSpec("river_stage", "m", "channel_water_surface__elevation", "scalar",
                     "stage of every river of the model (m a.s.l.)"),
        VariableSpec("observed_head", "m", HEAD, "points",
                     "readings at the logger wells at the current time; NaN = none", optional=True),
        VariableSpec("observation_weight", "1", WEIGHT, "points",
                     "assimilation weight in [0, 1] of each reading (0 = not used)", optional=True),
    )  # fmt: skip
    OUTPUTS = (
        VariableSpec("head", "m", HEAD, "raster", "hydraulic head (m a.s.l.)"),
        VariableSpec("depth_to_water", "m", "land_surface__depth_to_water_table", "raster",
                     "terrain minus head"),
        VariableSpec("head_at_wells", "m", HEAD, "points", "head interpolated at the logger wells",
                     optional=True),
        VariableSpec("budget_error", "m3 s-1", "groundwater__budget_error_volume_flux", "scalar",
                     "inflow - outflow - storage change of the last step"),
        VariableSpec("storage_change", "m3 s-1", "groundwater__storage_change_volume_flux",
                     "scalar", "storage change of the last step"),
    )  # fmt: skip

    def _initialize(self, config: Mapping[str, Any]) -> None:
        self._setup = None
        self.timings = {"solve": 0.0, "assimilation": 0.0}
        if "setup" in config or "scenario" in config:
            setup = config.get("setup")
            if setup is None:
                from twin.groundwater.scenario import build_setup, load_scenario

                setup = build_setup(load_scenario(Path(config["scenario"])),
                                    pack=config.get("pack"), build_dir=config.get("build_dir"),
                                    end=config.get("end"))  # fmt: skip
            self._setup = setup
            model = setup.model
            cfg = setup.scenario.config
            setup.apply(model, 0.0, steady=True)
            t0 = time.perf_counter()
            if cfg["scenario"]["steady_first"]:
                head = model.solve_steady(start_guess(setup))
            else:
                head = model.initial_head(start_guess(setup))
            self.timings["solve"] += time.perf_counter() - t0
            wells = config.get("wells", setup.wells)
            terrain = setup.terrain
            step = cfg["scenario"]["time_step_hours"] * 3600.0
            asm = cfg["assimilation"]
            self._oi = OIConfig(asm["sigma_background_m"], asm["length_m"],
                                asm["sigma_observation_m"], asm["kernel"])  # fmt: skip
            self._assimilate = bool(asm["enabled"])
        elif "model" in config:
            model = config["model"]
            if not isinstance(model, Model):
                raise ModelError(f"config 'model': expected a groundwater Model, got {model!r}")
            head = model.initial_head(config.get("initial_head"))
            wells = config.get("wells") or {"id": np.zeros(0), "x": np.zeros(0), "y": np.zeros(0)}
            terrain = np.asarray(config.get("terrain", model.top), dtype=float)
            step = float(config.get("time_step", 86400.0))
            self._oi = config.get("assimilation") or OIConfig()
            self._assimilate = True
        else:
            raise ModelError(
                "groundwater config: give 'setup', 'scenario' (a TOML file) or 'model' (a Model)"
            )
        self.model = model
        self.head = np.asarray(head, dtype=float)
        self.head_free = self.head.copy() if config.get("free_run") else None
        self.terrain = terrain
        self.wells = {k: np.asarray(v) for k, v in wells.items()}
        self.time_step = step
        n = len(self.wells["x"])
        self.withheld = np.asarray(config.get("withheld", np.zeros(n, dtype=bool)), dtype=bool)
        if self.withheld.shape != (n,):
            raise ModelError(f"config 'withheld': expected {n} booleans, one per well")
        grid = model.grid
        raster = CoreGrid.raster(grid.shape, grid.transform())
        points = CoreGrid.points(np.column_stack([self.wells["x"], self.wells["y"]])) if n else None
        self.inputs = bind(
            self.declared_inputs(config),
            {"recharge": raster, "observed_head": points, "observation_weight": points},
        )
        self.outputs = bind(self.declared_outputs(config), {"head": raster,
                            "depth_to_water": raster, "head_at_wells": points})  # fmt: skip
        self._observed: np.ndarray | None = None
        self._weights = np.ones(n)
        self._correlations: dict = {}  # the wells' correlations with the cells (assimilation)
        self._recharge = None  # inputs from the coupler override the scenario's own stresses
        self._stage = None
        self.last_analysis: Analysis | None = None
        self._budget = _budget_terms(model.budget)  # error, storage change of the last solve
        self.record = bool(config.get("record"))
        self.history: dict[str, Any] = {"initial": self.head.copy(), "times": [0.0],
                                        "head": [self.head.copy()],
                                         "free": [self.head.copy()], "analyses": [None],
                                         "budgets": [], "solves": []}  # fmt: skip
        if self.record:
            self.history["budgets"].append(model.budget_of(self.head, time=0.0))
            self.history["solves"].append(model.last_solve)

    # -- inputs ------------------------------------------------------------------------------

    def _set_value(self, name: str, values: np.ndarray) -> None:
        grid = self.model.grid
        if name == "recharge":
            self._recharge = grid.from_north_up(values)
        elif name == "river_stage":
            self._stage = float(values)
        elif name == "observed_head":
            self._observed = np.asarray(values, dtype=float).ravel()
        elif name == "observation_weight":
            self._weights = np.asarray(values, dtype=float).ravel()

    def assimilate(self) -> Analysis | None:
        """Analyse the readings set since the last step into the heads at the current time."""
        observed, self._observed = self._observed, None
        if observed is None or not len(observed) or not self._assimilate:
            return None
        t0 = time.perf_counter()
        weights = np.where(self.withheld, 0.0, self._weights)
        result = analyse(self.model.grid, self.head, self.wells["x"], self.wells["y"],
                         observed, weights, self._oi, correctable=self.model.kind == FREE,
                         cache=self._correlations)  # fmt: skip
        self.head = self.head + result.increment
        self.last_analysis = result
        self.timings["assimilation"] += time.perf_counter() - t0
        if self.record:
            self.history["head"][-1] = self.head.copy()
            self.history["analyses"][-1] = (result, observed.copy(), self._weights.copy())
        return result

    # -- stepping ----------------------------------------------------------------------------

    def _step(self, dt: float) -> None:
        self.assimilate()
        t = self.current_time + dt
        if self._setup is not None:
            self._setup.apply(self.model, t)
        if self._recharge is not None:
            self.model.set_recharge(self._recharge)
        if self._stage is not None:
            for river in self.model.rivers:
                self.model.set_river_stage(self._stage, river)
        t0 = time.perf_counter()
        if self.head_free is not None:  # first, so that model.budget is the assimilated state's
            self.head_free = self.model.step(self.head_free, dt, time=t)
        self.head = self.model.step(self.head, dt, time=t)
        self.timings["solve"] += time.perf_counter() - t0
        self._budget = _budget_terms(self.model.budget)
        if self.record:
            h = self.history
            h["times"].append(t)
            h["head"].append(self.head.copy())
            h["free"].append((self.head if self.head_free is None else self.head_free).copy())
            h["analyses"].append(None)
            h["budgets"].append(self.model.budget)
            h["solves"].append(self.model.last_solve)

    # -- outputs -----------------------------------------------------------------------------

    def _get_value(self, name: str) -> Any:
        grid = self.model.grid
        if name == "head":
            return grid.north_up(self.head)
        if name == "depth_to_water":
            return grid.north_up(self.terrain - self.head)
        if name == "head_at_wells":
            return interpolate(grid, self.head, self.wells["x"], self.wells["y"])
        if name == "budget_error":
            return np.array(self._budget[0])
        if name == "storage_change":
            return np.array(self._budget[1])
        raise ModelError(f"groundwater: no output {name!r}")

    # -- checkpoints -------------------------------------------------------------------------

    def _save_state(self) -> Mapping[str, Any]:
        state: dict[str, Any] = {"head": self.head, "weights": self._weights,
                                 "budget_error": self._budget[0],
                                 "storage_change": self._budget[1]}  # fmt: skip
        if self.head_free is not None:
            state["head_free"] = self.head_free
        if self._observed is not None:
            state["observed"] = self._observed
        if self._recharge is not None:
            state["recharge"] = self._recharge
        if self._stage is not None:
            state["stage"] = self._stage
        return state

    def _load_state(self, state: Mapping[str, Any]) -> None:
        self.head = np.array(state["head"], dtype=float)
        self._weights = np.array(state["weights"], dtype=float)
        self._budget = (float(state["budget_error"]), float(state["storage_change"]))
        if "head_free" in state:
            self.head_free = np.array(state["head_free"], dtype=float)
        self._observed = np.array(state["observed"], dtype=float) if "observed" in state else None
        self._recharge = np.array(state["recharge"]) if "recharge" in state else None
        self._stage = float(state["stage"]) if "stage" in state else None


def _budget_terms(budget: Budget | None) -> tuple[float, float]:
    return (0.0, 0.0) if budget is None else (budget.error, budget.storage_change)


__all__ = ["GroundwaterModel", "SolveReport", "start_guess"]
