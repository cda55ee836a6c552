"""The controller interface stepped by the simulation runner, and validation of controller specs."""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from twin.errors import ConfigError

if TYPE_CHECKING:
    from twin.traffic.sim import Simulation

__all__ = ["Controller", "Param", "validate_spec"]

_REQUIRED = object()


@dataclass(frozen=True)
class Param:
    """One allowed key of a controller spec: its check, the expected value in words, a default."""

    check: Callable[[Any], bool]
    expected: str
    default: Any = _REQUIRED

    @property
    def required(self) -> bool:
        """True when the spec must give this key."""
        return self.default is _REQUIRED


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)


def number(minimum: float | None = None, maximum: float | None = None, default: Any = _REQUIRED):
    """A Param for a finite number within [minimum, maximum]."""
    parts = []
    if minimum is not None:
        parts.append(f">= {minimum:g}")
    if maximum is not None:
        parts.append(f"<= {maximum:g}")
    text = "a number" + (" " + " and ".join(parts) if parts else "")
    return Param(
        lambda v: (
            _number(v) and (minimum is None or v >= minimum) and (maximum is None or v <= maximum)
        ),
        text,
        default,
    )


def integer(minimum: int | None = None, default: Any = _REQUIRED) -> Param:
    """A Param for an integer >= minimum."""
    text = "an integer" + (f" >= {minimum}" if minimum is not None else "")
    return Param(
        lambda v: (
            isinstance(v, int) and not isinstance(v, bool) and (minimum is None or v >= minimum)
        ),
        text,
        default,
    )


def boolean(default: Any = _REQUIRED) -> Param:
    """A Param for true/false."""
    return Param(lambda v: isinstance(v, bool), "true or false", default)


def text(default: Any = _REQUIRED) -> Param:
    """A Param for a non-empty string."""
    return Param(lambda v: isinstance(v, str) and bool(v), "a non-empty string", default)


def choice(options: tuple[str, ...], default: Any = _REQUIRED) -> Param:
    """A Param for one of a few words."""
    return Param(lambda v: v in options, "one of " + ", ".join(repr(o) for o in options), default)


def id_list(word: str | None = None, default: Any = _REQUIRED, allow_empty: bool = False) -> Param:
    """A Param for a list of SUMO ids (strings), or the single word ``word`` (e.g. "auto")."""

    def check(v: Any) -> bool:
        """A list of non-empty strings, or the special word."""
        if word is not None and v == word:
            return True
        return (
            isinstance(v, list | tuple)
            and (allow_empty or len(v) > 0)
            and all(isinstance(x, str) and x for x in v)
        )

    expected = "a list of id strings" + ("" if allow_empty else " (not empty)")
    if word is not None:
        expected = f"{word!r} or " + expected
    return Param(check, expected, default)


def validate_spec(
    spec: Mapping[str, Any], params: Mapping[str, Param], where: str
) -> dict[str, Any]:
    """Check a spec's keys and values against ``params``; return the values with defaults filled in.

    ``where`` names the spec in messages (e.g. "controllers[2] (type 'virtual_barrier')").
    """
    unknown = sorted(set(spec) - set(params) - {"type"})
    if unknown:
        raise ConfigError(
            f"{where}: unknown key {unknown[0]!r}; allowed keys are "
            + ", ".join(sorted(set(params) | {"type"}))
        )
    values: dict[str, Any] = {}
    for key, param in params.items():
        if key in spec:
            value = spec[key]
            if not param.check(value):
                raise ConfigError(f"{where}: {key!r} must be {param.expected}, got {value!r}")
            values[key] = list(value) if isinstance(value, tuple) else value
        elif param.required:
            raise ConfigError(f"{where}: missing key {key!r} ({param.expected})")
        else:
            values[key] = param.default
    return values


class Controller(ABC):
    """Something that watches and steers a running simulation: signal priority, barriers, checks.

    The runner calls :meth:`attach` once (declare exactly what the controller reads with
    ``sim.watch``, validate ids against the loaded network), then :meth:`step` after every
    simulation step.
    """

    kind: ClassVar[str] = "controller"
    params: ClassVar[dict[str, Param]] = {}
    name: str = "controller"

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any], *, where: str) -> Controller:
        """Build the controller from a validated spec (keys as in :attr:`params`)."""
        values = validate_spec(spec, cls.params, where)
        return cls(**values)

    @abstractmethod
    def attach(self, sim: Simulation) -> None:
        """Subscribe to what this controller reads and check its ids against the running network."""

    @abstractmethod
    def step(self, sim: Simulation, t: float) -> None:
        """React to the state after the simulation step that ended at time ``t`` (seconds)."""

    @abstractmethod
    def results(self) -> dict[str, tuple[float, str]]:
        """Controller KPIs: name (prefixed with this controller's name) -> (value, unit)."""

    def write_outputs(self, folder: Path) -> None:  # noqa: B027 - optional hook, default: nothing
        """Write this controller's logs (CSV) into ``folder``; the default writes nothing."""

    def _kpi(self, key: str) -> str:
        return f"{self.name}.{key}"
