"""The interface every time-stepping model of the twin exposes, in the spirit of CSDMS BMI.

A model class declares its input and output variables (:class:`VariableSpec`: name, units,
standard name, grid kind) so they can be listed without starting the model; ``initialize`` binds
them to concrete grids. A model is driven through ``initialize`` -> ``update_until`` /
``get_value`` / ``set_value`` -> ``finalize``, and may save and load its state for checkpoints.
Model time is float seconds since the coupler's epoch (:class:`Clock` start).
"""

from __future__ import annotations

import enum
import math
from abc import ABC, abstractmethod
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import numpy as np

from twin.core.clock import Clock
from twin.core.errors import ModelError, ModelStateError, UnknownVariableError
from twin.core.variables import Variable, VariableSpec

__all__ = ["Model", "ModelState", "StateValue", "times_equal"]

StateValue = np.ndarray | bool | int | float | str
"""What a model's saved state holds: numeric, boolean or text arrays and plain scalars."""

_TIME_KEY = "__time__"  # the model time in a saved state; hooks' keys never start with "__"
_STATE_KINDS = "biufU"  # array dtypes a state may hold: no objects, so no pickles

# Relative tolerance for "the same time": step times are computed as k * step, so two routes to
# the same instant differ by a few ulps; 1e-10 of a year is ~3 ms, far below any step we use.
_TIME_RTOL = 1e-10


def times_equal(a: float, b: float) -> bool:
    """True when two model times (seconds) denote the same instant up to rounding."""
    return abs(a - b) <= _TIME_RTOL * max(1.0, abs(a), abs(b))


class ModelState(enum.Enum):
    """Life cycle of a model: created -> initialized -> finalized."""

    CREATED = "created"
    INITIALIZED = "initialized"
    FINALIZED = "finalized"


class Model(ABC):
    """Base class of the twin's time-stepping models (traffic, heat, ground water, sensor feed).

    Declaring variables. A subclass lists its variables on the class, as ``INPUTS`` and
    ``OUTPUTS`` tuples of :class:`VariableSpec` (name, units, CSDMS-style ``standard_name`` such
    as ``groundwater__hydraulic_head``, grid kind, description, ``optional``). They can be read
    with :meth:`declared_inputs` / :meth:`declared_outputs` without creating or starting the
    model (no simulator, no store, no data files). A class whose variables depend on a resource
    it ships (the sensor feed: one output per quantity of its profiles file) overrides those
    class methods; they take the model's config, may read such a file, and never open stores,
    networks or processes. ``initialize`` checks that what ``_initialize`` bound agrees with the
    declaration (units, standard name, grid kind; every non-optional variable present) and
    refuses a model that binds a variable it does not declare.

    Hooks for subclasses; the public methods check names, shapes, times and the life cycle, so
    that every model fails the same clear way:

    - ``_initialize(config)`` (required) sets ``self.time_step`` (seconds, > 0) and binds
      ``self.inputs`` / ``self.outputs``, usually as
      ``bind(self.declared_outputs(config), {"head": raster_grid, ...})`` (scalars need no grid).
    - ``_get_value(name)`` (required) returns an output's values on its grid.
    - ``_set_value(name, values)`` stores an input (needed when the model has inputs).
    - ``_step(dt)`` advances by ``dt`` <= ``time_step`` seconds; or override
      ``_update_until(t)`` when the model can jump to ``t`` itself (e.g. SUMO, analytic models).
      The model must reach ``t`` and not go past it.
    - ``_save_state()`` / ``_load_state(state)`` (optional, for checkpoints): return the
      dynamic state as a dict of names to NumPy arrays (numbers, booleans or text) and plain
      scalars (bool, int, float, str), and put such a dict back. The state is what
      ``initialize(config)`` does not rebuild: a model restored by ``initialize(same config)``
      then ``load_state`` must continue exactly as the saved one would have, bit for bit for a
      deterministic model (inputs last set included). Model time is saved by the base class
      and is ``current_time`` already when ``_load_state`` runs (a model whose state follows
      from the time alone, like the sensor feed, saves ``{}`` and refreshes in ``_load_state``).
      Without these hooks, :meth:`save_state` says the model does not support checkpoints.
    - ``_finalize()`` releases resources (files, subprocesses); default does nothing.

    A subclass that defines ``__init__`` calls ``super().__init__(name)``. Models start at time
    0, the epoch; ``self.clock`` (set by the coupler before ``initialize``) converts model time
    to UTC datetimes. ``get_value``, ``set_value``, ``save_state`` and ``load_state`` copy, so a
    model never shares its arrays. A model never imports another model: the coupler moves values
    between them.
    """

    INPUTS: tuple[VariableSpec, ...] = ()
    OUTPUTS: tuple[VariableSpec, ...] = ()
    time_step: float = math.nan
    inputs: tuple[Variable, ...] = ()
    outputs: tuple[Variable, ...] = ()

    def __init__(self, name: str | None = None) -> None:
        self.name: str = name or type(self).__name__
        self.clock: Clock | None = None
        self._state = ModelState.CREATED
        self._time = 0.0
        self._inputs: dict[str, Variable] = {}
        self._outputs: dict[str, Variable] = {}

    # -- hooks for subclasses ---------------------------------------------------------------

    @abstractmethod
    def _initialize(self, config: Mapping[str, Any]) -> None:
        """Read ``config``, build the state, set ``time_step``, ``inputs`` and ``outputs``."""

    @abstractmethod
    def _get_value(self, name: str) -> Any:
        """Return the values of output ``name`` (array-like with the variable's grid shape)."""

    def _set_value(self, name: str, values: np.ndarray) -> None:
        """Store input ``name``; ``values`` is a private copy shaped like the grid."""
        raise NotImplementedError(f"model {self.name!r} declares inputs but has no _set_value")

    def _step(self, dt: float) -> None:
        """Advance the state by ``dt`` seconds (``dt`` <= ``time_step``)."""
        raise NotImplementedError(
            f"model {self.name!r} must implement _step(dt) or override _update_until(t)"
        )

    def _update_until(self, t: float) -> None:
        """Advance to ``t`` in steps of ``time_step``, the last one shortened to end at ``t``."""
        while not times_equal(self._time, t) and self._time < t:
            dt = min(self.time_step, t - self._time)
            if times_equal(self._time + dt, t):
                dt = t - self._time
            self._step(dt)
            self._time += dt

    def _save_state(self) -> Mapping[str, Any]:
        """The dynamic state as names -> arrays / scalars (see the class docstring)."""
        raise ModelError(self._no_checkpoints())

    def _load_state(self, state: Mapping[str, Any]) -> None:
        """Put back a state returned by ``_save_state`` (private copies)."""
        raise ModelError(self._no_checkpoints())

    def _finalize(self) -> None:
        """Release resources; the default has none."""
        return None

    # -- declarations ------------------------------------------------------------------------

    @classmethod
    def declared_inputs(cls, config: Mapping[str, Any] | None = None) -> tuple[VariableSpec, ...]:
        """The inputs this class declares (for ``config`` when they depend on it); no start-up."""
        return tuple(cls.INPUTS)

    @classmethod
    def declared_outputs(cls, config: Mapping[str, Any] | None = None) -> tuple[VariableSpec, ...]:
        """The outputs this class declares (for ``config`` when they depend on it); no start-up."""
        return tuple(cls.OUTPUTS)

    @property
    def supports_checkpoints(self) -> bool:
        """True when the model implements ``_save_state`` and ``_load_state``."""
        cls = type(self)
        return cls._save_state is not Model._save_state and cls._load_state is not Model._load_state

    # -- public interface --------------------------------------------------------------------

    @property
    def state(self) -> ModelState:
        """Where the model is in its life cycle."""
        return self._state

    @property
    def current_time(self) -> float:
        """Model time in seconds since the epoch."""
        return self._time

    @property
    def current_datetime(self) -> datetime:
        """Model time as a tz-aware UTC datetime (needs ``self.clock``)."""
        if self.clock is None:
            raise ModelStateError(
                f"model {self.name!r}: no clock set, so model time has no date; "
                "add the model to a Coupler or set model.clock"
            )
        return self.clock.to_datetime(self._time)

    @property
    def input_names(self) -> tuple[str, ...]:
        """Names of the variables the model reads through ``set_value``."""
        return tuple(self._inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        """Names of the variables the model offers through ``get_value``."""
        return tuple(self._outputs)

    def input_variable(self, name: str) -> Variable:
        """The declared input ``name`` (units, grid); unknown names raise."""
        return self._lookup(name, self._inputs, "input")

    def output_variable(self, name: str) -> Variable:
        """The declared output ``name`` (units, grid); unknown names raise."""
        return self._lookup(name, self._outputs, "output")

    def initialize(self, config: Mapping[str, Any] | None = None) -> None:
        """Set the model up from ``config`` at time 0 (the epoch); allowed once."""
        if self._state is not ModelState.CREATED:
            raise ModelStateError(
                f"model {self.name!r}: initialize called when already {self._state.value}"
            )
        config = {} if config is None else config
        self._initialize(config)
        try:
            self._check_initialized(config)
        except Exception as exc:  # release what _initialize started (a simulator, a store)
            self._state = ModelState.FINALIZED
            try:
                self._finalize()
            except Exception as also:
                exc.add_note(f"finalize of model {self.name!r} also failed: {also}")
            raise
        self._time = 0.0
        self._state = ModelState.INITIALIZED

    def _check_initialized(self, config: Mapping[str, Any]) -> None:
        """Check the time step and the bound variables against the class's declarations."""
        step = self.time_step
        if not isinstance(step, int | float) or not math.isfinite(step) or step <= 0:
            raise ModelError(
                f"model {self.name!r}: time_step must be a positive number of seconds, "
                f"got {step!r} (set self.time_step in _initialize)"
            )
        self.time_step = float(step)
        self._inputs = self._declare(self.inputs, "inputs")
        self._outputs = self._declare(self.outputs, "outputs")
        declared = (self.declared_inputs(config), self.declared_outputs(config))
        if declared != ((), ()):  # a class that declares nothing (a test double) binds freely
            self._check_declared(self._inputs, declared[0], "input")
            self._check_declared(self._outputs, declared[1], "output")

    def update_until(self, t: float) -> None:
        """Advance the model from ``current_time`` to exactly ``t`` seconds."""
        self._require_initialized("update_until")
        target = float(t)
        if not math.isfinite(target):
            raise ModelError(f"model {self.name!r}: update_until needs a finite time, got {t!r}")
        if times_equal(target, self._time):
            return
        if target < self._time:
            raise ModelError(
                f"model {self.name!r}: cannot go back from t={self._time:g} s to t={target:g} s"
            )
        self._update_until(target)
        self._time = target

    def get_value(self, name: str) -> np.ndarray:
        """A copy of output ``name``'s values, shaped like its grid."""
        self._require_initialized("get_value")
        variable = self.output_variable(name)
        values = np.array(self._get_value(name), copy=True)
        return self._shaped(values, variable, "returned by get_value")

    def set_value(self, name: str, values: Any) -> None:
        """Set input ``name`` from ``values`` (its grid's shape, or flat with the same size)."""
        self._require_initialized("set_value")
        variable = self.input_variable(name)
        array = np.array(values, copy=True)
        if array.dtype.kind not in "biuf":
            raise ModelError(
                f"model {self.name!r} input {name!r}: expected numbers, got dtype {array.dtype}"
            )
        self._set_value(name, self._shaped(array, variable, "given to set_value"))

    def save_state(self) -> dict[str, StateValue]:
        """A copy of the model's dynamic state and time, for a checkpoint (see ``load_state``)."""
        self._require_initialized("save_state")
        if not self.supports_checkpoints:
            raise ModelError(self._no_checkpoints())
        raw = self._save_state()
        if not isinstance(raw, Mapping):
            raise ModelError(
                f"model {self.name!r}: _save_state must return a dict, got {type(raw).__name__}"
            )
        state = {key: self._state_value(key, value, "saved") for key, value in raw.items()}
        state[_TIME_KEY] = self._time
        return state

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Put back a state from ``save_state`` into this model, initialized with the same config.

        The model continues from the saved time exactly as the saved model would have.
        """
        self._require_initialized("load_state")
        if not self.supports_checkpoints:
            raise ModelError(self._no_checkpoints())
        if not isinstance(state, Mapping) or _TIME_KEY not in state:
            raise ModelError(
                f"model {self.name!r}: load_state needs a dict from save_state (with its time)"
            )
        time = state[_TIME_KEY]
        if not isinstance(time, int | float) or not math.isfinite(time) or time < 0:
            raise ModelError(f"model {self.name!r}: saved time must be seconds >= 0, got {time!r}")
        values = {
            key: self._state_value(key, value, "loaded")
            for key, value in state.items()
            if key != _TIME_KEY
        }
        before = self._time
        self._time = float(time)  # _load_state sees the saved time as current_time
        try:
            self._load_state(values)
        except BaseException:
            self._time = before
            raise

    def finalize(self) -> None:
        """Release the model's resources; later calls do nothing (safe in ``finally``)."""
        if self._state is ModelState.FINALIZED:
            return
        was_initialized = self._state is ModelState.INITIALIZED
        self._state = ModelState.FINALIZED
        if was_initialized:
            self._finalize()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} {self.name!r} {self._state.value} "
            f"t={self._time:g} s step={self.time_step:g} s>"
        )

    # -- helpers -----------------------------------------------------------------------------

    def _require_initialized(self, action: str) -> None:
        if self._state is ModelState.CREATED:
            raise ModelStateError(f"model {self.name!r}: {action} called before initialize")
        if self._state is ModelState.FINALIZED:
            raise ModelStateError(f"model {self.name!r}: {action} called after finalize")

    def _declare(self, variables: Any, what: str) -> dict[str, Variable]:
        declared: dict[str, Variable] = {}
        for variable in tuple(variables):
            if not isinstance(variable, Variable):
                raise ModelError(
                    f"model {self.name!r} {what}: expected Variable entries, got {variable!r}"
                )
            if variable.name in declared:
                raise ModelError(f"model {self.name!r} {what}: {variable.name!r} declared twice")
            declared[variable.name] = variable
        return declared

    def _check_declared(
        self, bound: dict[str, Variable], specs: tuple[VariableSpec, ...], kind: str
    ) -> None:
        """Refuse bound variables that disagree with the class's declaration of them."""
        declared = {spec.name: spec for spec in specs}
        for name, variable in bound.items():
            spec = declared.get(name)
            if spec is None:
                known = ", ".join(declared) or "none"
                raise ModelError(
                    f"model {self.name!r}: {kind} {name!r} is not declared on "
                    f"{type(self).__name__}; declared {kind}s are: {known}"
                )
            problem = spec.mismatch(variable)
            if problem is not None:
                raise ModelError(f"model {self.name!r} {kind} {name!r}: bound with {problem}")
        missing = [s.name for s in specs if not s.optional and s.name not in bound]
        if missing:
            raise ModelError(
                f"model {self.name!r}: declared {kind}(s) {', '.join(missing)} not bound "
                "by initialize"
            )

    def _no_checkpoints(self) -> str:
        return f"model {self.name!r} ({type(self).__name__}) does not support checkpoints"

    def _state_value(self, key: Any, value: Any, how: str) -> StateValue:
        """A private copy of one state entry; refuses what a checkpoint file cannot hold."""
        if not isinstance(key, str) or not key or key.startswith("__") or "/" in key:
            raise ModelError(
                f"model {self.name!r}: {how} state keys must be text without '/' and not "
                f"starting with '__', got {key!r}"
            )
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, int) and not isinstance(value, bool) and not -(2**63) <= value < 2**63:
            raise ModelError(f"model {self.name!r} {how} state {key!r}: integer beyond 64 bits")
        if isinstance(value, bool | int | float | str):
            return value
        if isinstance(value, np.ndarray) and value.dtype.kind in _STATE_KINDS:
            return value.copy()
        what = value.dtype if isinstance(value, np.ndarray) else type(value).__name__
        raise ModelError(
            f"model {self.name!r} {how} state {key!r}: expected a numeric, boolean or text "
            f"array or a plain scalar, got {what}"
        )

    def _lookup(self, name: str, table: dict[str, Variable], kind: str) -> Variable:
        if not isinstance(name, str):
            raise UnknownVariableError(
                f"model {self.name!r}: variable names are text, got {type(name).__name__} {name!r}"
            )
        if name in table:
            return table[name]
        if self._state is ModelState.CREATED:
            raise ModelStateError(
                f"model {self.name!r}: variables are declared by initialize; asked for {name!r}"
            )
        known = ", ".join(sorted(table)) or "none"
        other = self._outputs if kind == "input" else self._inputs
        hint = (
            f" ({name!r} is an {'output' if kind == 'input' else 'input'})" if name in other else ""
        )
        raise UnknownVariableError(
            f"model {self.name!r} has no {kind} {name!r}{hint}; its {kind}s are: {known}"
        )

    def _shaped(self, values: np.ndarray, variable: Variable, where: str) -> np.ndarray:
        shape = variable.grid.shape
        if values.shape == shape:
            return values
        if values.size == variable.grid.size:
            return values.reshape(shape)
        raise ModelError(
            f"model {self.name!r} variable {variable.name!r}: values {where} have shape "
            f"{values.shape}, expected {shape} ({variable.grid.describe()})"
        )
