"""3D Metadata property tables (EXT_structural_metadata, implicit subtree metadata) decoded to numpy.

Follows the 3D Metadata binary table layout: one buffer view of values per property, with
array offsets for variable-length arrays and string offsets for strings; booleans are bitstreams.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from twin.errors import DataError
from twin.tiles.binary import require_int

COMPONENT_TYPES: dict[str, np.dtype] = {
    "INT8": np.dtype("<i1"),
    "UINT8": np.dtype("<u1"),
    "INT16": np.dtype("<i2"),
    "UINT16": np.dtype("<u2"),
    "INT32": np.dtype("<i4"),
    "UINT32": np.dtype("<u4"),
    "INT64": np.dtype("<i8"),
    "UINT64": np.dtype("<u8"),
    "FLOAT32": np.dtype("<f4"),
    "FLOAT64": np.dtype("<f8"),
}
TYPE_COMPONENTS: dict[str, int] = {
    "SCALAR": 1,
    "VEC2": 2,
    "VEC3": 3,
    "VEC4": 4,
    "MAT2": 4,
    "MAT3": 9,
    "MAT4": 16,
    "STRING": 1,
    "BOOLEAN": 1,
    "ENUM": 1,
}


def _view_array(buf: memoryview, dtype: np.dtype, count: int, name: str, field: str) -> np.ndarray:
    need = count * dtype.itemsize
    if need > len(buf):
        raise DataError(
            f"{name}: {field} needs {need} bytes ({count} {dtype.name}), its buffer view has {len(buf)}"
        )
    return np.frombuffer(buf, dtype=dtype, count=count)


def _offsets(
    table_prop: dict, key: str, type_key: str, count: int, getter, name: str, field: str
) -> np.ndarray:
    view = getter(require_int(table_prop.get(key), name, f"{field}.{key}"))
    otype = table_prop.get(type_key, "UINT32")
    if otype not in ("UINT8", "UINT16", "UINT32", "UINT64"):
        raise DataError(f"{name}: {field}.{type_key} must be UINT8..UINT64, got {otype!r}")
    offs = _view_array(view, COMPONENT_TYPES[otype], count + 1, name, f"{field}.{key}").astype(
        np.int64
    )
    if count and (np.any(np.diff(offs) < 0) or offs[0] < 0):
        raise DataError(f"{name}: {field}.{key} must be non-decreasing offsets")
    return offs


def decode_property_table(
    schema: dict | None,
    table: dict,
    buffer_view: Callable[[int], memoryview],
    name: str,
    where: str = "propertyTable",
) -> dict[str, Any]:
    """Decode every property of a property table into arrays (numbers), lists (strings, ragged
    arrays) or bool arrays; enums stay integer codes. `buffer_view(i)` returns bufferView i's bytes."""
    if not isinstance(table, dict):
        raise DataError(f"{name}: {where} must be an object")
    count = require_int(table.get("count"), name, f"{where}.count")
    class_id = table.get("class")
    classes = (schema or {}).get("classes") or {}
    if class_id not in classes:
        raise DataError(f"{name}: {where}.class {class_id!r} is not a class of the schema")
    class_props = classes[class_id].get("properties") or {}
    out: dict[str, Any] = {}
    for prop_name, tprop in (table.get("properties") or {}).items():
        field = f"{where}.properties.{prop_name}"
        if prop_name not in class_props:
            raise DataError(f"{name}: {field} is not a property of class {class_id!r}")
        out[prop_name] = _decode_property(
            class_props[prop_name], tprop, count, buffer_view, name, field, schema or {}
        )
    return out


def _decode_property(
    cprop: dict, tprop: dict, count: int, getter, name: str, field: str, schema: dict
) -> Any:
    typ = cprop.get("type")
    if typ not in TYPE_COMPONENTS:
        raise DataError(f"{name}: {field}: class property type {typ!r} is not supported")
    values = getter(require_int(tprop.get("values"), name, f"{field}.values"))
    is_array = bool(cprop.get("array", False))
    fixed = cprop.get("count") if is_array else 1
    variable = is_array and fixed is None
    if variable:
        offs = _offsets(tprop, "arrayOffsets", "arrayOffsetType", count, getter, name, field)
    if typ == "STRING":
        soffs_count = int(offs[-1]) if variable else count * int(fixed)
        soffs = _offsets(
            tprop, "stringOffsets", "stringOffsetType", soffs_count, getter, name, field
        )
        raw = bytes(values)
        if soffs[-1] > len(raw):
            raise DataError(f"{name}: {field}.stringOffsets point past the end of the values")
        strings = [
            raw[soffs[i] : soffs[i + 1]].decode("utf-8", "replace") for i in range(soffs_count)
        ]
        if variable:
            return [strings[offs[i] : offs[i + 1]] for i in range(count)]
        if is_array:
            return [strings[i * fixed : (i + 1) * fixed] for i in range(count)]
        return strings
    if typ == "BOOLEAN":
        n = int(offs[-1]) if variable else count * int(fixed)
        need = (n + 7) // 8
        if need > len(values):
            raise DataError(f"{name}: {field} needs {need} bytes of booleans, has {len(values)}")
        bits = np.unpackbits(np.frombuffer(values, np.uint8, need), bitorder="little")[:n].astype(
            bool
        )
        if variable:
            return [bits[offs[i] : offs[i + 1]] for i in range(count)]
        return bits.reshape(count, -1)[:, 0] if not is_array else bits.reshape(count, int(fixed))
    if typ == "ENUM":
        enum = (schema.get("enums") or {}).get(cprop.get("enumType"), {})
        ctype = enum.get("valueType", "UINT16")
    else:
        ctype = cprop.get("componentType")
    if ctype not in COMPONENT_TYPES:
        raise DataError(f"{name}: {field}: componentType {ctype!r} is not supported")
    dtype = COMPONENT_TYPES[ctype]
    ncomp = TYPE_COMPONENTS[typ]
    if variable:
        # array offsets count elements (not bytes) of the values
        n_elem = int(offs[-1])
        flat = _view_array(values, dtype, n_elem * ncomp, name, field).reshape(n_elem, ncomp)
        flat = _normalize(flat, cprop, tprop)
        if ncomp == 1:
            flat = flat[:, 0]
        return [flat[offs[i] : offs[i + 1]] for i in range(count)]
    per = ncomp * int(fixed)
    arr = _view_array(values, dtype, count * per, name, field).reshape(count, int(fixed), ncomp)
    try:
        arr = _normalize(arr, cprop, tprop)
    except ValueError as exc:
        raise DataError(f"{name}: {field}: offset/scale do not match the property type") from exc
    if is_array:
        return arr[:, :, 0] if ncomp == 1 else arr
    return arr[:, 0, 0] if ncomp == 1 else arr[:, 0, :]


def _normalize(arr: np.ndarray, cprop: dict, tprop: dict) -> np.ndarray:
    """Apply `normalized`, then `offset` and `scale` (table values override class values)."""
    if cprop.get("normalized") and arr.dtype.kind in "iu":
        info = np.iinfo(arr.dtype)
        arr = arr.astype(np.float64) / info.max
        if info.min < 0:
            arr = np.maximum(arr, -1.0)
    scale = tprop.get("scale", cprop.get("scale"))
    offset = tprop.get("offset", cprop.get("offset"))
    if scale is not None or offset is not None:
        arr = arr.astype(np.float64)
        if scale is not None:
            arr = arr * _shaped(scale, arr.shape[1:])
        if offset is not None:
            arr = arr + _shaped(offset, arr.shape[1:])
    return arr


def _shaped(value: Any, shape: tuple) -> np.ndarray:
    """An offset/scale value shaped like one element (fixed count x components)."""
    v = np.asarray(value, dtype=np.float64)
    size = int(np.prod(shape))
    if v.size == size:
        return v.reshape(shape)
    if v.size == shape[-1]:
        return v.reshape(1, -1)
    raise ValueError("shape mismatch")
