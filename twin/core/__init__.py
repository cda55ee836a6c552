"""Co-simulation core: the model interface, the clock and the coupler that links models."""

from twin.core.clock import Clock, format_utc, parse_utc
from twin.core.coupler import Coupler, Link, Progress, Transform
from twin.core.errors import (
    ClockError,
    CouplingError,
    ModelError,
    ModelStateError,
    UnknownVariableError,
)
from twin.core.model import Model, ModelState, StateValue, times_equal
from twin.core.registry import MODEL_KINDS, VariableRow, list_variables, model_class
from twin.core.variables import DEFAULT_CRS, Grid, GridKind, Variable, VariableSpec, bind

__all__ = [
    "DEFAULT_CRS",
    "MODEL_KINDS",
    "Clock",
    "ClockError",
    "Coupler",
    "CouplingError",
    "Grid",
    "GridKind",
    "Link",
    "Model",
    "ModelError",
    "ModelState",
    "ModelStateError",
    "Progress",
    "StateValue",
    "Transform",
    "UnknownVariableError",
    "Variable",
    "VariableRow",
    "VariableSpec",
    "bind",
    "format_utc",
    "list_variables",
    "model_class",
    "parse_utc",
    "times_equal",
]
