"""The ground-water model behind the twin's model interface (``twin.core.Model``) for the coupler.

Rasters exchanged here are north-up (row 0 = north), as ``twin.core`` rasters are; the flow model
itself keeps row 0 in the south. Inputs: ``recharge`` (m s-1, raster), ``river_stage`` (m),
``observed_head`` (m, at the logger wells, NaN = no reading) and ``observation_weight`` (1).
Outputs: ``head`` and ``depth_to_water`` (m, rasters), ``head_at_wells`` (m, points),
``budget_error`` and ``storage_change`` (m3 s-1).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from twin.core import Grid as CoreGrid
from twin.core import Model as CoreModel
from twin.core import ModelError, Variable
from twin.groundwater.assimilation import OIConfig, analyse, interpolate
from twin.groundwater.model import FREE, Model


class GroundwaterModel(CoreModel):
    """Adapter: a :class:`twin.groundwater.Model` stepped by the coupler, readings assimilated.

    ``initialize`` takes either ``{"scenario": path}`` (optionally ``pack``, ``build_dir``) to build
    the model a scenario file describes, or ``{"model": Model, "initial_head": array,
    "time_step": seconds, "wells": {"id", "x", "y"}, "terrain": array}`` for a model built in
    code. A scenario starts from its steady state. Readings set through ``observed_head`` are
    assimilated (optimal interpolation) at the end of the next step, then cleared.
    """

    def _initialize(self, config: Mapping[str, Any]) -> None:
        self._setup = None
        if "scenario" in config:
            from twin.groundwater.run import _start_guess
            from twin.groundwater.scenario import build_setup, load_scenario

            scenario = load_scenario(Path(config["scenario"]))
            setup = build_setup(
                scenario, pack=config.get("pack"), build_dir=config.get("build_dir")
            )
            self._setup = setup
            model = setup.model
            setup.apply(model, 0.0, steady=True)
            head = model.solve_steady(_start_guess(setup))
            wells = setup.wells
            terrain = setup.terrain
            step = scenario.config["scenario"]["time_step_hours"] * 3600.0
            asm = scenario.config["assimilation"]
            self._oi = OIConfig(asm["sigma_background_m"], asm["length_m"],
                                asm["sigma_observation_m"], asm["kernel"])  # fmt: skip
        elif "model" in config:
            model = config["model"]
            if not isinstance(model, Model):
                raise ModelError(f"config 'model': expected a groundwater Model, got {model!r}")
            head = model.initial_head(config.get("initial_head"))
            wells = config.get("wells") or {"id": np.zeros(0), "x": np.zeros(0), "y": np.zeros(0)}
            terrain = np.asarray(config.get("terrain", model.top), dtype=float)
            step = float(config.get("time_step", 86400.0))
            self._oi = config.get("assimilation") or OIConfig()
        else:
            raise ModelError(
                "groundwater config: give 'scenario' (a TOML file) or 'model' (a Model instance)"
            )
        self.model = model
        self.head = np.asarray(head, dtype=float)
        self.terrain = terrain
        self.wells = {k: np.asarray(v) for k, v in wells.items()}
        self.time_step = step
        grid = model.grid
        raster = CoreGrid.raster(grid.shape, grid.transform())
        n = len(self.wells["x"])
        points = (
            CoreGrid.points(np.column_stack([self.wells["x"], self.wells["y"]]))
            if n
            else CoreGrid.scalar()
        )
        self.inputs = (
            Variable("recharge", "m s-1", raster),
            Variable("river_stage", "m"),
            Variable("observed_head", "m", points),
            Variable("observation_weight", "1", points),
        )
        self.outputs = (
            Variable("head", "m", raster),
            Variable("depth_to_water", "m", raster),
            Variable("head_at_wells", "m", points),
            Variable("budget_error", "m3 s-1"),
            Variable("storage_change", "m3 s-1"),
        )
        self._observed = None
        self._weights = np.ones(n)
        self._recharge = None  # inputs from the coupler override the scenario's own stresses
        self._stage = None
        self.last_analysis = None

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

    def _step(self, dt: float) -> None:
        t = self.current_time + dt
        if self._setup is not None:
            self._setup.apply(self.model, t)
        if self._recharge is not None:
            self.model.set_recharge(self._recharge)
        if self._stage is not None:
            for river in self.model.rivers:
                self.model.set_river_stage(self._stage, river)
        self.head = self.model.step(self.head, dt, time=t)
        if self._observed is not None and len(self._observed):
            result = analyse(self.model.grid, self.head, self.wells["x"], self.wells["y"],
                             self._observed, self._weights, self._oi,
                             correctable=self.model.kind == FREE)  # fmt: skip
            self.head = self.head + result.increment
            self.last_analysis = result
            self._observed = None

    def _get_value(self, name: str) -> Any:
        grid = self.model.grid
        if name == "head":
            return grid.north_up(self.head)
        if name == "depth_to_water":
            return grid.north_up(self.terrain - self.head)
        if name == "head_at_wells":
            if not len(self.wells["x"]):
                return np.array(np.nan)
            return interpolate(grid, self.head, self.wells["x"], self.wells["y"])
        budget = self.model.budget
        if name == "budget_error":
            return np.array(0.0 if budget is None else budget.error)
        if name == "storage_change":
            return np.array(0.0 if budget is None else budget.storage_change)
        raise ModelError(f"groundwater: no output {name!r}")
