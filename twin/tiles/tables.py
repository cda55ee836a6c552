"""Feature tables and batch tables of 3D Tiles 1.0 contents (JSON header + binary body).

A value is either given in the JSON (a number or array) or as a reference
`{"byteOffset": n, "componentType": ..., "type": ...}` into the binary body; both are returned as
numpy arrays viewing the file's bytes.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twin.errors import DataError
from twin.tiles.binary import TABLE_COMPONENT_TYPES, TABLE_TYPES, require_int, typed_array


class BinaryTable:
    """A feature or batch table: its JSON header and its binary body."""

    def __init__(self, header: dict, binary: memoryview, name: str, which: str) -> None:
        if not isinstance(header, dict):
            raise DataError(f"{name}: {which} JSON must be an object, got {type(header).__name__}")
        self.json = header
        self.binary = binary
        self.name = name
        self.which = which

    def __contains__(self, key: str) -> bool:
        return key in self.json

    def _field(self, key: str) -> str:
        return f"{self.which} {key}"

    def _binary_ref(
        self, key: str, ref: dict, count: int, ncomp: int, component: str | None
    ) -> np.ndarray:
        offset = require_int(ref.get("byteOffset"), self.name, self._field(key) + ".byteOffset")
        ctype = ref.get("componentType", component)
        if ctype not in TABLE_COMPONENT_TYPES:
            raise DataError(
                f"{self.name}: {self._field(key)}.componentType must be one of "
                f"{sorted(TABLE_COMPONENT_TYPES)}, got {ctype!r}"
            )
        return typed_array(
            self.binary,
            offset,
            TABLE_COMPONENT_TYPES[ctype],
            count,
            ncomp,
            self.name,
            self._field(key),
        )

    def global_value(self, key: str, ncomp: int, component: str = "FLOAT") -> np.ndarray | None:
        """A global semantic (one value of `ncomp` components), or None if absent."""
        if key not in self.json:
            return None
        value = self.json[key]
        if isinstance(value, dict):
            return self._binary_ref(key, value, 1, ncomp, component)[0].astype(np.float64)
        arr = np.atleast_1d(np.asarray(value, dtype=object))
        try:
            out = arr.astype(np.float64)
        except (TypeError, ValueError) as exc:
            raise DataError(
                f"{self.name}: {self._field(key)} must be numeric, got {value!r}"
            ) from exc
        if out.shape != (ncomp,) or not np.all(np.isfinite(out)):
            raise DataError(
                f"{self.name}: {self._field(key)} must hold {ncomp} finite numbers, got {value!r}"
            )
        return out

    def per_item(
        self, key: str, count: int, ncomp: int, component: str | None
    ) -> np.ndarray | None:
        """A per-feature semantic as a (count, ncomp) array, or None if absent."""
        if key not in self.json:
            return None
        value = self.json[key]
        if isinstance(value, dict):
            return self._binary_ref(key, value, count, ncomp, component)
        arr = np.asarray(value)
        if arr.dtype == object or arr.size != count * ncomp:
            raise DataError(
                f"{self.name}: {self._field(key)} must hold {count} x {ncomp} numbers, "
                f"got {arr.size} values"
            )
        return arr.reshape(count, ncomp)


class BatchTable(BinaryTable):
    """Per-feature properties of a b3dm/i3dm/pnts content (3D Tiles 1.0 batch table)."""

    def __init__(self, header: dict, binary: memoryview, name: str) -> None:
        super().__init__(header, binary, name, "batch table")

    def property_names(self) -> list[str]:
        """Names of the per-feature properties (extensions and extras left out)."""
        return [k for k in self.json if k not in ("extensions", "extras")]

    def properties(self, length: int) -> dict[str, Any]:
        """All properties for `length` features: numpy arrays for binary and numeric JSON values,
        lists for other JSON values (strings, objects)."""
        out: dict[str, Any] = {}
        for key in self.property_names():
            value = self.json[key]
            if isinstance(value, dict) and "byteOffset" in value:
                typ = value.get("type")
                if typ not in TABLE_TYPES:
                    raise DataError(
                        f"{self.name}: batch table {key}.type must be one of {sorted(TABLE_TYPES)}, "
                        f"got {typ!r}"
                    )
                arr = self._binary_ref(key, value, length, TABLE_TYPES[typ], None)
                out[key] = arr[:, 0] if TABLE_TYPES[typ] == 1 else arr
            elif isinstance(value, list):
                if len(value) != length:
                    raise DataError(
                        f"{self.name}: batch table {key} has {len(value)} values, expected {length}"
                    )
                arr = np.asarray(value) if value else np.zeros(0)
                out[key] = arr if arr.dtype.kind in "biuf" else list(value)
            else:
                raise DataError(
                    f"{self.name}: batch table {key} must be an array or a binary reference, "
                    f"got {type(value).__name__}"
                )
        return out


def split_tables(
    data: memoryview,
    header_len: int,
    lengths: tuple[int, int, int, int],
    name: str,
) -> tuple[BinaryTable, BatchTable | None, memoryview]:
    """Cut a b3dm/i3dm/pnts body into feature table, batch table and the rest (glTF or nothing).

    `lengths` are the feature table JSON/binary and batch table JSON/binary byte lengths from the
    header; their sum must fit in the data.
    """
    from twin.tiles.binary import parse_json

    ftj, ftb, btj, btb = lengths
    end = header_len + ftj + ftb + btj + btb
    if end > len(data):
        raise DataError(
            f"{name}: header table lengths (feature table JSON {ftj} + binary {ftb}, batch table "
            f"JSON {btj} + binary {btb}) run past the end of the {len(data)}-byte tile"
        )
    o = header_len
    ft_json = parse_json(data[o : o + ftj], name, "feature table JSON")
    o += ftj
    ft = BinaryTable(ft_json, data[o : o + ftb], name, "feature table")
    o += ftb
    bt = None
    if btj:
        bt_json = parse_json(data[o : o + btj], name, "batch table JSON")
        o += btj
        bt = BatchTable(bt_json, data[o : o + btb], name)
        o += btb
    else:
        o += btb
    return ft, bt, data[o:]
