"""The pack's sensor layers: ground-water wells, climate stations and parking bays as typed columns.

Each row has an id, a LoRaWAN DevEUI and a position (EPSG:25832); the build, the models and the sensor
ingest all read these layers here, so none of them needs another's code to know where a well is.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from twin.errors import DataError

WELL_COLUMNS = {
    "id": str,
    "dev_eui": str,
    "name": str,
    "x": float,
    "y": float,
    "ground_elevation_m": float,
    "reference_height_m": float,
    "well_depth_m": float,
    "screen_top_m": float,
    "screen_bottom_m": float,
    "aquifer": str,
    "status": str,
}
PARKING_COLUMNS = {"id": str, "dev_eui": str, "name": str, "x": float, "y": float, "status": str}
STATION_COLUMNS = {
    "id": str,
    "dev_eui": str,
    "name": str,
    "x": float,
    "y": float,
    "elevation_m": float,
    "sensor_height_m": float,
    "kind": str,
    "status": str,
}


def read_table(path: Path, columns: dict[str, type], what: str) -> dict[str, np.ndarray]:
    """Read a catalogue CSV into typed columns; a missing column, a bad number or a duplicate id is an
    error naming the file, the row and the column."""
    try:
        with path.open(newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in columns if c not in header]
            if missing:
                raise DataError(f"{path}: {what} lacks column(s) {', '.join(missing)}")
            rows = list(reader)
    except OSError as exc:
        raise DataError(f"{path}: cannot read {what}: {exc}") from None
    out: dict[str, list[Any]] = {c: [] for c in columns}
    for n, row in enumerate(rows, start=2):
        for c, kind in columns.items():
            raw = (row.get(c) or "").strip()
            if kind is float:
                try:
                    val = float(raw)
                except ValueError:
                    raise DataError(
                        f"{path}: line {n}, column '{c}': expected a number, got {raw!r}"
                    ) from None
                if not np.isfinite(val):
                    raise DataError(f"{path}: line {n}, column '{c}': expected a finite number")
                out[c].append(val)
            else:
                out[c].append(raw)
    table = {c: np.array(v, dtype=float if columns[c] is float else object) for c, v in out.items()}
    for key in ("id", "dev_eui"):
        vals, counts = np.unique(table[key].astype(str), return_counts=True)
        if (counts > 1).any():
            raise DataError(f"{path}: column '{key}' value '{vals[counts > 1][0]}' appears twice")
    eui_ok = [
        len(e) == 16 and all(ch in "0123456789abcdefABCDEF" for ch in e) for e in table["dev_eui"]
    ]
    if not all(eui_ok):
        bad = table["dev_eui"][eui_ok.index(False)]
        raise DataError(f"{path}: column 'dev_eui' value {bad!r}: expected 16 hexadecimal digits")
    return table


def read_wells(path: Path) -> dict[str, np.ndarray]:
    """The ground-water wells: position, reference height (top of casing) and screen depths."""
    return read_table(path, WELL_COLUMNS, "well catalogue")


def read_stations(path: Path) -> dict[str, np.ndarray]:
    """The climate stations: position, ground elevation and sensor height."""
    return read_table(path, STATION_COLUMNS, "climate-station catalogue")


def read_parking(path: Path) -> dict[str, np.ndarray]:
    """The parking-bay sensors: id, DevEUI, name and position."""
    return read_table(path, PARKING_COLUMNS, "parking-sensor catalogue")
