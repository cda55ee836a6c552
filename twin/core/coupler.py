"""The coupler: advances named models on one clock, each at its own step, and moves values."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import MappingProxyType, TracebackType
from typing import Any

import numpy as np

from twin.core import checkpoint as ckpt
from twin.core.clock import Clock, format_utc
from twin.core.errors import CouplingError, ModelError, UnknownVariableError
from twin.core.model import Model, ModelState, times_equal

__all__ = ["Coupler", "Link", "Progress", "Transform"]

Transform = Callable[[np.ndarray], Any]
"""Maps a source output's values to a target input's values (regridding, unit conversion)."""


@dataclass(frozen=True)
class Link:
    """``source.output`` feeds ``target.input``, through ``transform`` when given."""

    source: str
    output: str
    target: str
    input: str
    transform: Transform | None = None

    def __str__(self) -> str:
        return f"{self.source}.{self.output} -> {self.target}.{self.input}"


@dataclass(frozen=True)
class Progress:
    """Reported after each model advance: who moved, to when, and how far the whole run is."""

    model: str
    time: float
    until: float
    committed: float

    @property
    def fraction(self) -> float:
        """Share of the current ``step_to``/``run`` target that every model has reached."""
        return 1.0 if self.until <= 0.0 else min(1.0, self.committed / self.until)


@dataclass
class _Entry:
    """A model in the coupler with its coupling step and its link bookkeeping."""

    model: Model
    step: float
    index: int
    incoming: list[Link]
    outgoing: set[str]
    # outputs as they were at ``held_time``, the start of the model's latest advance
    held_time: float = math.nan
    held: dict[str, np.ndarray] | None = None


class Coupler:
    """Runs several named models on one :class:`Clock` and passes values along links.

    Exchange rule (results depend on it):

    1. Each model ``m`` has a coupling step ``h_m`` (given to :meth:`add`, by default the
       model's ``time_step``) and advances on the grid ``k * h_m`` seconds after the epoch
       (k = 1, 2, ...); a step that would pass the target of :meth:`step_to`/:meth:`run` is
       shortened to end there. Within one coupling step a model may take smaller steps of its
       own; the coupler only calls ``update_until`` at the grid times.
    2. The model with the earliest ``current_time`` advances next; ties go in the order the
       models were added. So when ``m`` advances from ``t`` every other model, each source of
       ``m`` included, has already reached at least ``t``.
    3. Just before ``m`` advances from ``t`` to ``t'``, each linked input of ``m`` is set to the
       source output's value *at t* under zero-order hold: the value the source had at its
       latest own grid time ``s <= t``, taken after the source's ``update_until(s)`` and before
       it received its inputs for the step from ``s``. A source exactly at ``t`` gives its
       current value; a source already past ``t`` gives the value kept from the start of its
       latest step (that start is ``<= t`` by rule 2). The link's transform, if any, is applied
       to that value, then the target's ``set_value`` stores it; it is held over the whole step.

    Consequences: no model sees a value from its own future (causal); the result does not
    depend on the order models or links were added (as in a Jacobi iteration, models at the same
    time could advance in parallel); an input lags its source by less than the source's step,
    so the coupling is first-order accurate in the steps. Fluxes exchanged as cumulative totals
    (the target takes the increment since the previous exchange) conserve mass exactly, with
    the not-yet-delivered part in transit.

    Models are initialized when added and finalized by :meth:`run` at its end, by
    :meth:`close`, by leaving a ``with`` block, and on any error while stepping.
    """

    def __init__(self, clock: Clock) -> None:
        if not isinstance(clock, Clock):
            raise CouplingError(f"clock: expected a twin.core.Clock, got {type(clock).__name__}")
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._links: list[Link] = []
        self._started = False
        self._closed = False

    # -- set-up ------------------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        """The clock: epoch (model time 0), optional end, seconds <-> UTC datetimes."""
        return self._clock

    @property
    def models(self) -> Mapping[str, Model]:
        """The models by name, in the order they were added (read-only view)."""
        return MappingProxyType({name: entry.model for name, entry in self._entries.items()})

    @property
    def links(self) -> tuple[Link, ...]:
        """The links in the order they were made."""
        return tuple(self._links)

    def step_of(self, name: str) -> float:
        """The coupling step (seconds) of model ``name``."""
        return self._entry(name).step

    def add(
        self,
        name: str,
        model: Model,
        config: Mapping[str, Any] | None = None,
        *,
        step: float | None = None,
    ) -> Model:
        """Add ``model`` as ``name`` (renaming it), set its clock and initialize it with ``config``.

        ``step`` is how often (seconds) the coupler exchanges values with the model; by default
        the model's own ``time_step``. An already initialized model is accepted without config.
        """
        self._check_can_change("add a model")
        if not isinstance(name, str) or not name.strip():
            raise CouplingError(f"add: model name must be non-empty text, got {name!r}")
        if name in self._entries:
            raise CouplingError(f"add: a model named {name!r} is already in the coupler")
        if not isinstance(model, Model):
            raise CouplingError(
                f"add {name!r}: expected a twin.core.Model, got {type(model).__name__}"
            )
        if step is not None and (
            not isinstance(step, int | float) or not math.isfinite(step) or step <= 0
        ):
            raise CouplingError(
                f"add {name!r}: step must be a positive number of seconds, got {step!r}"
            )
        if model.state is ModelState.FINALIZED:
            raise CouplingError(f"add {name!r}: the model is already finalized")
        if model.clock is not None and model.clock != self._clock:
            raise CouplingError(f"add {name!r}: the model has another clock ({model.clock!r})")
        model.name = name
        model.clock = self._clock
        if model.state is ModelState.CREATED:
            model.initialize(config)
        elif config is not None:
            raise CouplingError(f"add {name!r}: the model is already initialized; config unused")
        elif not times_equal(model.current_time, 0.0):
            raise CouplingError(
                f"add {name!r}: the model is at t={model.current_time:g} s; models must start "
                "at the epoch (t=0)"
            )
        coupling_step = model.time_step if step is None else step
        self._entries[name] = _Entry(model, float(coupling_step), len(self._entries), [], set())
        return model

    def link(
        self,
        source: tuple[str, str],
        target: tuple[str, str],
        transform: Transform | None = None,
    ) -> Link:
        """Feed ``(source_model, output_name)`` into ``(target_model, input_name)``.

        Without ``transform`` the two variables must have the same units and matching grids;
        with one, the transform is trusted to convert units and regrid, and its result is checked
        against the target's grid shape at each exchange.
        """
        self._check_can_change("link")
        for end, what in ((source, "source"), (target, "target")):
            if not (
                isinstance(end, tuple) and len(end) == 2 and all(isinstance(s, str) for s in end)
            ):
                raise CouplingError(
                    f"link {what}: expected (model_name, variable_name), got {end!r}"
                )
        candidate = Link(source[0], source[1], target[0], target[1], transform)
        if transform is not None and not callable(transform):
            raise CouplingError(f"link {candidate}: transform must be callable, got {transform!r}")
        try:
            src_var = self._entry(candidate.source).model.output_variable(candidate.output)
            dst_var = self._entry(candidate.target).model.input_variable(candidate.input)
        except (UnknownVariableError, CouplingError) as exc:
            raise CouplingError(f"cannot link {candidate}: {exc}") from None
        for existing in self._links:
            if (existing.target, existing.input) == (candidate.target, candidate.input):
                raise CouplingError(
                    f"cannot link {candidate}: {candidate.target}.{candidate.input} is already "
                    f"fed by {existing.source}.{existing.output}"
                )
        if src_var.standard_name != dst_var.standard_name:
            raise CouplingError(
                f"cannot link {candidate.source}.{src_var.name} -> {candidate.target}.{dst_var.name}: "
                f"they mean different things ({src_var.standard_name or 'no standard name'!r} vs "
                f"{dst_var.standard_name or 'no standard name'!r}); a transform converts units or "
                "grids, not meanings"
            )
        if transform is None:
            problems = []
            if src_var.units != dst_var.units:
                problems.append(f"units differ ({src_var.units!r} vs {dst_var.units!r})")
            grid_problem = src_var.grid.mismatch(dst_var.grid)
            if grid_problem is not None:
                problems.append(grid_problem)
            if problems:
                raise CouplingError(
                    f"cannot link {candidate.source}.{src_var} -> {candidate.target}.{dst_var}: "
                    f"{'; '.join(problems)}; pass transform= to convert units or regrid"
                )
        self._links.append(candidate)
        self._entries[candidate.target].incoming.append(candidate)
        self._entries[candidate.source].outgoing.add(candidate.output)
        return candidate

    # -- running -----------------------------------------------------------------------------

    @property
    def time(self) -> float:
        """Seconds since the epoch that every model has reached."""
        return min((e.model.current_time for e in self._entries.values()), default=0.0)

    @property
    def current_datetime(self) -> datetime:
        """:attr:`time` as a tz-aware UTC datetime."""
        return self._clock.to_datetime(self.time)

    def step_to(
        self,
        t: float | datetime | str,
        progress: Callable[[Progress], None] | None = None,
    ) -> None:
        """Advance every model to exactly ``t`` (seconds, or a tz-aware datetime / ISO text).

        Models stay initialized, so :meth:`step_to` can be called again with a later time. On
        any error (including one raised by ``progress``) all models are finalized first.
        """
        if self._closed:
            raise CouplingError("step_to: the coupler is closed (its models are finalized)")
        if not self._entries:
            raise CouplingError("step_to: no models; add some with Coupler.add")
        target = self._seconds(t, "t")
        if target < self.time and not times_equal(target, self.time):
            raise CouplingError(
                f"step_to: t={target:g} s ({self._clock.isoformat(target)}) is before the "
                f"coupler time {self.time:g} s"
            )
        duration = self._clock.duration
        if duration is not None and target > duration and not times_equal(target, duration):
            raise CouplingError(
                f"step_to: t={self._clock.isoformat(target)} is after the clock's end "
                f"{self._clock.isoformat(duration)}"
            )
        self._started = True
        try:
            self._advance(target, progress)
        except BaseException as exc:
            self._finalize_all(exc)
            raise

    def run(
        self,
        until: float | datetime | str | None = None,
        progress: Callable[[Progress], None] | None = None,
    ) -> None:
        """Advance every model to ``until`` (default: the clock's end), then finalize them all."""
        try:
            if until is None:
                if self._clock.duration is None:
                    raise CouplingError("run: the clock has no end; pass until=")
                until = self._clock.duration
            self.step_to(until, progress)
        finally:
            self.close()

    # -- checkpoints -------------------------------------------------------------------------

    def checkpoint(self, path: str | Path) -> Path:
        """Save the coupled state to ``path`` in one step: a run restored from it continues exactly.

        Holds each model's :meth:`Model.save_state`, the model times, the outputs held for links
        (models may stand at different times when called from a ``progress`` callback) and the
        clock; the format is described in :mod:`twin.core.checkpoint`. Every model must support
        checkpoints; otherwise nothing is written.
        """
        path = Path(path)
        if self._closed:
            raise CouplingError(f"checkpoint {path}: the coupler is closed (models finalized)")
        arrays: dict[str, np.ndarray] = {}
        models = []
        for i, (name, entry) in enumerate(self._entries.items()):
            try:
                state = entry.model.save_state()
            except ModelError as exc:
                raise CouplingError(f"cannot checkpoint to {path}: {exc}") from None
            time = state.pop("__time__")
            held = entry.held or {}
            models.append(
                {
                    "name": name,
                    "class": _class_path(entry.model),
                    "step": entry.step,
                    "time": time,
                    "state": ckpt.pack_state(f"m{i}_s", state, arrays),
                    "held_time": entry.held_time if entry.held is not None else None,
                    "held": ckpt.pack_state(f"m{i}_h", held, arrays),
                }
            )
        header = {
            "format": ckpt.FORMAT,
            "version": ckpt.VERSION,
            "clock": self._clock_header(),
            "time": self.time,
            "models": models,
            "links": [_link_header(link) for link in self._links],
        }
        return ckpt.write(path, header, arrays)

    def restore(self, path: str | Path) -> None:
        """Continue from checkpoint ``path``: load every model's state, time and held outputs.

        The coupler must be set up as the checkpointed one (same models, classes, steps, links
        and clock start; models added with the same configs) and must not have stepped. The
        clock's end may differ, so a resumed run can go further than the first one meant to.
        """
        path = Path(path)
        self._check_can_change("restore")
        header, arrays = ckpt.read(path)
        loaded = []
        try:
            self._check_matches(header, path)
            pairs = zip(self._entries.values(), header["models"], strict=True)
            for i, (entry, saved) in enumerate(pairs):
                state = ckpt.unpack_state(f"m{i}_s", saved["state"], arrays, path)
                state["__time__"] = float(saved["time"])
                held = ckpt.unpack_state(f"m{i}_h", saved["held"], arrays, path)
                loaded.append((entry, state, held, saved["held_time"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise CouplingError(f"checkpoint {path}: malformed header ({exc!r})") from None
        for entry, state, held, held_time in loaded:
            try:
                entry.model.load_state(state)
            except ModelError as exc:
                raise CouplingError(f"cannot restore from {path}: {exc}") from None
            for value in held.values():
                value.flags.writeable = False
            entry.held = held if held_time is not None else None
            entry.held_time = math.nan if held_time is None else float(held_time)
        self._started = True

    def _clock_header(self) -> dict[str, str | None]:
        end = self._clock.end
        return {
            "start": format_utc(self._clock.start),
            "end": None if end is None else format_utc(end),
        }

    def _check_matches(self, header: Mapping[str, Any], path: Path) -> None:
        """Refuse a checkpoint of another set-up, naming the first difference."""
        start = header.get("clock", {}).get("start")
        if start != self._clock_header()["start"]:
            raise CouplingError(
                f"checkpoint {path}: clock start {start!r}, this run starts "
                f"{self._clock_header()['start']!r}"
            )
        saved = [(m["name"], m["class"], float(m["step"])) for m in header.get("models", [])]
        here = [(n, _class_path(e.model), e.step) for n, e in self._entries.items()]
        if saved != here:
            raise CouplingError(
                f"checkpoint {path}: models (name, class, step) {saved}, this run has {here}"
            )
        links = [list(link) for link in header.get("links", [])]
        ours = [_link_header(link) for link in self._links]
        if links != ours:
            raise CouplingError(f"checkpoint {path}: links {links}, this run has {ours}")
        duration = self._clock.duration
        time = float(header.get("time", 0.0))
        if duration is not None and time > duration and not times_equal(time, duration):
            raise CouplingError(
                f"checkpoint {path}: saved at {self._clock.isoformat(time)}, after this run's end"
            )

    def close(self) -> None:
        """Finalize every model (each one, even when another's finalize fails); idempotent."""
        self._finalize_all(None)

    def __enter__(self) -> Coupler:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._finalize_all(exc)

    def __repr__(self) -> str:
        names = ", ".join(f"{n}@{e.step:g}s" for n, e in self._entries.items())
        return f"<Coupler t={self.time:g} s models=[{names}] links={len(self._links)}>"

    # -- internals ---------------------------------------------------------------------------

    def _advance(self, target: float, progress: Callable[[Progress], None] | None) -> None:
        entries = list(self._entries.values())
        while True:
            behind = [
                e
                for e in entries
                if e.model.current_time < target and not times_equal(e.model.current_time, target)
            ]
            if not behind:
                return
            entry = min(behind, key=lambda e: (e.model.current_time, e.index))
            model = entry.model
            t = model.current_time
            t_next = self._next_time(entry.step, t, target)
            if entry.outgoing:  # keep the outputs at t for models that are still behind t
                entry.held = {}
                for name in entry.outgoing:
                    value = model.get_value(name)
                    value.flags.writeable = False
                    entry.held[name] = value
                entry.held_time = t
            for link in entry.incoming:
                self._deliver(link, t)
            try:
                model.update_until(t_next)
            except Exception as exc:
                exc.add_note(
                    f"while the coupler advanced model {model.name!r} from "
                    f"{self._clock.isoformat(t)} to {self._clock.isoformat(t_next)}"
                )
                raise
            if progress is not None:
                progress(Progress(model.name, t_next, target, self.time))

    @staticmethod
    def _next_time(step: float, t: float, target: float) -> float:
        """The first grid time ``k * step`` after ``t``, or ``target`` if that comes first."""
        k = math.floor(t / step) + 1
        while k * step < t or times_equal(k * step, t):
            k += 1
        candidate = k * step
        if candidate > target or times_equal(candidate, target):
            return target
        return candidate

    def _deliver(self, link: Link, t: float) -> None:
        """Set ``link``'s target input from the source value at ``t`` (rule 3 of the class)."""
        source = self._entries[link.source]
        now = source.model.current_time
        if now <= t or times_equal(now, t):
            value = source.model.get_value(link.output)
        else:
            held = source.held
            if held is None or not (source.held_time <= t or times_equal(source.held_time, t)):
                raise CouplingError(  # cannot happen with rule 2; guards the invariant
                    f"link {link}: no value of {link.source} kept for t={t:g} s"
                )
            value = held[link.output]
        try:
            if link.transform is not None:
                value = link.transform(value)
            self._entries[link.target].model.set_value(link.input, value)
        except Exception as exc:
            exc.add_note(f"while passing {link} at {self._clock.isoformat(t)}")
            raise

    def _finalize_all(self, error: BaseException | None) -> None:
        if self._closed:
            return
        self._closed = True
        first: BaseException | None = None
        for name, entry in self._entries.items():
            try:
                entry.model.finalize()
            except Exception as exc:
                note = f"finalize of model {name!r} also failed: {type(exc).__name__}: {exc}"
                if error is not None:
                    error.add_note(note)
                elif first is None:
                    first = exc
                else:
                    first.add_note(note)
        if first is not None:
            raise first

    def _check_can_change(self, action: str) -> None:
        if self._closed:
            raise CouplingError(f"{action}: the coupler is closed")
        if self._started:
            raise CouplingError(f"{action}: not allowed once the coupler has started stepping")

    def _entry(self, name: str) -> _Entry:
        try:
            return self._entries[name]
        except KeyError:
            known = ", ".join(self._entries) or "none"
            raise CouplingError(f"no model named {name!r}; models are: {known}") from None

    def _seconds(self, t: float | datetime | str, field: str) -> float:
        if isinstance(t, datetime | str):
            return self._clock.to_seconds(t)
        try:
            value = float(t)
        except (TypeError, ValueError):
            raise CouplingError(
                f"{field}: expected seconds, a tz-aware datetime or ISO 8601 text, got {t!r}"
            ) from None
        if not math.isfinite(value):
            raise CouplingError(f"{field}: expected a finite time, got {t!r}")
        return value


def _class_path(model: Model) -> str:
    cls = type(model)
    return f"{cls.__module__}.{cls.__qualname__}"


def _link_header(link: Link) -> list[Any]:
    return [link.source, link.output, link.target, link.input, link.transform is not None]
