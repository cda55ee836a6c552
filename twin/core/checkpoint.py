"""Checkpoint files of a coupled run: one NumPy ``.npz`` archive with a JSON header, no pickles.

The header (member ``checkpoint.json``, UTF-8 JSON as bytes) names the format and version, the
clock, every model (name, class, coupling step, time, the keys and kinds of its saved state, the
outputs held for its links) and the links. Every array, scalars included, is a member of its own
(``m<i>_s<j>`` for state entry j of model i, ``m<i>_h<j>`` for held output j), so values are
stored bit for bit: floats as float64, never as decimal text. Files are written to a temporary
name and renamed, so a checkpoint on disk is always complete.
"""

from __future__ import annotations

import contextlib
import json
import os
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from twin.core.errors import CouplingError

__all__ = ["FORMAT", "VERSION", "pack_state", "read", "unpack_state", "write"]

FORMAT = "twin-checkpoint"
VERSION = 1
_HEADER = "checkpoint.json"
_SCALARS = {bool: "bool", int: "int", float: "float", str: "str"}
_DTYPES = {"bool": np.bool_, "int": np.int64, "float": np.float64}


def pack_state(
    prefix: str, state: Mapping[str, Any], arrays: dict[str, np.ndarray]
) -> list[list[str]]:
    """Add ``state``'s values to ``arrays`` as ``<prefix><j>``; return ``[[key, kind], ...]``."""
    kinds = []
    for j, (key, value) in enumerate(state.items()):
        kind = "array" if isinstance(value, np.ndarray) else _SCALARS[type(value)]
        arrays[f"{prefix}{j}"] = value if kind == "array" else np.array(value, _DTYPES.get(kind))
        kinds.append([key, kind])
    return kinds


def unpack_state(
    prefix: str, kinds: list[list[str]], arrays: Mapping[str, np.ndarray], file: Path
) -> dict[str, Any]:
    """The state packed by :func:`pack_state` (arrays as arrays, scalars as Python scalars)."""
    state: dict[str, Any] = {}
    for j, (key, kind) in enumerate(kinds):
        value = _member(arrays, f"{prefix}{j}", file)
        if kind == "array":
            state[key] = value
        elif kind in ("bool", "int", "float", "str") and value.ndim == 0:
            state[key] = {"bool": bool, "int": int, "float": float, "str": str}[kind](value[()])
        else:
            raise CouplingError(f"checkpoint {file}: state entry {key!r} has unknown kind {kind!r}")
    return state


def write(path: Path, header: Mapping[str, Any], arrays: Mapping[str, np.ndarray]) -> Path:
    """Write the checkpoint atomically (temporary name in the same folder, then rename)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise CouplingError(f"checkpoint {path}: folder {path.parent} does not exist")
    text = json.dumps(header, allow_nan=False, sort_keys=True).encode("utf-8")
    members = {_HEADER: np.frombuffer(text, dtype=np.uint8), **arrays}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **members)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The header and arrays of a checkpoint file; refuses files of another format or version."""
    path = Path(path)
    if not path.is_file():
        raise CouplingError(f"checkpoint {path}: no such file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {name: archive[name] for name in archive.files}
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise CouplingError(f"checkpoint {path}: not a checkpoint archive ({exc})") from None
    raw = arrays.pop(_HEADER, None)
    try:
        header = json.loads(bytes(raw).decode("utf-8")) if raw is not None else None
    except (UnicodeDecodeError, json.JSONDecodeError):
        header = None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise CouplingError(f"checkpoint {path}: no {_HEADER} header of format {FORMAT!r}")
    if header.get("version") != VERSION:
        raise CouplingError(
            f"checkpoint {path}: version {header.get('version')!r}, expected {VERSION}"
        )
    return header, arrays


def _member(arrays: Mapping[str, np.ndarray], name: str, file: Path) -> np.ndarray:
    try:
        return arrays[name]
    except KeyError:
        raise CouplingError(f"checkpoint {file}: array {name!r} is missing") from None
