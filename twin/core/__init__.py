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
from twin.core.model import Model, ModelState, times_equal
from twin.core.variables import DEFAULT_CRS, Grid, GridKind, Variable

__all__ = [
    "DEFAULT_CRS",
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
    "Transform",
    "UnknownVariableError",
    "Variable",
    "format_utc",
    "parse_utc",
    "times_equal",
]
