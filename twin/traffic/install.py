"""Where SUMO is installed: the eclipse-sumo wheel's folder, programs and tools, found in one place.

Importing the wheel's `sumo` or `libsumo` package sets PROJ_LIB/PROJ_DATA to SUMO's own PROJ database for
the whole process, which breaks rasterio and pyproj (another PROJ version) in the same process. So these
packages are imported here with those variables restored; SUMO's child processes get SUMO's PROJ settings
(`sumo_env`), and libsumo gets them only while it loads a network (`sumo_proj`).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path
from types import ModuleType

from twin.errors import TwinError

_PROJ_VARS = ("PROJ_LIB", "PROJ_DATA")


class SumoNotFound(TwinError):
    """SUMO (the eclipse-sumo wheel, or SUMO_HOME) is not installed."""


@contextmanager
def _proj_env(values: dict[str, str | None]) -> Iterator[None]:
    """Set (or unset, for None) the PROJ variables for the duration, then put back what was there."""
    saved = {k: os.environ.get(k) for k in _PROJ_VARS}
    try:
        for k, v in values.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def import_sumo_module(name: str) -> ModuleType:
    """Import `sumo`, `libsumo` or `traci` without letting it change this process's PROJ settings."""
    with _proj_env({}):
        return importlib.import_module(name)


@cache
def _wheel() -> tuple[Path, str] | None:
    try:
        sumo = import_sumo_module("sumo")  # the eclipse-sumo wheel
    except ImportError:
        return None
    return Path(sumo.SUMO_HOME), str(getattr(sumo, "__version__", "unknown"))


def sumo_home() -> Path:
    """SUMO_HOME: the eclipse-sumo wheel's folder, else the SUMO_HOME environment variable."""
    wheel = _wheel()
    if wheel:
        return wheel[0]
    home = os.environ.get("SUMO_HOME")
    if home:
        return Path(home)
    raise SumoNotFound("SUMO is not installed: install the eclipse-sumo package (pip)")


def sumo_version() -> str:
    """Version of the installed SUMO wheel ("unknown" for a SUMO_HOME installation)."""
    wheel = _wheel()
    return wheel[1] if wheel else "unknown"


def sumo_binary(name: str = "sumo") -> Path:
    """Path of a SUMO program (sumo, netconvert, duarouter, ...): next to Python, in SUMO_HOME/bin, on PATH."""
    folders = [Path(sys.executable).parent]
    with contextlib.suppress(SumoNotFound):
        folders.append(sumo_home() / "bin")
    for folder in folders:
        candidate = folder / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which(name)
    if found:
        return Path(found)
    raise SumoNotFound(f"SUMO program '{name}' not found (expected next to {sys.executable})")


def sumo_tool(relative: str) -> Path:
    """Path of a script under SUMO_HOME/tools (e.g. 'randomTrips.py')."""
    path = sumo_home() / "tools" / relative
    if not path.is_file():
        raise SumoNotFound(f"SUMO tool '{relative}' not found under {path.parent}")
    return path


def _sumo_proj_dir() -> str | None:
    proj = sumo_home() / "data" / "proj"
    return str(proj) if proj.is_dir() else None


@contextmanager
def sumo_proj() -> Iterator[None]:
    """SUMO's PROJ database in the environment while libsumo loads a network (it builds its
    projection then); the process's own settings are restored afterwards."""
    proj = _sumo_proj_dir()
    with _proj_env(dict.fromkeys(_PROJ_VARS, proj) if proj else {}):
        yield


def sumo_env() -> dict[str, str]:
    """Environment for SUMO child processes: SUMO_HOME and SUMO's own PROJ database."""
    env = dict(os.environ, SUMO_HOME=str(sumo_home()))
    proj = _sumo_proj_dir()
    if proj:
        env.update(dict.fromkeys(_PROJ_VARS, proj))
    return env
