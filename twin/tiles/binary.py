"""Bounds-checked reading of binary tile parts: headers, JSON chunks and typed arrays.

Every length read from a file is checked against the bytes really present before any array is
made, so a lying header gives a DataError naming the file and the field, never a crash or a huge
allocation.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from twin.errors import DataError

# Component types of feature and batch tables (3D Tiles 1.0) and their numpy dtypes.
TABLE_COMPONENT_TYPES: dict[str, np.dtype] = {
    "BYTE": np.dtype("<i1"),
    "UNSIGNED_BYTE": np.dtype("<u1"),
    "SHORT": np.dtype("<i2"),
    "UNSIGNED_SHORT": np.dtype("<u2"),
    "INT": np.dtype("<i4"),
    "UNSIGNED_INT": np.dtype("<u4"),
    "FLOAT": np.dtype("<f4"),
    "DOUBLE": np.dtype("<f8"),
}
TABLE_TYPES: dict[str, int] = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


def unpack(fmt: str, data: bytes | memoryview, offset: int, name: str, field: str) -> tuple:
    """struct.unpack_from with a DataError when the bytes are not there."""
    size = struct.calcsize(fmt)
    if offset < 0 or offset + size > len(data):
        raise DataError(
            f"{name}: {field} needs {size} bytes at offset {offset}, but the data has only "
            f"{len(data)} bytes (truncated file?)"
        )
    return struct.unpack_from(fmt, data, offset)


def parse_json(raw: bytes | memoryview, name: str, field: str) -> Any:
    """Parse a JSON chunk (trailing spaces and NULs allowed as padding)."""
    raw = bytes(raw)
    text = raw.rstrip(b" \t\r\n\x00")
    if not text:
        return {}
    try:
        return json.loads(text.decode("utf-8-sig"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{name}: {field} is not UTF-8 text ({exc})") from exc
    except json.JSONDecodeError as exc:
        raise DataError(f"{name}: {field} is not valid JSON ({exc.msg} at char {exc.pos})") from exc
    except RecursionError as exc:
        raise DataError(f"{name}: {field} is nested too deeply") from exc


def require_dict(value: Any, name: str, field: str) -> dict:
    """`value` if it is a JSON object, else a DataError."""
    if not isinstance(value, dict):
        raise DataError(f"{name}: {field} must be a JSON object, got {type(value).__name__}")
    return value


def require_int(value: Any, name: str, field: str, minimum: int = 0) -> int:
    """`value` as int if it is an integer >= minimum (JSON numbers like 3.0 allowed)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise DataError(f"{name}: {field} must be an integer, got {value!r}")
    if isinstance(value, float) and (not np.isfinite(value) or value != int(value)):
        raise DataError(f"{name}: {field} must be an integer, got {value!r}")
    if int(value) < minimum:
        raise DataError(f"{name}: {field} must be >= {minimum}, got {value!r}")
    return int(value)


def require_number(value: Any, name: str, field: str, minimum: float | None = None) -> float:
    """`value` as float if it is a finite number (>= minimum when given)."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not np.isfinite(value):
        raise DataError(f"{name}: {field} must be a finite number, got {value!r}")
    if minimum is not None and value < minimum:
        raise DataError(f"{name}: {field} must be >= {minimum}, got {value!r}")
    return float(value)


def require_numbers(value: Any, count: int, name: str, field: str) -> np.ndarray:
    """`value` as a float64 array of exactly `count` finite numbers."""
    if not isinstance(value, list | tuple) or len(value) != count:
        raise DataError(f"{name}: {field} must be an array of {count} numbers, got {value!r}"[:300])
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{name}: {field} must hold numbers only, got {value!r}"[:300]) from exc
    if arr.shape != (count,) or not np.all(np.isfinite(arr)):
        raise DataError(f"{name}: {field} must hold {count} finite numbers, got {value!r}"[:300])
    return arr


def typed_array(
    buf: bytes | memoryview,
    offset: int,
    dtype: np.dtype,
    count: int,
    ncomp: int,
    name: str,
    field: str,
    stride: int | None = None,
) -> np.ndarray:
    """A (count, ncomp) array viewing `buf` from `offset`, after checking it fits.

    With a byte stride larger than the element size the view is strided (no copy).
    """
    dtype = np.dtype(dtype)
    elem = dtype.itemsize * ncomp
    stride = stride if stride else elem
    if count < 0 or offset < 0:
        raise DataError(f"{name}: {field} has a negative count or offset")
    if stride < elem:
        raise DataError(f"{name}: {field} byte stride {stride} is smaller than its element {elem}")
    need = 0 if count == 0 else offset + stride * (count - 1) + elem
    if need > len(buf):
        raise DataError(
            f"{name}: {field} needs {need} bytes ({count} x {ncomp} {dtype.name} from offset "
            f"{offset}), but only {len(buf)} are there"
        )
    if count == 0:
        return np.zeros((0, ncomp), dtype=dtype)
    if stride == elem:
        return np.frombuffer(buf, dtype=dtype, count=count * ncomp, offset=offset).reshape(
            count, ncomp
        )
    raw = np.frombuffer(buf, dtype=np.uint8, count=need - offset, offset=offset)
    return (
        np.lib.stride_tricks.as_strided(
            raw.view(np.uint8), shape=(count, elem), strides=(stride, 1), writeable=False
        )
        .copy()
        .view(dtype)
        .reshape(count, ncomp)
    )


def mat4_from_column_major(values: Any, name: str, field: str) -> np.ndarray:
    """A 4x4 float64 matrix from 16 numbers in column-major order (glTF and 3D Tiles layout)."""
    return require_numbers(values, 16, name, field).reshape(4, 4).T.copy()


def translation(v: np.ndarray) -> np.ndarray:
    """4x4 translation matrix."""
    m = np.eye(4)
    m[:3, 3] = v
    return m


# glTF assets are y-up; 3D Tiles are z-up. These map a glTF up axis to z-up (CesiumJS Axis.*).
Y_UP_TO_Z_UP = np.array([[1.0, 0, 0, 0], [0, 0, -1, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
X_UP_TO_Z_UP = np.array([[0.0, 0, -1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]])


def up_axis_matrix(up_axis: str) -> np.ndarray:
    """The matrix taking glTF coordinates with the given up axis to the z-up tile frame."""
    return {"Y": Y_UP_TO_Z_UP, "X": X_UP_TO_Z_UP}.get(str(up_axis).upper(), np.eye(4))


@contextmanager
def malformed(name: str, what: str | Callable[[], str]) -> Iterator[None]:
    """Last resort: turn an unexpected type or shape error met while reading `name` into a
    DataError (the explicit checks give more precise messages; this keeps a bad file from ever
    surfacing as a bare traceback)."""
    try:
        yield
    except DataError:
        raise
    except (
        KeyError,
        IndexError,
        TypeError,
        ValueError,
        AttributeError,
        OverflowError,
        struct.error,
    ) as exc:
        what = what() if callable(what) else what
        raise DataError(f"{name}: malformed {what} ({type(exc).__name__}: {exc})") from exc
