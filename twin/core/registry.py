"""The kinds of model a scenario can name (``[models.traffic]``, ...) and their declared variables.

A kind maps to the ``"module:Class"`` path of its :class:`~twin.core.Model` subclass; the module is
imported only when a kind is asked for, so ``twin.core`` itself imports no domain. Listing the
variables reads the classes' declarations: no simulator is started and no store is opened.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twin.core.errors import ModelError
from twin.core.model import Model

__all__ = ["MODEL_KINDS", "VariableRow", "list_variables", "model_class"]

MODEL_KINDS: Mapping[str, str] = {
    "traffic": "twin.traffic.runs:TrafficModel",
    "groundwater": "twin.groundwater.coupling:GroundwaterModel",
    "heat": "twin.heat.model:HeatModel",
    "sensors": "twin.sensors.feed:SensorFeed",
}
"""The model kinds of the twin, by the name a scenario gives them."""


@dataclass(frozen=True)
class VariableRow:
    """One declared variable of one model kind, as ``twin run --list-variables`` prints it."""

    model: str
    direction: str  # "input" or "output"
    name: str
    units: str
    standard_name: str
    grid: str
    description: str
    optional: bool


def model_class(kind: str, kinds: Mapping[str, str | type[Model]] | None = None) -> type[Model]:
    """The Model subclass of ``kind`` (imported on first use)."""
    table = MODEL_KINDS if kinds is None else kinds
    if kind not in table:
        known = ", ".join(sorted(table)) or "none"
        raise ModelError(f"model kind {kind!r} is unknown; known kinds are: {known}")
    target = table[kind]
    if isinstance(target, type):
        cls: Any = target
    else:
        module, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module), attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise ModelError(f"model kind {kind!r}: {target!r} is not a twin.core.Model subclass")
    return cls


def list_variables(
    kinds: Mapping[str, str | type[Model]] | None = None,
    configs: Mapping[str, Mapping[str, Any]] | None = None,
) -> list[VariableRow]:
    """Every declared input and output of every model kind, kinds in name order.

    ``configs`` optionally gives a kind its config, for a class whose declarations depend on it
    (the sensor feed's profiles file); the models are neither created nor started.
    """
    table = MODEL_KINDS if kinds is None else kinds
    rows = []
    for kind in sorted(table):
        cls = model_class(kind, table)
        config = (configs or {}).get(kind)
        for direction, specs in (
            ("input", cls.declared_inputs(config)),
            ("output", cls.declared_outputs(config)),
        ):
            rows += [
                VariableRow(
                    kind,
                    direction,
                    s.name,
                    s.units,
                    s.standard_name,
                    s.grid,
                    s.description,
                    s.optional,
                )  # fmt: skip
                for s in specs
            ]
    return rows
