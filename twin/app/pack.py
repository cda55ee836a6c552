"""The one pack rule of every command: `--pack`, then `$TWIN_PACK`, then the default pack.

The default pack, like `build/`, `runs/` and the scenario and scene folders, is found relative to the
working directory (the project's root when the commands are run from there), never next to the code.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from twin.city.pack import DataPack, load_pack
from twin.errors import ConfigError

PACK_ENV = "TWIN_PACK"
DEFAULT_PACK = Path("data") / "krefeld" / "pack.toml"
SIMULATIONS = Path("simulations")  # scenario names (`twin traffic run NAME`) resolve here
SCENES = Path("scenes")  # named views (`twin scene render --view NAME`) resolve here


def pack_path(arg: str | Path | None = None) -> Path:
    """The pack.toml the rule picks: `arg` (from --pack), else $TWIN_PACK, else the default pack."""
    if arg:
        return _pack_toml(Path(arg), "--pack")
    env = os.environ.get(PACK_ENV)
    if env:
        return _pack_toml(Path(env), f"${PACK_ENV}")
    if not DEFAULT_PACK.is_file():
        raise ConfigError(
            f"no data pack: {DEFAULT_PACK} is not in the working directory ({Path.cwd()}); "
            f"pass --pack PACK or set {PACK_ENV}"
        )
    return DEFAULT_PACK.absolute()  # errors then name the file in full, as for a pack file's key


def _pack_toml(path: Path, where: str) -> Path:
    path = path.expanduser()
    file = path / "pack.toml" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError(f"{where}: no data pack at {path} (expected a pack.toml or its folder)")
    return file


def resolve_pack(arg: str | Path | None = None) -> DataPack:
    """The data pack of a command, loaded and validated, by the one pack rule (see `pack_path`)."""
    return load_pack(pack_path(arg))


def scenario_file(name_or_path: str | Path, folder: Path = SIMULATIONS) -> Path:
    """A scenario file given as a path, or by name in `simulations/` of the working directory."""
    p = Path(name_or_path)
    if p.suffix == ".toml" or p.exists():
        return p
    candidate = folder / f"{p}.toml"
    if candidate.is_file():
        return candidate
    known = ", ".join(sorted(f.stem for f in folder.glob("*.toml"))) if folder.is_dir() else ""
    raise ConfigError(
        f"no scenario {str(name_or_path)!r}: not a file and not in {folder}/ "
        f"(known: {known or 'none'})"
    )


def add_pack_args(
    p: argparse.ArgumentParser | argparse._ArgumentGroup, *, build_dir: bool = True
) -> None:
    """The `--pack` (and `--build-dir`) options, the same on every command."""
    p.add_argument(
        "--pack",
        type=Path,
        default=None,
        help=f"data pack (pack.toml or its folder; default: ${PACK_ENV}, else {DEFAULT_PACK})",
    )
    if build_dir:
        p.add_argument(
            "--build-dir",
            type=Path,
            default=Path("build"),
            help="where the data products are, per pack (default: build/)",
        )
