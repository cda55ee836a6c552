"""Where a ground-water run's well readings come from, and how they reach the model.

Three kinds of source, named by ``[readings] source`` in a scenario:

- ``"jsonl"``: a file of LoRaWAN uplinks (one message per line) replayed through the sensor ingest
  into a run-local store, each message taken in when the run's clock passes its arrival, and
  offered by the sensor feed (:class:`twin.sensors.feed.SensorFeed`);
- ``"store"``: an existing sensor store, read by the sensor feed at the run's times;
- ``"synthetic"``: no readings at all, but a synthetic truth run: the same aquifer with another
  conductivity field and more recharge, sampled at the wells with noise and quality flags
  (:class:`SyntheticReadings`), to show what the assimilation does.

Each source is a ``twin.core`` model; the coupler links its head and weight outputs to the
ground-water model's ``observed_head`` and ``observation_weight``. The feed's quality flags become
weights by the feed's declared conversion (``groundwater_head_weight``), never by a link.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from twin.core import Grid as CoreGrid
from twin.core import Model as CoreModel
from twin.core import VariableSpec, bind
from twin.groundwater.assimilation import interpolate, quality_weight
from twin.groundwater.coupling import HEAD, WEIGHT, start_guess
from twin.groundwater.scenario import Setup, lognormal_field

SOURCES = ("none", "synthetic", "jsonl", "store")


def provenance(kind: str, path: str | None = None, *, simulated: bool | None = None) -> str:
    """Where the readings came from, in the words of the data (reports and status.json); a file
    whose origin the scenario does not state is never called a recording (nor a simulation)."""
    if kind == "jsonl":
        nature = {True: "simulated stream", False: "recorded stream", None: "origin not stated"}[
            simulated
        ]
        return f"replayed uplink file {path} ({nature})"
    if kind == "store":
        return f"sensor store {path}"
    if kind == "synthetic":
        return "synthetic truth run (no readings)"
    return "none (a run without readings)"


class SyntheticReadings(CoreModel):
    """The synthetic truth run: a 'true' aquifer stepped beside the model, sampled at the wells.

    Config: ``setup`` (the scenario's :class:`Setup`), ``wells`` ({"id", "x", "y"}). Its
    conductivity field comes from ``readings.truth_k_seed``, its recharge is
    ``readings.truth_recharge_factor`` times the scenario's and its river stage is shifted by
    ``truth_stage_offset_m``. Readings carry ``noise_m`` of noise; ``suspect_fraction`` of them get
    extra noise and weight 0.25, ``bad_fraction`` a gross error and weight 0 (all drawn once, from
    ``readings.seed``). :attr:`truth` keeps the noise-free heads at the wells at each step.
    """

    OUTPUTS = (
        VariableSpec("groundwater_head", "m", HEAD, "points",
                     "synthetic reading of each well: the truth run's head plus noise"),
        VariableSpec("groundwater_head_weight", "1", WEIGHT, "points",
                     "assimilation weight of each reading (good 1, suspect 0.25, bad 0)"),
    )  # fmt: skip

    def _initialize(self, config: Mapping[str, Any]) -> None:
        setup: Setup = config["setup"]
        wells = config["wells"]
        self._setup, self._x, self._y = setup, np.asarray(wells["x"]), np.asarray(wells["y"])
        cfg = setup.scenario.config
        aq, rd = cfg["aquifer"], cfg["readings"]
        self.time_step = cfg["scenario"]["time_step_hours"] * 3600.0
        self.seconds = 0.0  # time spent solving the truth run
        t0 = time.perf_counter()
        k = lognormal_field(setup.grid, aq["k"], max(aq["k_log10_sd"], 0.15),
                            aq["k_correlation_m"], rd["truth_k_seed"])  # fmt: skip
        self.model = setup.model.copy(k=k)
        self._factor, self._offset = rd["truth_recharge_factor"], rd["truth_stage_offset_m"]
        setup.apply(self.model, 0.0, recharge_factor=self._factor, stage_offset=self._offset,
                    steady=True)  # fmt: skip
        self.head = self.model.solve_steady(start_guess(setup))
        self.seconds += time.perf_counter() - t0
        n, rows = len(self._x), setup.steps + 1
        # drawn at once, in the order of the original synthetic readings, so a seed gives them
        rng = np.random.default_rng(rd["seed"])
        self._noise = rng.normal(0.0, rd["noise_m"], (rows, n))
        draw = rng.random((rows, n))
        suspect = draw < rd["suspect_fraction"]
        bad = draw > 1.0 - rd["bad_fraction"]
        self._extra = np.zeros((rows, n))
        self._extra[suspect] = rng.normal(0.0, 2.0 * rd["noise_m"] + 0.02, suspect.sum())
        self._extra[bad] = rng.choice([-1.0, 1.0], bad.sum()) * rng.uniform(0.5, 3.0, bad.sum())
        self._weights = np.ones((rows, n))
        self._weights[suspect] = quality_weight("suspect")
        self._weights[bad] = quality_weight("bad")
        self.truth = [interpolate(setup.grid, self.head, self._x, self._y)]
        points = CoreGrid.points(np.column_stack([self._x, self._y]))
        self.outputs = bind(self.OUTPUTS, {o.name: points for o in self.OUTPUTS})

    def _step(self, dt: float) -> None:
        t = self.current_time + dt
        t0 = time.perf_counter()
        self._setup.apply(self.model, t, recharge_factor=self._factor, stage_offset=self._offset)
        self.head = self.model.step(self.head, dt, time=t)
        self.truth.append(interpolate(self._setup.grid, self.head, self._x, self._y))
        self.seconds += time.perf_counter() - t0

    def _get_value(self, name: str) -> np.ndarray:
        k = min(len(self.truth), len(self._noise)) - 1
        if name == "groundwater_head":
            return (self.truth[k] + self._noise[k]) + self._extra[k]
        return self._weights[k]
