"""A model held to a window and resumable by deterministic replay, for models without a saved state.

SUMO's saved state leaves out the controllers' own state and the outputs already written, so the
traffic model saves no state of its own. It is deterministic for a seed, so :class:`Replayed` gives
it checkpoints through the core hooks: the saved state is the model time, and loading it runs a
fresh model from the epoch to that time along the same update times as the first run. The resumed
model then continues bit for bit, and its outputs on disk (trip info, FCD) are complete, written
once.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from twin.core import Model, times_equal


class Replayed(Model):
    """Wraps ``inner``: the same variables and steps, checkpoints by replay, an optional window.

    ``window`` (seconds): the inner model is advanced no further than this; afterwards it holds its
    last state (its outputs keep their values). ``step`` is the coupling step the coupler meets it
    at (default: its own time step); ``stops`` gives the extra times the coupler stopped
    at (checkpoints), so a replay updates at exactly the times the first run did.
    """

    def __init__(
        self,
        inner: Model,
        *,
        window: float | None = None,
        step: float | None = None,
        stops: Callable[[float], Sequence[float]] = lambda t: (),
    ) -> None:
        super().__init__(inner.name)
        self.inner = inner
        self.window = math.inf if window is None else float(window)
        self._step = step
        self._stops = stops

    def _initialize(self, config: Mapping[str, Any]) -> None:
        self.inner.name = self.name
        self.inner.clock = self.clock
        self.inner.initialize(config)
        self.time_step = self.inner.time_step
        self.inputs = tuple(self.inner.input_variable(n) for n in self.inner.input_names)
        self.outputs = tuple(self.inner.output_variable(n) for n in self.inner.output_names)

    def _update_until(self, t: float) -> None:
        self.inner.update_until(min(t, self.window))

    def _get_value(self, name: str) -> Any:
        return self.inner.get_value(name)

    def _set_value(self, name: str, values: np.ndarray) -> None:
        self.inner.set_value(name, values)

    def _save_state(self) -> Mapping[str, Any]:
        return {"replay_to": self.current_time}

    def _load_state(self, state: Mapping[str, Any]) -> None:
        target = min(float(state["replay_to"]), self.window)
        step = self._step or self.time_step
        times = {k * step for k in range(1, int(target / step + 1e-9) + 1)}
        times |= {s for s in self._stops(target) if s < target}
        for t in sorted(times | {target}):
            if t > self.inner.current_time and not times_equal(t, self.inner.current_time):
                self.inner.update_until(t)

    def _finalize(self) -> None:
        self.inner.finalize()
