"""Exceptions of the co-simulation core: bad times, misused models and refused couplings."""

from __future__ import annotations

from twin.errors import TwinError


class ClockError(TwinError):
    """A time is unparsable, naive (no UTC offset) or outside the clock's span."""


class ModelError(TwinError):
    """A model was declared or called wrongly (bad variable, bad shape, bad time step)."""


class UnknownVariableError(ModelError):
    """A variable name that the model does not declare (as input or output, as asked)."""


class ModelStateError(ModelError):
    """A model was called in the wrong state: before initialize or after finalize."""


class CouplingError(TwinError):
    """The coupler refused a model or a link, or could not advance the coupled run."""
