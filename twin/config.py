"""TOML configuration: load and validate against a small declarative schema.

Every config file of the twin (data pack, scenarios, scenes) goes through `load_toml` and `validate`, so a bad
file always gives one message naming the file, the key and what was expected.
"""

from __future__ import annotations

import difflib
import math
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twin.errors import ConfigError

_MISSING = object()


@dataclass(frozen=True)
class Field:
    """One key of a TOML table: its type, whether it is required, and an optional extra check.

    `check` returns None when the value is fine, else a short phrase saying what was expected.
    `schema` validates a nested table; `items` validates each element of an array of tables.
    """

    type: type | tuple[type, ...] = object
    required: bool = True
    default: Any = None
    choices: tuple[Any, ...] | None = None
    check: Callable[[Any], str | None] | None = None
    schema: Mapping[str, Field] | None = None
    items: Mapping[str, Field] | None = None
    extra_keys: bool = False
    doc: str = ""


def load_toml(path: str | Path) -> dict[str, Any]:
    """Read a TOML file, turning a missing file or a syntax error into a one-line ConfigError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None


def _type_name(t: type | tuple[type, ...]) -> str:
    names = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}
    names.update({list: "an array", dict: "a table"})
    if isinstance(t, tuple):
        return " or ".join(names.get(x, x.__name__) for x in t)
    return names.get(t, t.__name__)


def _describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _type_ok(value: Any, expected: type | tuple[type, ...]) -> bool:
    types = expected if isinstance(expected, tuple) else (expected,)
    if isinstance(value, bool) and bool not in types:
        return False  # TOML true/false is not a number, even though bool subclasses int
    if float in types and isinstance(value, int) and not isinstance(value, bool):
        return True  # an integer is a fine number
    return isinstance(value, types)


def validate(
    data: Mapping[str, Any],
    schema: Mapping[str, Field],
    *,
    file: str | Path,
    where: str = "",
    extra_keys: bool = False,
) -> dict[str, Any]:
    """Check `data` against `schema`; return a copy with defaults filled in.

    Raises ConfigError naming the file, the dotted key and what was expected.
    """
    out: dict[str, Any] = {}
    if not extra_keys:
        for key in data:
            if key not in schema:
                hint = difflib.get_close_matches(key, list(schema), n=1)
                did = f" (did you mean '{hint[0]}'?)" if hint else ""
                allowed = ", ".join(sorted(schema))
                raise ConfigError(
                    f"{file}: unknown key '{where}{key}'{did}; expected one of: {allowed}"
                )
    else:
        out.update({k: v for k, v in data.items() if k not in schema})
    for key, spec in schema.items():
        dotted = f"{where}{key}"
        value = data.get(key, _MISSING)
        if value is _MISSING:
            if spec.required:
                what = f" ({spec.doc})" if spec.doc else ""
                raise ConfigError(f"{file}: missing key '{dotted}'{what}")
            out[key] = spec.default
            continue
        out[key] = _validate_value(value, spec, file=file, dotted=dotted)
    return out


def _validate_value(value: Any, spec: Field, *, file: str | Path, dotted: str) -> Any:
    if spec.schema is not None:
        if not isinstance(value, dict):
            raise ConfigError(f"{file}: '{dotted}' must be a table, got {_describe(value)}")
        return validate(
            value, spec.schema, file=file, where=f"{dotted}.", extra_keys=spec.extra_keys
        )
    if spec.items is not None:
        if not isinstance(value, list):
            raise ConfigError(
                f"{file}: '{dotted}' must be an array of tables, got {_describe(value)}"
            )
        result = []
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise ConfigError(f"{file}: '{dotted}[{i}]' must be a table, got {_describe(item)}")
            result.append(validate(item, spec.items, file=file, where=f"{dotted}[{i}]."))
        return result
    if not _type_ok(value, spec.type):
        raise ConfigError(
            f"{file}: '{dotted}' must be {_type_name(spec.type)}, got {_describe(value)}"
        )
    if _is_number(value) and _wants_number(spec.type) and not _finite(value):
        # TOML writes inf and nan; no setting of the twin means either, and both break arithmetic
        raise ConfigError(f"{file}: '{dotted}' must be a finite number, got {_describe(value)}")
    if spec.choices is not None and value not in spec.choices:
        options = ", ".join(repr(c) for c in spec.choices)
        raise ConfigError(f"{file}: '{dotted}' must be one of {options}, got {_describe(value)}")
    if spec.check is not None:
        problem = spec.check(value)
        if problem:
            raise ConfigError(f"{file}: '{dotted}' must be {problem}, got {_describe(value)}")
    if isinstance(value, int) and not isinstance(value, bool) and spec.type is float:
        return float(value)
    return value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _wants_number(t: type | tuple[type, ...]) -> bool:
    return float in (t if isinstance(t, tuple) else (t,))


def _finite(value: int | float) -> bool:
    """True for a number that is a finite float (an integer of 400 digits is not)."""
    try:
        return math.isfinite(float(value))
    except OverflowError:
        return False


def numbers(n: int | None = None, positive: bool = False) -> Callable[[Any], str | None]:
    """A check for an array of finite numbers (of length n, optionally all > 0)."""

    def check(value: Any) -> str | None:
        what = f"an array of {n} finite numbers" if n else "an array of finite numbers"
        if positive:
            what += " greater than zero"
        if not isinstance(value, list) or (n is not None and len(value) != n):
            return what
        if not all(_type_ok(v, float) and _finite(v) for v in value):
            return what
        if positive and not all(v > 0 for v in value):
            return what
        return None

    return check


def positive(value: Any) -> str | None:
    """A check for a number greater than zero."""
    return None if value > 0 else "greater than zero"


def fraction(value: Any) -> str | None:
    """A check for a number from 0 to 1."""
    return None if 0.0 <= value <= 1.0 else "a fraction from 0 to 1"


def non_negative(value: Any) -> str | None:
    """A check for a number of zero or more."""
    return None if value >= 0 else "zero or more"
